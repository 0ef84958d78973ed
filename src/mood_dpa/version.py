"""What ``mood-dpa --version`` says: the package version and the commit the code comes from.

A submission image must be traceable to the code that made its predictions. Run from a git checkout,
the commit is read from git (``-dirty`` added when tracked files differ from it). A copy of the package
made by ``mood-dpa submission`` has no git: the commit is baked into it as :data:`BAKED_MODULE`, so
``mood-dpa --version`` inside the image names the same commit as on the host.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from . import __version__

#: The module ``mood-dpa submission`` writes into its copy of the package: ``COMMIT = "abc1234"``.
BAKED_MODULE = "_build_commit.py"
PACKAGE_DIR = Path(__file__).resolve().parent


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def checkout_commit(root: str | Path) -> str | None:
    """The short commit of the git checkout at ``root`` (``abc1234`` or ``abc1234-dirty``), or None."""
    root = Path(root)
    if not (root / ".git").exists():  # a folder inside some other repository is not this project's checkout
        return None
    commit = _git(root, "rev-parse", "--short", "HEAD")
    if not commit:
        return None
    changed = _git(root, "status", "--porcelain", "--untracked-files=no")
    return f"{commit}-dirty" if changed else commit


def baked_commit(package_dir: str | Path = PACKAGE_DIR) -> str | None:
    """The commit baked into a copied package (``package_dir/_build_commit.py``), or None."""
    path = Path(package_dir) / BAKED_MODULE
    if not path.is_file():
        return None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("COMMIT = "):
            return line.split("=", 1)[1].strip().strip("\"'") or None
    return None


def bake_commit(package_dir: str | Path, commit: str) -> Path:
    """Write :data:`BAKED_MODULE` into a copy of the package (a plain module: pip installs it like any other)."""
    path = Path(package_dir) / BAKED_MODULE
    path.write_text(f'"""Written by mood-dpa submission: the commit this copy was made from."""\n\nCOMMIT = "{commit}"\n')
    return path


def source_commit(root: str | Path | None = None) -> str | None:
    """The commit of the code: git when ``root`` (default: this package's checkout) is one, else the baked one."""
    if root is None:
        root = PACKAGE_DIR.parents[1]
        package_dir = PACKAGE_DIR
    else:
        package_dir = Path(root) / "src" / "mood_dpa"
    return checkout_commit(root) or baked_commit(package_dir)


def version_line() -> str:
    """``mood-dpa 0.1.0 (commit abc1234)``, or without the commit when none is known."""
    commit = source_commit()
    return f"mood-dpa {__version__}" + (f" (commit {commit})" if commit else "")
