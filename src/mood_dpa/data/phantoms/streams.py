"""The seeded random streams of a phantom volume: one per subject, one per scan, one for the style's draws.

Why separate streams: a subject's ANATOMY must be the same in every scan of it (so its tissue labels
are too), while each scan's ACQUISITION (tissue contrast, bias field, noise) is drawn anew, and a
population of any size or style must give subject k the same anatomy.

* ``subject_rng(kind, seed, index)`` (``SeedSequence([seed, kind, index])``): the anatomy, and, for the
  one volume per subject that ``make_phantom`` gives without ``scan``, the acquisition too, in the
  order today's populations were drawn (so they keep their bytes).
* ``scan_rng(kind, seed, index, scan)``: the acquisition of scan ``scan`` of that subject. An
  acquisition value is still drawn from the subject stream first (and dropped), so that the anatomy
  drawn after it is the same with or without ``scan``.
* ``style_rng(kind, seed, index, scan)``: the style's factors (:mod:`.style`), one uniform number per
  factor in a fixed order, so one style's ranges never move another factor's draw.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import numpy as np

KIND_CODE = {"brain": 0xB7A1, "abdom": 0xAB0D}
_SCAN_CODE = 0x5CA7
_STYLE_CODE = 0x57E1

T = TypeVar("T")


def subject_rng(kind: str, seed: int, index: int) -> np.random.Generator:
    """The random stream of subject ``index`` of the ``kind`` population drawn with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), KIND_CODE[kind], int(index)]))


def scan_rng(kind: str, seed: int, index: int, scan: int) -> np.random.Generator:
    """The acquisition stream of scan ``scan`` of that subject."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), KIND_CODE[kind], int(index), _SCAN_CODE, int(scan)]))


def style_rng(kind: str, seed: int, index: int, scan: int | None = None) -> np.random.Generator:
    """The stream of the style factors of a subject (``scan=None``) or of one scan of it."""
    entropy = [int(seed), KIND_CODE[kind], int(index), _STYLE_CODE] + ([] if scan is None else [int(scan)])
    return np.random.default_rng(np.random.SeedSequence(entropy))


class Streams:
    """The streams one volume draws from: ``anatomy`` (the subject's) and, for a scan, the scan's."""

    def __init__(self, kind: str, seed: int, index: int, scan: int | None = None):
        self.anatomy = subject_rng(kind, seed, index)
        self.scan = None if scan is None else scan_rng(kind, seed, index, scan)

    def acq(self, draw: Callable[[np.random.Generator], T]) -> T:
        """An acquisition value: ``draw`` on the subject stream (in its historical place), and for a scan
        again on the scan stream, whose value is the one used."""
        value = draw(self.anatomy)
        return value if self.scan is None else draw(self.scan)

    @property
    def noise(self) -> np.random.Generator:
        """The stream of the voxel noise (drawn last)."""
        return self.anatomy if self.scan is None else self.scan
