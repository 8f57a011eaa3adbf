"""Checkpoints of the NumPy trainers: exact resume, Ctrl-C, atomic writes, clear errors, no torch."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from template_data import template_dataset, write_image_folder
from torch_blocker import run_without_torch

from backproplab.cli.main import main
from backproplab.data import BatchIterator, Dataset
from backproplab.errors import CheckpointError, ConfigError
from backproplab.nn.optim import SGD, Adam
from backproplab.training import convnet_numpy, mlp_numpy
from backproplab.training.numpy_checkpoint import (
    CHECKPOINT_VERSION,
    load_npz_checkpoint,
    save_npz_checkpoint,
)
from backproplab.training.numpy_task import (
    NumpyTrainTask,
    batch_iterator_state,
    load_batch_iterator_state,
)

#: Steps of the uninterrupted runs, and where the interrupted ones stop.
MLP_STEPS, MLP_EVAL = 40, 10
CONV_STEPS, CONV_EVAL = 12, 4


def mlp_data() -> Dataset:
    return template_dataset(n_train=240, n_test=80, side=6, noise=150, balanced=False)  # losses stay > 0


def conv_data() -> Dataset:
    return template_dataset(n_train=16, n_test=12, side=8, noise=30, balanced=True)


# These tests train through the command line (exit codes, one-line errors, --resume), on the synthetic
# images written as image folders; a resumed run reloads its data from its config.
@pytest.fixture(scope="module")
def mlp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_folder(mlp_data(), tmp_path_factory.mktemp("mlp-data"))


@pytest.fixture(scope="module")
def conv_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_folder(conv_data(), tmp_path_factory.mktemp("conv-data"))


def mlp_args(data_dir: Path, out: Path, *extra: str) -> list[str]:
    """Adam (moments and step counts to restore), 20-sample batches: 12 per epoch."""
    return ["train", "mlp-numpy", "--data_dir", str(data_dir), "--dnn_hidden_units", "16",
            "--batch_size", "20", "--eval_freq", str(MLP_EVAL), "--optimizer", "adam",
            "--learning_rate", "3e-3", "--init", "torch", "--out", str(out), *extra]  # fmt: skip


def conv_args(data_dir: Path, out: Path, optimizer: str, *extra: str) -> list[str]:
    """BatchNorm running statistics, augmentation, a schedule fixed at CONV_STEPS, 2 batches per epoch;
    SGD with Nesterov momentum (buffers to restore)."""
    return ["train", "convnet-numpy", "--data_dir", str(data_dir), "--batch_size", "8",
            "--learning_rate", "1e-3", "--eval_freq", str(CONV_EVAL), "--eval_batch_size", "5",
            "--augment", "--lr_schedule", "cosine", "--schedule_steps", str(CONV_STEPS),
            "--optimizer", optimizer, "--out", str(out),
            *(["--momentum", "0.9", "--nesterov"] if optimizer == "sgd" else []), *extra]  # fmt: skip


def metrics_text(run: Path) -> str:
    return (run / "metrics.jsonl").read_text()


def steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in metrics_text(run).splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, mlp_dir: Path, conv_dir: Path) -> dict[str, str]:
    """metrics.jsonl of the uninterrupted runs: the MLP (Adam), the ConvNet with Adam and with SGD."""
    root = tmp_path_factory.mktemp("full")
    assert main(mlp_args(mlp_dir, root / "mlp", "--max_steps", str(MLP_STEPS))) == 0
    for opt in ("adam", "sgd"):
        assert main(conv_args(conv_dir, root / opt, opt, "--max_steps", str(CONV_STEPS))) == 0
    out = {name: metrics_text(root / name) for name in ("mlp", "adam", "sgd")}
    assert steps(root / "mlp") == list(range(1, MLP_STEPS + 1))
    assert steps(root / "adam") == list(range(1, CONV_STEPS + 1))
    assert out["adam"] != out["sgd"]
    return out


# ---------------------------------------------------------------------- resume equals uninterrupted


def test_mlp_resume_after_a_shorter_run_gives_the_same_metrics_bit_for_bit(
    mlp_dir: Path, tmp_path: Path, uninterrupted: dict[str, str]
) -> None:
    out = tmp_path / "run"
    assert main(mlp_args(mlp_dir, out, "--max_steps", "20")) == 0
    ckpt = load_npz_checkpoint(out / "checkpoint.npz", "mlp-numpy")
    assert ckpt["step"] == 20 and ckpt["config"]["max_steps"] == 20
    exp_avg = ckpt["optimizer"]["state"][0]["exp_avg"]
    assert exp_avg.shape == (16, 108) and exp_avg.dtype == np.float32 and np.abs(exp_avg).max() > 0
    assert int(ckpt["optimizer"]["state"][0]["step"]) == 20
    assert main(["train", "mlp-numpy", "--resume", str(out), "--max_steps", str(MLP_STEPS)]) == 0
    assert metrics_text(out) == uninterrupted["mlp"]
    assert json.loads((out / "config.json").read_text())["max_steps"] == MLP_STEPS
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == MLP_STEPS
    evals = [json.loads(line) for line in uninterrupted["mlp"].splitlines() if "test_acc" in line]
    assert summary["best_test_acc"] == max(r["test_acc"] for r in evals)
    assert load_npz_checkpoint(out / "checkpoint.npz")["step"] == MLP_STEPS


def test_mlp_ctrl_c_saves_a_checkpoint_exits_130_and_resumes_exactly(
    mlp_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uninterrupted: dict[str, str]
) -> None:
    out = tmp_path / "run"
    real_step = NumpyTrainTask.train_step
    calls = {"n": 0}

    def step_then_interrupt(self: NumpyTrainTask) -> float:
        calls["n"] += 1
        if calls["n"] == 14:  # inside step 14, before any update: 13 steps are complete (mid-epoch)
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(NumpyTrainTask, "train_step", step_then_interrupt)
    assert main(mlp_args(mlp_dir, out, "--max_steps", str(MLP_STEPS))) == 130
    ckpt = load_npz_checkpoint(out / "checkpoint.npz")
    assert ckpt["step"] == 13 and ckpt["batches"]["pos"] == 1 and ckpt["batches"]["epoch"] == 1
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    assert steps(out) == list(range(1, 14))
    monkeypatch.setattr(NumpyTrainTask, "train_step", real_step)
    assert main(["train", "mlp-numpy", "--resume", str(out)]) == 0
    assert metrics_text(out) == uninterrupted["mlp"]


def test_real_sigint_mid_step_finishes_the_step_before_saving(
    mlp_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uninterrupted: dict[str, str]
) -> None:
    out = tmp_path / "run"
    real_step = Adam.step
    calls = {"n": 0}

    def step_with_sigint(self: Adam) -> None:
        calls["n"] += 1
        if calls["n"] == 17:
            os.kill(os.getpid(), signal.SIGINT)  # delivered before the update below is done
        real_step(self)

    monkeypatch.setattr(Adam, "step", step_with_sigint)
    assert main(mlp_args(mlp_dir, out, "--max_steps", str(MLP_STEPS))) == 130
    assert load_npz_checkpoint(out / "checkpoint.npz")["step"] == 17
    monkeypatch.setattr(Adam, "step", real_step)
    assert main(["train", "mlp-numpy", "--resume", str(out)]) == 0
    assert metrics_text(out) == uninterrupted["mlp"]


@pytest.mark.parametrize(("optimizer", "stop", "how"), [("adam", 5, "ctrl-c"), ("sgd", 8, "shorter run")])
def test_convnet_resume_gives_the_same_metrics_bit_for_bit(
    conv_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    uninterrupted: dict[str, str],
    optimizer: str,
    stop: int,
    how: str,
) -> None:
    """Adam moments or SGD momentum, BatchNorm running statistics, the augmentation generator, the
    cosine schedule, and a permutation cut mid-epoch (Ctrl-C after step 5) or at an epoch boundary
    (a shorter run of 8 steps, which ends with an evaluation the longer run also has)."""
    out = tmp_path / "run"
    if how == "ctrl-c":
        real_step = NumpyTrainTask.train_step
        calls = {"n": 0}

        def step_then_interrupt(self: NumpyTrainTask) -> float:
            calls["n"] += 1
            if calls["n"] == stop + 1:
                raise KeyboardInterrupt
            return real_step(self)

        monkeypatch.setattr(NumpyTrainTask, "train_step", step_then_interrupt)
        assert main(conv_args(conv_dir, out, optimizer, "--max_steps", str(CONV_STEPS))) == 130
        monkeypatch.setattr(NumpyTrainTask, "train_step", real_step)
    else:
        assert main(conv_args(conv_dir, out, optimizer, "--max_steps", str(stop))) == 0
    ckpt = load_npz_checkpoint(out / "checkpoint.npz", "convnet-numpy")
    assert ckpt["step"] == stop and ckpt["scheduler"]["last_epoch"] == stop
    assert ckpt["batches"]["pos"] == (1 if how == "ctrl-c" else 2)
    assert int(ckpt["model"]["preact1.bn.num_batches_tracked"]) == stop
    assert ckpt["rng"]["augment"]["bit_generator"] == "PCG64"
    buffers = ckpt["optimizer"]["state"][0]
    assert set(buffers) == ({"step", "exp_avg", "exp_avg_sq"} if optimizer == "adam" else {"momentum_buffer"})
    assert main(["train", "convnet-numpy", "--resume", str(out), "--max_steps", str(CONV_STEPS)]) == 0
    assert metrics_text(out) == uninterrupted[optimizer]


def test_extending_a_convnet_run_keeps_its_schedule(conv_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["train", "convnet-numpy", "--data_dir", str(conv_dir), "--batch_size", "8", "--max_steps", "4",
            "--eval_freq", "2", "--lr_schedule", "onecycle", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert json.loads((out / "config.json").read_text())["schedule_steps"] == 4
    assert main(["train", "convnet-numpy", "--resume", str(out), "--max_steps", "6"]) == 0
    records = [json.loads(line) for line in metrics_text(out).splitlines()]
    lrs = [r["lr"] for r in records if "lr" in r]
    assert [r["step"] for r in records if "lr" in r] == [2, 4, 6]
    assert lrs[-1] == 0.0 and lrs[-2] == 0.0  # past the end of its 4-step schedule, as a single run


# ---------------------------------------------------------------------- resume errors


def test_resume_rejects_other_flags_finished_runs_and_other_trainers(
    mlp_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(mlp_args(mlp_dir, out, "--max_steps", "10")) == 0
    capsys.readouterr()
    assert main(["train", "mlp-numpy", "--resume", str(out), "--learning_rate", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "only --max_steps may be given with it, got --learning_rate" in err and err.count("\n") == 1
    assert main(["train", "mlp-numpy", "--resume", str(out)]) == 2
    assert "has already trained for 10 steps; pass --max_steps larger than 10" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="it is a 'mlp-numpy' run"):
        convnet_numpy.run(convnet_numpy.ConvNetNumpyConfig(resume=str(out)), progress=False)
    (out / "checkpoint.npz").unlink()
    with pytest.raises(CheckpointError, match=r"no checkpoint at .*checkpoint\.npz: nothing to resume"):
        mlp_numpy.run(mlp_numpy.MLPNumpyConfig(resume=str(out), max_steps=20), progress=False)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "flipped"])
def test_corrupt_checkpoint_is_a_one_line_error(
    mlp_dir: Path, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(mlp_args(mlp_dir, out, "--max_steps", "10")) == 0
    path = out / "checkpoint.npz"
    data = path.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF  # inside an array's bytes: the zip CRC catches it
    damaged = {"truncate": data[: len(data) // 2], "garbage": os.urandom(4096), "empty": b"",
               "flipped": bytes(flipped)}  # fmt: skip
    path.write_bytes(damaged[damage])
    capsys.readouterr()
    assert main(["train", "mlp-numpy", "--resume", str(out), "--max_steps", "20"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: checkpoint {path} is corrupt or unreadable (")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_foreign_incomplete_and_other_version_files_are_refused(mlp_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(mlp_args(mlp_dir, out, "--max_steps", "10")) == 0
    path = out / "checkpoint.npz"
    ckpt = load_npz_checkpoint(path)
    (out / "model.npz").replace(path)  # a model file is not a checkpoint
    with pytest.raises(CheckpointError, match="is not a backproplab checkpoint"):
        load_npz_checkpoint(path)
    with open(path, "wb") as fh:
        np.save(fh, np.arange(3))  # a plain .npy array
    with pytest.raises(CheckpointError, match="is not a backproplab checkpoint"):
        load_npz_checkpoint(path)
    state = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    save_npz_checkpoint(path, state)
    with pytest.raises(CheckpointError, match="written by trainer 'mlp-numpy', not 'convnet-numpy'"):
        load_npz_checkpoint(path, "convnet-numpy")
    np.savez(path, __meta__=np.array(json.dumps({**ckpt, "model": {}, "optimizer": {}, "batches": {},
                                                 "version": CHECKPOINT_VERSION + 1})))  # fmt: skip
    with pytest.raises(CheckpointError, match=f"format version {CHECKPOINT_VERSION + 1}"):
        load_npz_checkpoint(path)
    with pytest.raises(ValueError, match=r"missing \['step'"):
        save_npz_checkpoint(path, {"trainer": "x"})
    meta = {"format": "backproplab-numpy-checkpoint", "version": CHECKPOINT_VERSION, "trainer": "x"}
    np.savez(path, __meta__=np.array(json.dumps(meta)))
    with pytest.raises(CheckpointError, match=r"incomplete: missing \['step', 'config'"):
        load_npz_checkpoint(path)


def test_checkpoint_of_another_architecture_is_a_one_line_error(mlp_dir: Path, tmp_path: Path) -> None:
    small, big = tmp_path / "small", tmp_path / "big"
    assert main(mlp_args(mlp_dir, small, "--max_steps", "10")) == 0
    assert main(mlp_args(mlp_dir, big, "--max_steps", "10", "--dnn_hidden_units", "32")) == 0
    (small / "checkpoint.npz").write_bytes((big / "checkpoint.npz").read_bytes())
    with pytest.raises(
        CheckpointError, match=r"written with --dnn_hidden_units '32', the run has --dnn_hidden_units '16'"
    ):
        mlp_numpy.run(mlp_numpy.MLPNumpyConfig(resume=str(small), max_steps=20), progress=False)
    # Even with matching configs, state of other shapes is caught, in one line.
    ckpt = load_npz_checkpoint(big / "checkpoint.npz")
    ckpt["config"]["dnn_hidden_units"] = "16"
    state = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    save_npz_checkpoint(small / "checkpoint.npz", state)
    with pytest.raises(CheckpointError, match=r"the saved model does not match this run \(ShapeError: ") as e:
        mlp_numpy.run(mlp_numpy.MLPNumpyConfig(resume=str(small), max_steps=20), progress=False)
    assert "\n" not in str(e.value)


def test_optimizer_state_of_other_shapes_is_refused(mlp_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(mlp_args(mlp_dir, out, "--max_steps", "10")) == 0
    path = out / "checkpoint.npz"
    ckpt = load_npz_checkpoint(path)
    ckpt["optimizer"]["state"][0]["exp_avg"] = np.zeros((3, 3), np.float32)
    save_npz_checkpoint(path, {k: v for k, v in ckpt.items() if k not in ("format", "version")})
    with pytest.raises(
        CheckpointError,
        match=r"saved optimizer state does not match this run \(ValueError: exp_avg of parameter 0",
    ):
        mlp_numpy.run(mlp_numpy.MLPNumpyConfig(resume=str(out), max_steps=20), progress=False)


# ---------------------------------------------------------------------- the file and its parts


def test_round_trip_keeps_dtypes_shapes_and_exact_scalars(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.npz"
    rng = np.random.default_rng(5)
    rng.random(3)
    state: dict[str, Any] = {
        "trainer": "t", "step": 7, "config": {"lr": 0.1 + 0.2, "name": "x", "none": None, "flag": True},
        "model": {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.zeros((), np.int64)},
        "optimizer": {"lr": 1e-3 / 3, "state": [{}, {"step": np.array(4, np.int64)}]},
        "scheduler": None, "batches": {"perm": None}, "rng": {"augment": dict(rng.bit_generator.state)},
    }  # fmt: skip
    save_npz_checkpoint(path, state)
    got = load_npz_checkpoint(path, "t")
    assert got["config"] == state["config"] and got["optimizer"]["lr"] == 1e-3 / 3
    assert got["model"]["w"].dtype == np.float32 and np.array_equal(got["model"]["w"], state["model"]["w"])
    assert got["model"]["n"].shape == () and got["model"]["n"].dtype == np.int64
    assert got["optimizer"]["state"] == [{}, {"step": 4}] and got["batches"]["perm"] is None
    other = np.random.default_rng(0)
    other.bit_generator.state = got["rng"]["augment"]  # 128-bit integers survive the JSON
    assert np.array_equal(other.random(4), rng.random(4))
    with pytest.raises(TypeError, match="cannot store"):
        save_npz_checkpoint(path, {**state, "scheduler": object()})


def test_a_crash_while_writing_leaves_the_previous_checkpoint_whole(
    mlp_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    assert main(mlp_args(mlp_dir, out, "--max_steps", "10")) == 0
    path = out / "checkpoint.npz"
    before = path.read_bytes()
    ckpt = load_npz_checkpoint(path)

    def crash(file: Any, *args: Any, **kwargs: Any) -> None:
        Path(file).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        save_npz_checkpoint(path, {k: v for k, v in ckpt.items() if k not in ("format", "version")})
    assert path.read_bytes() == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".checkpoint.npz")] == []  # no temporary file


def test_batch_iterator_state_continues_the_same_batches() -> None:
    a = BatchIterator(23, 5, np.random.default_rng(3))
    for _ in range(6):  # into the second epoch (4 batches per epoch)
        next(a)
    state = batch_iterator_state(a)
    want = [next(a) for _ in range(9)]
    b = BatchIterator(23, 5, np.random.default_rng(99))
    load_batch_iterator_state(b, state)
    got = [next(b) for _ in range(9)]
    assert all(np.array_equal(x, y) for x, y in zip(got, want, strict=True))
    assert (b.epoch, b.step) == (a.epoch, a.step) == (3, 15)
    fresh = BatchIterator(23, 5, np.random.default_rng(7))
    load_batch_iterator_state(fresh, batch_iterator_state(BatchIterator(23, 5, np.random.default_rng(8))))
    assert np.array_equal(next(fresh), next(BatchIterator(23, 5, np.random.default_rng(8))))
    with pytest.raises(ValueError, match="23 examples in batches of 5, this run from 24 in batches of 5"):
        load_batch_iterator_state(BatchIterator(24, 5, np.random.default_rng(0)), state)


def test_sgd_momentum_buffers_round_trip(tmp_path: Path) -> None:
    from backproplab.nn.parameter import Parameter

    p = Parameter(np.ones(3, np.float32))
    opt = SGD([p], lr=0.1, momentum=0.9)
    p.grad = np.full(3, 2.0, np.float32)
    opt.step()
    path = tmp_path / "c.npz"
    save_npz_checkpoint(path, {"trainer": "t", "step": 1, "config": {}, "model": {}, "scheduler": None,
                               "optimizer": opt.state_dict(), "batches": {}, "rng": {}})  # fmt: skip
    q = Parameter(p.data.copy())
    twin = SGD([q], lr=0.5, momentum=0.9)
    twin.load_state_dict(load_npz_checkpoint(path)["optimizer"])
    for param, o in ((p, opt), (q, twin)):
        param.grad = np.full(3, -1.0, np.float32)
        o.step()
    assert twin.lr == 0.1 and np.array_equal(p.data, q.data)


def test_numpy_trainers_do_not_import_torch(tmp_path: Path) -> None:
    """Train and resume where ``import torch`` fails (torch_blocker)."""
    out = str(tmp_path / "run")
    run_without_torch(
        f"""
        from backproplab.cli.main import main

        args = ['--dataset', 'digits', '--eval_freq', '5', '--out', {out!r}]
        assert main(['train', 'mlp-numpy', '--max_steps', '5', *args]) == 0
        assert main(['train', 'mlp-numpy', '--resume', {out!r}, '--max_steps', '10']) == 0
        """
    )
    assert steps(tmp_path / "run") == list(range(1, 11))
    assert load_npz_checkpoint(tmp_path / "run" / "checkpoint.npz")["step"] == 10
