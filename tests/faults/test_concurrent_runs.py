"""Two runs given the same run directory: exactly one trains, the other refuses with one line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from faultkit import TORCH_RUN, child_env, one_error_line

from backproplab.errors import RunDirInUseError
from backproplab.training.run_dir import CLAIM_FILE, RunDir, default_run_dir

CLAIMER = """
import sys, time
from backproplab.errors import RunDirInUseError
from backproplab.training.run_dir import RunDir
start, path = float(sys.argv[1]), sys.argv[2]
time.sleep(max(0.0, start - time.time()))
try:
    run = RunDir(path)
except RunDirInUseError as e:
    print("refused", e)
    sys.exit(3)
print("won")
time.sleep(4)
"""


def test_simultaneous_claims_of_one_directory_have_exactly_one_winner(tmp_path: Path) -> None:
    path = tmp_path / "run"
    start = time.time() + 2.0  # every claimer is imported and waiting by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(start), str(path)],
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 3, 3, 3, 3, 3], results
    refusals = [out for (out, _), code in zip(results, codes, strict=True) if code == 3]
    assert all("is in use by another run" in out for out in refusals), refusals
    assert any("(pid " in out for out in refusals), refusals  # the claim file names its owner
    assert not (path / CLAIM_FILE).exists()  # the winner let go when it ended
    assert list(path.iterdir()) == []


def test_two_trainings_with_the_same_out_never_share_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [*TORCH_RUN, "--max_steps", "200", "--eval_freq", "100", "--out", str(out)]
    cmd = [sys.executable, "-m", "backproplab", *args]
    procs = [
        subprocess.Popen(
            cmd, cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=180) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], results
    loser_err = next(err for (_, err), p in zip(results, procs, strict=True) if p.returncode == 2)
    line = one_error_line(loser_err)
    # The loser either found the winner training, or (when it started late) the finished run.
    assert "is in use by another run" in line or "already exists and is not empty" in line, line
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 201))  # one run's metrics, not two interleaved
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"


def test_a_claimed_directory_refuses_a_resume_too(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    run.save_config({"trainer": "mlp-torch"})
    try:
        RunDir(tmp_path / "r", resume=True)
        raise AssertionError("a resume of a directory in use must be refused")
    except RunDirInUseError as e:
        assert f"pid {__import__('os').getpid()}" in str(e)
    run.release()
    assert RunDir(tmp_path / "r", resume=True).load_config() == {"trainer": "mlp-torch"}


def test_default_run_directories_started_together_are_distinct(tmp_path: Path) -> None:
    paths = [default_run_dir("mlp-torch", tmp_path) for _ in range(3)]  # same second, same stamp
    assert len(set(paths)) == 3 and all(p.is_dir() for p in paths)
    runs = [RunDir(p) for p in paths]  # each is claimable by the run it was made for
    assert [r.path for r in runs] == paths
