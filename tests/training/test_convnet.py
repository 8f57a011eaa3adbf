"""`backproplab train convnet` on the CPU: learning, evaluation, checkpoint and resume, augmentation,
learning-rate schedules and device handling (the code paths a GPU run takes, on the CPU)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from template_data import template_dataset, write_image_folder

from backproplab import nn
from backproplab.cli.dataclass_args import config_from_namespace
from backproplab.cli.main import build_parser, main
from backproplab.data import Dataset
from backproplab.errors import ConfigError, ShapeError
from backproplab.nn import load_npz
from backproplab.nn.optim.lr_scheduler import ONECYCLE_START, ScheduleFactor
from backproplab.torch_models import ConvNet
from backproplab.training import convnet
from backproplab.training.augment import random_crop_flip
from backproplab.training.checkpoint import load_checkpoint
from backproplab.training.interrupt import InterruptFlag
from backproplab.training.lr_schedules import numpy_scheduler, torch_scheduler
from backproplab.training.torch_device import select_device
from backproplab.training.torch_task import TorchTrainTask

RESUME_ATOL = 1e-6  # resumed metrics equal the uninterrupted run's (deterministic CPU ops)
EVAL_ATOL = 1e-5  # the same test loss whatever the evaluation batch size (float32 sums)


def synthetic_dataset(side: int = 8, channels: int = 3) -> Dataset:
    return template_dataset(n_train=64, n_test=64, side=side, channels=channels, noise=50, balanced=True)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # reproducible, and faster on a shared 2-core machine
    yield
    torch.set_num_threads(old)


def cli(out: Path, *extra: str) -> list[str]:
    return ["train", "convnet", "--batch_size", "8", "--learning_rate", "1e-3", "--device", "cpu",
            "--out", str(out), *extra]  # fmt: skip


def config(out: Path, **kwargs: Any) -> convnet.ConvNetConfig:
    """The config of :func:`cli` (``kwargs`` for its extra flags), for ``convnet.run(cfg, dataset=...)``."""
    return convnet.ConvNetConfig(batch_size=8, learning_rate=1e-3, device="cpu", out=str(out), **kwargs)


def metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------- config


def test_defaults_are_the_practicals() -> None:
    cfg = convnet.ConvNetConfig()
    assert (cfg.optimizer, cfg.learning_rate, cfg.batch_size, cfg.max_steps, cfg.eval_freq) == (
        "adam", 1e-4, 32, 5000, 500
    )  # fmt: skip
    assert (cfg.device, cfg.augment, cfg.preprocess, cfg.dataset, cfg.seed) == (
        "auto", False, "standardize", "cifar10", 42
    )  # fmt: skip
    assert (cfg.lr_schedule, cfg.weight_decay, cfg.label_smoothing, cfg.amp) == ("constant", 0.0, 0.0, "none")
    assert cfg.resolved().schedule_steps == 5000


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--learning_rate", "0"], "--learning_rate must be positive"),
        (["--eval_batch_size", "0"], "--eval_batch_size must be a positive integer"),
        (["--train_subset", "0"], "--train_subset must be a positive integer"),
        (["--momentum", "1"], r"--momentum must be in [0, 1)"),
        (["--label_smoothing", "1"], r"--label_smoothing must be in [0, 1)"),
        (["--weight_decay", "-0.1"], "--weight_decay must be >= 0"),
    ],
)
def test_bad_values_exit_2_with_one_line(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "convnet", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# ---------------------------------------------------------------------- training on the CPU


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("convnet") / "run"
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = convnet.run(
            config(out, max_steps=40, eval_freq=20), dataset=synthetic_dataset(), progress=False
        )
        assert summary["status"] == "completed"
    finally:
        torch.set_num_threads(old)
    return out


def test_loss_goes_down_and_the_run_directory_is_complete(trained: Path) -> None:
    names = {p.name for p in trained.iterdir()}
    events = {n for n in names if n.startswith("events.out.tfevents.")}  # TensorBoard's scalars
    assert len(events) == 1
    assert names - events == {
        "config.json", "metrics.jsonl", "summary.json", "curves.png", "model.npz", "model.safetensors",
        "checkpoint.pt",
    }  # fmt: skip
    records = metrics(trained)
    assert [r["step"] for r in records] == list(range(1, 41))
    assert 1.0 < records[0]["train_loss"] < 2.5  # near ln 4 = 1.39: no knowledge at the start
    first = np.mean([r["train_loss"] for r in records[:4]])
    last = np.mean([r["train_loss"] for r in records[-8:]])  # the fifth epoch
    assert last < 0.3 * first, (first, last)  # measured: 1.00 -> 0.07
    evals = [r for r in records if "test_acc" in r]
    assert [r["step"] for r in evals] == [20, 40]
    assert evals[-1]["test_acc"] >= 0.75  # chance is 0.25
    assert evals[-1]["lr"] == 1e-3
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["final_test_acc"] == evals[-1]["test_acc"]
    cfg = json.loads((trained / "config.json").read_text())
    assert cfg["trainer"] == "convnet" and cfg["schedule_steps"] == 40 and cfg["device"] == "cpu"


def test_model_npz_holds_the_convnet_state_and_reproduces_the_accuracy(trained: Path) -> None:
    state = load_npz(trained / "model.npz")
    model = ConvNet(3, 4)
    assert list(state) == list(model.state_dict())
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    task, _, _ = convnet.build_task(convnet.ConvNetConfig(device="cpu"), InterruptFlag(), synthetic_dataset())
    task.model = model
    assert task.evaluate()["test_acc"] == metrics(trained)[-1]["test_acc"]


def test_evaluation_uses_running_statistics_whatever_the_batch_size() -> None:
    cfg = convnet.ConvNetConfig(device="cpu", learning_rate=1e-3, batch_size=8).resolved()
    task, _, _ = convnet.build_task(cfg, InterruptFlag(), synthetic_dataset())
    for _ in range(3):
        task.train_step()
    running = task.model.norm.running_mean.clone()
    full = task.evaluate()
    task.eval_batch_size = 7  # 64 test images in chunks of 7: the last chunk has 1
    chunked = task.evaluate()
    assert chunked["test_acc"] == full["test_acc"]
    assert chunked["test_loss"] == pytest.approx(full["test_loss"], abs=EVAL_ATOL)
    assert torch.equal(task.model.norm.running_mean, running)  # evaluation leaves the statistics alone
    assert task.model.training  # and puts the model back in training mode
    assert 0 <= full["test_acc"] <= 1 and math.isfinite(full["test_loss"])


def uninterrupted_and_resumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recipe: list[str]) -> None:
    """Through the command line (Ctrl-C exits 130), on the synthetic images written as an image folder."""
    full, part = tmp_path / "full", tmp_path / "part"
    data = ["--data_dir", str(write_image_folder(synthetic_dataset(), tmp_path / "data"))]
    recipe = [*data, *recipe]
    assert main(cli(full, "--max_steps", "12", "--eval_freq", "4", *recipe)) == 0
    real_step = TorchTrainTask.train_step
    calls = {"n": 0}

    def interrupt_at_7(self: TorchTrainTask) -> float:
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(TorchTrainTask, "train_step", interrupt_at_7)
    assert main(cli(part, "--max_steps", "12", "--eval_freq", "4", *recipe)) == 130
    assert load_checkpoint(part / "checkpoint.pt", "convnet")["step"] == 6
    monkeypatch.setattr(TorchTrainTask, "train_step", real_step)
    assert main(["train", "convnet", "--resume", str(part)]) == 0
    a, b = metrics(full), metrics(part)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 13))
    for ra, rb in zip(a, b, strict=True):
        assert ra.keys() == rb.keys()
        for k in ra:
            assert ra[k] == pytest.approx(rb[k], abs=RESUME_ATOL), (ra["step"], k)


def test_ctrl_c_and_resume_give_the_uninterrupted_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With augmentation, a one-cycle schedule, AdamW and label smoothing: every generator and
    state the run depends on goes through the checkpoint."""
    recipe = ["--augment", "--lr_schedule", "onecycle", "--optimizer", "adamw", "--weight_decay", "0.05",
              "--label_smoothing", "0.1"]  # fmt: skip
    uninterrupted_and_resumed(tmp_path, monkeypatch, recipe)


def test_bf16_autocast_and_channels_last_train_on_the_cpu(tmp_path: Path) -> None:
    cfg = convnet.ConvNetConfig(device="cpu", amp="bf16", channels_last=True, augment=True, batch_size=8)
    task, _, _ = convnet.build_task(cfg.resolved(), InterruptFlag(), synthetic_dataset())
    assert task.data.x_train.is_contiguous(memory_format=torch.channels_last)
    assert task.model.conv0.weight.is_contiguous(memory_format=torch.channels_last)
    losses = [task.train_step() for _ in range(3)]
    assert all(math.isfinite(v) for v in losses)
    assert task.model.conv0.weight.dtype == torch.float32  # autocast keeps float32 master weights
    assert math.isfinite(task.evaluate()["test_loss"])


def test_grey_images_train_with_one_input_channel(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = config(out, dataset="digits", max_steps=2, train_subset=16, test_subset=8)
    summary = convnet.run(cfg, dataset=synthetic_dataset(channels=1, side=5), progress=False)
    assert summary["status"] == "completed"
    state = load_npz(out / "model.npz")
    assert state["conv0.weight"].shape == (64, 1, 3, 3) and state["linear.weight"].shape == (4, 512)
    assert json.loads((out / "summary.json").read_text())["steps"] == 2


# ---------------------------------------------------------------------- on-device pieces, on the CPU


def reference_crop_flip(
    x: torch.Tensor, dy: list[int], dx: list[int], flip: list[bool], pad: int
) -> torch.Tensor:
    out = torch.empty_like(x)
    h, w = x.shape[2:]
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    for n in range(len(x)):
        crop = padded[n, :, dy[n] : dy[n] + h, dx[n] : dx[n] + w]
        out[n] = crop.flip(-1) if flip[n] else crop
    return out


def test_crop_and_flip_match_a_loop_over_images() -> None:
    x = torch.randn(16, 3, 6, 7, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    state = g.get_state()
    got = random_crop_flip(x, g, padding=2)
    g.set_state(state)  # redraw the same offsets and flips, in the function's order
    dy = torch.randint(0, 5, (16,), generator=g).tolist()
    dx = torch.randint(0, 5, (16,), generator=g).tolist()
    flip = (torch.rand(16, generator=g) < 0.5).tolist()
    assert 0 < sum(flip) < 16 and len(set(dy)) > 1
    torch.testing.assert_close(got, reference_crop_flip(x, dy, dx, flip, 2), rtol=0, atol=0)
    again = random_crop_flip(x, torch.Generator().manual_seed(1), padding=2)
    torch.testing.assert_close(again, got, rtol=0, atol=0)  # reproducible from the generator's seed


def test_augmentation_edge_cases() -> None:
    x = torch.randn(4, 2, 5, 5)
    assert torch.equal(random_crop_flip(x, torch.Generator(), padding=0, flip=False), x)
    flipped = random_crop_flip(torch.ones(64, 1, 4, 4), torch.Generator().manual_seed(0), padding=4)
    # An image shifted by 4 in both directions only shows padding: the zero padding is used.
    assert flipped.min() == 0 and flipped.max() == 1
    cl = x.contiguous(memory_format=torch.channels_last)
    assert random_crop_flip(cl, torch.Generator()).is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ShapeError, match=r"\(N, C, H, W\), got \(5, 5\)"):
        random_crop_flip(torch.zeros(5, 5), torch.Generator())


def test_schedules() -> None:
    cos = ScheduleFactor("cosine", 100)
    assert (cos(0), cos(50), cos(100), cos(150)) == pytest.approx((1.0, 0.5, 0.0, 0.0))
    one = ScheduleFactor("onecycle", 100)
    assert one(0) == pytest.approx(ONECYCLE_START) and one(25) == pytest.approx(1.0)
    assert one(100) == 0.0 and one(62) == pytest.approx((100 - 62) / 75)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.2)
    assert torch_scheduler(opt, convnet.ConvNetConfig()) is None
    sched = torch_scheduler(opt, convnet.ConvNetConfig(lr_schedule="cosine", max_steps=10))
    assert sched is not None and opt.param_groups[0]["lr"] == pytest.approx(0.2)
    for _ in range(5):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    assert sched.state_dict()["lr_lambdas"] == [{"kind": "cosine", "total_steps": 10}]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lr_schedule", "step"], "--lr_schedule step needs --lr_step_size N"),
        (["--lr_step_size", "5"], "--lr_step_size applies to --lr_schedule step, not constant"),
        (["--momentum", "0.9"], "--momentum and --nesterov apply to --optimizer sgd only"),
        (["--optimizer", "sgd", "--nesterov"], "--nesterov needs a --momentum above 0"),
    ],
)
def test_schedule_and_momentum_flags_are_checked_before_the_run(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "convnet", *flags]) == 2
    assert message in capsys.readouterr().err


def test_the_step_schedule_is_the_same_on_both_engines() -> None:
    cfg = convnet.ConvNetConfig(lr_schedule="step", lr_step_size=3, lr_gamma=0.5, optimizer="sgd")
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.2)
    nopt = nn.optim.SGD([nn.Parameter(np.zeros(1, dtype=np.float32))], lr=0.2)
    tsched, nsched = torch_scheduler(topt, cfg), numpy_scheduler(nopt, cfg)
    assert tsched is not None and nsched is not None
    lrs = []
    for _ in range(7):
        lrs.append((topt.param_groups[0]["lr"], nopt.lr))
        topt.step()
        tsched.step()
        nsched.step()
    assert [t for t, _ in lrs] == pytest.approx([0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.05])
    assert [n for _, n in lrs] == pytest.approx([t for t, _ in lrs])


def test_extending_a_scheduled_run_keeps_its_schedule(tmp_path: Path) -> None:
    out, ds = tmp_path / "run", synthetic_dataset()
    summary = convnet.run(
        config(out, max_steps=4, eval_freq=2, lr_schedule="cosine"), dataset=ds, progress=False
    )
    assert summary["status"] == "completed"
    resumed = convnet.run(convnet.ConvNetConfig(resume=str(out), max_steps=6), dataset=ds, progress=False)
    assert resumed["status"] == "completed" and resumed["resumed_from_step"] == 4
    lrs = {r["step"]: r["lr"] for r in metrics(out) if "lr" in r}
    assert lrs == {2: pytest.approx(5e-4), 4: 0.0, 6: 0.0}  # the cosine ends at step 4, as first planned
    assert json.loads((out / "config.json").read_text())["schedule_steps"] == 4


def test_device_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert select_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="--device cuda was asked for but no CUDA device is available"):
        select_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto") == torch.device("cuda") == select_device("cuda")
    with pytest.raises(ConfigError, match="--device must be one of"):
        select_device("tpu")


def test_data_and_batches_live_on_the_training_device() -> None:
    cfg = convnet.ConvNetConfig(device="cpu", batch_size=8)
    task, _, _ = convnet.build_task(cfg, InterruptFlag(), synthetic_dataset())
    dev = torch.device("cpu")
    assert task.data.x_train.device == task.data.y_train.device == task.data.x_test.device == dev
    assert task.data.x_train.dtype == torch.float32 and task.data.x_train.shape == (64, 3, 8, 8)
    assert task.sampler.generator.device == dev and task.sampler.next().device == dev
    assert dataclasses.asdict(task.config)["device"] == "cpu"


def test_the_documented_fast_recipe_parses_and_validates() -> None:
    argv = ["train", "convnet", *convnet.FAST_RECIPE.split()]
    cfg = config_from_namespace(convnet.ConvNetConfig, build_parser(argv).parse_args(argv))
    assert (cfg.augment, cfg.amp, cfg.channels_last, cfg.lr_schedule) == (True, "bf16", True, "onecycle")
    assert cfg.max_steps == 30 * (50_000 // cfg.batch_size)  # 30 epochs of CIFAR-10's training set
