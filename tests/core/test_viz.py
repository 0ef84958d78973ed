"""Pictures: show_volume and ``mood-dpa show``."""

from __future__ import annotations

import numpy as np
import pytest

from mood_dpa.cli import main
from mood_dpa.data.phantoms import make_phantom, phantom_affine
from mood_dpa.errors import MoodError
from mood_dpa.viz import show_volume, slice_centre
from mood_dpa.volumes import write_volume

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _decode(path):
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == PNG_MAGIC
    return mpimg.imread(path)


@pytest.fixture(scope="module")
def brain():
    return make_phantom("brain", 32, 0, 0)


def _ball(shape, centre, radius):
    grid = np.indices(shape)
    return (sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2).astype(np.float32)


def test_show_writes_a_png(tmp_path, brain):
    out = show_volume(brain, tmp_path / "plain.png", title="brain")
    img = _decode(out)
    h, w = img.shape[:2]
    assert 300 <= h <= 1000 and 800 <= w <= 2000
    assert img[..., :3].std() > 0.05  # not a blank picture
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed away


def test_mask_contour_and_score_overlay_are_drawn(tmp_path, brain):
    mask = _ball(brain.shape, (20, 14, 17), 4)
    scores = np.clip(mask * 0.9 + 0.05, 0, 1)
    plain = _decode(show_volume(brain, tmp_path / "plain.png", center=slice_centre(brain.shape, mask)))
    over = _decode(show_volume(brain, tmp_path / "over.png", mask=mask, scores=scores))
    # the mask contour is red: strongly red pixels appear only with the overlay
    def red(im):
        return ((im[..., 0] > 0.8) & (im[..., 1] < 0.4) & (im[..., 2] < 0.4)).sum()

    assert red(over) > 20
    assert red(plain) == 0
    assert over.shape[1] > plain.shape[1]  # room for the colour bar


def test_slices_go_through_the_mask_centre():
    mask = _ball((32, 32, 32), (20, 9, 25), 3)
    assert slice_centre(mask.shape, mask) == (20, 9, 25)
    assert slice_centre((32, 30, 28), None) == (16, 15, 14)
    assert slice_centre((32, 32, 32), np.zeros((32, 32, 32))) == (16, 16, 16)


def test_wrong_shapes_are_refused(tmp_path, brain):
    with pytest.raises(MoodError, match="mask shape"):
        show_volume(brain, tmp_path / "x.png", mask=np.zeros((32, 32, 31)))
    with pytest.raises(MoodError, match="scores shape"):
        show_volume(brain, tmp_path / "x.png", scores=np.zeros((31, 32, 32)))
    with pytest.raises(MoodError):
        show_volume(brain[0], tmp_path / "x.png")
    with pytest.raises(MoodError):
        show_volume(brain, tmp_path / "x.jpg")
    with pytest.raises(MoodError):
        show_volume(brain, tmp_path / "x.png", center=(40, 1, 1))
    bad = brain.copy()
    bad[3, 3, 3] = np.nan
    with pytest.raises(MoodError):
        show_volume(bad, tmp_path / "x.png")
    assert not list(tmp_path.iterdir())


def test_cli_show(tmp_path, brain, capsys):
    vol = write_volume(tmp_path / "v.nii.gz", brain, affine=phantom_affine(32))
    mask = write_volume(tmp_path / "m.nii.gz", _ball(brain.shape, (16, 16, 16), 5), affine=phantom_affine(32))
    scores = write_volume(tmp_path / "s.nii.gz", np.full(brain.shape, 0.3, np.float32), affine=phantom_affine(32))
    png = tmp_path / "pic.png"
    with pytest.raises(SystemExit) as exc:
        main(["show", str(vol), "--mask", str(mask), "--scores", str(scores), "-o", str(png)])
    assert exc.value.code in (0, None)
    assert _decode(png).shape[0] >= 300
    assert "wrote" in capsys.readouterr().out


def test_cli_show_rejects_a_mask_of_the_wrong_shape(tmp_path, brain, capsys):
    vol = write_volume(tmp_path / "v.nii.gz", brain)
    mask = write_volume(tmp_path / "m.nii.gz", np.zeros((32, 32, 30), np.float32))
    png = tmp_path / "pic.png"
    with pytest.raises(SystemExit) as exc:
        main(["show", str(vol), "--mask", str(mask), "-o", str(png)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "shape" in err and len(err.splitlines()) == 1
    assert not png.exists()


def test_cli_show_missing_volume(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["show", str(tmp_path / "none.nii.gz"), "-o", str(tmp_path / "p.png")])
    assert exc.value.code == 2
    assert not (tmp_path / "p.png").exists()


def test_cli_show_center_option(tmp_path, brain, capsys):
    vol = write_volume(tmp_path / "v.nii.gz", brain)
    png = tmp_path / "pic.png"
    with pytest.raises(SystemExit) as exc:
        main(["show", str(vol), "--center", "10,12,14", "-o", str(png)])
    assert exc.value.code in (0, None) and png.exists()
    for bad in ("10,12", "a,b,c", "10,12,99"):
        with pytest.raises(SystemExit) as exc:
            main(["show", str(vol), "--center", bad, "-o", str(tmp_path / "bad.png")])
        assert exc.value.code == 2
    assert not (tmp_path / "bad.png").exists()


def test_show_accepts_a_volume_object(tmp_path, brain):
    from mood_dpa.volumes import read_volume

    vol = read_volume(write_volume(tmp_path / "v.nii.gz", brain))
    assert _decode(show_volume(vol, tmp_path / "v.png")).shape[0] >= 300


def test_log_scores_show_tiny_calibrated_scores_and_hide_the_rest(tmp_path, brain):
    mask = _ball(brain.shape, (16, 16, 16), 5)
    scores = np.where(mask > 0, 3e-3, 0.0).astype(np.float32)  # small but far above 1e-4
    centre = (16, 16, 16)
    linear = _decode(show_volume(brain, tmp_path / "lin.png", scores=scores, center=centre))
    log = _decode(show_volume(brain, tmp_path / "log.png", scores=scores, center=centre, log_scores=True))

    def coloured(im):  # saturated pixels in the three panels (the colour bar is on the right)
        rgb = im[:, : int(im.shape[1] * 0.85), :3]
        return int(((rgb.max(-1) - rgb.min(-1)) > 0.15).sum())

    # on a linear 0-1 scale 3e-3 has the colour of 0; on the log scale the ball is clearly coloured
    assert coloured(log) > 200 + 5 * coloured(linear)
    with pytest.raises(MoodError, match="log_scores"):
        show_volume(brain, tmp_path / "bad.png", scores=scores + 2.0, log_scores=True)
