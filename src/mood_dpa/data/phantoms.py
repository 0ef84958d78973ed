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
  and the same arguments always give the same bytes.

How it is made (fast at 256^3): all anatomy is described by smooth signed-distance-like fields
(positive inside a structure), evaluated on a coarse grid of at most 128^3 in the subject's
deformed and posed coordinates, then linearly upsampled slab by slab to full resolution, where
edges are drawn as one-voxel partial-volume ramps and noise is added.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import MoodError

KINDS = ("brain", "abdom")
MIN_SIZE, MAX_SIZE = 32, 512
COARSE_MAX = 128
_KIND_CODE = {"brain": 0xB7A1, "abdom": 0xAB0D}

BRAIN_LABELS = {"background": 0, "csf": 1, "grey_matter": 2, "white_matter": 3, "deep_grey": 4, "ventricles": 5}
ABDOM_LABELS = {
    "background": 0,
    "fat": 1,
    "soft_tissue": 2,  # skin, muscles, heart, intervertebral discs
    "bone": 3,
    "liver": 4,
    "spleen": 5,
    "kidney": 6,
    "vessel": 7,
    "bowel": 8,  # bowel and stomach walls and fluid content
    "gas": 9,
    "spinal_canal": 10,
    "lung": 11,
}


# --------------------------------------------------------------------------------------------
# validation and random streams
# --------------------------------------------------------------------------------------------
def _as_int(value, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise MoodError(f"phantom {name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f">= {low}"
        raise MoodError(f"phantom {name} must be {span}, got {value}")
    return value


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise MoodError(f"unknown phantom kind {kind!r}; choose one of: {', '.join(KINDS)}")
    return kind


def subject_rng(kind: str, seed: int, index: int) -> np.random.Generator:
    """The random stream of subject ``index`` of the ``kind`` population drawn with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), _KIND_CODE[kind], int(index)]))


# --------------------------------------------------------------------------------------------
# grids, smooth random fields, upsampling
# --------------------------------------------------------------------------------------------
def _axis_interp(n_in: int, n_out: int):
    """Indices and weights of linear interpolation from n_in cell centres to n_out (same extent)."""
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    pos = np.clip(pos, 0.0, n_in - 1.0)
    i0 = np.minimum(np.floor(pos).astype(np.intp), max(n_in - 2, 0))
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = (pos - i0).astype(np.float32)
    return i0, i1, w


class _Upsampler:
    """Separable trilinear resize of an n^3 field to S^3, one box of output voxels at a time."""

    def __init__(self, n: int, size: int):
        self.n, self.size = n, size
        self.same = n == size
        self.i0, self.i1, self.w = _axis_interp(n, size)

    def __call__(self, field: np.ndarray, box) -> np.ndarray:
        (a, b), (c, d), (e, f) = box
        if self.same:
            return np.array(field[a:b, c:d, e:f], dtype=np.float32)
        i0, i1, w = self.i0, self.i1, self.w
        r = field[i0[a:b]]
        r += (field[i1[a:b]] - r) * w[a:b, None, None]
        t = r[:, i0[c:d]]
        t += (r[:, i1[c:d]] - t) * w[c:d][None, :, None]
        u = t[:, :, i0[e:f]]
        u += (t[:, :, i1[e:f]] - u) * w[e:f]
        return u

    def box_of(self, mask: np.ndarray):
        """The full-resolution box of voxels whose value can depend on a True coarse voxel."""
        box = []
        for axis in range(3):
            hit = np.nonzero(mask.any(axis=tuple(i for i in range(3) if i != axis)))[0]
            if hit.size == 0:
                return None
            lo = int(np.searchsorted(self.i1, hit[0], "left"))
            hi = int(np.searchsorted(self.i0, hit[-1], "right"))
            box.append((max(lo - 1, 0), min(hi + 1, self.size)))
        return tuple(box)


def _intersect(box, other):
    if box is None or other is None:
        return None
    out = tuple((max(p[0], q[0]), min(p[1], q[1])) for p, q in zip(box, other))
    return None if any(lo >= hi for lo, hi in out) else out


def _rel(box, inner):
    """Slices of ``inner`` relative to the origin of ``box``."""
    return tuple(slice(i[0] - o[0], i[1] - o[0]) for o, i in zip(box, inner))


class _Slab:
    """Upsampled fields over one box of the output volume; local fields only where they reach."""

    def __init__(self, fields: dict, boxes: dict, up: _Upsampler, box):
        self.fields, self.boxes, self.up, self.box = fields, boxes, up, box
        self.shape = tuple(hi - lo for lo, hi in box)

    def __call__(self, name: str) -> np.ndarray:
        return self.up(self.fields[name], self.box)

    def local(self, name: str):
        """(slices into the slab, upsampled field there) or None where the field cannot matter."""
        inner = _intersect(self.box, self.boxes.get(name, self.box))
        if inner is None:
            return None
        return _rel(self.box, inner), self.up(self.fields[name], inner)


def _resize(field: np.ndarray, n: int) -> np.ndarray:
    return _Upsampler(field.shape[0], n)(field, ((0, n), (0, n), (0, n)))


def _spectral_field(rng: np.random.Generator, n: int, k0: float, bw: float) -> np.ndarray:
    """Periodic Gaussian random field on an n^3 grid over [-1,1]^3, unit std.

    The radial spectrum is a Gaussian bump at ``k0`` cycles per unit length (``k0=0``: low pass)
    with width ``bw``.
    """
    f = np.fft.fftfreq(n, d=2.0 / n)  # cycles per unit length, the box is 2 units wide
    fr = np.fft.rfftfreq(n, d=2.0 / n)
    k = np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + fr[None, None, :] ** 2)
    amp = np.exp(-0.5 * ((k - k0) / bw) ** 2)
    amp[0, 0, 0] = 0.0
    shape = amp.shape
    spec = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * amp
    field = np.fft.irfftn(spec, s=(n, n, n), axes=(0, 1, 2))
    field /= field.std() + 1e-12
    return field.astype(np.float32)


def _low_field(rng: np.random.Generator, n: int, bw: float = 0.7) -> np.ndarray:
    """A smooth (low-pass) unit-std field on the n^3 grid, made at 24^3 and resized."""
    return _resize(_spectral_field(rng, 24, 0.0, bw), n)


def _grid_coords(n: int) -> np.ndarray:
    u = ((np.arange(n, dtype=np.float32) + 0.5) * (2.0 / n) - 1.0).astype(np.float32)
    return np.stack(np.meshgrid(u, u, u, indexing="ij"))


def _rotation(angles: np.ndarray) -> np.ndarray:
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _subject_coords(rng, n: int, max_deg, max_shift: float, scale, warp: float) -> np.ndarray:
    """Anatomical coordinates (3, n, n, n) seen at each coarse voxel: pose, size and smooth warp."""
    p = _grid_coords(n)
    angles = np.deg2rad(rng.uniform(-1.0, 1.0, 3) * np.asarray(max_deg, dtype=np.float64))
    shift = rng.uniform(-max_shift, max_shift, 3)
    scale = np.asarray(scale, dtype=np.float64)
    m = (_rotation(angles).T / scale[:, None]).astype(np.float32)  # q = diag(1/s) R^T (p - t)
    q = np.einsum("ij,j...->i...", m, p - shift.astype(np.float32)[:, None, None, None])
    for i in range(3):
        q[i] += warp * _low_field(rng, n, 0.8)
    return q


def _sampler(field: np.ndarray):
    """Cubic-spline sampler of a periodic field over [-1,1]^3 at arbitrary points."""
    from scipy import ndimage

    coeffs = ndimage.spline_filter(field, order=3, mode="grid-wrap", output=np.float32)
    m = field.shape[0]

    def sample(points: np.ndarray) -> np.ndarray:
        idx = (points.reshape(3, -1) + 1.0) * (m / 2.0) - 0.5
        out = ndimage.map_coordinates(coeffs, idx, order=3, mode="grid-wrap", prefilter=False, output=np.float32)
        return out.reshape(points.shape[1:])

    return sample


def _masked(sample, points: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``sample`` evaluated only where ``mask`` holds (zero elsewhere)."""
    out = np.zeros(mask.shape, dtype=np.float32)
    out[mask] = sample(points[:, mask])
    return out


def _sheet_distance(g: np.ndarray, h: float) -> np.ndarray:
    """Signed distance (first order) to the zero set of a smooth field g on a grid of spacing h."""
    gx, gy, gz = np.gradient(g, h)
    norm = np.sqrt(gx * gx + gy * gy + gz * gz)
    return g / np.maximum(norm, 0.5)


def _ellipsoid(x, y, z, c, r) -> np.ndarray:
    """Approximate signed distance to an ellipsoid (positive inside)."""
    dx, dy, dz = x - c[0], y - c[1], z - c[2]
    dist = np.sqrt(dx * dx + dy * dy + dz * dz)
    rho = np.sqrt((dx / r[0]) ** 2 + (dy / r[1]) ** 2 + (dz / r[2]) ** 2)
    return _ell_from(dist, rho, min(r))


def _ell_from(dist: np.ndarray, rho: np.ndarray, rmin: float) -> np.ndarray:
    # radial distance r_eff - r where r_eff is the radius of the surface along the ray; near the
    # centre use (1 - rho) * rmin, which is smooth there
    safe = np.maximum(rho, 1e-3)
    radial = dist * (1.0 / safe - 1.0)
    return np.where(rho > 0.5, radial, (1.0 - rho) * rmin).astype(np.float32)


def _ellipse2d(x, y, c, r) -> np.ndarray:
    dx, dy = x - c[0], y - c[1]
    dist = np.sqrt(dx * dx + dy * dy)
    rho = np.sqrt((dx / r[0]) ** 2 + (dy / r[1]) ** 2)
    return _ell_from(dist, rho, min(r))


def _ramp(field: np.ndarray, inv_eps: float) -> np.ndarray:
    """Partial-volume fraction inside ``field > 0``, ramping over one voxel."""
    out = field * inv_eps
    out += 0.5
    np.clip(out, 0.0, 1.0, out=out)
    return out


def _paint(img: np.ndarray, frac: np.ndarray, value) -> None:
    img += frac * (value - img)


# --------------------------------------------------------------------------------------------
# brain
# --------------------------------------------------------------------------------------------
def _brain_coarse(rng: np.random.Generator, n: int) -> tuple[dict, dict]:
    h = 2.0 / n
    size_f = rng.uniform(0.9, 1.05)
    aniso = 1.0 + rng.uniform(-0.04, 0.04, 3)
    q = _subject_coords(rng, n, (5.0, 4.0, 5.0), 0.035, size_f * aniso, 0.022)
    x, y, z = q[0], q[1], q[2]

    # cerebrum: an egg-shaped ellipsoid, narrower in front, flatter below, plus temporal lobes
    j = 1.0 + rng.uniform(-0.04, 0.04, 4)
    c = (0.0, 0.0, 0.04)
    dx, dy, dz = x - c[0], y - c[1], z - c[2]
    rx = 0.64 * j[0] * (1.0 - 0.15 * np.clip(dy / 0.82, 0.0, 1.0) ** 2)
    ry = 0.82 * j[1]
    rz = np.where(dz > 0, 0.6 * j[2], 0.42 * j[3])
    dist = np.sqrt(dx * dx + dy * dy + dz * dz)
    rho = np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2 + (dz / rz) ** 2)
    d_main = _ell_from(dist, rho, 0.42)
    d_temp = np.maximum(*[_ellipsoid(x, y, z, (s * 0.42, 0.12, -0.24), (0.22, 0.36, 0.19)) for s in (-1.0, 1.0)])
    d_cr = np.maximum(d_main, d_temp) + 0.012 * _low_field(rng, n, 1.0)
    # the Sylvian fissure: a CSF sheet between the temporal lobe and the rest, down to the insula
    syl = np.where((np.minimum(d_main, d_temp) > -0.06) & (np.abs(x) > 0.36), 0.5 * (d_main - d_temp), 1.0)

    # cerebellum and brain stem
    cb_c = (0.0, -0.45, -0.34)
    cb_r = (0.44 * j[0], 0.27, 0.21)
    d_cb = _ellipsoid(x, y, z, cb_c, cb_r)
    stem_r = 0.1 + 0.04 * np.exp(-(((z + 0.3) / 0.1) ** 2))  # the pons is wider
    d_bs = np.minimum(stem_r - np.sqrt(x * x + ((y + 0.17 - 0.12 * (z + 0.3)) / 1.1) ** 2), np.minimum(z + 0.72, 0.05 - z))
    d_hull = np.maximum(np.maximum(d_cr, d_cb), d_bs).astype(np.float32)
    in_cb = d_cb >= np.maximum(d_cr, d_bs)
    in_bs = d_bs > np.maximum(d_cr, d_cb)

    # folded cortex: sulci are the zero set of a band-pass field sampled near the projection of
    # each point onto the hull (nearly radial sheets that wander with depth), half symmetric
    # left-right; evaluated only in the shell where sulci can be
    sample = _sampler(_spectral_field(rng, 64, 7.0, 1.4))
    shell = (d_hull > -0.03) & (d_hull < 0.3)
    cb_shell = shell & (d_cb > np.maximum(d_cr, d_bs) - 2 * h)
    cr_shell = shell & (d_cr > np.maximum(d_cb, d_bs) - 2 * h)
    safe = np.maximum(rho, 0.3)
    proj = np.stack([c[0] + dx / safe, c[1] + dy / safe, c[2] + dz / safe])
    proj += 0.5 * (q - proj)
    mirror = proj.copy()
    mirror[0] = -mirror[0]
    off = np.array([0.37, 0.61, 0.23], dtype=np.float32)[:, None, None, None]
    g = 0.55 * (_masked(sample, proj, cr_shell) + _masked(sample, mirror, cr_shell))
    g += 0.45 * _masked(sample, proj + off, cr_shell)
    s_cr = _sheet_distance(g, h)
    cbx, cby, cbz = x - cb_c[0], y - cb_c[1], z - cb_c[2]
    cbrho = np.maximum(np.sqrt((cbx / cb_r[0]) ** 2 + (cby / cb_r[1]) ** 2 + (cbz / cb_r[2]) ** 2), 0.3)
    fol = np.stack([cbx / cbrho * 0.4, cby / cbrho * 2.2, cbz / cbrho * 2.0]) - off
    s_cb = _sheet_distance(_masked(sample, fol, cb_shell), h)
    s = np.where(in_cb, s_cb, s_cr)
    s = np.where(in_bs, 1.0, s).astype(np.float32)
    depth = np.where(in_cb, 0.1, 0.15 + 0.035 * _low_field(rng, n, 1.0))
    e = (d_hull - depth).astype(np.float32)

    # interhemispheric fissure down to the corpus callosum (all the way at the poles)
    xa = (x + 0.01 * _low_field(rng, n, 1.0)).astype(np.float32)
    cc_top = 0.22 + 0.04 * (1.0 - (y / 0.4) ** 2) - 1.5 * np.maximum(np.abs(y + 0.03) - 0.34, 0.0)
    fl = np.where(in_cb | in_bs, 1.0, cc_top - z).astype(np.float32)
    # tentorium: the CSF sheet between cerebrum and cerebellum
    delta = np.where(np.minimum(d_cr, d_cb) > -0.06, 0.5 * (d_cr - d_cb), 1.0).astype(np.float32)

    # ventricles (lateral, third, fourth) and deep grey nuclei
    vs = rng.uniform(0.75, 1.25)
    cm = (np.abs(x) < 0.42) & (np.abs(y + 0.05) < 0.55) & (z > -0.5) & (z < 0.32)  # where they can be
    x, y, z = x[cm], y[cm], z[cm]
    ven = []
    for sgn in (-1.0, 1.0):
        xc = sgn * (0.07 + 0.05 * np.clip(-y / 0.35, 0.0, 1.0))
        zc = 0.07 - 0.5 * (y - 0.02) ** 2
        rxv = 0.06 * vs * (1.0 + 0.2 * np.clip(y / 0.3, 0.0, 1.0))
        rzv = 0.085 * vs
        ven.append(_ell_from(np.sqrt((x - xc) ** 2 + y * y + (z - zc) ** 2),
                             np.sqrt(((x - xc) / rxv) ** 2 + (y / 0.42) ** 2 + ((z - zc) / rzv) ** 2), 0.05))
    ven.append(_ellipsoid(x, y, z, (0.0, -0.06, -0.05), (0.012 * vs, 0.13, 0.07)))
    ven.append(_ellipsoid(x, y, z, (0.0, -0.36, -0.36), (0.03, 0.025, 0.05)))
    v = np.full(cm.shape, -0.1, dtype=np.float32)
    v[cm] = np.maximum.reduce(ven)
    nuclei = []
    for sgn in (-1.0, 1.0):
        nuclei.append(_ellipsoid(x, y, z, (sgn * 0.085, -0.1, -0.04), (0.07, 0.13, 0.08)))  # thalamus
        nuclei.append(_ellipsoid(x, y, z, (sgn * (0.12 + 0.055 * vs), 0.2, 0.07), (0.05, 0.1, 0.07)))  # caudate
        nuclei.append(_ellipsoid(x, y, z, (sgn * 0.265, 0.05, -0.01), (0.05, 0.17, 0.1)))  # putamen
        nuclei.append(_ellipsoid(x, y, z, (sgn * 0.205, 0.03, -0.02), (0.035, 0.09, 0.06)))  # pallidum
    nuc = np.full(cm.shape, -0.1, dtype=np.float32)
    nuc[cm] = np.maximum.reduce(nuclei)

    # scanner: bias field times a fine tissue texture
    gain = np.exp(0.1 * _low_field(rng, n, 0.6)) * (1.0 + 0.035 * _spectral_field(rng, n, n / 8.0, n / 16.0))
    fields = dict(d_hull=d_hull, s=s, e=e, xa=xa, fl=fl, delta=delta, syl=syl.astype(np.float32), v=v, nuc=nuc,
                  gain=gain.astype(np.float32))
    params = dict(
        csf=rng.uniform(0.14, 0.22),
        gm=rng.uniform(0.42, 0.49),
        wm=rng.uniform(0.76, 0.83),
        dgm=rng.uniform(0.56, 0.63),
        thick=0.032 * rng.uniform(0.9, 1.1),
        sulcus=0.006 * rng.uniform(0.8, 1.3),
        rim=0.012 * rng.uniform(0.7, 1.5),
        sigma=rng.uniform(0.012, 0.03),
    )
    return fields, params


def _brain_boxes(F: dict, up: _Upsampler) -> dict:
    return {
        "delta": up.box_of(np.abs(F["delta"]) < 0.05),
        "syl": up.box_of(np.abs(F["syl"]) < 0.05),
        "v": up.box_of(F["v"] > -0.03),
        "nuc": up.box_of(F["nuc"] > -0.03),
    }


def _brain_slab(S: _Slab, P: dict, inv_eps: float, noise: np.ndarray):
    dh = S("d_hull")
    sul = np.abs(S("s"))
    sul -= P["sulcus"]
    np.maximum(sul, S("e"), out=sul)
    phi = np.abs(S("xa"))
    phi -= 0.007
    np.maximum(phi, S("fl"), out=phi)
    np.minimum(phi, sul, out=phi)
    del sul
    np.minimum(phi, dh - P["rim"], out=phi)
    for name, width in (("delta", 0.006), ("syl", 0.008)):
        loc = S.local(name)
        if loc is not None:
            sl, f = loc
            np.abs(f, out=f)
            f -= width
            np.minimum(phi[sl], f, out=phi[sl])

    img = np.full(phi.shape, P["csf"], dtype=np.float32)
    _paint(img, _ramp(phi, inv_eps), P["gm"])
    _paint(img, _ramp(phi - P["thick"], inv_eps), P["wm"])
    inside = dh > 0
    lab = np.zeros(phi.shape, dtype=np.uint8)
    lab[inside] = BRAIN_LABELS["csf"]
    lab[inside & (phi > 0)] = BRAIN_LABELS["grey_matter"]
    lab[inside & (phi > P["thick"])] = BRAIN_LABELS["white_matter"]
    for name, value, label in (("nuc", P["dgm"], "deep_grey"), ("v", P["csf"], "ventricles")):
        loc = S.local(name)
        if loc is not None:
            sl, f = loc
            sub = img[sl]
            _paint(sub, _ramp(f, inv_eps), value)
            lab[sl][inside[sl] & (f > 0)] = BRAIN_LABELS[label]
    img *= S("gain")
    img += P["sigma"] * noise
    np.clip(dh * inv_eps, 0.0, 1.0, out=dh)
    img *= dh
    return img, lab


# --------------------------------------------------------------------------------------------
# abdomen
# --------------------------------------------------------------------------------------------
def _abdom_coarse(rng: np.random.Generator, n: int) -> tuple[dict, dict]:
    h = 2.0 / n
    body_f = rng.uniform(0.86, 1.06)
    scale = (body_f * rng.uniform(0.96, 1.04), body_f * rng.uniform(0.93, 1.04), rng.uniform(0.94, 1.06))
    q = _subject_coords(rng, n, (3.0, 3.0, 5.0), 0.03, scale, 0.025)
    x, y, z = q[0], q[1], q[2]
    low = lambda bw=1.0: _low_field(rng, n, bw)  # noqa: E731

    # body outline: a rounded-box ellipse, a little wider below; skin, fat, muscle wall
    ax = 0.8 * (1.0 - 0.04 * z)
    ay = np.where(y > 0, 0.56, 0.6)
    rr = np.sqrt(x * x + y * y)
    pw = 2.5
    rho = (np.abs(x / ax) ** pw + np.abs(y / ay) ** pw) ** (1.0 / pw)
    d_body = _ell_from(rr, rho, 0.5) + 0.01 * low()
    # the back is flat with a midline groove
    d_body = np.minimum(d_body, y + 0.6 - 0.015 * np.exp(-(x / 0.06) ** 2))
    fatness = rng.uniform(0.5, 1.7)
    ft = 0.045 * fatness * (1.0 + 0.35 * low()) * (1.0 + 0.5 * np.clip(y / 0.5, 0.0, 1.0))
    ft = np.maximum(ft, 0.015)
    mt = 0.028 + 0.016 * np.abs(x) / 0.8
    d_wall = d_body - ft
    d_cav = d_wall - mt
    skin = np.minimum(d_body, 0.009 - d_body)

    # diaphragm domes (the right one higher, both lower behind); lungs and heart above
    zd = 0.72 + 0.06 * np.tanh(x / 0.2) - 0.22 * ((np.abs(x) - 0.32) / 0.4) ** 2 - 0.35 * np.clip(-y / 0.6, 0.0, 1.0) ** 2
    zd = zd + 0.04 * low()
    above = z - zd
    heart = np.minimum(_ellipsoid(x, y, z, (0.05, 0.22, 0.98), (0.3, 0.26, 0.26)), d_cav)
    lung = np.minimum(np.minimum(d_cav - 0.005, above), -heart - 0.01)
    heart = np.minimum(heart, above)
    below = -above - 0.01

    # spine: vertebral bodies with discs, canal, arch, processes; psoas and back muscles
    yv = -0.22
    vert = _ellipse2d(x, y, (0.0, yv), (0.1, 0.085))
    period = 0.22
    zv = np.mod(z + rng.uniform(0, period), period) - 0.5 * period
    disc = np.minimum(vert, np.abs(zv) - (0.5 * period - 0.035))
    yc = yv - 0.165
    rc = np.sqrt(x * x + (y - yc) ** 2)
    canal = (0.045 - rc).astype(np.float32)
    ring = np.minimum(rc - 0.045, 0.072 - rc)
    spinous = np.minimum(np.minimum(0.018 - np.abs(x), (yc - 0.05) - y), y - (yc - 0.18))
    transverse = np.minimum(np.minimum(0.02 - np.abs(y - yc - 0.01), np.abs(x) - 0.04), 0.17 - np.abs(x))
    # ribs: oblique hoops inside the wall, seen as small ovals in axial slices
    phip = np.arccos(np.clip(-y / np.maximum(rr, 1e-3), -1.0, 1.0)) / np.pi  # 0 behind, 1 in front
    rib_p = 0.19
    zr = np.mod(z + 0.45 * phip + rng.uniform(0, rib_p), rib_p) - 0.5 * rib_p
    rib_depth = ft + 0.55 * mt
    ribs = 0.017 - np.sqrt((d_body - rib_depth) ** 2 + (0.8 * zr) ** 2)
    ribs = np.minimum(ribs, np.minimum((phip - 0.13) * 0.5, (0.8 - phip) * 0.5))
    ribs = np.minimum(ribs, z + 0.45 * phip - 0.1)
    arch = np.minimum(np.maximum.reduce([ring, spinous, transverse]), 0.36 * period - np.abs(zv))
    bone = np.maximum.reduce([vert, arch, ribs]).astype(np.float32)
    cancellous = np.minimum(vert - 0.014, -disc).astype(np.float32)
    psoas_r = 0.02 + 0.07 * np.clip((0.25 - z) / 1.0, 0.0, 1.0)
    muscles = [
        np.minimum(d_wall, -d_cav),
        _ellipse2d(x, y, (-0.13, yc - 0.02), (0.1, 0.09)),
        _ellipse2d(x, y, (0.13, yc - 0.02), (0.1, 0.09)),
        psoas_r - np.sqrt((np.abs(x) - 0.1 - psoas_r) ** 2 + (y - yv - 0.01) ** 2),
    ]
    muscle = np.minimum(np.maximum.reduce(muscles), d_body - 0.009).astype(np.float32)

    # organs
    liver = np.maximum(
        _ellipsoid(x, y, z, (0.3, 0.02, 0.45), (0.44, 0.42, 0.5)),
        _ellipsoid(x, y, z, (-0.08, 0.22, 0.58), (0.3, 0.2, 0.22)),
    ) + 0.02 * low()
    liver = np.minimum(np.minimum(liver, d_cav - 0.01), below)
    spleen = np.minimum(np.minimum(_ellipsoid(x, y, z, (-0.5, -0.25, 0.45), (0.13, 0.2, 0.2)), d_cav - 0.01), below)
    stomach = np.minimum(np.minimum(_ellipsoid(x, y, z, (-0.27, 0.17, 0.5), (0.22, 0.2, 0.24)), d_cav - 0.01), below)
    stomach = np.minimum(stomach, -spleen - 0.01)
    liver = np.minimum(liver, -stomach - 0.01)
    st_lumen = stomach - 0.02
    st_gas = np.minimum(st_lumen, y - (0.2 + 0.08 * rng.uniform(-1, 1)))
    kid, sinus = [], []
    for sgn, zk in ((1.0, -0.06), (-1.0, 0.05)):
        xk, yk = sgn * 0.32, -0.26
        kx = x - xk + sgn * 0.12 * (z - zk)  # upper poles lean to the midline
        kid.append(_ellipsoid(kx, y, z, (0.0, yk, zk), (0.085, 0.075, 0.2)))
        sinus.append(_ellipsoid(kx, y, z, (-sgn * 0.04, yk + 0.01, zk), (0.04, 0.035, 0.1)))
    kidney = np.maximum(*kid).astype(np.float32)
    ksinus = np.maximum(*sinus).astype(np.float32)
    split = np.clip((-0.55 - z) / 0.4, 0.0, 1.0)
    aorta = np.maximum(
        0.04 - np.sqrt((x + 0.05 + 0.25 * split) ** 2 + (y + 0.12) ** 2),
        np.minimum(0.035 - np.sqrt((x - 0.05 - 0.25 * split) ** 2 + (y + 0.12) ** 2), -0.56 - z),
    )
    ivc = _ellipse2d(x, y, (0.09, -0.12), (0.05, 0.035))
    vessel = np.minimum(np.maximum(aorta, ivc), below + 0.05).astype(np.float32)

    # bowel: loops of small bowel (a band-pass field's bright cells) and the colon frame
    organs = np.maximum.reduce([liver, spleen, stomach, kidney, vessel, muscle, bone, -d_cav])
    region = np.minimum(np.minimum(-organs - 0.015, y + 0.12), 0.36 - z)
    loops = _spectral_field(rng, n, 4.5, 0.9)
    b = _sheet_distance(loops - 0.25, h)
    colon = []
    for xc, yc0 in ((0.52, 0.02), (-0.54, -0.02)):
        colon.append(np.minimum(0.075 - np.sqrt((x - xc) ** 2 + (y - yc0) ** 2), np.minimum(z + 0.55, 0.33 - z)))
    zt = 0.3 - 0.15 * (1.0 - (x / 0.55) ** 2)
    colon.append(np.minimum(0.07 - np.sqrt((y - 0.28) ** 2 + (z - zt) ** 2), 0.55 - np.abs(x)))
    colon = np.minimum(np.maximum.reduce(colon), np.minimum(-np.maximum.reduce([liver, spleen, kidney, stomach]) - 0.01, d_cav - 0.01))
    wall = np.maximum(np.minimum(b + 0.012, region), colon + 0.01).astype(np.float32)
    lumen = np.maximum(np.minimum(b, region), colon - 0.008).astype(np.float32)
    gas_f = _sheet_distance(_spectral_field(rng, n, 4.0, 1.0) - 1.3, h)
    gas = np.maximum(np.minimum(lumen, gas_f), np.minimum(colon - 0.008, gas_f + 0.03)).astype(np.float32)
    gas = np.maximum(gas, st_gas).astype(np.float32)

    gain = (1.0 + 0.02 * low(0.6)) * (1.0 + 0.025 * _spectral_field(rng, n, n / 8.0, n / 16.0))
    fields = dict(
        d_body=d_body.astype(np.float32), skin=skin.astype(np.float32), muscle=muscle, lung=lung.astype(np.float32),
        heart=heart.astype(np.float32), liver=liver.astype(np.float32), spleen=spleen.astype(np.float32),
        stomach=stomach.astype(np.float32), st_lumen=st_lumen.astype(np.float32), kidney=kidney, ksinus=ksinus,
        vessel=vessel, wall=wall, lumen=lumen, gas=gas, bone=bone, cancellous=cancellous,
        disc=disc.astype(np.float32), canal=canal, gain=gain.astype(np.float32),
    )
    j = lambda v, d: v + rng.uniform(-d, d)  # noqa: E731
    params = dict(
        fat=j(0.3, 0.02), soft=j(0.5, 0.015), muscle=j(0.49, 0.015), liver=j(0.56, 0.02), spleen=j(0.535, 0.02),
        kidney=j(0.6, 0.03), vessel=j(0.64, 0.04), fluid=j(0.42, 0.02), gas=j(0.035, 0.01), lung=j(0.08, 0.02),
        bone=j(0.9, 0.03), cancellous=j(0.7, 0.03), canal=j(0.44, 0.02), sigma=rng.uniform(0.008, 0.02),
    )
    return fields, params


# (field, intensity parameter, label) in painting order: later layers cover earlier ones
_ABDOM_LAYERS = (
    ("d_body", "fat", "fat"),
    ("skin", "soft", "soft_tissue"),
    ("muscle", "muscle", "soft_tissue"),
    ("lung", "lung", "lung"),
    ("heart", "soft", "soft_tissue"),
    ("liver", "liver", "liver"),
    ("spleen", "spleen", "spleen"),
    ("stomach", "soft", "bowel"),
    ("st_lumen", "fluid", "bowel"),
    ("kidney", "kidney", "kidney"),
    ("ksinus", "fat", "fat"),
    ("vessel", "vessel", "vessel"),
    ("wall", "soft", "bowel"),
    ("lumen", "fluid", "bowel"),
    ("gas", "gas", "gas"),
    ("bone", "bone", "bone"),
    ("cancellous", "cancellous", "bone"),
    ("disc", "soft", "soft_tissue"),
    ("canal", "canal", "spinal_canal"),
)


_ABDOM_GLOBAL = ("d_body", "skin", "muscle", "bone", "wall", "lumen", "gas")


def _abdom_boxes(F: dict, up: _Upsampler) -> dict:
    return {name: up.box_of(F[name] > -0.03) for name, _, _ in _ABDOM_LAYERS if name not in _ABDOM_GLOBAL}


def _abdom_slab(S: _Slab, P: dict, inv_eps: float, noise: np.ndarray):
    body = S("d_body")
    img = np.zeros(body.shape, dtype=np.float32)
    lab = np.zeros(body.shape, dtype=np.uint8)
    inside = body > 0
    for name, value, label in _ABDOM_LAYERS:
        if name == "d_body":
            sl, f = (slice(None),) * 3, body
        else:
            loc = S.local(name)
            if loc is None:
                continue
            sl, f = loc
        sub = img[sl]
        _paint(sub, _ramp(f, inv_eps), P[value])
        lab[sl][inside[sl] & (f > 0)] = ABDOM_LABELS[label]
    img *= S("gain")
    img += P["sigma"] * noise
    np.clip(body * inv_eps, 0.0, 1.0, out=body)
    img *= body
    return img, lab


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def make_phantom(kind: str, size: int, seed: int, index: int = 0, return_labels: bool = False):
    """Make subject ``index`` of the ``kind`` ("brain" or "abdom") phantom population ``seed``.

    Returns a float32 ``size**3`` volume in [0, 1] with an exactly-zero background; with
    ``return_labels=True``, returns ``(volume, labels, names)`` where ``labels`` is a uint8 tissue
    volume and ``names`` maps tissue names to label values (BRAIN_LABELS / ABDOM_LABELS).
    """
    _check_kind(kind)
    size = _as_int(size, "size", MIN_SIZE, MAX_SIZE)
    seed = _as_int(seed, "seed", 0)
    index = _as_int(index, "index", 0)
    rng = subject_rng(kind, seed, index)
    n = min(size, COARSE_MAX)
    up = _Upsampler(n, size)
    if kind == "brain":
        fields, params = _brain_coarse(rng, n)
        slab_fn, names, hull = _brain_slab, BRAIN_LABELS, fields["d_hull"]
        boxes = _brain_boxes(fields, up)
    else:
        fields, params = _abdom_coarse(rng, n)
        slab_fn, names, hull = _abdom_slab, ABDOM_LABELS, fields["d_body"]
        boxes = _abdom_boxes(fields, up)
    inv_eps = size / 2.0  # one voxel is 2/size in the [-1, 1] coordinates
    vol = np.zeros((size, size, size), dtype=np.float32)
    labels = np.zeros((size, size, size), dtype=np.uint8) if return_labels else None
    body = up.box_of(hull > 0.0)  # everything outside stays exactly 0
    if body is not None:
        (a0, b0), (c, d), (e, f) = body
        rows = max(1, (1 << 21) // ((d - c) * (f - e)))
        for a in range(a0, b0, rows):
            b = min(b0, a + rows)
            box = ((a, b), (c, d), (e, f))
            noise = rng.standard_normal((b - a, d - c, f - e), dtype=np.float32)
            img, lab = slab_fn(_Slab(fields, boxes, up, box), params, inv_eps, noise)
            np.clip(img, 0.0, 1.0, out=img)
            img += 0.0  # turns -0.0 into 0.0, so the background is exactly +0
            vol[a:b, c:d, e:f] = img
            if labels is not None:
                labels[a:b, c:d, e:f] = lab
    if return_labels:
        return vol, labels, dict(names)
    return vol


def phantom_affine(size: int) -> np.ndarray:
    """1 mm isotropic, RAS axes, world origin at the centre of the volume."""
    aff = np.eye(4)
    aff[:3, 3] = -(size - 1) / 2.0
    return aff


def write_phantoms(
    kind: str,
    count: int,
    size: int,
    seed: int,
    out_dir: str | os.PathLike,
    compresslevel: int = 1,
    start: int = 0,
) -> list[Path]:
    """Write subjects start..start+count-1 as ``out_dir/<index:05d>.nii.gz`` (atomic writes, progress bar).

    ``start`` gives held-out subjects their own indices, hence other subjects AND other file names than a
    training set written from 0 with the same seed."""
    from ..progress import track
    from ..volumes import write_volume

    _check_kind(kind)
    count = _as_int(count, "count", 1)
    size = _as_int(size, "size", MIN_SIZE, MAX_SIZE)
    seed = _as_int(seed, "seed", 0)
    compresslevel = _as_int(compresslevel, "gzip level", 0, 9)
    start = _as_int(start, "start", 0)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise MoodError(f"{out}: exists and is not a folder")
    from ..outputs import mark_output_dir

    mark_output_dir(out)  # creates it, with the marker of a mood-dpa output
    affine = phantom_affine(size)
    paths = []
    for i in track(range(start, start + count), f"{kind} phantoms {size}^3", total=count):
        vol = make_phantom(kind, size, seed, i)
        paths.append(write_volume(out / f"{i:05d}.nii.gz", vol, affine=affine, compresslevel=compresslevel))
    return paths
