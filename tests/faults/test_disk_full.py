"""A full disk during a save: one line that says so and what was kept; the previous file is whole."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultkit import NUMPY_RUN, TORCH_RUN, one_error_line

from backproplab.cli.main import main
from backproplab.errors import BackproplabError, DiskFullError
from backproplab.training.checkpoint import load_checkpoint
from backproplab.utils import atomic
from backproplab.utils.atomic import atomic_write_text, is_temp_file_name


def fail_nth_commit(monkeypatch: pytest.MonkeyPatch, name: str, n: int) -> None:
    """Make the ``n``-th atomic write of file ``name`` fail as a full disk does."""
    commit = atomic._commit
    seen = {"n": 0}

    def full(tmp: Path, dest: Path) -> None:
        if dest.name == name:
            seen["n"] += 1
            if seen["n"] == n:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        commit(tmp, dest)

    monkeypatch.setattr(atomic, "_commit", full)


def no_temp_files(run: Path) -> bool:
    return not [p for p in run.iterdir() if is_temp_file_name(p.name)]


def test_disk_full_is_one_error_that_is_also_an_oserror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "summary.json"
    atomic_write_text(target, "old")
    fail_nth_commit(monkeypatch, "summary.json", 1)
    with pytest.raises(DiskFullError) as e:
        atomic_write_text(target, "new")
    assert isinstance(e.value, BackproplabError) and isinstance(e.value, OSError)
    assert e.value.errno == errno.ENOSPC
    assert str(e.value) == (
        f"no space left on device while writing {target}; the previous summary.json, if any, is "
        f"unchanged; {tmp_path} keeps summary.json; free some space and try again"
    )
    assert target.read_text() == "old" and no_temp_files(tmp_path)


def test_torch_run_with_a_full_disk_at_its_second_checkpoint(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    torch_one_thread: None,
) -> None:
    out = tmp_path / "r"
    fail_nth_commit(monkeypatch, "checkpoint.pt", 2)
    assert main([*TORCH_RUN, "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"no space left on device while writing {out / 'checkpoint.pt'}" in line
    kept = line.split("keeps ", 1)[1]
    assert all(
        name in kept for name in ("checkpoint.pt", "config.json", "metrics.jsonl", "events.out.tfevents.")
    )
    assert line.endswith(f"; free some space and continue the run with --resume {out}")
    assert load_checkpoint(out / "checkpoint.pt", "mlp-torch")["step"] == 10  # the previous one, whole
    assert no_temp_files(out)
    monkeypatch.undo()  # space freed: the run continues from its last checkpoint
    assert main(["train", "mlp-torch", "--resume", str(out)]) == 0
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 21))


def test_numpy_run_with_a_full_disk_when_saving_its_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r"
    fail_nth_commit(monkeypatch, "model.npz", 1)
    assert main([*NUMPY_RUN, "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"no space left on device while writing {out / 'model.npz'}" in line and "metrics.jsonl" in line
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 21))  # every metric is kept
    assert not (out / "model.npz").exists() and no_temp_files(out)


def test_metrics_log_on_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from backproplab.training.run_dir import RunDir

    run = RunDir(tmp_path / "r")
    run.log({"step": 1, "train_loss": 1.0})

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(
        DiskFullError, match=r"no space left on device while writing .*metrics.jsonl; .*keeps"
    ):
        run.flush()
    monkeypatch.undo()
    run.close()  # the failed handle was dropped: closing again is quiet
    run.release()


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 100 KiB tmpfs (root only); skipped where mounting is not possible."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100k", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_real_full_file_system(
    tiny_tmpfs: Path, capsys: pytest.CaptureFixture[str], torch_one_thread: None
) -> None:
    out = tiny_tmpfs / "r"  # room for one 56 KiB checkpoint, not for the second one beside it
    assert main([*TORCH_RUN, "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "no space left on device while writing" in line and "config.json" in line, line
    assert load_checkpoint(out / "checkpoint.pt", "mlp-torch")["step"] == 10
    assert no_temp_files(out)
