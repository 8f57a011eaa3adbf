"""Every trainer runs from Python as ``run(cfg, dataset=...)``: the config is validated there (not
only on the command line), and a given data set is trained on instead of loading ``cfg.dataset``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from template_data import template_dataset

from backproplab.errors import ConfigError
from backproplab.training import convnet, convnet_numpy, mlp_numpy, mlp_torch

# (trainer module, config kwargs of a run of a few steps on 8x8 images)
TRAINERS = [
    (mlp_numpy, {"dnn_hidden_units": "8", "batch_size": 8, "max_steps": 4, "eval_freq": 2}),
    (mlp_torch, {"dnn_hidden_units": "8", "batch_size": 8, "max_steps": 4, "eval_freq": 2, "device": "cpu"}),
    (convnet_numpy, {"batch_size": 4, "max_steps": 2, "eval_freq": 2, "eval_batch_size": 8}),
    (convnet, {"batch_size": 4, "max_steps": 2, "eval_freq": 2, "eval_batch_size": 8, "device": "cpu"}),
]


@pytest.mark.parametrize(("module", "kwargs"), TRAINERS, ids=lambda t: getattr(t, "TRAINER", ""))
def test_run_trains_on_the_given_data_set(module: Any, kwargs: dict[str, Any], tmp_path: Path) -> None:
    ds = template_dataset(n_train=24, n_test=8, side=8, noise=30, balanced=True)
    out = tmp_path / "run"
    summary = module.run(module.CONFIG(**kwargs, out=str(out)), dataset=ds, progress=False)
    assert summary["status"] == "completed" and summary["steps"] == kwargs["max_steps"]
    saved = json.loads((out / "config.json").read_text())
    assert saved["data_source"] == ds.source == "generated in the test"


@pytest.mark.parametrize(("module", "kwargs"), TRAINERS, ids=lambda t: getattr(t, "TRAINER", ""))
def test_run_validates_the_config_before_touching_the_data(
    module: Any, kwargs: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="--batch_size must be a positive integer, got 0"):
        module.run(module.CONFIG(**{**kwargs, "batch_size": 0}, out=str(out)), dataset=None, progress=False)
    assert not out.exists()
