"""What a trial finds in its run directory, how a stopped trial is finished, the results table,
``results.csv``, the picture, the chosen trial, and the progress line; no Ray."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from sweep_helpers import make_plan_by_hand

from backproplab.sweep import report
from backproplab.sweep.progress import SweepProgress
from backproplab.sweep.sweep_dir import SweepDir
from backproplab.sweep.trial import finish_stopped_run, read_summary, reported, trial_state
from backproplab.training.run_dir import CLAIM_FILE, RunDir


def fake_run(
    path: Path, vals: list[float], *, status: str | None, checkpoint: bool = True, every: int = 20
) -> Path:
    """A run directory as a trainer leaves it: config, metrics (an evaluation every ``every`` steps
    with val_acc ``vals``), optionally a checkpoint and a summary."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"trainer": "mlp-numpy", "dataset": "digits"}))
    lines = []
    for i, v in enumerate(vals, 1):
        lines.append({"step": i * every - 1, "train_loss": 1.0})
        lines.append(
            {
                "step": i * every,
                "train_loss": 1.0,
                "test_loss": 1.0,
                "test_acc": v - 0.01,
                "val_loss": 1.0,
                "val_acc": v,
            }
        )
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if checkpoint:
        (path / "checkpoint.npz").write_bytes(b"x")
    if status is not None:
        (path / "summary.json").write_text(
            json.dumps({"status": status, "steps": len(vals) * every, "final_test_acc": vals[-1] - 0.01})
        )
    return path


def test_trial_states(tmp_path: Path) -> None:
    assert trial_state(tmp_path / "none") == "new"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / CLAIM_FILE).write_text("")
    assert trial_state(tmp_path / "empty") == "new"
    assert trial_state(fake_run(tmp_path / "done", [0.5], status="completed")) == "finished"
    assert trial_state(fake_run(tmp_path / "div", [0.5], status="diverged", checkpoint=False)) == "finished"
    assert trial_state(fake_run(tmp_path / "int", [0.5], status="interrupted")) == "partial"
    assert trial_state(fake_run(tmp_path / "ckpt", [0.5], status=None)) == "partial"
    assert trial_state(fake_run(tmp_path / "stale", [0.5], status=None, checkpoint=False)) == "stale"


def test_a_stopped_trial_becomes_an_ordinary_finished_run(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "r", [0.3, 0.4, 0.45], status=None)
    assert finish_stopped_run(run, 40)
    summary = read_summary(run)
    assert summary is not None
    assert (summary["status"], summary["stopped_at_step"], summary["final_val_acc"], summary["steps"]) == (
        "stopped",
        40,
        0.4,
        40,
    )
    assert summary["best_val_step"] == 40 and summary["final_test_acc"] == pytest.approx(0.39)
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert trial_state(run) == "finished"
    assert not finish_stopped_run(run, 40)  # finished runs are left as they are


def test_finishing_waits_for_the_worker_to_let_go(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "r", [0.3], status=None)
    holder = RunDir(run, resume=True)
    try:
        assert not finish_stopped_run(run, 20, timeout=0.3)
    finally:
        holder.release()
    assert finish_stopped_run(run, 20)


def test_reports_never_hold_a_test_metric() -> None:
    rec = {
        "step": 5,
        "train_loss": 1.0,
        "test_loss": 2.0,
        "test_acc": 0.3,
        "val_loss": 1.5,
        "val_acc": 0.4,
        "lr": 0.1,
    }
    assert reported(rec) == {"step": 5, "train_loss": 1.0, "val_loss": 1.5, "val_acc": 0.4}


@pytest.fixture
def finished_sweep(sweep_dir: SweepDir) -> tuple[Any, SweepDir]:
    plan = make_plan_by_hand(
        [
            {"learning_rate": 0.001, "optimizer": "sgd"},
            {"learning_rate": 0.002, "optimizer": "sgd"},
            {"learning_rate": 0.003, "optimizer": "sgd"},
            {"learning_rate": 0.004, "optimizer": "sgd"},
            {"learning_rate": 0.005, "optimizer": "sgd"},
        ]
    )
    fake_run(sweep_dir.run_dir("trial-00"), [0.5, 0.7], status="completed")
    fake_run(sweep_dir.run_dir("trial-01"), [0.6, 0.9], status="completed")
    fake_run(sweep_dir.run_dir("trial-02"), [0.95], status="stopped")  # best value, but stopped early
    fake_run(sweep_dir.run_dir("trial-03"), [0.2], status="diverged")
    return plan, sweep_dir


def test_results_table_csv_picture_and_the_choice(finished_sweep: tuple[Any, SweepDir]) -> None:
    plan, sweep = finished_sweep
    results = report.collect(plan, sweep, {"trial-04": "out of memory"})
    by_name = {r.trial.name: r for r in results}
    assert [by_name[f"trial-0{i}"].status for i in range(5)] == [
        "completed",
        "completed",
        "stopped",
        "diverged",
        "failed",
    ]
    assert by_name["trial-04"].error == "out of memory"
    assert [r.trial.name for r in report.ranked(results, "max")][:3] == ["trial-02", "trial-01", "trial-00"]
    chosen = report.choose(results, "max")
    assert chosen is not None and chosen.trial.name == "trial-01"  # a completed trial beats a stopped one
    text = report.format_table(plan, results)
    header = text.splitlines()[0].split()
    assert header[:3] == ["rank", "trial", "learning_rate"] and "optimizer" not in header  # only what varied
    assert set(text.splitlines()[1]) == {"-", " "}
    assert text.splitlines()[2].split()[:2] == ["1", "trial-02"]
    assert "stopped at 20" in text and "failed" in text
    report.write_csv(sweep.results_csv, plan, results)
    rows = report.read_results_csv(sweep.results_csv)
    assert list(rows[0]) == ["trial", "learning_rate", "val_acc", "best_val_acc", "steps", "status"]
    assert [r["trial"] for r in rows][:2] == ["trial-02", "trial-01"] and rows[1]["val_acc"] == "0.9"
    report.plot_results(sweep.picture, plan, results, chosen)
    assert sweep.picture.read_bytes()[:4] == b"\x89PNG"
    data = report.write_summary(sweep.summary_path, plan, results, chosen)
    assert data["chosen"]["trial"] == "trial-01" and data["chosen"]["test_acc"] == pytest.approx(0.89)
    assert data["chosen"]["command"].startswith(
        "backproplab train mlp-numpy --dataset digits --validation_size 300"
    )
    assert "--learning_rate 0.002" in data["chosen"]["command"]
    assert json.loads(sweep.summary_path.read_text())["status"] == {
        "completed": 2,
        "stopped": 1,
        "diverged": 1,
        "failed": 1,
    }


def test_nothing_to_choose_without_a_finished_trial(finished_sweep: tuple[Any, SweepDir]) -> None:
    plan, sweep = finished_sweep
    results = [r for r in report.collect(plan, sweep) if r.status in ("diverged", "pending")]
    assert report.choose(results, "max") is None
    assert {r.status for r in report.collect(plan, sweep)} >= {"pending"}  # trial-04 never ran


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_progress_line() -> None:
    out, clock = io.StringIO(), Clock()
    p = SweepProgress("tiny", 4, "val_acc", "max", file=out, clock=clock, heartbeat=60)
    p.started("trial-00")
    p.started("trial-01")
    p.result("trial-00", 0.5)
    p.result("trial-01", 0.7)
    p.result("trial-01", 0.7)  # no change: no line
    p.finished("trial-00", "stopped")
    clock.t = 75.0
    p.tick()
    lines = out.getvalue().splitlines()
    assert len(lines) == 6
    assert lines[0] == "sweep tiny: 0/4 done, 1 running, 3 pending; no val_acc yet; 0s"
    assert lines[3] == "sweep tiny: 0/4 done, 2 running, 2 pending; best val_acc 0.7000 (trial-01); 0s"
    assert (
        lines[-1]
        == "sweep tiny: 1/4 done (1 stopped early), 1 running, 2 pending; best val_acc 0.7000 (trial-01); 1m15s"
    )
    p.finished("trial-01", "failed")
    assert (
        out.getvalue()
        .splitlines()[-1]
        .startswith("sweep tiny: 2/4 done (1 stopped early, 1 failed), 0 running")
    )
    low = SweepProgress("tiny", 2, "val_loss", "min", file=io.StringIO())
    low.result("a", 0.5)
    low.result("b", 0.2)
    assert low.best() == ("b", 0.2)
