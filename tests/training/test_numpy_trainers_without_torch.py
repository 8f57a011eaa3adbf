"""The NumPy trainers run where torch is not installed: ``backproplab train mlp-numpy`` and
``convnet-numpy`` on the 8x8 digits (a few steps, tiny subsets) and ``mlp_numpy.run(cfg)``, each in a
subprocess in which ``import torch`` raises ImportError (torch_blocker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch_blocker import run_without_torch

pytestmark = pytest.mark.slow  # subprocesses that load the digits and train


def test_mlp_numpy_run_without_torch(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_without_torch(
        f"""
        from backproplab.training import mlp_numpy

        cfg = mlp_numpy.MLPNumpyConfig(dataset="digits", max_steps=4, batch_size=32, eval_freq=2, out={str(out)!r})
        summary = mlp_numpy.run(cfg, progress=False)
        assert summary["steps"] == 4, summary
        """
    )
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"


@pytest.mark.parametrize(
    "argv",
    [
        ["mlp-numpy", "--max_steps", "4", "--batch_size", "32", "--eval_freq", "2"],
        ["convnet-numpy", "--max_steps", "2", "--batch_size", "8", "--eval_freq", "2", "--eval_batch_size", "16",
         "--train_subset", "64", "--test_subset", "32"],
    ],
    ids=["mlp-numpy", "convnet-numpy"],
)  # fmt: skip
def test_cli_numpy_trainer_without_torch(argv: list[str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", *argv, "--dataset", "digits", "--out", str(out)]
    run_without_torch(
        f"""
        from backproplab.cli.main import main

        code = main({args!r})
        assert code == 0, code
        """
    )
    for name in ("config.json", "metrics.jsonl", "summary.json", "model.npz"):
        assert (out / name).is_file(), name
