"""The MOOD submission: assemble a docker build context with the four entry points and the models.

Layout written by :func:`build_submission` (one folder, replaced whole on success)::

    OUT/Dockerfile                      installs this package (runtime dependencies only) + the models;
                                        its FROM line names the base image (--base-image)
    OUT/requirements.txt, constraints.txt   what inference imports, pinned to this machine's versions
    OUT/wheels/                         a torch wheel to install instead of downloading one (optional)
    OUT/run_{pixel,sample}_{brain,abdom}.sh   the MOOD entry points (sh SCRIPT IN OUT)
    OUT/mood_run.sh                     their shared body
    OUT/models/<task>_<dataset>/model.yaml (+ the model files it lists)  or  model.npz (baseline)
    OUT/mood-dpa/                       the package source (pyproject.toml, README.md, src/mood_dpa),
                                        with the source's git commit baked in (mood_dpa.version)

A detector file is copied with its model files next to it (renamed ``m<k>_<name>``), its calibration
inlined, so the folder is self-contained. The run scripts find the models beside themselves
(``/workspace/models`` in the image) or under ``$MOOD_DPA_MODELS``; ``$MOOD_DPA_BIN`` names the
``mood-dpa`` executable (default: the one on PATH). They put every temporary file (TMPDIR, HOME,
caches) in a fresh folder under OUT and remove it at the end, so they run in a read-only container.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

from ..atomic import atomic_dir
from ..config import validate
from ..errors import MoodError
from ..version import bake_commit, source_commit
from .detector_file import DetectorSpec, read_spec, resolve_calibration, write_spec
from .loading import gives_voxel_map
from .image_requirements import pinned_closure, public_version, runtime_requirements

SLOTS = ("pixel_brain", "sample_brain", "pixel_abdom", "sample_abdom")
RUN_SCRIPTS = tuple(f"run_{slot}.sh" for slot in SLOTS)
DOCKER_FILES = ("Dockerfile", "mood_run.sh", *RUN_SCRIPTS)
#: The organisers' machines pull from Docker Hub; elsewhere see docker/build_offline_base.sh.
DEFAULT_BASE_IMAGE = "python:3.11-slim"
_IMAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")
_TORCH_WHEEL = re.compile(r"^torch-(?P<version>[^-]+)-.+\.whl$")


def docker_dir() -> Path:
    """The repository's ``docker/`` folder (Dockerfile and run scripts)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "docker"
        if (cand / "Dockerfile").is_file() and (cand / "mood_run.sh").is_file():
            return cand
    raise MoodError("cannot find the docker/ folder of the mood-dpa checkout (Dockerfile, run scripts)")


def project_root() -> Path | None:
    """The checkout this package runs from (the folder with pyproject.toml and src/mood_dpa), if any."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "mood_dpa").is_dir():
            return parent
    return None


def _copy_model(src: Path, dest_dir: Path, allow_uncalibrated: bool) -> list[Path]:
    """Copy one slot's model into ``dest_dir``; returns the files written."""
    if not src.is_file():
        raise MoodError(f"{src}: no such model file")
    suffix = src.suffix.lower()
    dest_dir.mkdir(parents=True)
    if suffix == ".npz":
        shutil.copyfile(src, dest_dir / "model.npz")
        return [dest_dir / "model.npz"]
    if suffix not in (".yaml", ".yml"):
        raise MoodError(f"{src}: a submission model must be a detector .yaml or a baseline .npz")
    spec = read_spec(src)
    cal = resolve_calibration(spec, src.parent)
    if cal is None and not allow_uncalibrated:
        raise MoodError(f"{src}: the detector is not calibrated; run 'mood-dpa calibrate' first (or --allow-uncalibrated)")
    data = spec.model_dump(mode="json")
    written = []
    entries = [entry for member in data["members"] for entry in member["models"]]
    for k, entry in enumerate(entries):
        p = Path(entry["path"])
        p = p if p.is_absolute() else src.parent / p
        if not p.is_file():
            raise MoodError(f"{src}: model file {p} not found")
        name = f"m{k}_{p.name}"
        shutil.copyfile(p, dest_dir / name)
        written.append(dest_dir / name)
        entry["path"] = name
    data["calibration"] = cal.to_dict() if cal is not None else None
    write_spec(dest_dir / "model.yaml", validate(DetectorSpec, data, str(src)))
    written.append(dest_dir / "model.yaml")
    return written


def check_base_image(base_image: str) -> str:
    """Refuse what cannot be an image reference (spaces, newlines: they would corrupt the Dockerfile)."""
    if not _IMAGE_NAME.match(base_image):
        raise MoodError(f"--base-image {base_image!r}: not an image name (like python:3.11-slim or localhost/deb-min)")
    return base_image


def write_dockerfile(template: Path, dest: Path, base_image: str) -> None:
    """Copy the Dockerfile with its one FROM line naming ``base_image``."""
    check_base_image(base_image)
    lines = template.read_text().splitlines(keepends=True)
    froms = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    if len(froms) != 1:
        raise MoodError(f"{template}: expected exactly one FROM line, found {len(froms)}")
    lines[froms[0]] = f"FROM {base_image}\n"
    dest.write_text("".join(lines))


def check_torch_wheel(torch_wheel: Path) -> Path:
    """Refuse a file that is not a torch wheel of the version this installation pins."""
    match = _TORCH_WHEEL.match(torch_wheel.name)
    if not torch_wheel.is_file() or match is None:
        raise MoodError(f"--torch-wheel {torch_wheel}: not a torch wheel file (torch-VERSION-...whl)")
    pinned = next((line.split("==", 1)[1] for line in runtime_requirements() if line.startswith("torch==")), None)
    if pinned is not None and public_version(match.group("version")) != pinned:
        raise MoodError(f"--torch-wheel {torch_wheel.name}: torch {match.group('version')}, but this installation uses torch {pinned}")
    return torch_wheel


def _write_requirements(ctx: Path, torch_wheel: Path | None) -> None:
    """requirements.txt, constraints.txt and wheels/ (see mood_dpa.inference.image_requirements)."""
    requirements = runtime_requirements()
    (ctx / "requirements.txt").write_text("".join(f"{line}\n" for line in requirements))
    (ctx / "constraints.txt").write_text("".join(f"{line}\n" for line in pinned_closure()))
    wheels = ctx / "wheels"
    wheels.mkdir()
    (wheels / "README.txt").write_text("A torch wheel here is installed instead of downloading torch (see the Dockerfile).\n")
    if torch_wheel is not None:
        shutil.copyfile(check_torch_wheel(torch_wheel), wheels / torch_wheel.name)


def _copy_source(root: Path, dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".*")
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (root / name).is_file():
            shutil.copyfile(root / name, dest / name)
    if not (dest / "pyproject.toml").is_file():
        raise MoodError(f"{root}: no pyproject.toml; give --source the mood-dpa project folder")
    if not (dest / "README.md").is_file():  # pyproject names it as the readme: the build needs one
        (dest / "README.md").write_text("mood-dpa\n")
    shutil.copytree(root / "src" / "mood_dpa", dest / "src" / "mood_dpa", ignore=ignore)

    commit = source_commit(root)
    if commit is not None:
        bake_commit(dest / "src" / "mood_dpa", commit)


def build_submission(
    out: str | os.PathLike,
    models: Mapping[str, str | os.PathLike],
    source: str | os.PathLike | None = None,
    allow_uncalibrated: bool = False,
    base_image: str = DEFAULT_BASE_IMAGE,
    torch_wheel: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Write the build context (see the module docstring). ``models`` maps every slot of :data:`SLOTS`
    (``pixel_brain`` ...) to a detector YAML or a baseline ``.npz``; ``base_image`` is the image's FROM;
    ``torch_wheel`` a torch wheel to install instead of downloading torch. Returns {files, megabytes}."""
    missing = [s for s in SLOTS if s not in models]
    extra = [s for s in models if s not in SLOTS]
    if missing or extra:
        raise MoodError(f"submission needs exactly the slots {', '.join(SLOTS)} (missing {missing}, unknown {extra})")
    check_base_image(base_image)
    if torch_wheel is not None:
        check_torch_wheel(Path(torch_wheel))
    root = Path(source) if source is not None else project_root()
    if root is None or not (root / "src" / "mood_dpa").is_dir():
        raise MoodError("cannot find the mood-dpa source to install in the image; give --source PROJECT_FOLDER")
    for slot in SLOTS:
        if slot.startswith("pixel") and Path(models[slot]).is_file() and not gives_voxel_map(models[slot]):
            raise MoodError(f"{models[slot]}: a sample-level model (one score per volume, no voxel map) cannot serve the "
                            f"{slot.replace('_', ' / ')} slot; give a detector with a map member")
    ddir = docker_dir()
    out = Path(out)
    with atomic_dir(out) as tmp:
        for name in DOCKER_FILES:
            if name == "Dockerfile":
                write_dockerfile(ddir / name, tmp / name, base_image)
                continue
            shutil.copyfile(ddir / name, tmp / name)
            if name.endswith(".sh"):
                os.chmod(tmp / name, 0o755)
        _write_requirements(tmp, Path(torch_wheel) if torch_wheel is not None else None)
        for slot in SLOTS:
            _copy_model(Path(models[slot]), tmp / "models" / slot, allow_uncalibrated)
        _copy_source(root, tmp / "mood-dpa")
    files = [p for p in out.rglob("*") if p.is_file()]
    return {"files": len(files), "megabytes": sum(p.stat().st_size for p in files) / 1e6}
