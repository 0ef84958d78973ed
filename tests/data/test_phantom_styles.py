"""Phantom styles and scans: today's bytes kept, seeded draws inside their ranges, shifts in the documented
direction (measured on the volumes), scans that share a subject's anatomy, style files and the CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from mood_dpa.cli import main
from mood_dpa.data import phantoms
from mood_dpa.data.phantoms import (
    STYLES,
    PhantomStyle,
    describe_styles,
    draw_style,
    load_style,
    make_phantom,
    resolve_style,
    write_phantoms,
)
from mood_dpa.data.phantoms.style import ACQUISITION, ANATOMY, draw_in
from mood_dpa.errors import MoodError
from mood_dpa.volumes import read_volume

# sha256 of (volume, labels) made by the single-module generator before styles existed (main at b7c5cac,
# numpy 2.4.6, scipy 1.17.1, x86-64): the `train` style and no style must keep these bytes
TODAY = {
    ("brain", 32, 0, 0): ("e6fe747b4b7a48dcc9aeeba6ea8ed20efdfd447d20291afc62e0ee3853e179d0",
                          "da770e95960993b2e6f9749026a2b6de841afa0a82b862fee0d1f1b595821d9a"),
    ("brain", 33, 3, 5): ("7efde834d66b50925d456c5af4ca8e5a802716854a97fbaaeda24386e9048ba4",
                          "08ae541783a6a06e407117bec86ae4c6e7b94721b052f13e06c3da1e7014871a"),
    ("brain", 64, 0, 40): ("f8f1993d6de48503bc59265e257d4a1bd6da106aca3923a3a6265bcb006b11e4",
                           "a0ff4374d43afb13d030f578fb8d12c2a5d443a08f91d28a546b6f40b21defca"),
    ("brain", 136, 2, 3): ("ac530051235563344e825166fbe6f8cd3d17419181ae512f22d1f6a0fe77449d",
                           "7b9aca9e72a955db86e922e71e7c3940b9652747e6fa2b5f948df6a325a3798f"),
    ("abdom", 32, 0, 0): ("c586f000ccb80fc1b0f713ee201a65025f2875e971e9e9034c3a4b0b5df73551",
                          "52201d34aa515a738e94ffd88895a95d10e813ea197d295ff2f1bc3692832c91"),
    ("abdom", 48, 7, 1): ("3190307d95d9a78228625f7919896ee3be8e6cd75bf4d09acb494d34bd920aaf",
                          "c8346d48877b812090e5e3306937d6831eb960e2a84ab3b2c3b1b2ae55572099"),
    ("abdom", 64, 0, 40): ("5a0889696b14f65c9bc9c8a3485a04b8865568a158fb2030498191782f0ea31b",
                           "b6a0447c101c1b1e3bafd06207a501b35153edfcc4e83c545962f8662201aaa6"),
    ("abdom", 136, 2, 3): ("f4b7dab5048ccde4668365a730816909dfda835c22837f5058b53cca4dde10ec",
                           "a6b2cbf8be3bece914124dfa63e3ab6999a31e98ee65539e03b321b22ff128d6"),
}
SINGLE = ("contrast", "gamma", "bias", "noise", "blur", "scale", "shape", "pose")
# the label a tissue measurement uses: white matter, liver
TISSUE = {"brain": 3, "abdom": 4}


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(a.tobytes()).hexdigest()


def _inside(value: float, intervals) -> bool:
    return any(lo <= value <= hi for lo, hi in intervals)


@pytest.mark.parametrize("case", sorted(TODAY))
def test_train_style_keeps_todays_bytes(case):
    vol, lab, _ = make_phantom(*case, return_labels=True)
    assert (_sha(vol), _sha(lab)) == TODAY[case], "the default population changed (or this platform's numpy differs)"
    for style in ("train", STYLES["train"]):
        assert make_phantom(*case, style=style).tobytes() == vol.tobytes()


def test_write_phantoms_train_style_same_files(tmp_path):
    plain = write_phantoms("brain", 2, 32, 0, tmp_path / "plain")
    styled = write_phantoms("brain", 2, 32, 0, tmp_path / "styled", style="train")
    assert [p.read_bytes() for p in plain] == [p.read_bytes() for p in styled]
    assert _sha(read_volume(plain[0]).data) == TODAY[("brain", 32, 0, 0)][0]


@pytest.mark.parametrize("kind", ["brain", "abdom"])
def test_style_draws_are_seeded_and_inside_their_ranges(kind):
    for name, style in STYLES.items():
        ranges = style.ranges()
        draws = [draw_style(style, kind, 5, i, scan) for i in range(60) for scan in (None, 0, 1)]
        for factor in ACQUISITION + ANATOMY:
            values = np.array([getattr(d, factor) for d in draws])
            assert all(_inside(v, ranges[factor]) for v in values), (name, factor)
            if len(ranges[factor]) > 1:  # every interval of a two-sided range is drawn
                assert all(any(lo <= v <= hi for v in values) for lo, hi in ranges[factor]), (name, factor)
            if factor in style.shifted_factors():
                assert np.unique(values).size > 50, (name, factor)
            else:
                assert np.all(values == phantoms.style.IDENTITY[factor]), (name, factor)
        assert draws == [draw_style(style, kind, 5, i, scan) for i in range(60) for scan in (None, 0, 1)]
    # anatomy factors are the subject's: every scan of it has them; acquisition factors are the scan's
    shifted = STYLES["shifted"]
    a, b = draw_style(shifted, kind, 5, 3, 0), draw_style(shifted, kind, 5, 3, 1)
    assert all(getattr(a, f) == getattr(b, f) for f in ANATOMY)
    assert all(getattr(a, f) != getattr(b, f) for f in ACQUISITION)
    # a one-factor style draws that factor exactly as `shifted` does
    for factor in SINGLE:
        scan = 0 if factor in ACQUISITION else None
        assert getattr(draw_style(STYLES[factor], kind, 5, 3, scan), factor) == getattr(draw_style(shifted, kind, 5, 3, scan), factor)


def test_shifted_ranges_leave_the_training_value():
    train, shifted = STYLES["train"].ranges(), STYLES["shifted"].ranges()
    assert set(STYLES) == {"train", "shifted", *SINGLE}
    for factor in ACQUISITION + ANATOMY:
        (value, _), = train[factor]
        assert not _inside(value, shifted[factor]), factor
        assert STYLES[factor].shifted_factors() == (factor,)
    # the noise std is disjoint from training's (2.5x the largest training draw) and brains are smaller than any
    assert min(lo for lo, _ in shifted["noise"]) >= 2.5
    assert max(hi for _, hi in shifted["scale"]) * 1.05 < 0.9


def test_draw_in_covers_the_union_by_length():
    two = ((0.0, 1.0), (3.0, 4.0))
    assert draw_in(0.0, two) == 0.0 and draw_in(0.25, two) == 0.5 and draw_in(0.75, two) == 3.5
    assert draw_in(0.999999, two) == pytest.approx(4.0, abs=1e-5)
    assert draw_in(0.7, ((2.0, 2.0),)) == 2.0
    assert draw_in(0.7, ((1.0, 1.0), (2.0, 2.0))) == 2.0 and draw_in(0.2, ((1.0, 1.0), (2.0, 2.0))) == 1.0


def _noise_level(vol: np.ndarray, mask: np.ndarray) -> float:
    """Robust noise std from first differences inside the eroded tissue mask (MAD of the differences)."""
    inner = ndimage.binary_erosion(mask)
    d = (vol[1:] - vol[:-1])[inner[1:] & inner[:-1]]
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def _bias_level(vol: np.ndarray, mask: np.ndarray) -> float:
    """Spread of the slowly varying gain: std of the log of the masked, smoothed intensity."""
    num = ndimage.gaussian_filter(vol * mask, 3.0)
    den = ndimage.gaussian_filter(mask.astype(np.float32), 3.0)
    inner = ndimage.binary_erosion(mask)
    return float(np.log(num[inner] / den[inner]).std())


@pytest.fixture(scope="module")
def paired():
    """Subject 1 of seed 3 at 48^3 in every style, with labels: the same anatomy under each acquisition shift."""
    return {(kind, name): make_phantom(kind, 48, 3, 1, return_labels=True, style=name)
            for kind in ("brain", "abdom") for name in STYLES}


@pytest.mark.parametrize("kind", ["brain", "abdom"])
def test_acquisition_shifts_keep_the_anatomy_and_move_as_documented(kind, paired):
    vol0, lab0, _ = paired[(kind, "train")]
    tissue = lab0 == TISSUE[kind]
    look = draw_style(STYLES["shifted"], kind, 3, 1)
    for name in ACQUISITION:
        vol, lab, _ = paired[(kind, name)]
        assert np.array_equal(lab, lab0), name  # an acquisition changes no label
        assert np.abs(vol - vol0).mean() > 1e-3, name
    # noise: the estimated noise std grows (by less than the factor: texture and partial volume add to both)
    assert _noise_level(paired[(kind, "noise")][0], tissue) > 1.6 * _noise_level(vol0, tissue)
    # contrast: the difference between two tissues' medians scales by the drawn factor, outside 0.8-1.2
    a, b = ((3, 2) if kind == "brain" else (3, 1))  # white - grey matter; bone - fat
    diff = lambda v: np.median(v[lab0 == a]) - np.median(v[lab0 == b])  # noqa: E731
    ratio = diff(paired[(kind, "contrast")][0]) / diff(vol0)
    assert not 0.8 < look.contrast < 1.2 and ratio == pytest.approx(look.contrast, abs=0.06)
    # gamma: a monotone curve, so the tissue median maps through it
    assert np.median(paired[(kind, "gamma")][0][tissue]) == pytest.approx(np.median(vol0[tissue]) ** look.gamma, abs=0.01)
    # bias: the slowly varying gain spreads more; blur: less edge energy
    assert _bias_level(paired[(kind, "bias")][0], tissue) > 1.5 * _bias_level(vol0, tissue)
    grad = lambda v: float(np.mean([np.abs(np.diff(v, axis=ax)).mean() for ax in range(3)]))  # noqa: E731
    assert grad(paired[(kind, "blur")][0]) < 0.8 * grad(vol0)


def test_anatomy_shifts(paired):
    for kind in ("brain", "abdom"):
        lab0 = paired[(kind, "train")][1]
        s = draw_style(STYLES["scale"], kind, 3, 1).scale
        ratio = (paired[(kind, "scale")][1] > 0).sum() / (lab0 > 0).sum()
        # the brain shrinks in three axes; the abdomen leaves the field of view in z, so it shrinks in two
        assert ratio == pytest.approx(s ** 3 if kind == "brain" else s ** 2, rel=0.08), kind
        for name in ("shape", "pose"):
            assert (paired[(kind, name)][1] != lab0).mean() > 0.01, (kind, name)
        vol, lab, _ = paired[(kind, "shifted")]
        assert (lab > 0).sum() < 0.8 * (lab0 > 0).sum()
        assert _noise_level(vol, lab == TISSUE[kind]) > 1.6 * _noise_level(paired[(kind, "train")][0], lab0 == TISSUE[kind])
        assert vol.min() >= 0.0 and vol.max() <= 1.0 and np.all(vol[lab == 0] == 0.0)


@pytest.mark.parametrize("kind", ["brain", "abdom"])
def test_scans_share_the_anatomy_and_differ_in_appearance(kind):
    vol, lab, _ = make_phantom(kind, 40, 2, 4, return_labels=True)
    scans = [make_phantom(kind, 40, 2, 4, return_labels=True, scan=k) for k in range(3)]
    for v, lb, _ in scans:
        assert np.array_equal(lb, lab)
        assert np.abs(v - vol).mean() > 2e-3
        assert np.all(v[lb == 0] == 0.0) and v.max() <= 1.0
    assert np.abs(scans[0][0] - scans[1][0]).mean() > 2e-3
    assert make_phantom(kind, 40, 2, 4, scan=1).tobytes() == scans[1][0].tobytes()
    # a shifted scan of the subject is another acquisition of the same (shifted) anatomy
    _, lab_a, _ = make_phantom(kind, 40, 2, 4, return_labels=True, style="shifted", scan=0)
    _, lab_b, _ = make_phantom(kind, 40, 2, 4, return_labels=True, style="shifted", scan=5)
    assert np.array_equal(lab_a, lab_b)
    with pytest.raises(MoodError):
        make_phantom(kind, 40, 2, 4, scan=-1)


def test_write_phantoms_scans_names_and_bytes(tmp_path):
    paths = write_phantoms("abdom", 2, 32, 1, tmp_path / "s", start=3, scans=2, style="noise")
    assert [p.name for p in paths] == ["00003-000.nii.gz", "00003-001.nii.gz", "00004-000.nii.gz", "00004-001.nii.gz"]
    assert np.array_equal(read_volume(paths[3]).data, make_phantom("abdom", 32, 1, 4, style="noise", scan=1))
    with pytest.raises(MoodError):
        write_phantoms("abdom", 1, 32, 1, tmp_path / "bad", scans=0)
    assert not (tmp_path / "bad").exists()


def test_style_files(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("noise: [2, 3]\ngamma: [[0.5, 0.6], [1.5, 1.6]]\nblur: 1.0\n")
    style = load_style(good)
    assert style.name == "mine" and style.noise == ((2.0, 3.0),) and style.blur == ((1.0, 1.0),)
    assert style.gamma == ((0.5, 0.6), (1.5, 1.6)) and style.contrast == ((1.0, 1.0),)
    assert resolve_style(str(good)) == style and resolve_style(None) is STYLES["train"]
    look = draw_style(style, "brain", 0, 0)
    assert 2.0 <= look.noise <= 3.0 and look.blur == 1.0 and look.contrast == 1.0
    for text in ("nois: 2\n", "noise: [3, 2]\n", "scale: 2.0\n", "gamma: [1, true]\n", "- 1\n", "noise: abc\n", "blur: []\n"):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(MoodError):
            load_style(bad)
    for missing in ("nope", str(tmp_path / "missing.yaml")):
        with pytest.raises(MoodError):
            resolve_style(missing)
    with pytest.raises(MoodError):
        PhantomStyle(noise=-1.0)


def test_style_table_is_documented():
    table = describe_styles()
    assert "| `noise` |" in table and "2.5-3" in table
    assert table in phantoms.__doc__
    readme = Path(__file__).resolve().parents[2] / "README.md"
    if not readme.is_file():
        pytest.skip("README.md is not beside the tests (installed package)")
    assert table in readme.read_text()


def test_cli_style_and_scans(tmp_path, capsys):
    out = tmp_path / "shifted"
    with pytest.raises(SystemExit) as exc:
        main(["phantoms", "--kind", "brain", "--count", "1", "--size", "32", "--seed", "4", "-o", str(out),
              "--style", "shifted", "--scans", "2", "--start", "9"])
    assert exc.value.code in (0, None)
    assert sorted(p.name for p in out.iterdir()) == [".mood-dpa", "00009-000.nii.gz", "00009-001.nii.gz"]
    assert np.array_equal(read_volume(out / "00009-001.nii.gz").data, make_phantom("brain", 32, 4, 9, style="shifted", scan=1))
    assert "wrote 2 brain phantoms in style shifted of 32^3" in capsys.readouterr().out
    for extra in (["--style", "nosuch"], ["--scans", "0"], ["--style", str(tmp_path / "none.yaml")]):
        bad = tmp_path / "bad"
        with pytest.raises(SystemExit) as exc:
            main(["phantoms", "--kind", "brain", "--count", "1", "--size", "32", "-o", str(bad), *extra])
        assert exc.value.code == 2
        assert not bad.exists()
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:")
