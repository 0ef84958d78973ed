"""Shared geometry of the phantoms: coarse grids, smooth random fields, signed-distance shapes, upsampling.

All anatomy is described by smooth signed-distance-like fields (positive inside a structure) on a
coarse grid over [-1, 1]^3; :class:`Upsampler` brings them to full resolution one box (slab) at a
time, where :func:`ramp` draws edges as one-voxel partial-volume ramps. Nothing here knows about a
tissue or a scanner: the kinds (``brain``, ``abdom``) build on these pieces.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _axis_interp(n_in: int, n_out: int):
    """Indices and weights of linear interpolation from n_in cell centres to n_out (same extent)."""
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    pos = np.clip(pos, 0.0, n_in - 1.0)
    i0 = np.minimum(np.floor(pos).astype(np.intp), max(n_in - 2, 0))
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = (pos - i0).astype(np.float32)
    return i0, i1, w


class Upsampler:
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


def intersect(box, other):
    if box is None or other is None:
        return None
    out = tuple((max(p[0], q[0]), min(p[1], q[1])) for p, q in zip(box, other))
    return None if any(lo >= hi for lo, hi in out) else out


def rel(box, inner):
    """Slices of ``inner`` relative to the origin of ``box``."""
    return tuple(slice(i[0] - o[0], i[1] - o[0]) for o, i in zip(box, inner))


class Slab:
    """Upsampled fields over one box of the output volume; local fields only where they reach."""

    def __init__(self, fields: dict, boxes: dict, up: Upsampler, box):
        self.fields, self.boxes, self.up, self.box = fields, boxes, up, box
        self.shape = tuple(hi - lo for lo, hi in box)

    def __call__(self, name: str) -> np.ndarray:
        return self.up(self.fields[name], self.box)

    def local(self, name: str):
        """(slices into the slab, upsampled field there) or None where the field cannot matter."""
        inner = intersect(self.box, self.boxes.get(name, self.box))
        if inner is None:
            return None
        return rel(self.box, inner), self.up(self.fields[name], inner)


def resize(field: np.ndarray, n: int) -> np.ndarray:
    return Upsampler(field.shape[0], n)(field, ((0, n), (0, n), (0, n)))


def spectral_field(rng: np.random.Generator, n: int, k0: float, bw: float) -> np.ndarray:
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


def low_field(rng: np.random.Generator, n: int, bw: float = 0.7) -> np.ndarray:
    """A smooth (low-pass) unit-std field on the n^3 grid, made at 24^3 and resized."""
    return resize(spectral_field(rng, 24, 0.0, bw), n)


def grid_coords(n: int) -> np.ndarray:
    u = ((np.arange(n, dtype=np.float32) + 0.5) * (2.0 / n) - 1.0).astype(np.float32)
    return np.stack(np.meshgrid(u, u, u, indexing="ij"))


def rotation(angles: np.ndarray) -> np.ndarray:
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def subject_coords(rng, n: int, max_deg, max_shift: float, scale, warp: float) -> np.ndarray:
    """Anatomical coordinates (3, n, n, n) seen at each coarse voxel: pose, size and smooth warp."""
    p = grid_coords(n)
    angles = np.deg2rad(rng.uniform(-1.0, 1.0, 3) * np.asarray(max_deg, dtype=np.float64))
    shift = rng.uniform(-max_shift, max_shift, 3)
    scale = np.asarray(scale, dtype=np.float64)
    m = (rotation(angles).T / scale[:, None]).astype(np.float32)  # q = diag(1/s) R^T (p - t)
    q = np.einsum("ij,j...->i...", m, p - shift.astype(np.float32)[:, None, None, None])
    for i in range(3):
        q[i] += warp * low_field(rng, n, 0.8)
    return q


def sampler(field: np.ndarray):
    """Cubic-spline sampler of a periodic field over [-1,1]^3 at arbitrary points."""
    coeffs = ndimage.spline_filter(field, order=3, mode="grid-wrap", output=np.float32)
    m = field.shape[0]

    def sample(points: np.ndarray) -> np.ndarray:
        idx = (points.reshape(3, -1) + 1.0) * (m / 2.0) - 0.5
        out = ndimage.map_coordinates(coeffs, idx, order=3, mode="grid-wrap", prefilter=False, output=np.float32)
        return out.reshape(points.shape[1:])

    return sample


def masked(sample, points: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``sample`` evaluated only where ``mask`` holds (zero elsewhere)."""
    out = np.zeros(mask.shape, dtype=np.float32)
    out[mask] = sample(points[:, mask])
    return out


def sheet_distance(g: np.ndarray, h: float) -> np.ndarray:
    """Signed distance (first order) to the zero set of a smooth field g on a grid of spacing h."""
    gx, gy, gz = np.gradient(g, h)
    norm = np.sqrt(gx * gx + gy * gy + gz * gz)
    return g / np.maximum(norm, 0.5)


def ellipsoid(x, y, z, c, r) -> np.ndarray:
    """Approximate signed distance to an ellipsoid (positive inside)."""
    dx, dy, dz = x - c[0], y - c[1], z - c[2]
    dist = np.sqrt(dx * dx + dy * dy + dz * dz)
    rho = np.sqrt((dx / r[0]) ** 2 + (dy / r[1]) ** 2 + (dz / r[2]) ** 2)
    return ell_from(dist, rho, min(r))


def ell_from(dist: np.ndarray, rho: np.ndarray, rmin: float) -> np.ndarray:
    # radial distance r_eff - r where r_eff is the radius of the surface along the ray; near the
    # centre use (1 - rho) * rmin, which is smooth there
    safe = np.maximum(rho, 1e-3)
    radial = dist * (1.0 / safe - 1.0)
    return np.where(rho > 0.5, radial, (1.0 - rho) * rmin).astype(np.float32)


def ellipse2d(x, y, c, r) -> np.ndarray:
    dx, dy = x - c[0], y - c[1]
    dist = np.sqrt(dx * dx + dy * dy)
    rho = np.sqrt((dx / r[0]) ** 2 + (dy / r[1]) ** 2)
    return ell_from(dist, rho, min(r))


def ramp(field: np.ndarray, inv_eps: float) -> np.ndarray:
    """Partial-volume fraction inside ``field > 0``, ramping over one voxel."""
    out = field * inv_eps
    out += 0.5
    np.clip(out, 0.0, 1.0, out=out)
    return out


def paint(img: np.ndarray, frac: np.ndarray, value) -> None:
    img += frac * (value - img)
