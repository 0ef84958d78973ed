"""The raw-map memo: one volume is scored once per member model however many detectors (or tuning choices)
use it, a hit equals scoring again bit for bit, and anything a raw map depends on changes the key."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import blob_volume

from mood_dpa.inference.detector import Member, ShellDetector
from mood_dpa.inference.map_cache import (
    RawMapCache,
    active_cache,
    member_key,
    raw_map_cache,
    volume_digest,
)
from mood_dpa.scoring.standardise import Standardiser
from mood_dpa.scoring.volume_inferer import VolumeModel


def _counting(calls: list, scale: float = 1.0) -> VolumeModel:
    def raw(v):
        calls.append(1)
        return v.float() * scale + 0.01 * v.float().roll(1, 0)  # not symmetric: a mirrored view differs
    return VolumeModel(raw_fn=raw, name="probe")


def test_no_memo_unless_one_is_open():
    calls: list = []
    det = ShellDetector([Member("a", "histogram", [_counting(calls)], key="k")], device="cpu")
    vol = blob_volume((12, 12, 12))
    assert active_cache() is None
    det.member_raw(vol)
    det.member_raw(vol)
    assert len(calls) == 2


def test_a_second_detector_reuses_the_maps_and_a_hit_equals_scoring_again():
    vol, other = blob_volume((12, 12, 12), seed=1), blob_volume((12, 12, 12), seed=2)
    calls: list = []
    uncached = ShellDetector([Member("a", "histogram", [_counting([])], flips=(0, 2))], device="cpu").member_raw(vol)[0]
    with raw_map_cache() as cache:
        first = ShellDetector([Member("a", "histogram", [_counting(calls)], key="k", flips=(0, 2))], device="cpu")
        a = first.member_raw(vol)[0]
        assert len(calls) == 3  # the plain view and two mirrored ones
        # another detector over the same member (e.g. the cross-method one): no scoring at all
        second = ShellDetector([Member("a", "histogram", [_counting(calls)], key="k", flips=(0, 2)),
                                Member("b", "histogram", [_counting([], 2.0)], key="other")], device="cpu")
        b = second.member_raw(vol)[0]
        assert len(calls) == 3 and cache.hits == 3
        assert torch.equal(a, uncached) and torch.equal(b, uncached)
        second.member_raw(other)  # another volume: scored
        assert len(calls) == 6
        # a member without a key is never memoised
        keyless = ShellDetector([Member("a", "histogram", [_counting(calls)])], device="cpu")
        keyless.member_raw(vol)
        keyless.member_raw(vol)
        assert len(calls) == 8
    assert active_cache() is None


def test_handed_out_maps_are_copies():
    with raw_map_cache():
        det = ShellDetector([Member("a", "histogram", [_counting([])], key="k")], device="cpu")
        vol = blob_volume((12, 12, 12))
        view = det.mirror_maps(vol, det.members[0], ())[None]
        keep = view.clone()
        view.add_(5.0)  # a caller that changes its map in place
        assert torch.equal(det.mirror_maps(vol, det.members[0], ())[None], keep)


def test_the_standardiser_and_the_run_settings_are_part_of_the_key():
    vol = blob_volume((12, 12, 12), seed=3)
    std = Standardiser.fit([blob_volume((12, 12, 12), seed=s) ** 1.3 for s in range(3)])
    calls: list = []
    with raw_map_cache():
        plain = ShellDetector([Member("a", "histogram", [_counting(calls)], key="k")], device="cpu")
        standardised = ShellDetector([Member("a", "histogram", [_counting(calls)], key="k")], device="cpu", standardiser=std)
        batched = ShellDetector([Member("a", "histogram", [_counting(calls)], key="k")], device="cpu", batch_size=3)
        p, s = plain.member_raw(vol)[0], standardised.member_raw(vol)[0]
        batched.member_raw(vol)
        assert len(calls) == 3 and not torch.equal(p, s)
        # the standardised hit is the standardised map
        assert torch.equal(standardised.member_raw(vol)[0], s) and len(calls) == 3


def test_least_recently_used_maps_go_when_the_budget_is_full():
    one = torch.zeros(4, 4, 4)  # 256 bytes
    cache = RawMapCache(budget_bytes=2 * 256)
    cache.put(("a",), one)
    cache.put(("b",), one + 1)
    assert cache.get(("a",), "cpu") is not None  # a is now the most recent
    cache.put(("c",), one + 2)
    assert cache.get(("b",), "cpu") is None and len(cache) == 2 and cache.bytes == 512
    assert torch.equal(cache.get(("c",), "cpu"), one + 2)
    cache.put(("big",), torch.zeros(8, 8, 8))  # larger than the whole budget: not kept, nothing evicted
    assert len(cache) == 2 and cache.get(("big",), "cpu") is None
    with pytest.raises(ValueError):
        RawMapCache(-1)


def test_keys_follow_the_model_bytes_and_the_volume_bytes(tmp_path):
    f = tmp_path / "m.npz"
    f.write_bytes(b"weights-1")
    k1 = member_key("histogram", "mean", [(f, 1.0)])
    assert k1 == member_key("histogram", "mean", [(f, 1.0)])
    assert k1 != member_key("histogram", "mean", [(f, 2.0)]) != member_key("histogram", "max", [(f, 1.0)])
    f.write_bytes(b"weights-2")  # retrained under the same name
    assert member_key("histogram", "mean", [(f, 1.0)]) != k1
    vol = blob_volume((8, 8, 8))
    changed = vol.copy()
    changed[4, 4, 4] += 1e-6
    assert volume_digest(vol) == volume_digest(torch.from_numpy(vol.copy()))
    assert volume_digest(vol) != volume_digest(changed)
    assert volume_digest(vol) != volume_digest(vol.reshape(8, 64))


def test_detector_files_share_their_members_maps_and_predict_the_same(tmp_path):
    """Two detector files over one baseline file (alone, and beside a second one): the second detector scores
    nothing the first already did, and both predict exactly what they predict without the memo."""
    from conftest import blob_scans_and_baseline, fit_baseline

    from mood_dpa.inference.loading import load_detector
    from mood_dpa.inference.tuning import fit_detector_file

    scans, h = blob_scans_and_baseline(tmp_path)
    fit_baseline(sorted(scans.iterdir()), tmp_path / "h2.npz", bins=16, calibration_volumes=4)
    fit_detector_file(tmp_path / "one.yaml", [h], scans, samples_per_volume=500, progress=False)
    fit_detector_file(tmp_path / "two.yaml", [h, tmp_path / "h2.npz"], scans, groups=["a", "b"], samples_per_volume=500,
                      progress=False)
    vols = [blob_volume((16, 16, 16), seed=s) for s in (11, 12)]
    want = {}
    for name in ("one", "two"):
        det = load_detector(tmp_path / f"{name}.yaml", device="cpu")
        want[name] = [det.score_volume(v) for v in vols]
        assert all(m.key is None for m in det.members)  # no memo open: no model file was hashed
    with raw_map_cache() as cache:
        for name in ("one", "two"):
            det = load_detector(tmp_path / f"{name}.yaml", device="cpu")
            for v, w in zip(vols, want[name]):
                np.testing.assert_array_equal(det.score_volume(v), w)
        # one.yaml: 2 misses; two.yaml: h.npz's 2 maps are hits, h2.npz's 2 are misses
        assert (cache.hits, cache.misses) == (2, 4)
