"""The tuning set ``fit`` chooses its rules on, made from the TRAINING anomaly families, not from the
evaluation kinds.

Why: the calibration's rules (member weights, border, sample rule) are chosen on a labelled tuning set.
Made of ``synth``'s evaluation kinds (the old way), every kind a user reads as "unseen" took part in the
choice, and "how it does on an anomaly nobody anticipated" is optimistic. Here each validation-fold
volume gets a normal copy and anomalies of the segmenter's training families (:mod:`mood_dpa.methods.
segmenter.anomalies`, drawn in 3-D, seeded), in the same MOOD toy layout, with ``kind`` =
``family:<name>`` in the manifest. ``fit --tuning-kinds`` gives the old set of evaluation kinds.

More than one look (``fit --tuning-appearance P``): a share P of the volumes get another scanner's look
(:func:`mood_dpa.training.appearance.change_appearance`, the training augmentation's ranges), the SAME look
for the volume's normal copy and every anomalous case of it (the label is untouched), so the rules are
chosen on more than one style and do not over-trust a member that only fits the training scanner
(issue 16). ``looks.json`` lists the changed cases.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..atomic import atomic_dir
from ..training.appearance import AppearanceConfig, change_appearance
from ..data.synth.layout import write_manifest
from ..methods.segmenter.anomalies import FAMILIES, AnomalyGenerator, AnomalySettings
from ..volumes import read_volume, volume_id, write_volume

#: The manifest's kind of a family case.
PREFIX = "family:"


LOOKS_FILE = "looks.json"


def other_look(data: np.ndarray, seed: int) -> np.ndarray:
    """``data`` (a 3-D volume in [0, 1]) with the look drawn by ``seed``: every call with the same seed and
    shape draws the same gamma, contrast, bias field, noise and blur."""
    look = AppearanceConfig(p=1.0).settings()
    x = torch.from_numpy(np.ascontiguousarray(data, np.float32))[None, None]
    return change_appearance(x, torch.Generator().manual_seed(int(seed)), look)[0, 0].numpy()


def make_family_tuning_set(paths: Sequence[Path], out: Path, seed: int, cases_per_volume: int | None = 1,
                           families: Sequence[str] = FAMILIES, appearance_p: float = 0.0) -> int:
    """Normal copy + anomalous cases of ``families`` for every volume (one case each, or ``cases_per_volume``
    families in turn), a share ``appearance_p`` of the volumes in another look; returns the number of cases."""
    paths = [Path(p) for p in paths]
    rows: list[dict] = []
    looks: dict[str, int] = {}
    pick = np.random.default_rng([int(seed), 7])
    with atomic_dir(out) as tmp:
        toy, pix, smp = tmp / "toy", tmp / "toy_label" / "pixel", tmp / "toy_label" / "sample"
        for d in (toy, pix, smp):
            d.mkdir(parents=True, exist_ok=True)

        def write_case(case: str, vol, data: np.ndarray, label: np.ndarray, kind: str, base: dict) -> None:
            name = f"{case}.nii.gz"
            if look_seed is not None:
                data = other_look(data, look_seed)
                looks[case] = look_seed
            write_volume(toy / name, data, vol.affine, vol.header, np.float32)
            write_volume(pix / name, label, vol.affine, vol.header, np.uint8)
            (smp / f"{name}.txt").write_text(f"{int(label.any())}\n")
            rows.append({"case": case, "file": name, **base, "kind": kind, "scope": "none" if kind == "normal" else "local",
                         "label": int(label.any()), "regions": 0 if kind == "normal" else 1, "voxels": int(label.sum()),
                         "centre": "[]", "params": "[]"})

        for vi, path in enumerate(paths):
            look_seed = int(seed) * 1_000_003 + 7919 * vi if pick.random() < appearance_p else None
            vol = read_volume(path)
            data = np.clip(vol.data, 0.0, 1.0).astype(np.float32)
            stem = path.name.split(".")[0]
            base = {"source": path.name, "volume_id": volume_id(path),
                    "source_sha256": hashlib.sha256(data.tobytes()).hexdigest()}
            write_case(f"{stem}_normal", vol, data, np.zeros(data.shape, np.uint8), "normal", base)
            donor = np.clip(read_volume(paths[(vi + 1) % len(paths)]).data, 0.0, 1.0) if len(paths) > 1 else data[::-1]
            n = len(families) if cases_per_volume is None else cases_per_volume
            for j in range(n):
                family = families[(vi * n + j) % len(families)]
                only = {f: float(f == family) for f in FAMILIES}
                gen = AnomalyGenerator(AnomalySettings(**only, normal_p=0.0, foreground_p=1.0))
                g = torch.Generator().manual_seed(int(seed) * 1_000_003 + vi * 101 + FAMILIES.index(family))
                x = torch.from_numpy(np.stack([data, donor.astype(np.float32)]))[:, None]
                anomalous, target = gen(x, g)
                label = (target[0, 0] > 0).numpy().astype(np.uint8)
                write_case(f"{stem}_{family}", vol, anomalous[0, 0].numpy(), label, PREFIX + family, base)
        write_manifest(tmp / "manifest.csv", rows)
        if appearance_p > 0:
            (tmp / LOOKS_FILE).write_text(json.dumps({"appearance_p": appearance_p, "cases": looks}, indent=1) + "\n")
    return len(rows)
