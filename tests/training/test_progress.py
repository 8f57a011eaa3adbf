"""Progress of long runs: the bar's rate and time left, plain lines in logs, timings in summary.json."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from template_data import template_dataset

from backproplab.training import mlp_numpy
from backproplab.training.progress import Progress, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_every_tenth_of_the_steps_with_rate_elapsed_and_eta(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = FakeClock()
    bar = Progress(50, desc="mlp", enabled=False, clock=clock)
    for _ in range(12):
        clock.now += 0.5  # 2 steps per second, far below the 30 s interval
        bar.update(1, loss="1.2345")
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "mlp: step 5/50 (10%)  2.00 steps/s  elapsed 2s  ETA 22s  loss=1.2345",
        "mlp: step 10/50 (20%)  2.00 steps/s  elapsed 5s  ETA 20s  loss=1.2345",
    ]


def test_plain_lines_every_30_seconds_on_slow_runs_and_resumed_rates(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = FakeClock()
    bar = Progress(5000, initial=1000, enabled=False, clock=clock)  # resumed at step 1000
    for _ in range(40):
        clock.now += 4.0  # 0.25 steps/s: a line every 30 s, long before 10% (500 steps)
        bar.update(1)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5  # at 32, 64, 96, 128, 160 s (8 steps each)
    assert lines[0] == "train: step 1008/5000 (20%)  0.25 steps/s  elapsed 32s  ETA 4h26m"
    assert lines[-1].startswith("train: step 1040/5000 (21%)  0.25 steps/s  elapsed 2m40s  ETA 4h24m")


def test_terminal_bar_shows_steps_per_second_and_time_left() -> None:
    stream = io.StringIO()
    bar = Progress(200, enabled=True, file=stream)
    for _ in range(200):
        bar.update(1, loss="0.5")
    bar.close()
    last = stream.getvalue().split("\r")[-1]
    assert re.search(r"200/200 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(step/s|s/step), loss=0.5\]", last), last


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 59.4, 61, 3599, 3600, 7380)] == [
        "0s", "59s", "1m01s", "59m59s", "1h00m", "2h03m",
    ]  # fmt: skip
    assert format_duration(float("nan")) == "?"


def test_summary_times_training_and_evaluation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = template_dataset(n_train=200, n_test=400, side=6, noise=40, balanced=False)
    out = tmp_path / "run"
    cfg = mlp_numpy.MLPNumpyConfig(batch_size=20, max_steps=30, eval_freq=10, out=str(out))
    assert mlp_numpy.run(cfg, dataset=data)["status"] == "completed"  # the progress of a command-line run
    summary = json.loads((out / "summary.json").read_text())
    wall, train, ev = summary["wall_seconds"], summary["train_seconds"], summary["eval_seconds"]
    assert train > 0 and ev > 0 and summary["checkpoint_seconds"] > 0
    assert train + ev + summary["checkpoint_seconds"] <= wall + 0.002  # rounding of each to 1 ms
    # train_seconds is rounded to 1 ms: 30 steps took between train - 0.5 ms and train + 0.5 ms
    assert summary["steps_per_second"] * (train - 5e-4) <= 30 * 1.001
    assert summary["steps_per_second"] * (train + 5e-4) >= 30 * 0.999
    assert summary["samples_per_second"] == pytest.approx(20 * summary["steps_per_second"], rel=0.01)
    stdout = capsys.readouterr().out
    assert re.search(r"step +10/30 .* test acc [\d.]+  \(eval [\d.]+s\)", stdout)
    assert "mlp-numpy on synthetic: step 3/30 (10%)" in stdout and "steps/s  elapsed" in stdout
