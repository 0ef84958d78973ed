"""The tuning set ``fit`` chooses its rules on, made from the TRAINING anomaly families, not from the
evaluation kinds.

Why: the calibration's rules (member weights, border, sample rule) are chosen on a labelled tuning set.
Made of ``synth``'s evaluation kinds (the old way), every kind a user reads as "unseen" took part in the
choice, and "how it does on an anomaly nobody anticipated" is optimistic. Here each validation-fold
volume gets a normal copy and anomalies of the segmenter's training families (:mod:`mood_dpa.methods.
segmenter.anomalies`, drawn in 3-D, seeded), in the same MOOD toy layout, with ``kind`` =
``family:<name>`` in the manifest. ``fit --tuning-kinds`` gives the old set of evaluation kinds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..atomic import atomic_dir
from ..data.synth.layout import write_manifest
from ..methods.segmenter.anomalies import FAMILIES, AnomalyGenerator, AnomalySettings
from ..volumes import read_volume, volume_id, write_volume

#: The manifest's kind of a family case.
PREFIX = "family:"


def make_family_tuning_set(paths: Sequence[Path], out: Path, seed: int, cases_per_volume: int | None = 1,
                           families: Sequence[str] = FAMILIES) -> int:
    """Normal copy + anomalous cases of ``families`` for every volume (one case each, or ``cases_per_volume``
    families in turn); returns the number of cases written."""
    paths = [Path(p) for p in paths]
    rows: list[dict] = []
    with atomic_dir(out) as tmp:
        toy, pix, smp = tmp / "toy", tmp / "toy_label" / "pixel", tmp / "toy_label" / "sample"
        for d in (toy, pix, smp):
            d.mkdir(parents=True, exist_ok=True)

        def write_case(case: str, vol, data: np.ndarray, label: np.ndarray, kind: str, base: dict) -> None:
            name = f"{case}.nii.gz"
            write_volume(toy / name, data, vol.affine, vol.header, np.float32)
            write_volume(pix / name, label, vol.affine, vol.header, np.uint8)
            (smp / f"{name}.txt").write_text(f"{int(label.any())}\n")
            rows.append({"case": case, "file": name, **base, "kind": kind, "scope": "none" if kind == "normal" else "local",
                         "label": int(label.any()), "regions": 0 if kind == "normal" else 1, "voxels": int(label.sum()),
                         "centre": "[]", "params": "[]"})

        for vi, path in enumerate(paths):
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
    return len(rows)
