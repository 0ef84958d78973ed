"""The segmenter's TRAINING-time anomaly generator: batched torch on the training device, seeded.

This is deliberately separate code from :mod:`mood_dpa.data.synth` (the evaluation kinds) and shares no
shape or blending routine with it, so an evaluation kind is only "seen" when its *family* is below
(:data:`FAMILY_KINDS`: foreign patch -> ``patch``; intensity offset -> ``uniform``; local noise -> ``noise``;
radial deformation -> ``sink``, ``source``; a smooth lesion -> ``ellipsoid``, ``uniform``), never because the
same code drew it.

Given normal images ``x`` in [0, 1] of shape (B, 1, H, W) or (B, 1, D, H, W), :meth:`AnomalyGenerator.__call__`
returns ``(x_anomalous, target)``:

* **Regions** (:mod:`.shapes`): per image a union of 1..``max_components`` components; each is a randomly
  rotated ellipsoid whose coordinates are warped by a smooth random displacement field (a "deformed
  ellipsoid"), thresholded smooth noise inside a ball, or a thin bent tube; sometimes another ellipsoid is
  cut out of it (a crescent, a ring). Edges are smoothed by a smoothstep ramp of random width, so
  the weight ``w`` is in [0, 1] and exactly 0 outside the region. Centres are drawn on the foreground
  (x > 0), and with probability ``foreground_p`` the weight is cut to the foreground.
* **Families** (:mod:`.families`, one per anomalous image, each on or off by its weight in the config):
  ``fpi`` foreign-patch interpolation (the same place of ANOTHER image of the batch blended in with
  alpha ~ U(0, 1)); ``poisson`` gradient-domain blending (the donor's texture with the host's low
  frequencies: a Laplace equation for the host-donor difference solved by Jacobi iterations on a 4x
  coarser grid, then upsampled: cheap, batched, approximate); ``intensity`` changes (offset, gamma, local
  noise, blur, sharpen); ``deform`` a radial sink / source displacement inside the region; ``lesion`` a
  smooth hypo- or hyper-intense lesion with soft edges (DAG-like). :attr:`AnomalyGenerator.last_families`
  records which family each image of the last call drew (-1: left normal).
* **Target: the per-voxel blend factor** ``w * strength``, set to 0 wherever the image did not change by
  more than ``eps``. We regress the blend factor (FPI-style, read by BCE-with-logits as a soft label)
  rather than a binary mask because a faint blend (alpha 0.05, or two similar tissues) is nearly invisible:
  a binary mask would demand a confident answer the image cannot support and teach the net to fire on
  normal texture; the soft factor ranks voxels by how anomalous they look, which is what pixel AP scores.
  The gate keeps the label honest: ``target > 0`` exactly where ``|x' - x| > eps``.
* A fraction ``normal_p`` of the images stays unchanged (target all zero).

Everything runs in float32 outside autocast; only ``generator`` (a ``torch.Generator`` on x's device)
draws random numbers, so the same seed gives the same output on the same device.
"""

from __future__ import annotations

import torch

from ...training.fields import gaussian_smooth, uniform  # noqa: F401
from .families import _donors, _intensity, _poisson_fill, deform, lesion
from .settings import FAMILIES, FAMILY_KINDS, AnomalySettings  # noqa: F401  (re-exported: one place to import from)
from .shapes import _grid, region_weights  # noqa: F401


class AnomalyGenerator:
    """Callable ``(x, generator) -> (x_anomalous, blend_factor_target)``; see the module docstring."""

    def __init__(self, settings: AnomalySettings | None = None) -> None:
        self.s = settings or AnomalySettings()
        weights = list(self.s.weights)
        while len(weights) > 3 and weights[-1] == 0:  # families that are off at the end are not drawn from: with the
            weights.pop()  # newer families off, the draws (and the trained models) equal those before they existed
        p = torch.tensor(weights, dtype=torch.float64)
        if not (p >= 0).all() or float(p.sum()) <= 0:
            raise ValueError("family probabilities must be >= 0 and not all 0")
        self.family_p = (p / p.sum()).float()
        #: the family code (index in FAMILIES) each image of the last call drew; -1: left normal
        self.last_families: torch.Tensor | None = None

    @property
    def families(self) -> tuple[str, ...]:
        """The families this generator draws (weight > 0)."""
        return tuple(f for f, w in zip(FAMILIES, self.s.weights) if w > 0)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() not in (4, 5) or x.shape[1] != 1:
            raise ValueError(f"expected (B, 1, H, W) or (B, 1, D, H, W), got {tuple(x.shape)}")
        dev_type = x.device.type
        with torch.autocast(device_type=dev_type, enabled=False):
            return self._make(x.float(), generator)

    def _make(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        s, b, dim, dev = self.s, x.shape[0], x.dim() - 2, x.device
        shape = (b, *[1] * (dim + 1))
        w = region_weights(x, gen, s)
        restrict = (torch.rand((b,), generator=gen, device=dev) < s.foreground_p).reshape(shape)
        w = torch.where(restrict, w * (x > 0).float(), w)
        family = torch.multinomial(self.family_p.to(dev).expand(b, -1), 1, generator=gen).reshape(shape)
        normal = (torch.rand((b,), generator=gen, device=dev) < s.normal_p).reshape(shape)
        donor = _donors(x, gen)
        alpha = torch.rand((b,), generator=gen, device=dev).reshape(shape)  # FPI: U(0, 1)
        strength = uniform(gen, (b,), 0.5, 1.0, dev).reshape(shape)
        poisson = donor + _poisson_fill(x, donor, w)
        candidates = [donor, poisson, _intensity(x, gen)]
        if s.deform > 0 or s.lesion > 0:  # drawn only when on, so the older families' streams stay as they were
            deformed, _ = deform(x, w, gen)
            candidates += [deformed, lesion(x, gen)]
        anomalous = candidates[-1]
        for code in range(len(candidates) - 2, -1, -1):
            anomalous = torch.where(family == code, candidates[code], anomalous)
        factor = torch.where(family == 0, alpha, strength) * w
        # a deformation is not blended: the deformed image replaces the region, its label is the region weight
        factor = torch.where(family == 3, w, factor)
        factor = torch.where(normal, torch.zeros_like(factor), factor)
        blend = torch.where(family == 3, (factor > 0).float(), factor)
        out = (x + blend * (anomalous - x)).clamp(0.0, 1.0)
        changed = (out - x).abs() > s.eps
        out = torch.where(changed, out, x)  # sub-eps changes are undone: unchanged voxels are bit-identical
        target = torch.where(changed, factor, torch.zeros_like(factor))
        self.last_families = torch.where(normal.reshape(b), torch.full_like(family.reshape(b), -1), family.reshape(b))
        return out, target
