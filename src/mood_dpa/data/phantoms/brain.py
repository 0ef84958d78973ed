"""The brain phantom: a T1-like, skull-stripped brain (folded cortex, white matter, CSF, ventricles, deep grey).

:func:`coarse` draws one subject on the coarse grid: the anatomy from ``streams.anatomy``, the
acquisition values (tissue intensities, bias field, noise std) through ``streams.acq`` so that a scan
can redraw them, and the style's factors ``look`` (:class:`.style.StyleDraw`) applied to today's draws.
:func:`slab` paints one box of the full-resolution volume (before noise and the outer edge, which the
generator adds for every kind).
"""

from __future__ import annotations

import numpy as np

from .fields import (
    Slab,
    Upsampler,
    ell_from,
    ellipsoid,
    low_field,
    masked,
    paint,
    ramp,
    sampler,
    sheet_distance,
    spectral_field,
    subject_coords,
)
from .streams import Streams
from .style import StyleDraw, stretch_contrast

BRAIN_LABELS = {"background": 0, "csf": 1, "grey_matter": 2, "white_matter": 3, "deep_grey": 4, "ventricles": 5}
LABELS = BRAIN_LABELS
#: The tissue intensities the style's contrast factor stretches.
TISSUES = ("csf", "gm", "wm", "dgm")
#: The field whose positive part is the head (everything outside it is exactly 0).
HULL = "d_hull"

def coarse(streams: Streams, n: int, look: StyleDraw) -> tuple[dict, dict]:
    """The coarse fields and the intensity parameters of one brain."""
    rng = streams.anatomy
    h = 2.0 / n
    size_f = rng.uniform(0.9, 1.05) * look.scale
    aniso = 1.0 + look.shape * rng.uniform(-0.04, 0.04, 3)
    q = subject_coords(rng, n, tuple(d * look.pose for d in (5.0, 4.0, 5.0)), 0.035 * look.pose, size_f * aniso,
                       0.022 * look.shape)
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
    d_main = ell_from(dist, rho, 0.42)
    d_temp = np.maximum(*[ellipsoid(x, y, z, (s * 0.42, 0.12, -0.24), (0.22, 0.36, 0.19)) for s in (-1.0, 1.0)])
    d_cr = np.maximum(d_main, d_temp) + 0.012 * low_field(rng, n, 1.0)
    # the Sylvian fissure: a CSF sheet between the temporal lobe and the rest, down to the insula
    syl = np.where((np.minimum(d_main, d_temp) > -0.06) & (np.abs(x) > 0.36), 0.5 * (d_main - d_temp), 1.0)

    # cerebellum and brain stem
    cb_c = (0.0, -0.45, -0.34)
    cb_r = (0.44 * j[0], 0.27, 0.21)
    d_cb = ellipsoid(x, y, z, cb_c, cb_r)
    stem_r = 0.1 + 0.04 * np.exp(-(((z + 0.3) / 0.1) ** 2))  # the pons is wider
    d_bs = np.minimum(stem_r - np.sqrt(x * x + ((y + 0.17 - 0.12 * (z + 0.3)) / 1.1) ** 2), np.minimum(z + 0.72, 0.05 - z))
    d_hull = np.maximum(np.maximum(d_cr, d_cb), d_bs).astype(np.float32)
    in_cb = d_cb >= np.maximum(d_cr, d_bs)
    in_bs = d_bs > np.maximum(d_cr, d_cb)

    # folded cortex: sulci are the zero set of a band-pass field sampled near the projection of
    # each point onto the hull (nearly radial sheets that wander with depth), half symmetric
    # left-right; evaluated only in the shell where sulci can be
    sample = sampler(spectral_field(rng, 64, 7.0, 1.4))
    shell = (d_hull > -0.03) & (d_hull < 0.3)
    cb_shell = shell & (d_cb > np.maximum(d_cr, d_bs) - 2 * h)
    cr_shell = shell & (d_cr > np.maximum(d_cb, d_bs) - 2 * h)
    safe = np.maximum(rho, 0.3)
    proj = np.stack([c[0] + dx / safe, c[1] + dy / safe, c[2] + dz / safe])
    proj += 0.5 * (q - proj)
    mirror = proj.copy()
    mirror[0] = -mirror[0]
    off = np.array([0.37, 0.61, 0.23], dtype=np.float32)[:, None, None, None]
    g = 0.55 * (masked(sample, proj, cr_shell) + masked(sample, mirror, cr_shell))
    g += 0.45 * masked(sample, proj + off, cr_shell)
    s_cr = sheet_distance(g, h)
    cbx, cby, cbz = x - cb_c[0], y - cb_c[1], z - cb_c[2]
    cbrho = np.maximum(np.sqrt((cbx / cb_r[0]) ** 2 + (cby / cb_r[1]) ** 2 + (cbz / cb_r[2]) ** 2), 0.3)
    fol = np.stack([cbx / cbrho * 0.4, cby / cbrho * 2.2, cbz / cbrho * 2.0]) - off
    s_cb = sheet_distance(masked(sample, fol, cb_shell), h)
    s = np.where(in_cb, s_cb, s_cr)
    s = np.where(in_bs, 1.0, s).astype(np.float32)
    depth = np.where(in_cb, 0.1, 0.15 + 0.035 * low_field(rng, n, 1.0))
    e = (d_hull - depth).astype(np.float32)

    # interhemispheric fissure down to the corpus callosum (all the way at the poles)
    xa = (x + 0.01 * low_field(rng, n, 1.0)).astype(np.float32)
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
        ven.append(ell_from(np.sqrt((x - xc) ** 2 + y * y + (z - zc) ** 2),
                             np.sqrt(((x - xc) / rxv) ** 2 + (y / 0.42) ** 2 + ((z - zc) / rzv) ** 2), 0.05))
    ven.append(ellipsoid(x, y, z, (0.0, -0.06, -0.05), (0.012 * vs, 0.13, 0.07)))
    ven.append(ellipsoid(x, y, z, (0.0, -0.36, -0.36), (0.03, 0.025, 0.05)))
    v = np.full(cm.shape, -0.1, dtype=np.float32)
    v[cm] = np.maximum.reduce(ven)
    nuclei = []
    for sgn in (-1.0, 1.0):
        nuclei.append(ellipsoid(x, y, z, (sgn * 0.085, -0.1, -0.04), (0.07, 0.13, 0.08)))  # thalamus
        nuclei.append(ellipsoid(x, y, z, (sgn * (0.12 + 0.055 * vs), 0.2, 0.07), (0.05, 0.1, 0.07)))  # caudate
        nuclei.append(ellipsoid(x, y, z, (sgn * 0.265, 0.05, -0.01), (0.05, 0.17, 0.1)))  # putamen
        nuclei.append(ellipsoid(x, y, z, (sgn * 0.205, 0.03, -0.02), (0.035, 0.09, 0.06)))  # pallidum
    nuc = np.full(cm.shape, -0.1, dtype=np.float32)
    nuc[cm] = np.maximum.reduce(nuclei)

    # scanner: bias field (acquisition) times a fine tissue texture (the subject's)
    bias = streams.acq(lambda r: low_field(r, n, 0.6))
    gain = np.exp((0.1 * look.bias) * bias) * (1.0 + 0.035 * spectral_field(rng, n, n / 8.0, n / 16.0))
    fields = dict(d_hull=d_hull, s=s, e=e, xa=xa, fl=fl, delta=delta, syl=syl.astype(np.float32), v=v, nuc=nuc,
                  gain=gain.astype(np.float32))
    params = dict(
        csf=streams.acq(lambda r: r.uniform(0.14, 0.22)),
        gm=streams.acq(lambda r: r.uniform(0.42, 0.49)),
        wm=streams.acq(lambda r: r.uniform(0.76, 0.83)),
        dgm=streams.acq(lambda r: r.uniform(0.56, 0.63)),
        thick=0.032 * rng.uniform(0.9, 1.1),
        sulcus=0.006 * rng.uniform(0.8, 1.3),
        rim=0.012 * rng.uniform(0.7, 1.5),
        sigma=streams.acq(lambda r: r.uniform(0.012, 0.03)) * look.noise,
    )
    stretch_contrast(params, TISSUES, look.contrast)
    return fields, params


def boxes(F: dict, up: Upsampler) -> dict:
    """The boxes of the output where the local fields can matter."""
    return {
        "delta": up.box_of(np.abs(F["delta"]) < 0.05),
        "syl": up.box_of(np.abs(F["syl"]) < 0.05),
        "v": up.box_of(F["v"] > -0.03),
        "nuc": up.box_of(F["nuc"] > -0.03),
    }


def slab(S: Slab, P: dict, inv_eps: float):
    """(noiseless image, labels, head field) of one box of the volume."""
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
    paint(img, ramp(phi, inv_eps), P["gm"])
    paint(img, ramp(phi - P["thick"], inv_eps), P["wm"])
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
            paint(sub, ramp(f, inv_eps), value)
            lab[sl][inside[sl] & (f > 0)] = BRAIN_LABELS[label]
    img *= S("gain")
    return img, lab, dh
