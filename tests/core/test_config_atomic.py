import pytest

from mood_dpa.atomic import atomic_dir, write_text
from mood_dpa.config import StrictModel, dump_config, load_config
from mood_dpa.errors import MoodError


class Optim(StrictModel):
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)


class Cfg(StrictModel):
    name: str
    steps: int = 10
    optim: Optim = Optim()


def test_load_and_override(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: a\noptim:\n  lr: 0.002\n")
    cfg = load_config(Cfg, p, ["steps=7", "optim.betas=[0.5, 0.9]"])
    assert (cfg.name, cfg.steps, cfg.optim.lr, cfg.optim.betas) == ("a", 7, 0.002, (0.5, 0.9))
    assert load_config(Cfg, tmp_path / "c.yaml").steps == 10
    again = tmp_path / "d.yaml"
    again.write_text(dump_config(cfg))
    assert load_config(Cfg, again) == cfg


@pytest.mark.parametrize(
    "text, overrides, expected",
    [
        ("name: a\nstpes: 3\n", [], "stpes: unknown key"),
        ("name: a\noptim:\n  lr: fast\n", [], "optim.lr: Input should be a valid number"),
        ("steps: 3\n", [], "name: Field required"),
        ("name: [a\n", [], "invalid YAML"),
        ("name: a\n", ["optim.momentum=3"], "optim.momentum: unknown key"),
        ("name: a\n", ["steps"], "expected key=value"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path, text, overrides, expected):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(MoodError) as err:
        load_config(Cfg, p, overrides)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)
    if "--set" not in str(err.value):
        assert str(p) in str(err.value)


def test_atomic_dir_replaces_whole_or_not_at_all(tmp_path):
    dest = tmp_path / "out"
    with atomic_dir(dest) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(dest) as tmp:
            (tmp / "b").write_text("2")
            raise RuntimeError("killed")
    assert sorted(p.name for p in dest.iterdir()) == [".mood-dpa", "a"]  # the folder carries the tool's marker
    with atomic_dir(dest) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in dest.iterdir()) == [".mood-dpa", "c"]
    write_text(tmp_path / "t.txt", "hello")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "t.txt"]


def test_atomic_outputs_get_umask_permissions(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "f.txt", "x")
        with atomic_dir(tmp_path / "d"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
