"""Checkpoints of the PyTorch trainers: atomic writes, clear errors, exact resume, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from template_data import template_dataset, write_image_folder

from backproplab.cli.main import main
from backproplab.data import Dataset
from backproplab.errors import CheckpointError, ConfigError, DataError
from backproplab.training import convnet, mlp_torch
from backproplab.training.checkpoint import CHECKPOINT_VERSION, load_checkpoint, save_checkpoint
from backproplab.training.device_data import DeviceBatchSampler
from backproplab.training.interrupt import deferred_interrupts
from backproplab.training.numpy_checkpoint import check_config_match
from backproplab.training.torch_task import TorchTrainTask

#: Metrics of a resumed run must equal the uninterrupted run's; CPU ops are deterministic, so the
#: only slack allowed is float round-off in the JSON round trip (none expected).
RESUME_ATOL = 1e-6


def synthetic_dataset() -> Dataset:
    return template_dataset(n_train=240, n_test=80, side=6, noise=40, balanced=False)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic images as an image folder: these tests train through the command line (exit
    codes, one-line errors, --resume), and a resumed run reloads its data from its config."""
    return write_image_folder(synthetic_dataset(), tmp_path_factory.mktemp("data"))


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # reproducible and fast on a shared machine
    yield
    torch.set_num_threads(old)


def train_args(data_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "mlp-torch", "--data_dir", str(data_dir), "--dnn_hidden_units", "16",
            "--batch_size", "20", "--eval_freq", "10", "--optimizer", "adam", "--learning_rate", "3e-3",
            "--batchnorm", "--lr_schedule", "step", "--lr_step_size", "7", "--lr_gamma", "0.5",
            "--device", "cpu", "--out", str(out), *extra]  # fmt: skip


def metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_metrics(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert ra.keys() == rb.keys(), ra["step"]
        for k in ra:
            assert ra[k] == pytest.approx(rb[k], abs=RESUME_ATOL), (ra["step"], k)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> list[dict[str, Any]]:
    """Metrics of 40 uninterrupted steps (a module fixture: one_thread is set by hand)."""
    out = tmp_path_factory.mktemp("full") / "run"
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(train_args(data_dir, out, "--max_steps", "40")) == 0
    finally:
        torch.set_num_threads(old)
    records = metrics(out)
    assert [r["step"] for r in records] == list(range(1, 41))
    return records


# ---------------------------------------------------------------------- resume equals uninterrupted


def test_resume_after_a_shorter_run_gives_the_uninterrupted_metrics(
    data_dir: Path, tmp_path: Path, uninterrupted: list[dict[str, Any]]
) -> None:
    out = tmp_path / "run"
    assert main(train_args(data_dir, out, "--max_steps", "20")) == 0
    ckpt = load_checkpoint(out / "checkpoint.pt", "mlp-torch")
    assert ckpt["step"] == 20 and ckpt["config"]["max_steps"] == 20
    assert main(["train", "mlp-torch", "--resume", str(out), "--max_steps", "40"]) == 0
    assert_same_metrics(metrics(out), uninterrupted)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["max_steps"] == 40 and cfg["dnn_hidden_units"] == "16"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 40
    assert summary["final_test_acc"] == uninterrupted[-1]["test_acc"]
    assert summary["best_test_acc"] == max(r["test_acc"] for r in uninterrupted if "test_acc" in r)


def test_ctrl_c_saves_a_checkpoint_exits_130_and_resumes_exactly(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uninterrupted: list[dict[str, Any]]
) -> None:
    out = tmp_path / "run"
    real_step = TorchTrainTask.train_step
    calls = {"n": 0}

    def step_then_interrupt(self: TorchTrainTask) -> float:
        calls["n"] += 1
        if calls["n"] == 14:  # inside step 14, before any update: 13 steps are complete
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(TorchTrainTask, "train_step", step_then_interrupt)
    assert main(train_args(data_dir, out, "--max_steps", "40")) == 130
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 13
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    assert [r["step"] for r in metrics(out)] == list(range(1, 14))
    monkeypatch.setattr(TorchTrainTask, "train_step", real_step)
    assert main(["train", "mlp-torch", "--resume", str(out)]) == 0
    assert_same_metrics(metrics(out), uninterrupted)


def test_sigint_mid_step_finishes_the_step_before_saving(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uninterrupted: list[dict[str, Any]]
) -> None:
    """A real SIGINT during optimizer.step: the step completes, then training stops with its checkpoint."""
    out = tmp_path / "run"
    real_step = torch.optim.Adam.step
    calls = {"n": 0}

    def step_with_sigint(self: torch.optim.Adam, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 17:
            os.kill(os.getpid(), signal.SIGINT)  # delivered before the update below is done
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step_with_sigint)
    assert main(train_args(data_dir, out, "--max_steps", "40")) == 130
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 17
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    assert main(["train", "mlp-torch", "--resume", str(out)]) == 0
    assert_same_metrics(metrics(out), uninterrupted)


def test_deferred_interrupts_wait_for_the_step_and_a_second_one_forces() -> None:
    with deferred_interrupts() as flag:
        os.kill(os.getpid(), signal.SIGINT)
        assert flag.pending and not flag.forced  # no exception in the middle of the work
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        assert flag.forced
        with pytest.raises(KeyboardInterrupt):
            flag.raise_if_pending()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ---------------------------------------------------------------------- resume errors


def test_resume_rejects_other_flags_and_finished_runs(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(train_args(data_dir, out, "--max_steps", "10")) == 0
    capsys.readouterr()
    assert main(["train", "mlp-torch", "--resume", str(out), "--learning_rate", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "only --max_steps and --device may be given with it, got --learning_rate" in err
    assert err.count("\n") == 1
    assert main(["train", "mlp-torch", "--resume", str(out)]) == 2
    assert "has already trained for 10 steps; pass --max_steps larger than 10" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="it is a 'mlp-torch' run"):
        convnet.run(convnet.ConvNetConfig(resume=str(out)), progress=False)
    with pytest.raises(DataError, match="not a run directory"):
        mlp_torch.run(mlp_torch.MLPTorchConfig(resume=str(tmp_path / "nothing")), progress=False)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_checkpoint_is_a_one_line_error(
    data_dir: Path, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(train_args(data_dir, out, "--max_steps", "10")) == 0
    path = out / "checkpoint.pt"
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": os.urandom(4096), "empty": b""}[damage])
    capsys.readouterr()
    assert main(["train", "mlp-torch", "--resume", str(out), "--max_steps", "20"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: checkpoint {path} is corrupt or unreadable (")
    assert err.count("\n") == 1


def test_checkpoint_of_another_architecture_is_a_one_line_error(data_dir: Path, tmp_path: Path) -> None:
    small, big = tmp_path / "small", tmp_path / "big"
    assert main(train_args(data_dir, small, "--max_steps", "10")) == 0
    assert main(train_args(data_dir, big, "--max_steps", "10", "--dnn_hidden_units", "32")) == 0
    (small / "checkpoint.pt").write_bytes((big / "checkpoint.pt").read_bytes())
    with pytest.raises(
        CheckpointError, match=r"written with --dnn_hidden_units '32', the run has --dnn_hidden_units '16'"
    ):
        mlp_torch.run(mlp_torch.MLPTorchConfig(resume=str(small), max_steps=20), progress=False)
    # Even with matching configs, state dicts of another shape are caught with one line.
    ckpt = load_checkpoint(big / "checkpoint.pt")
    ckpt["config"]["dnn_hidden_units"] = "16"
    save_checkpoint(
        small / "checkpoint.pt", {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    )
    with pytest.raises(
        CheckpointError, match=r"the saved model does not match this run \(RuntimeError: "
    ) as e:
        mlp_torch.run(mlp_torch.MLPTorchConfig(resume=str(small), max_steps=20), progress=False)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------- the file format


def minimal_state(**over: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "trainer": "mlp-torch", "step": 3, "config": {"a": 1}, "model": {"w": torch.arange(4.0)},
        "optimizer": {}, "scheduler": None, "sampler": {}, "rng": {"torch_cpu": torch.get_rng_state()},
    }  # fmt: skip
    state.update(over)
    return state


def test_round_trip_and_atomic_replace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, minimal_state())
    ckpt = load_checkpoint(path, "mlp-torch")
    assert ckpt["step"] == 3 and ckpt["version"] == CHECKPOINT_VERSION
    assert torch.equal(ckpt["model"]["w"], torch.arange(4.0))
    before = path.read_bytes()

    def crash(obj: Any, f: Any) -> None:
        f.write(b"half a checkpoint")  # save_checkpoint hands torch.save an open file
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, minimal_state(step=4))
    assert path.read_bytes() == before  # the old checkpoint is whole
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left


def test_foreign_and_incomplete_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.pt"
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(path)
    torch.save({"model": {}}, path)
    with pytest.raises(CheckpointError, match="is not a backproplab checkpoint"):
        load_checkpoint(path)
    save_checkpoint(path, minimal_state())
    with pytest.raises(CheckpointError, match="written by trainer 'mlp-torch', not 'convnet'"):
        load_checkpoint(path, "convnet")
    payload = load_checkpoint(path)
    payload["version"] = CHECKPOINT_VERSION + 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=f"format version {CHECKPOINT_VERSION + 1}"):
        load_checkpoint(path)
    del payload["sampler"]
    payload["version"] = CHECKPOINT_VERSION
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"incomplete: missing \['sampler'\]"):
        load_checkpoint(path)
    with pytest.raises(ValueError, match="missing"):
        save_checkpoint(path, {"trainer": "x"})


def test_config_match_names_the_first_differing_flag() -> None:
    check_config_match("c.pt", {"a": 1, "max_steps": 5}, {"a": 1, "max_steps": 9}, ignore=("max_steps",))
    with pytest.raises(CheckpointError, match="written with --a 1, the run has --a 2"):
        check_config_match("c.pt", {"a": 1}, {"a": 2}, ignore=())


def test_sampler_state_continues_the_same_batches() -> None:
    a = DeviceBatchSampler(23, 5, torch.Generator().manual_seed(3))
    for _ in range(6):  # into the second epoch
        a.next()
    state = a.state_dict()
    want = [a.next() for _ in range(9)]
    b = DeviceBatchSampler(23, 5, torch.Generator().manual_seed(99))
    b.load_state_dict(state)
    got = [b.next() for _ in range(9)]
    assert all(torch.equal(x, y) for x, y in zip(got, want, strict=True))
    s = DeviceBatchSampler(23, 5, torch.Generator().manual_seed(1))
    first_epoch = torch.cat([s.next() for _ in range(4)])  # 4 batches of 5; 3 indices dropped
    assert len(set(first_epoch.tolist())) == 20 and s.epoch == 0
    s.next()
    assert s.epoch == 1
    with pytest.raises(CheckpointError, match="23 examples in batches of 5"):
        DeviceBatchSampler(24, 5, torch.Generator()).load_state_dict(state)
    with pytest.raises(DataError, match=r"--batch_size must be in \[1, 4\]"):
        DeviceBatchSampler(4, 5, torch.Generator())


def test_checkpoint_from_another_device_type_is_refused(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(train_args(data_dir, out, "--max_steps", "10")) == 0
    ckpt = load_checkpoint(out / "checkpoint.pt")
    ckpt["device"] = "cuda"
    torch.save(ckpt, out / "checkpoint.pt")
    with pytest.raises(
        CheckpointError, match="written on cuda, this run is on cpu: resume with --device cuda"
    ):
        mlp_torch.run(mlp_torch.MLPTorchConfig(resume=str(out), max_steps=20), progress=False)
