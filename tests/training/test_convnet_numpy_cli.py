"""`backproplab train convnet-numpy` on a tiny synthetic data set: it learns and writes its run directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from template_data import template_dataset, write_image_folder

from backproplab.cli.main import main
from backproplab.data import Dataset
from backproplab.nn import load_npz
from backproplab.torch_models.convnet import ConvNet as TorchConvNet
from backproplab.training import convnet_numpy
from backproplab.training.augment import random_crop_flip_numpy as random_crop_flip

#: The mean training loss of the last steps must fall below this fraction of the first steps'.
LOSS_DROP = 0.7


def synthetic_dataset() -> Dataset:
    return template_dataset(n_train=16, n_test=16, side=8, noise=30, balanced=True)


def test_cli_run_learns_and_writes_the_run_directory(tmp_path: Path) -> None:
    out, data_dir = tmp_path / "run", write_image_folder(synthetic_dataset(), tmp_path / "data")
    argv = ["train", "convnet-numpy", "--data_dir", str(data_dir), "--batch_size", "8",
            "--learning_rate", "1e-3", "--max_steps", "24", "--eval_freq", "12", "--eval_batch_size", "5",
            "--augment", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    for name in ("config.json", "metrics.jsonl", "summary.json", "curves.png", "model.npz"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert (
        config["trainer"] == "convnet-numpy" and config["augment"] is True and config["learning_rate"] == 1e-3
    )
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in records]
    assert len(losses) == 24
    assert np.mean(losses[-6:]) < LOSS_DROP * np.mean(losses[:6]), losses
    evals = [r for r in records if "test_acc" in r]
    assert [r["step"] for r in evals] == [12, 24]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["final_test_acc"] == evals[-1]["test_acc"]
    assert summary["final_test_acc"] > 0.25  # better than chance on the 4 classes
    # the weights load into the torch ConvNet
    TorchConvNet(3, 4).load_state_dict(
        {k: torch.from_numpy(v) for k, v in load_npz(out / "model.npz").items()}
    )


def test_same_seed_same_run(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        cfg = convnet_numpy.ConvNetNumpyConfig(
            batch_size=4, max_steps=3, eval_freq=3, out=str(tmp_path / name), augment=True
        )
        convnet_numpy.run(cfg, dataset=synthetic_dataset(), progress=False)
        runs.append((tmp_path / name / "metrics.jsonl").read_text())
    assert runs[0] == runs[1]


def test_bad_flags_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "convnet-numpy", "--batch_size", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--batch_size must be a positive integer, got 0" in capsys.readouterr().err
    assert main(["train", "convnet-numpy", "--device", "cpu"]) == 2  # torch's --device does not apply here
    assert "unknown flag --device" in capsys.readouterr().err


def test_random_crop_flip() -> None:
    x = np.random.default_rng(0).normal(size=(64, 2, 5, 6)).astype(np.float32)
    a = random_crop_flip(x, np.random.default_rng(1))
    np.testing.assert_array_equal(a, random_crop_flip(x, np.random.default_rng(1)))  # reproducible
    assert a.shape == x.shape and a.dtype == x.dtype
    # without padding every image is itself or its mirror image, and both occur
    b = random_crop_flip(x, np.random.default_rng(2), padding=0)
    same = np.all(b == x, axis=(1, 2, 3))
    mirrored = np.all(b == x[..., ::-1], axis=(1, 2, 3))
    assert np.all(same | mirrored) and same.any() and mirrored.any()
    # with padding 4 a shifted crop shows zeros at the border and the image elsewhere
    c = random_crop_flip(np.ones((64, 1, 5, 6), np.float32), np.random.default_rng(3))
    assert set(np.unique(c)) == {0.0, 1.0}


def test_schedule_and_label_smoothing_follow_the_torch_trainer(tmp_path: Path) -> None:
    from backproplab.nn.optim import ScheduleFactor

    out = tmp_path / "run"
    cfg = convnet_numpy.ConvNetNumpyConfig(
        batch_size=8, learning_rate=1e-3, max_steps=8, eval_freq=2, eval_batch_size=5,
        lr_schedule="onecycle", label_smoothing=0.1, out=str(out),
    )  # fmt: skip
    assert convnet_numpy.run(cfg, dataset=synthetic_dataset(), progress=False)["status"] == "completed"
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in evals if "lr" in r]
    factor = ScheduleFactor("onecycle", 8)  # the torch trainer's factor, shared with the engine
    assert lrs == pytest.approx([1e-3 * factor(t) for t in (2, 4, 6, 8)], rel=1e-12)
    assert lrs[-1] == 0.0 and max(lrs) == pytest.approx(1e-3)
    config = json.loads((out / "config.json").read_text())
    assert config["lr_schedule"] == "onecycle" and config["label_smoothing"] == 0.1
