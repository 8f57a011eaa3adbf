"""Every trainer's scalars, read back with TensorBoard's own event reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backproplab.cli.main import main


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("trainer", ["mlp-numpy", "mlp-torch"])
def test_scalars_equal_the_metrics(tmp_path: Path, trainer: str) -> None:
    out = tmp_path / trainer
    flags = [
        "--dataset",
        "digits",
        "--max_steps",
        "12",
        "--eval_freq",
        "5",
        "--track_stats",
        "--out",
        str(out),
    ]
    assert main(["train", trainer, *flags]) == 0
    tags = _scalars(out)
    records = _metrics(out)
    assert [s for s, _ in tags["train/loss"]] == list(range(1, 13))
    for (step, value), r in zip(tags["train/loss"], records, strict=True):
        assert step == r["step"] and value == pytest.approx(r["train_loss"], rel=1e-6)
    evals = [r for r in records if "test_acc" in r]
    assert [s for s, _ in tags["test/accuracy"]] == [5, 10, 12]
    assert [v for _, v in tags["test/accuracy"]] == pytest.approx([r["test_acc"] for r in evals], rel=1e-6)
    assert [v for _, v in tags["test/loss"]] == pytest.approx([r["test_loss"] for r in evals], rel=1e-6)
    lrs = [r["lr"] for r in evals if "lr" in r]
    assert [v for _, v in tags.get("train/lr", [])] == pytest.approx(lrs)
    per_layer = [t for t in tags if t.count("/") >= 2]  # --track_stats: <key>/<layer>/<statistic>
    assert per_layer, sorted(tags)


def test_convnet_numpy_writes_scalars(tmp_path: Path) -> None:
    out = tmp_path / "c"
    assert (
        main(
            [
                "train",
                "convnet-numpy",
                "--dataset",
                "digits",
                "--max_steps",
                "3",
                "--eval_freq",
                "3",
                "--test_subset",
                "50",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    tags = _scalars(out)
    assert [s for s, _ in tags["train/loss"]] == [1, 2, 3] and [s for s, _ in tags["test/accuracy"]] == [3]


def test_a_resumed_process_supersedes_the_steps_logged_after_the_checkpoint(tmp_path: Path) -> None:
    """An interrupted process logged steps 1-13; the resumed one continues from a checkpoint at step 10
    and logs 11-15 again, into its own event file: TensorBoard shows each step once, the new values
    from step 11 on (its SessionLog START purges the orphans, as metrics.jsonl is truncated)."""
    from backproplab.training.tensorboard import TensorBoardLog

    first = TensorBoardLog(tmp_path)
    for step in range(1, 14):
        first.log({"step": step, "train_loss": float(step)})
    first.close()
    second = TensorBoardLog(tmp_path)
    second.path = tmp_path / (first.path.name + ".resumed")  # another process's file, read after the first
    for step in range(11, 16):
        second.log({"step": step, "train_loss": 100.0 + step})
    second.close()
    loss = _scalars(tmp_path)["train/loss"]
    assert [s for s, _ in loss] == list(range(1, 16))
    assert [v for _, v in loss] == [float(s) for s in range(1, 11)] + [100.0 + s for s in range(11, 16)]
