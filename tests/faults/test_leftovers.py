"""What a failed or killed run leaves behind, and the permissions of what a run writes."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from faultkit import NUMPY_RUN, TORCH_RUN

from backproplab.cli.main import main
from backproplab.errors import ConfigError
from backproplab.training.run_dir import CLAIM_FILE, RunDir


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_run_that_fails_before_training_removes_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*TORCH_RUN, "--device", "cuda"]) == 2  # default --out: runs/mlp-torch-<time>
    assert list((tmp_path / "runs").iterdir()) == []
    assert main([*TORCH_RUN, "--device", "cuda", "--out", "mine"]) == 2
    assert not (tmp_path / "mine").exists()
    (tmp_path / "empty").mkdir()  # a directory the user made is left where it was
    assert main([*TORCH_RUN, "--device", "cuda", "--out", "empty"]) == 2
    assert (tmp_path / "empty").is_dir() and list((tmp_path / "empty").iterdir()) == []
    capsys.readouterr()


def test_a_failed_resume_keeps_everything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    assert main([*NUMPY_RUN, "--out", str(out)]) == 0
    before = sorted(p.name for p in out.iterdir())
    assert main(["train", "mlp-numpy", "--resume", str(out)]) == 2  # already trained 20 of 20 steps
    assert sorted(p.name for p in out.iterdir()) == before and CLAIM_FILE not in before
    capsys.readouterr()


def test_leftovers_of_a_run_killed_before_its_first_step_are_reused(tmp_path: Path) -> None:
    d = tmp_path / "r"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"trainer": "mlp-torch"}))
    (d / "metrics.jsonl").write_text("")
    (d / CLAIM_FILE).write_text("pid 1 on elsewhere\n")  # stale: nobody holds its lock
    (d / ".checkpoint.pt.abcd1234.tmp.pt").write_bytes(b"half")
    run = RunDir(d)
    assert sorted(p.name for p in d.iterdir()) == [CLAIM_FILE]
    run.release()
    assert list(d.iterdir()) == []


def test_a_directory_with_metrics_but_no_checkpoint_says_how_to_proceed(tmp_path: Path) -> None:
    d = tmp_path / "r"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"trainer": "mlp-torch"}))
    (d / "metrics.jsonl").write_text('{"step": 1, "train_loss": 2.3}\n')
    with pytest.raises(
        ConfigError, match=rf"cannot be resumed; delete it \(rm -r {d}\) to start again there"
    ):
        RunDir(d)
    (d / "checkpoint.pt").write_bytes(b"x")
    with pytest.raises(ConfigError, match=rf"continue it with --resume {d}"):
        RunDir(d)
    (d / "config.json").write_text("{}")
    assert sorted(p.name for p in d.iterdir()) == ["checkpoint.pt", "config.json", "metrics.jsonl"]


@pytest.fixture
def umask_027() -> Iterator[None]:
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_files_of_a_run_follow_the_umask(tmp_path: Path, umask_027: None, torch_one_thread: None) -> None:
    for args, name in ((NUMPY_RUN, "numpy"), (TORCH_RUN, "torch")):
        out = tmp_path / name
        assert main([*args, "--out", str(out)]) == 0
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
        assert set(modes.values()) == {0o640}, modes  # 0o666 & ~0o027, as open() makes them
        assert stat.S_IMODE(out.stat().st_mode) == 0o750
