"""The embedded phantom population: synthetic "healthy" brain MRI and abdominal CT volumes.

Every demo and test uses these when the user has no data of their own, so they are built to
make learning "normal" a real task: layered anatomy with partial-volume edges, and
subject-to-subject variability in shape (smooth random deformation), size, pose, contrast,
bias field, texture and noise.

Conventions
-----------
* Volumes are cubic ``size**3`` float32 arrays in [0, 1]; everything outside the head / body is
  exactly 0. Sizes from 32 to 512 are supported; the anatomy scales with the volume, so a phantom
  of any size covers the same field of view (written with a 1 mm isotropic affine, like MOOD).
* Axes (RAS-like, as with the identity affine): axis 0 = left -> right, axis 1 = posterior ->
  anterior, axis 2 = inferior -> superior. For the abdomen, axis 2 is the cranio-caudal axis:
  axial CT slices are ``volume[:, :, k]`` (the top slices show the lung bases and the heart,
  the bottom ones the lower abdomen).
* Subject ``index`` of a population with ``seed`` draws from its own random stream
  (``SeedSequence([seed, kind, index])``), so subject k is the same whatever the population size,
  and the same arguments always give the same bytes (``streams.py``).

Subjects, scans and styles
--------------------------
A volume is a subject's ANATOMY (shape, deformation, size, pose, structures, tissue texture) seen
through one ACQUISITION (tissue contrast, intensity curve, bias field, noise, resolution).
``make_phantom(..., scan=k)`` gives scan k of a subject: the same anatomy and tissue labels, a new
acquisition from the scan's own stream (a few subjects become many training volumes, as users
augment a few real heads). A STYLE (``style.py``: ``PhantomStyle``, named ``STYLES`` or a YAML file)
sets the ranges the acquisition and the anatomy's scale, shape and pose are drawn from. ``train``
is today's population (byte for byte); ``shifted`` is a held-out scanner and population whose every
factor lies outside the training range; one style per factor (``contrast``, ``gamma``, ``bias``,
``noise``, ``blur``, ``scale``, ``shape``, ``pose``) shifts that factor alone, as ``shifted`` does:

| factor | what it changes | train | shifted (and its one-factor style) |
|---|---|---|---|
| `contrast` | tissue contrast (x distance of tissue values from their mean), per scan | 1 | 0.65-0.8 or 1.2-1.35 |
| `gamma` | intensity curve (noiseless intensity ** gamma), per scan | 1 | 0.7-0.85 or 1.2-1.45 |
| `bias` | bias field strength (x amplitude), per scan | 1 | 2-3 |
| `noise` | noise level (x noise std), per scan | 1 | 2.5-3 |
| `blur` | blur / resolution (Gaussian PSF std, voxels), per scan | 0 | 0.6-0.9 |
| `scale` | anatomy scale (x subject size), per subject | 1 | 0.78-0.85 |
| `shape` | shape variation (x deformation and size jitter), per subject | 1 | 1.8-2.5 |
| `pose` | pose (x largest rotation and shift), per subject | 1 | 2-3 |

How it is made (fast at 256^3): all anatomy is described by smooth signed-distance-like fields
(positive inside a structure), evaluated on a coarse grid of at most 128^3 in the subject's
deformed and posed coordinates (``fields.py``, ``brain.py``, ``abdom.py``), then linearly upsampled
slab by slab to full resolution, where edges are drawn as one-voxel partial-volume ramps and noise is
added (``generate.py``).
"""

from .abdom import ABDOM_LABELS
from .brain import BRAIN_LABELS
from .generate import (
    COARSE_MAX,
    KINDS,
    MAX_SIZE,
    MIN_SIZE,
    make_phantom,
    phantom_affine,
    phantom_name,
    write_phantoms,
)
from .streams import scan_rng, subject_rng
from .style import (
    STYLES,
    PhantomStyle,
    StyleDraw,
    describe_styles,
    draw_style,
    load_style,
    resolve_style,
)

__all__ = [
    "ABDOM_LABELS", "BRAIN_LABELS", "COARSE_MAX", "KINDS", "MAX_SIZE", "MIN_SIZE", "STYLES", "PhantomStyle", "StyleDraw",
    "describe_styles", "draw_style", "load_style", "make_phantom", "phantom_affine", "phantom_name", "resolve_style",
    "scan_rng", "subject_rng", "write_phantoms",
]
