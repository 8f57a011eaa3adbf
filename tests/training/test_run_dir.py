"""Run directories, metrics logs and atomic writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from backproplab.errors import ConfigError, DataError
from backproplab.training.run_dir import RunDir, read_metrics
from backproplab.utils.atomic import atomic_write_text


def test_metrics_append_read_and_truncate(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    for step in range(1, 6):
        run.log({"step": step, "train_loss": 1.0 / step})
    run.flush()
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 3, 4, 5]
    run.truncate_metrics(3)
    assert [r["step"] for r in read_metrics(tmp_path / "r")] == [1, 2, 3]
    run.log({"step": 4, "train_loss": 0.1})
    run.close()
    assert [r["step"] for r in read_metrics(tmp_path / "r")] == [1, 2, 3, 4]


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "tra')
    assert read_metrics(tmp_path) == [{"step": 1}]


def test_resume_needs_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a run directory"):
        RunDir(tmp_path, resume=True)
    RunDir(tmp_path / "fresh").save_config({"a": 1})
    assert RunDir(tmp_path / "fresh", resume=True).load_config() == {"a": 1}
    with pytest.raises(ConfigError, match="not empty"):
        RunDir(tmp_path / "fresh")


def test_atomic_write_keeps_the_old_file_on_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "summary.json"
    atomic_write_text(target, "old")

    def broken_replace(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("os.replace", broken_replace)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary file left


def test_atomic_writes_follow_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644  # as metrics.jsonl, not 0600
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o600


def test_stale_temp_files_are_recognised_and_removed(tmp_path: Path) -> None:
    from backproplab.utils.atomic import is_temp_file_name, remove_stale_temp_files

    names = [".checkpoint.pt.k2_8vx0a.tmp.pt", ".model.npz.abcdefgh.tmp.npz", ".summary.json.ABCD1234.tmp"]
    keep = ["checkpoint.pt", ".hidden", "notes.tmp", ".x.tmp"]
    for name in names + keep:
        (tmp_path / name).write_text("x")
    assert all(is_temp_file_name(n) for n in names) and not any(is_temp_file_name(n) for n in keep)
    removed = remove_stale_temp_files(tmp_path, "checkpoint.pt")
    assert [p.name for p in removed] == [names[0]]
    assert sorted(p.name for p in remove_stale_temp_files(tmp_path)) == sorted(names[1:])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


def test_a_run_directory_is_claimed_until_released(tmp_path: Path) -> None:
    from backproplab.errors import RunDirInUseError
    from backproplab.training.run_dir import CLAIM_FILE

    run = RunDir(tmp_path / "r")
    assert (tmp_path / "r" / CLAIM_FILE).is_file()
    with pytest.raises(RunDirInUseError, match="is in use by another run"):
        RunDir(tmp_path / "r")  # still empty, but taken
    run.release()
    assert list((tmp_path / "r").iterdir()) == []
    RunDir(tmp_path / "r").release()  # an empty directory left behind is free again
