"""`backproplab train mlp-torch`: flags, the NumPy twin, run outputs, and the targets on real data."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from template_data import template_dataset, write_image_folder

from backproplab import nn
from backproplab.cli.main import build_parser, main
from backproplab.data import Dataset
from backproplab.nn import load_npz
from backproplab.torch_models import TorchMLP
from backproplab.training import mlp_torch
from backproplab.training.interrupt import InterruptFlag
from backproplab.training.mlp_config import MLPConfig
from backproplab.training.mlp_numpy import MLPNumpyConfig
from backproplab.training.prepared_data import prepare

FLOAT32_ATOL = 1e-5
FLOAT32_RTOL = 1e-4
CIFAR_DEFAULT_MIN_ACC = 0.45  # the target; the NumPy twin measured about 0.47 on the JPEG copy
CIFAR_RECIPE_MIN_ACC = 0.52  # the report's best recipe; the report measured 0.56 on the original data
BEST_RECIPE = ["--dnn_hidden_units", "200,200,150,100,100", "--better_init", "--optimizer", "adam",
               "--lr_schedule", "step", "--lr_step_size", "500", "--lr_gamma", "0.5", "--max_steps", "4000"]  # fmt: skip


def synthetic_dataset() -> Dataset:
    return template_dataset(n_train=300, n_test=100, side=6, noise=60, balanced=False)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread per test process: on a shared 2-core machine two threads per worker made the
    best recipe's steps 4x slower (57 ms against 13 ms measured)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------- flags


def test_flags_and_defaults_are_mlp_numpys_plus_the_knobs() -> None:
    numpy_fields = {f.name: f.default for f in dataclasses.fields(MLPNumpyConfig)}
    torch_fields = {f.name: f.default for f in dataclasses.fields(mlp_torch.MLPTorchConfig)}
    assert {k: torch_fields[k] for k in numpy_fields} == numpy_fields
    assert numpy_fields["init"] == "practical" and numpy_fields["learning_rate"] == 1e-3
    extra = {k: v for k, v in torch_fields.items() if k not in numpy_fields}
    assert extra == {
        "better_init": False,
        "momentum": 0.0,
        "nesterov": False,
        "weight_decay": 0.0,
        "lr_schedule": "constant",
        "schedule_steps": None,
        "lr_step_size": None,
        "lr_gamma": 0.1,
        "batchnorm": False,
        "device": "auto",
    }  # fmt: skip  (--resume is common to both now; the optimizer flags are every trainer's)
    assert issubclass(mlp_torch.MLPTorchConfig, MLPConfig)
    args = build_parser(["train", "mlp-torch"]).parse_args(
        ["train", "mlp-torch", *BEST_RECIPE, "--activation", "relu"]
    )
    cfg = mlp_torch.MLPTorchConfig(**{k: v for k, v in vars(args).items() if k in torch_fields})
    assert cfg.hidden_units == [200, 200, 150, 100, 100] and cfg.better_init and cfg.lr_step_size == 500
    resolved = cfg.resolved()
    assert (resolved.init, resolved.preprocess) == ("torch", "standardize")
    assert (cfg.init, cfg.preprocess) == ("practical", "mean_image")  # resolved() does not mutate


def test_bad_flags_are_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "mlp-torch", "--no_such_flag", "1"]) == 2
    with pytest.raises(SystemExit):
        main(["train", "mlp-torch", "--optimizer", "rmsprop"])
    capsys.readouterr()
    assert main(["train", "mlp-torch", "--better_init", "--init", "kaiming"]) == 2
    assert "--better_init sets --init torch; it conflicts with --init kaiming" in capsys.readouterr().err
    for flags, msg in [
        (
            ["--lr_schedule", "step", "--lr_step_size", "0"],
            "--lr_step_size must be a positive integer, got 0",
        ),
        (["--lr_step_size", "10"], "--lr_step_size applies to --lr_schedule step, not constant"),
        (["--lr_gamma", "0"], "--lr_gamma must be positive"),
        (["--weight_decay", "-1"], "--weight_decay must be >= 0"),
    ]:
        assert main(["train", "mlp-torch", *flags]) == 2
        assert msg in capsys.readouterr().err


def test_flags_the_run_cannot_use_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for flags, msg in [
        (["--seed", "-1"], "--seed must be a non-negative integer, got -1"),
        (["--learning_rate", "1e300"], "--learning_rate must be a finite number of at most 3.4e+38"),
        (["--learning_rate", "inf"], "--learning_rate must be a finite number"),
        (["--weight_decay", "1e39"], "--weight_decay must be a finite number"),
        (["--dnn_hidden_units", "1000000000"], "parameters and needs at least"),
    ]:
        assert main(["train", "mlp-torch", "--dataset", "digits", *flags]) == 2, flags
        err = capsys.readouterr().err
        assert err.startswith("error: ") and msg in err and err.count("\n") == 1, err


def test_a_model_too_big_for_memory_is_refused_before_allocating(monkeypatch: pytest.MonkeyPatch) -> None:
    from backproplab.errors import ConfigError
    from backproplab.training import mlp_config

    monkeypatch.setattr(mlp_config, "available_memory_bytes", lambda: 10 * 2**20)  # 10 MiB
    cfg = mlp_torch.MLPTorchConfig(dataset="fashion-mnist", dnn_hidden_units="2000")  # 1.6 M parameters
    with pytest.raises(ConfigError, match=r"the MLP \(784 inputs\) has 1,590,010 parameters.*10 MiB"):
        cfg.validate()
    mlp_torch.MLPTorchConfig(dataset="fashion-mnist", dnn_hidden_units="100").validate()  # 0.3 MiB fits


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error_and_leaves_no_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default --out, runs/mlp-torch-<time>, goes below tmp_path
    data_dir = write_image_folder(synthetic_dataset(), tmp_path / "data")
    argv = ["train", "mlp-torch", "--data_dir", str(data_dir)]
    assert main([*argv, "--device", "cuda", "--max_steps", "1"]) == 2
    assert "--device cuda was asked for but no CUDA device is available" in capsys.readouterr().err
    assert list((tmp_path / "runs").iterdir()) == []  # the run directory it made is removed again
    out = tmp_path / "explicit"
    assert main([*argv, "--device", "cuda", "--max_steps", "1", "--out", str(out)]) == 2
    assert not out.exists()


# ---------------------------------------------------------------------- the NumPy twin


def test_weights_load_across_both_ways_and_give_the_same_forward() -> None:
    torch_model = TorchMLP(108, [20, 15], 4, init_scheme="torch", generator=torch.Generator().manual_seed(0))
    numpy_model = nn.MLP(108, [20, 15], 4, rng=np.random.default_rng(1))
    assert list(numpy_model.state_dict()) == list(torch_model.state_dict())
    x = np.random.default_rng(2).normal(size=(7, 108)).astype(np.float32)

    numpy_model.load_state_dict(torch_model.state_dict())  # torch -> NumPy
    want = torch_model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(numpy_model(x), want, rtol=FLOAT32_RTOL, atol=FLOAT32_ATOL)

    other = nn.MLP(108, [20, 15], 4, init_scheme="torch", rng=np.random.default_rng(3))
    fresh = TorchMLP(108, [20, 15], 4, generator=torch.Generator().manual_seed(4))
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in other.state_dict().items()})  # NumPy -> torch
    np.testing.assert_allclose(
        fresh(torch.from_numpy(x)).detach().numpy(), other(x), rtol=FLOAT32_RTOL, atol=FLOAT32_ATOL
    )


def test_default_init_is_the_practicals_normal_1e_4() -> None:
    task, _, _ = mlp_torch.build_task(
        mlp_torch.MLPTorchConfig(dnn_hidden_units="200", device="cpu"), InterruptFlag(), synthetic_dataset()
    )
    w = task.model.state_dict()["layers.0.weight"]
    assert w.shape == (200, 108)
    assert abs(float(w.std()) - 1e-4) < 1e-5 and abs(float(w.mean())) < 1e-5
    assert not task.model.state_dict()["layers.0.bias"].any()
    better, _, _ = mlp_torch.build_task(
        mlp_torch.MLPTorchConfig(dnn_hidden_units="200", device="cpu", better_init=True).resolved(),
        InterruptFlag(),
        synthetic_dataset(),
    )
    w = better.model.state_dict()["layers.0.weight"]
    assert float(w.abs().max()) <= 1 / np.sqrt(108) and float(w.std()) > 0.5 / np.sqrt(3 * 108)
    x = better.data.x_train.reshape(len(better.data.x_train), 3, -1)  # standardised per channel
    torch.testing.assert_close(x.mean(dim=(0, 2)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2), correction=0), torch.ones(3), atol=1e-4, rtol=0)


# ---------------------------------------------------------------------- runs on synthetic data


@pytest.mark.parametrize(
    "knobs",
    [
        {},  # the practical's defaults (SGD, N(0, 1e-4^2) init, mean-image inputs)
        {
            "better_init": True,
            "optimizer": "adam",
            "batchnorm": True,
            "weight_decay": 1e-4,
            "activation": "relu",
        },
    ],
    ids=["defaults", "knobs"],
)
def test_training_writes_the_run_directory_and_learns(tmp_path: Path, knobs: dict[str, Any]) -> None:
    out = tmp_path / "run"
    # SGD at 1e-3 from the 1e-4 init needs thousands of steps; the defaults run gets a larger rate.
    lr = {"learning_rate": 0.05} if not knobs else {}
    cfg = mlp_torch.MLPTorchConfig(
        max_steps=60, eval_freq=20, batch_size=50, device="cpu", out=str(out), **lr, **knobs
    )
    assert mlp_torch.run(cfg, dataset=synthetic_dataset(), progress=False)["status"] == "completed"
    names = {p.name for p in out.iterdir()}
    events = {n for n in names if n.startswith("events.out.tfevents.")}  # TensorBoard's scalars
    assert len(events) == 1
    assert names - events == {
        "config.json", "metrics.jsonl", "summary.json", "curves.png", "model.npz", "model.safetensors",
        "checkpoint.pt",
    }  # fmt: skip
    records = metrics(out)
    assert [r["step"] for r in records] == list(range(1, 61))
    evals = [r for r in records if "test_acc" in r]
    assert [r["step"] for r in evals] == [20, 40, 60]
    first = np.mean([r["train_loss"] for r in records[:5]])
    last = np.mean([r["train_loss"] for r in records[-5:]])
    assert last < 0.6 * first, (first, last)
    assert evals[-1]["test_acc"] >= 0.8  # 4 well-separated classes; chance is 0.25
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["trainer"] == "mlp-torch" and cfg["data_source"] == "generated in the test"
    if knobs:
        assert (cfg["init"], cfg["preprocess"], cfg["batchnorm"]) == ("torch", "standardize", True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["final_test_acc"] == evals[-1]["test_acc"]


def test_model_npz_loads_into_the_numpy_mlp_and_gives_the_same_accuracy(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = mlp_torch.MLPTorchConfig(
        device="cpu", out=str(out), max_steps=30, eval_freq=30, optimizer="adam", better_init=True
    )
    assert mlp_torch.run(cfg, dataset=synthetic_dataset(), progress=False)["status"] == "completed"
    data = prepare(synthetic_dataset(), "standardize", layout="flat")
    model = nn.MLP(data.n_features, [100], 4)
    model.load_state_dict(load_npz(out / "model.npz"))
    with nn.no_grad():
        acc = float((model(data.x_test).argmax(axis=1) == data.y_test).mean())
    assert acc == metrics(out)[-1]["test_acc"]


def test_step_lr_halves_the_rate_every_step_size(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = mlp_torch.MLPTorchConfig(
        max_steps=40,
        eval_freq=5,
        lr_schedule="step",
        lr_step_size=10,
        lr_gamma=0.5,
        device="cpu",
        out=str(out),
    )
    assert mlp_torch.run(cfg, dataset=synthetic_dataset(), progress=False)["status"] == "completed"
    lrs = {r["step"]: r["lr"] for r in metrics(out) if "lr" in r}
    assert lrs == {s: pytest.approx(1e-3 * 0.5 ** (s // 10)) for s in range(5, 41, 5)}


# ---------------------------------------------------------------------- real data (CIFAR-10 JPEG copy)


@pytest.mark.realdata
@pytest.mark.xdist_group("cifar10")
def test_defaults_reach_the_target_on_cifar10(cifar10_jpeg: Path, tmp_path: Path) -> None:
    cfg = mlp_torch.MLPTorchConfig(data_dir=str(cifar10_jpeg), device="cpu", out=str(tmp_path / "run"))
    summary = mlp_torch.run(cfg, progress=False)
    assert summary["steps"] == 1400
    assert summary["final_test_acc"] >= CIFAR_DEFAULT_MIN_ACC


@pytest.mark.realdata
@pytest.mark.xdist_group("cifar10")
def test_best_recipe_reaches_the_target_on_cifar10(cifar10_jpeg: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    t0 = time.perf_counter()
    assert main(["train", "mlp-torch", *BEST_RECIPE, "--data_dir", str(cifar10_jpeg), "--device", "cpu",
                 "--out", str(out)]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    print(f"best recipe: {summary['final_test_acc']:.4f} in {time.perf_counter() - t0:.0f} s")
    assert summary["steps"] == 4000
    assert summary["final_test_acc"] >= CIFAR_RECIPE_MIN_ACC
