"""``--validation_size N``: a split carved from the training set, deterministic from ``--seed``,
evaluated as val_loss / val_acc next to the test split, and the loop's ``on_eval`` hook."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from backproplab.cli.main import main
from backproplab.data import load_dataset
from backproplab.errors import ConfigError
from backproplab.training import mlp_numpy
from backproplab.training.loop import on_eval
from backproplab.training.prepared_data import prepare, validation_indices


def test_the_split_is_a_seeded_disjoint_draw() -> None:
    train, val = validation_indices(100, 20, seed=5)
    assert len(val) == 20 and len(train) == 80
    assert sorted({*train, *val}) == list(range(100))
    assert np.array_equal(val, validation_indices(100, 20, seed=5)[1])
    assert not np.array_equal(val, validation_indices(100, 20, seed=6)[1])
    assert list(val) == sorted(val)
    with pytest.raises(ConfigError, match="smaller than the 100 training examples, got 100"):
        validation_indices(100, 100, seed=0)


def test_prepare_holds_the_split_out_of_training_and_of_the_statistics() -> None:
    ds = load_dataset("digits")
    plain = prepare(ds, "standardize")
    data = prepare(ds, "standardize", validation_size=300, seed=1)
    assert plain.x_val is None and plain.y_val is None
    assert data.x_val is not None and data.y_val is not None
    assert data.x_val.shape == (300, 64) and data.x_train.shape == (ds.n_train - 300, 64)
    assert np.array_equal(data.x_test.shape, plain.x_test.shape)
    train_idx, val_idx = validation_indices(ds.n_train, 300, seed=1)
    assert np.array_equal(data.y_val, ds.y_train[val_idx])
    assert np.array_equal(data.y_train, ds.y_train[train_idx])
    # the statistics come from the remaining training images only
    rest = prepare(
        dataclasses.replace(ds, x_train=ds.x_train[train_idx], y_train=ds.y_train[train_idx]), "standardize"
    )
    assert np.array_equal(data.normalizer.state_dict()["mean"], rest.normalizer.state_dict()["mean"])
    assert np.array_equal(data.x_train, rest.x_train)
    assert not np.array_equal(data.normalizer.state_dict()["mean"], plain.normalizer.state_dict()["mean"])


def test_the_trainers_log_validation_metrics_and_the_hook_sees_them(tmp_path: Path) -> None:
    seen: list[dict[str, object]] = []
    cfg = mlp_numpy.MLPNumpyConfig(
        dataset="digits",
        validation_size=200,
        max_steps=40,
        eval_freq=20,
        batch_size=50,
        out=str(tmp_path / "r"),
    )
    with on_eval(seen.append):
        summary = mlp_numpy.run(cfg, progress=False)
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "test_acc" in r]
    assert [r["step"] for r in evals] == [20, 40]
    assert all({"val_loss", "val_acc", "test_loss", "test_acc"} <= set(r) for r in evals)
    assert seen == evals  # every evaluation, as logged
    assert summary["final_val_acc"] == evals[-1]["val_acc"]
    assert summary["best_val_acc"] == max(r["val_acc"] for r in evals)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["validation_size"] == 200
    # without a hook (and without a split) nothing changes
    mlp_numpy.run(
        mlp_numpy.MLPNumpyConfig(dataset="digits", max_steps=20, eval_freq=20, out=str(tmp_path / "p")),
        progress=False,
    )
    plain = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert "final_val_acc" not in plain


def test_bad_validation_sizes_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["train", "mlp-numpy", "--dataset", "digits", "--max_steps", "2"]
    assert main([*base, "--validation_size", "-1", "--out", str(tmp_path / "a")]) == 2
    assert "--validation_size must be >= 0, got -1" in capsys.readouterr().err
    assert main([*base, "--validation_size", "5000", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "--validation_size must be at least 0 and smaller than the 1437 training examples, got 5000" in err
    assert not (tmp_path / "b").exists()  # a run that fails before training leaves nothing
