"""The abdomen phantom: a CT-like abdomen (skin, fat, muscle, spine, ribs, liver, spleen, kidneys, aorta, bowel).

Axis 2 is the cranio-caudal axis (axial slices are ``volume[:, :, k]``; the top slices show the lung
bases and the heart). As for the brain (``brain.py``): :func:`coarse` draws the anatomy from
``streams.anatomy`` and the acquisition values through ``streams.acq``, with the style's factors
``look`` applied; :func:`slab` paints one box before noise and the outer edge.
"""

from __future__ import annotations

import numpy as np

from .fields import (
    Slab,
    Upsampler,
    ell_from,
    ellipse2d,
    ellipsoid,
    low_field,
    paint,
    ramp,
    sheet_distance,
    spectral_field,
    subject_coords,
)
from .streams import Streams
from .style import StyleDraw, stretch_contrast

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
LABELS = ABDOM_LABELS
#: The tissue intensities the style's contrast factor stretches (like a narrower or wider CT window).
TISSUES = ("fat", "soft", "muscle", "liver", "spleen", "kidney", "vessel", "fluid", "gas", "lung", "bone", "cancellous",
           "canal")
#: The field whose positive part is the body (everything outside it is exactly 0).
HULL = "d_body"

def coarse(streams: Streams, n: int, look: StyleDraw) -> tuple[dict, dict]:
    """The coarse fields and the intensity parameters of one abdomen."""
    rng = streams.anatomy
    h = 2.0 / n
    body_f = rng.uniform(0.86, 1.06) * look.scale
    jitter = (rng.uniform(0.96, 1.04), rng.uniform(0.93, 1.04), rng.uniform(0.94, 1.06))
    if look.shape != 1.0:
        jitter = tuple(1.0 + look.shape * (u - 1.0) for u in jitter)
    scale = (body_f * jitter[0], body_f * jitter[1], look.scale * jitter[2])
    q = subject_coords(rng, n, tuple(d * look.pose for d in (3.0, 3.0, 5.0)), 0.03 * look.pose, scale, 0.025 * look.shape)
    x, y, z = q[0], q[1], q[2]
    low = lambda bw=1.0: low_field(rng, n, bw)  # noqa: E731

    # body outline: a rounded-box ellipse, a little wider below; skin, fat, muscle wall
    ax = 0.8 * (1.0 - 0.04 * z)
    ay = np.where(y > 0, 0.56, 0.6)
    rr = np.sqrt(x * x + y * y)
    pw = 2.5
    rho = (np.abs(x / ax) ** pw + np.abs(y / ay) ** pw) ** (1.0 / pw)
    d_body = ell_from(rr, rho, 0.5) + 0.01 * low()
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
    heart = np.minimum(ellipsoid(x, y, z, (0.05, 0.22, 0.98), (0.3, 0.26, 0.26)), d_cav)
    lung = np.minimum(np.minimum(d_cav - 0.005, above), -heart - 0.01)
    heart = np.minimum(heart, above)
    below = -above - 0.01

    # spine: vertebral bodies with discs, canal, arch, processes; psoas and back muscles
    yv = -0.22
    vert = ellipse2d(x, y, (0.0, yv), (0.1, 0.085))
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
        ellipse2d(x, y, (-0.13, yc - 0.02), (0.1, 0.09)),
        ellipse2d(x, y, (0.13, yc - 0.02), (0.1, 0.09)),
        psoas_r - np.sqrt((np.abs(x) - 0.1 - psoas_r) ** 2 + (y - yv - 0.01) ** 2),
    ]
    muscle = np.minimum(np.maximum.reduce(muscles), d_body - 0.009).astype(np.float32)

    # organs
    liver = np.maximum(
        ellipsoid(x, y, z, (0.3, 0.02, 0.45), (0.44, 0.42, 0.5)),
        ellipsoid(x, y, z, (-0.08, 0.22, 0.58), (0.3, 0.2, 0.22)),
    ) + 0.02 * low()
    liver = np.minimum(np.minimum(liver, d_cav - 0.01), below)
    spleen = np.minimum(np.minimum(ellipsoid(x, y, z, (-0.5, -0.25, 0.45), (0.13, 0.2, 0.2)), d_cav - 0.01), below)
    stomach = np.minimum(np.minimum(ellipsoid(x, y, z, (-0.27, 0.17, 0.5), (0.22, 0.2, 0.24)), d_cav - 0.01), below)
    stomach = np.minimum(stomach, -spleen - 0.01)
    liver = np.minimum(liver, -stomach - 0.01)
    st_lumen = stomach - 0.02
    st_gas = np.minimum(st_lumen, y - (0.2 + 0.08 * rng.uniform(-1, 1)))
    kid, sinus = [], []
    for sgn, zk in ((1.0, -0.06), (-1.0, 0.05)):
        xk, yk = sgn * 0.32, -0.26
        kx = x - xk + sgn * 0.12 * (z - zk)  # upper poles lean to the midline
        kid.append(ellipsoid(kx, y, z, (0.0, yk, zk), (0.085, 0.075, 0.2)))
        sinus.append(ellipsoid(kx, y, z, (-sgn * 0.04, yk + 0.01, zk), (0.04, 0.035, 0.1)))
    kidney = np.maximum(*kid).astype(np.float32)
    ksinus = np.maximum(*sinus).astype(np.float32)
    split = np.clip((-0.55 - z) / 0.4, 0.0, 1.0)
    aorta = np.maximum(
        0.04 - np.sqrt((x + 0.05 + 0.25 * split) ** 2 + (y + 0.12) ** 2),
        np.minimum(0.035 - np.sqrt((x - 0.05 - 0.25 * split) ** 2 + (y + 0.12) ** 2), -0.56 - z),
    )
    ivc = ellipse2d(x, y, (0.09, -0.12), (0.05, 0.035))
    vessel = np.minimum(np.maximum(aorta, ivc), below + 0.05).astype(np.float32)

    # bowel: loops of small bowel (a band-pass field's bright cells) and the colon frame
    organs = np.maximum.reduce([liver, spleen, stomach, kidney, vessel, muscle, bone, -d_cav])
    region = np.minimum(np.minimum(-organs - 0.015, y + 0.12), 0.36 - z)
    loops = spectral_field(rng, n, 4.5, 0.9)
    b = sheet_distance(loops - 0.25, h)
    colon = []
    for xc, yc0 in ((0.52, 0.02), (-0.54, -0.02)):
        colon.append(np.minimum(0.075 - np.sqrt((x - xc) ** 2 + (y - yc0) ** 2), np.minimum(z + 0.55, 0.33 - z)))
    zt = 0.3 - 0.15 * (1.0 - (x / 0.55) ** 2)
    colon.append(np.minimum(0.07 - np.sqrt((y - 0.28) ** 2 + (z - zt) ** 2), 0.55 - np.abs(x)))
    colon = np.minimum(np.maximum.reduce(colon), np.minimum(-np.maximum.reduce([liver, spleen, kidney, stomach]) - 0.01, d_cav - 0.01))
    wall = np.maximum(np.minimum(b + 0.012, region), colon + 0.01).astype(np.float32)
    lumen = np.maximum(np.minimum(b, region), colon - 0.008).astype(np.float32)
    gas_f = sheet_distance(spectral_field(rng, n, 4.0, 1.0) - 1.3, h)
    gas = np.maximum(np.minimum(lumen, gas_f), np.minimum(colon - 0.008, gas_f + 0.03)).astype(np.float32)
    gas = np.maximum(gas, st_gas).astype(np.float32)

    # scanner: bias field (acquisition) times a fine tissue texture (the subject's)
    bias = streams.acq(lambda r: low_field(r, n, 0.6))
    gain = (1.0 + (0.02 * look.bias) * bias) * (1.0 + 0.025 * spectral_field(rng, n, n / 8.0, n / 16.0))
    fields = dict(
        d_body=d_body.astype(np.float32), skin=skin.astype(np.float32), muscle=muscle, lung=lung.astype(np.float32),
        heart=heart.astype(np.float32), liver=liver.astype(np.float32), spleen=spleen.astype(np.float32),
        stomach=stomach.astype(np.float32), st_lumen=st_lumen.astype(np.float32), kidney=kidney, ksinus=ksinus,
        vessel=vessel, wall=wall, lumen=lumen, gas=gas, bone=bone, cancellous=cancellous,
        disc=disc.astype(np.float32), canal=canal, gain=gain.astype(np.float32),
    )
    j = lambda v, d: v + streams.acq(lambda r: r.uniform(-d, d))  # noqa: E731
    params = dict(
        fat=j(0.3, 0.02), soft=j(0.5, 0.015), muscle=j(0.49, 0.015), liver=j(0.56, 0.02), spleen=j(0.535, 0.02),
        kidney=j(0.6, 0.03), vessel=j(0.64, 0.04), fluid=j(0.42, 0.02), gas=j(0.035, 0.01), lung=j(0.08, 0.02),
        bone=j(0.9, 0.03), cancellous=j(0.7, 0.03), canal=j(0.44, 0.02), sigma=streams.acq(lambda r: r.uniform(0.008, 0.02)) * look.noise,
    )
    stretch_contrast(params, TISSUES, look.contrast)
    return fields, params


# (field, intensity parameter, label) in painting order: later layers cover earlier ones
_LAYERS = (
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


_GLOBAL = ("d_body", "skin", "muscle", "bone", "wall", "lumen", "gas")


def boxes(F: dict, up: Upsampler) -> dict:
    """The boxes of the output where the local fields can matter."""
    return {name: up.box_of(F[name] > -0.03) for name, _, _ in _LAYERS if name not in _GLOBAL}


def slab(S: Slab, P: dict, inv_eps: float):
    """(noiseless image, labels, body field) of one box of the volume."""
    body = S("d_body")
    img = np.zeros(body.shape, dtype=np.float32)
    lab = np.zeros(body.shape, dtype=np.uint8)
    inside = body > 0
    for name, value, label in _LAYERS:
        if name == "d_body":
            sl, f = (slice(None),) * 3, body
        else:
            loc = S.local(name)
            if loc is None:
                continue
            sl, f = loc
        sub = img[sl]
        paint(sub, ramp(f, inv_eps), P[value])
        lab[sl][inside[sl] & (f > 0)] = ABDOM_LABELS[label]
    img *= S("gain")
    return img, lab, body
