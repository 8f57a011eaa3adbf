"""Tiny sweeps (a handful of NumPy MLP trials on the 8x8 digits) on a real Ray: the embedded one,
stopped midway with Ctrl-C and resumed, and a localhost cluster of a head and one worker node,
started by the test with token authentication on. Each run is the ``backproplab sweep`` command in
a subprocess; every Ray process a test started is stopped at its end (found by its token)."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sweep_helpers import RAY, RayEnv, write_spec

from backproplab.sweep.report import read_results_csv

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.xdist_group("ray")]

#: Four trials; ASHA (at step 200, keeping the best quarter) stops the one with a tiny learning rate.
MIDWAY = """
trainer = "mlp-numpy"
[fixed]
dataset = "digits"
validation_size = 300
max_steps = 500
eval_freq = 100
batch_size = 50
[space]
learning_rate = { grid = [0.002, 0.005, 0.00001, 0.003] }
[early_stopping]
grace_period = 200
reduction_factor = 4
"""

CLUSTER = """
trainer = "mlp-numpy"
[fixed]
dataset = "digits"
validation_size = 300
max_steps = 200
eval_freq = 100
batch_size = 50
[space]
learning_rate = { grid = [0.001, 0.003, 0.01] }
"""

RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "curves.png")


def evaluations(run: Path) -> list[dict[str, object]]:
    return [
        json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "val_acc" in line
    ]


def check_results(sweep: Path, n: int) -> list[dict[str, str]]:
    """Every trial an ordinary run directory; results.csv sorted by val_acc with the varied flag only."""
    for i in range(n):
        run = sweep / "trials" / f"trial-{i:02d}"
        for name in RUN_FILES:
            assert (run / name).is_file(), f"{run}/{name}"
    rows = read_results_csv(sweep / "results.csv")
    assert list(rows[0]) == ["trial", "learning_rate", "val_acc", "best_val_acc", "steps", "status"]
    assert sorted(r["trial"] for r in rows) == [f"trial-{i:02d}" for i in range(n)]
    values = [float(r["val_acc"]) for r in rows]
    assert values == sorted(values, reverse=True)
    assert (sweep / "results.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["chosen"]["trial"] == rows[0]["trial"] or rows[0]["status"] != "completed"
    assert 0 < summary["chosen"]["test_acc"] <= 1
    return rows


def test_embedded_sweep_stopped_midway_and_resumed(tmp_path: Path, ray_env: RayEnv) -> None:
    spec = write_spec(tmp_path, MIDWAY)  # named tiny.toml: the sweep is "tiny"
    sweep = tmp_path / "sweep"
    trials = sweep / "trials"
    proc = ray_env.start_sweep(
        str(spec), "--out", str(sweep), "--max_concurrent", "1", log=tmp_path / "first.log"
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if (trials / "trial-00" / "summary.json").is_file() and (
            trials / "trial-01" / "checkpoint.npz"
        ).is_file():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # Ctrl-C while trial-01 trains
    assert proc.wait(timeout=120) == 130, (tmp_path / "first.log").read_text()
    first = (tmp_path / "first.log").read_text()
    assert f"continue with: backproplab sweep --resume {sweep}" in first
    # the progress line while a trial runs (which counts it shows depends on when the events came)
    assert re.search(
        r"sweep tiny: [0-3]/4 done(?: \(\d+ stopped early\))?, 1 running, [0-3] pending", first
    ), first
    kept = {p.name: p.read_bytes() for p in (trials / "trial-00").iterdir() if p.is_file()}
    was_partial = not (trials / "trial-01" / "summary.json").is_file() or json.loads(
        (trials / "trial-01" / "summary.json").read_text()
    )["status"] not in ("completed", "stopped")

    done = ray_env.sweep("--resume", str(sweep), "--max_concurrent", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming sweep tiny" in done.stdout and "sweep tiny: 4/4 done (1 stopped early)" in done.stdout
    assert {
        p.name: p.read_bytes() for p in (trials / "trial-00").iterdir() if p.is_file()
    } == kept  # not retrained
    assert "finished earlier" in (sweep / "logs" / "trial-00.log").read_text()
    log01 = (sweep / "logs" / "trial-01.log").read_text()
    steps = [r["step"] for r in evaluations(trials / "trial-01")]
    assert steps == list(range(100, 501, 100))  # continued from its checkpoint, no step twice
    if was_partial:
        assert "): partial" in log01
    assert "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1" in log01
    stopped = json.loads((trials / "trial-02" / "summary.json").read_text())
    assert (stopped["status"], stopped["stopped_at_step"]) == ("stopped", 200)
    rows = check_results(sweep, 4)
    assert {r["trial"]: r["status"] for r in rows}["trial-02"] == "stopped"
    assert "its test accuracy (reported once, not used to choose)" in done.stdout
    assert len(list((sweep / "tune").iterdir())) == 2  # Ray Tune's records of both sessions


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def localhost_cluster(ray_env: RayEnv) -> Iterator[str]:
    """A Ray head and one worker node (1 CPU each) on the loopback, with token authentication;
    every process has RAY_AUTH_MODE=token and the test's token. Stopped by ``ray_env``."""
    port = free_port()
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    head = [str(RAY), "start", "--head", f"--port={port}", f"--ray-client-server-port={free_port()}"]
    head += ["--include-dashboard=false", f"--temp-dir={ray_env.tmp / 'ray'}", *common]
    for cmd in (head, [str(RAY), "start", f"--address=127.0.0.1:{port}", *common]):
        started = subprocess.run(cmd, env=ray_env.env, capture_output=True, text=True, timeout=180)
        assert started.returncode == 0, started.stdout + started.stderr
    yield f"127.0.0.1:{port}"


def test_the_same_sweep_on_a_localhost_cluster(
    tmp_path: Path, ray_env: RayEnv, localhost_cluster: str
) -> None:
    spec = write_spec(tmp_path, CLUSTER)
    sweep = tmp_path / "sweep"
    done = ray_env.sweep(str(spec), "--out", str(sweep), "--address", localhost_cluster)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        f"on the Ray cluster at {localhost_cluster} (2 CPUs, 1 per trial, up to 2 at a time)" in done.stdout
    )
    rows = check_results(sweep, 3)
    assert {r["status"] for r in rows} == {"completed"}
    nodes = set()
    for log in (sweep / "logs").glob("trial-*.log"):
        for line in log.read_text().splitlines():
            if line.startswith("--- ") and "Ray node " in line:
                nodes.add(line.split("Ray node ")[1].split(")")[0])
    assert len(nodes) == 2  # trials ran on the head and on the worker node
