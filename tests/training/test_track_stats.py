"""``--track_stats`` records per-layer statistics at each evaluation, for every trainer, without
changing the training itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backproplab.cli.main import main

pytest.importorskip("sklearn")

TRAINERS = {
    "mlp-numpy": ["--dnn_hidden_units", "32,16"],
    "mlp-torch": ["--dnn_hidden_units", "32,16"],
    "convnet": ["--train_subset", "64", "--test_subset", "32", "--batch_size", "8"],
    "convnet-numpy": ["--train_subset", "64", "--test_subset", "32", "--batch_size", "8"],
}


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_stats_are_logged_and_training_is_unchanged(trainer: str, tmp_path: Path) -> None:
    common = [
        "train",
        trainer,
        "--dataset",
        "digits",
        "--max_steps",
        "6",
        "--eval_freq",
        "3",
        *TRAINERS[trainer],
    ]
    assert main([*common, "--out", str(tmp_path / "plain")]) == 0
    assert main([*common, "--track_stats", "--out", str(tmp_path / "stats")]) == 0
    plain, stats = _records(tmp_path / "plain"), _records(tmp_path / "stats")
    assert [r["train_loss"] for r in plain] == [r["train_loss"] for r in stats]
    evals = [r for r in stats if "test_acc" in r]
    assert [r["step"] for r in evals] == [3, 6]
    for r in evals:
        layers = r["layer_stats"]
        assert len(layers) >= 2
        weighted = [s for s in layers.values() if s.get("update_ratio") is not None]
        assert weighted and all(s["update_ratio"] > 0 for s in weighted)
    assert all("layer_stats" not in r for r in plain)
