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
