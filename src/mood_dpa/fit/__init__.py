"""``mood-dpa fit``: the whole training pipeline in one resumable command.

DATA (volumes in MOOD form, e.g. from ``mood-dpa prepare``) ->
folds -> slice stores (one per axis) -> a tuning set (synthetic anomalies on the validation fold) ->
[SimCLR backbone] -> the models of every chosen recipe (:mod:`mood_dpa.methods.registry`) ->
one detector per recipe, calibrated on the NORMAL validation-fold volumes, rules chosen on the
tuning set -> one cross-method detector (its member combine rule chosen on the tuning set) ->
a validation report.

Why one command: training a detector is ten steps in a fixed order (folds, slices x3, pretrain,
train x3, ensemble, calibrate); only the demo used to chain them. Every stage records itself in
``MODELS/fit_state.json`` when it finishes (:mod:`.state`), so a rerun after a kill (SIGTERM or SIGKILL)
or a crash skips the finished stages and resumes an interrupted training from its last checkpoint
(:mod:`.train`). The options a run was started with, and the sha256 of every training volume, are
recorded too; a rerun with other options or changed volumes is refused (choose another output folder).

Honesty: the tuning set is made from the validation fold's volumes, which no model trained on, but
its numbers chose the calibration and the rules; the validation report says so. Evaluate on volumes
that ``fit`` never saw (``mood-dpa synth`` on a held-out folder), as the README and the demo do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..data.folds import make_folds, read_folds, write_folds_csv
from ..data.slices import SliceRule, build_store
from ..data.synth.layout import make_synthetic_set, parse_kinds
from ..atomic import write_text
from ..errors import MoodError
from ..inference.map_cache import raw_map_cache
from ..methods.registry import recipe, recipes
from ..outputs import mark_output_dir, prepare_output_dir
from ..runtime import check_device, check_seed
from ..scoring.standardise import Standardiser
from ..volumes import list_volumes, read_volume, volume_id
from ..methods.segmenter.anomalies import FAMILIES
from .detectors import build_detector, validation_report
from .presets import ALL, AXES, PRESETS, Preset
from .presets import preset as preset_named
from .state import STATE_FILE, FitState, Stages, fingerprint
from .train import TWIN, FitContext, train_recipe
from .tuning_set import make_family_tuning_set

__all__ = ["run_fit", "FitOutcome", "parse_methods", "PRESETS", "Preset", "AXES", "STATE_FILE"]


@dataclass
class FitOutcome:
    out: Path
    detector: Path | None
    detectors: dict[str, str]  # recipe -> detector file
    timings: dict[str, float]
    report: Path | None = None


def parse_methods(value: str | Sequence[str] | None, plan: Preset) -> tuple[str, ...]:
    """``--method`` ("all", one name, or a comma list; None: the preset's) -> recipe names in training order."""
    known = list(recipes())
    if value is None or value == "":
        names = known if plan.methods == ALL else list(plan.methods)
    else:
        names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
        if names == [ALL]:
            names = known
    bad = [n for n in names if n not in known]
    if bad:
        raise MoodError(f"--method: unknown method(s) {', '.join(bad)} (choose from all, {', '.join(known)})")
    return tuple(m for m in known if m in names)


def parse_overrides(items: Sequence[str], chosen: Sequence[str]) -> dict[str, list[str]]:
    """``RECIPE.key=value`` strings -> {recipe: ["key=value", ...]}; the recipe must be one this fit trains."""
    out: dict[str, list[str]] = {}
    for item in items:
        head, sep, rest = item.partition(".")
        if not sep or "=" not in rest:
            raise MoodError(f"--set {item!r}: expected METHOD.key=value (e.g. segmenter2d.optim.max_steps=5000)")
        if head not in (*chosen, "simclr"):
            raise MoodError(f"--set {item!r}: {head} is not trained by this fit (methods: {', '.join(chosen)}; or simclr)")
        out.setdefault(head, []).append(rest)
    return out


def parse_held_out(value: str | None) -> tuple[tuple[str, ...], ...]:
    """``none`` / None -> (); ``each`` -> one group per family; ``a+b,c`` -> the groups as given (checked)."""
    if value is None or value.strip().lower() in ("", "none"):
        return ()
    if value.strip().lower() == "each":
        return tuple((f,) for f in FAMILIES)
    groups = tuple(tuple(f.strip() for f in g.split("+") if f.strip()) for g in value.split(",") if g.strip())
    unknown = sorted({f for g in groups for f in g} - set(FAMILIES))
    if unknown or not groups or any(not g for g in groups):
        raise MoodError(f"--held-out {value!r}: expected none, each, or groups like fpi+poisson,intensity "
                        f"(families: {', '.join(FAMILIES)})")
    return groups


def run_fit(
    data: str | Path,
    out: str | Path,
    *,
    preset: str = "demo",
    methods: str | Sequence[str] | None = None,
    kind: str = "brain",
    seed: int = 0,
    device: str | None = None,
    threads: int | None = None,
    report: bool = True,
    overwrite: bool = False,
    overrides: Sequence[str] = (),
    tuning_kinds: str | None = None,
    held_out: str | None = None,
    flips: bool | None = None,
    tuning_appearance: float = 0.0,
    standardise: bool | None = None,
    appearance_twin: float = 0.0,
    log: Callable[[str], None] = print,
) -> FitOutcome:
    """Train every requested recipe on the volumes in ``data`` and write detectors into ``out``.
    ``overrides``: ``RECIPE.key=value`` (or ``simclr.key=value``) config overrides, applied last.
    ``tuning_kinds``: make the tuning set from these evaluation kinds of ``synth`` (the old way) instead of
    the training anomaly families (:mod:`.tuning_set`). ``held_out``: train each family recipe once without
    each family (``each``) or each ``+``-joined group of a comma list, validating each run on what it left
    out, and average the runs (None: the preset's choice; ``none``: one run). ``flips``: let the tuning set
    choose test-time flips for every detector (None: the preset's choice). ``tuning_appearance``: the share of
    the tuning set's volumes given another scanner's look (:mod:`.tuning_set`; 0: one look). ``standardise``:
    every detector maps each volume's foreground intensities onto the training volumes' landmarks before its
    voxel-map members score it (:mod:`mood_dpa.scoring.standardise`; None: the preset's choice, on in all).
    ``appearance_twin`` > 0: every trained (not fitted) recipe is trained once more with ``appearance.p`` at
    this share, and the twin joins the detectors as a member of its own (``<recipe>+appearance``)."""
    plan = preset_named(preset)
    if kind not in AXES:
        raise MoodError(f"--kind {kind!r}: choose brain or abdom")
    chosen = parse_methods(methods, plan)
    device = check_device(device, index=False)  # a device this machine lacks fails here, before any work
    check_seed(seed)
    # absolute: the fit state records paths, and a rerun may start from another working directory
    data, out = Path(data).resolve(), Path(out).resolve()
    vols = list_volumes(data)
    if len(vols) < 2 * plan.n_folds:
        raise MoodError(f"{data}: {len(vols)} volumes are too few for {plan.n_folds} folds (need at least {2 * plan.n_folds})")
    kinds = parse_kinds(tuning_kinds) if tuning_kinds else None
    if not 0.0 <= tuning_appearance <= 1.0:
        raise MoodError(f"--tuning-appearance {tuning_appearance:g}: a share of the tuning volumes, between 0 and 1")
    if not 0.0 <= appearance_twin <= 1.0:
        raise MoodError(f"--appearance-twin {appearance_twin:g}: a share of the training images, between 0 and 1")
    if tuning_appearance and kinds is not None:
        raise MoodError("--tuning-appearance changes the family tuning set; it does not combine with --tuning-kinds")
    per_recipe = parse_overrides(overrides, chosen)
    groups = parse_held_out(plan.held_out if held_out is None else held_out)
    prepare_output_dir(out, inputs=[data], overwrite=overwrite)  # every option checked: a bad one leaves nothing
    out = mark_output_dir(out)
    options = {"data": str(data), "preset": preset, "methods": list(chosen), "kind": kind, "seed": seed,
               "overrides": list(overrides), "tuning": tuning_kinds or "families", "volumes": fingerprint(vols)}
    if tuning_appearance:
        options["tuning_appearance"] = tuning_appearance
    if appearance_twin:
        options["appearance_twin"] = appearance_twin
    standardise = plan.standardise if standardise is None else bool(standardise)
    options["standardise"] = standardise
    options["held_out"] = ["+".join(g) for g in groups]
    flips = plan.flips if flips is None else bool(flips)
    options["flips"] = flips
    stage = Stages(FitState(out, options), log)
    log(f"mood-dpa fit ({preset}: {plan.description}): {len(vols)} {kind} volumes, methods {', '.join(chosen)}, into {out}")

    folds_csv = out / "folds.csv"
    stage("folds", lambda: str(write_folds_csv(folds_csv, make_folds([p.name for p in vols], plan.n_folds, seed))))
    fold_of = read_folds(folds_csv)
    val_vols = [p for p in vols if fold_of[volume_id(p)] == 0]
    train_vols = [p for p in vols if fold_of[volume_id(p)] != 0]
    log(f"    {len(train_vols)} training volumes, {len(val_vols)} validation volumes (fold 0)")

    stores: dict[int, Path] = {}
    if any(recipe(m)[1].needs_slices for m in chosen):
        for a in AXES[kind]:
            stores[a] = Path(stage(f"slices axis {a}", lambda a=a: str(
                build_store(vols, out / "slices" / f"axis_{a}", a, plan.slice_size, SliceRule()).path)))

    tuning = out / "tuning"
    if kinds is None:  # the training families: no evaluation kind takes part in any choice
        stage("tuning set", lambda: make_family_tuning_set(val_vols, tuning, seed + 1000, plan.tuning_per_volume,
                                                          appearance_p=tuning_appearance))
    else:
        stage("tuning set", lambda: len(make_synthetic_set(
            val_vols, tuning, kinds, (1, 1), seed + 1000, cases_per_volume=plan.tuning_per_volume and min(plan.tuning_per_volume, len(kinds)),
            progress=False)))

    ctx = FitContext(stage, plan, kind, out, folds_csv, stores, train_vols, seed, device, threads, per_recipe, groups)
    models = {m: train_recipe(*recipe(m), ctx) for m in chosen}
    if appearance_twin:  # the fitted baselines (histograms) learn no look: no twin
        models.update({m + TWIN: train_recipe(*recipe(m), ctx, look=appearance_twin)
                       for m in chosen if recipe(m)[1].fitter is None})

    standardiser = None
    if standardise:
        marks = Path(stage("standardisation landmarks", lambda: str(write_text(out / "standardise.json", json.dumps(
            Standardiser.fit(read_volume(p).data for p in train_vols).to_dict(), indent=1) + "\n"))))
        standardiser = Standardiser.from_dict(json.loads(marks.read_text()))
    # every detector below scores the same tuning and normal volumes with the same model files: each map once
    with raw_map_cache():
        detectors: dict[str, str] = {}
        maps = [m for m in models if recipe(m.removesuffix(TWIN))[0].voxel_map]  # a sample-level method joins the cross-method detector only
        if not maps:
            raise MoodError(f"--method {','.join(chosen)}: no method gives a voxel map; add one (e.g. histogram, segmenter2d)")
        for m in maps:
            detectors[m] = stage(f"detector {m}", lambda m=m: str(build_detector(
                out / "detectors" / f"{m}.yaml", {m: models[m]}, val_vols, tuning, device, seed, flips, standardiser)))
        members = {m: models[m] for m in models if recipe(m.removesuffix(TWIN))[1].member}
        final: Path | None = None
        if len(members) > 1:
            final = Path(stage("detector ensemble", lambda: str(build_detector(
                out / "detector.yaml", members, val_vols, tuning, device, seed, flips, standardiser))))
        elif members:
            final = Path(detectors[next(iter(members))])
        report_path = None
        if report:
            report_path = Path(stage("validation report", lambda: str(validation_report(out, detectors, final, tuning))))
    return FitOutcome(out, final, detectors, stage.timings, report_path)

