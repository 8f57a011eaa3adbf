"""Signals at chosen moments: Ctrl-C while the trainer is imported or at a step, SIGKILL before the
first checkpoint or in the middle of a checkpoint save."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from faultkit import NUMPY_RUN, TORCH_RUN, child_env, run_cli

from backproplab.training.run_dir import CLAIM_FILE
from backproplab.utils.atomic import is_temp_file_name


def steps_of(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_ctrl_c_while_the_trainer_is_imported_exits_130_without_a_traceback(tmp_path: Path) -> None:
    # -X importtime reports each module on stderr as it finishes: once backproplab.cli.main is
    # in, the trainer (and torch, seconds of imports) comes next; interrupt right then.
    cmd = [sys.executable, "-X", "importtime", "-m", "backproplab", *TORCH_RUN, "--out", str(tmp_path / "r")]
    with subprocess.Popen(cmd, cwd=tmp_path, env=child_env(), stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.rstrip().endswith("backproplab.cli.main"):
                proc.send_signal(signal.SIGINT)
                break
        rest = proc.stderr.read()
        proc.wait(timeout=60)
    errors = [ln for ln in rest.splitlines() if not ln.startswith("import time:")]
    assert proc.returncode == 130, (proc.returncode, errors)
    assert "Traceback" not in rest and errors == ["interrupted: everything written so far is kept"], errors
    assert not (tmp_path / "r").exists()  # it never got as far as making the run directory


def test_ctrl_c_at_a_chosen_step_saves_and_resumes_to_the_same_metrics(tmp_path: Path) -> None:
    out = tmp_path / "r"
    res = run_cli([*TORCH_RUN, "--out", str(out)], tmp_path, fault="sigint-at-step:13")
    assert res.returncode == 130, res.stderr
    assert "Traceback" not in res.stderr
    assert steps_of(out) == list(range(1, 14))  # the step under way finished, nothing after it
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    res = run_cli(["train", "mlp-torch", "--resume", str(out)], tmp_path)
    assert res.returncode == 0, res.stderr
    assert steps_of(out) == list(range(1, 21))
    assert not (out / CLAIM_FILE).exists()


def test_sigkill_before_the_first_checkpoint_leaves_a_directory_that_can_be_reused(tmp_path: Path) -> None:
    out = tmp_path / "r"
    res = run_cli([*TORCH_RUN, "--out", str(out)], tmp_path, fault="sigkill-at-step:3")
    assert res.returncode == -signal.SIGKILL
    left = {p.name for p in out.iterdir()}
    assert "checkpoint.pt" not in left and "config.json" in left  # nothing to resume from
    res = run_cli(["train", "mlp-torch", "--resume", str(out)], tmp_path)
    assert res.returncode == 2
    assert "start it again with the same flags and --out" in res.stderr, res.stderr
    res = run_cli([*TORCH_RUN, "--out", str(out)], tmp_path)  # the same command again just works
    assert res.returncode == 0, res.stderr
    assert steps_of(out) == list(range(1, 21))


def test_sigkill_in_the_middle_of_a_checkpoint_save_keeps_the_last_one_and_resume_cleans_up(
    tmp_path: Path,
) -> None:
    out = tmp_path / "r"
    res = run_cli([*TORCH_RUN, "--out", str(out)], tmp_path, fault="sigkill-in-save:checkpoint.pt:2")
    assert res.returncode == -signal.SIGKILL
    temps = [p.name for p in out.iterdir() if is_temp_file_name(p.name)]
    assert len(temps) == 1 and temps[0].startswith(".checkpoint.pt.") and temps[0].endswith(".tmp.pt")
    assert (out / CLAIM_FILE).exists()  # a killed process cannot tidy up, but its lock is gone
    res = run_cli(["train", "mlp-torch", "--resume", str(out)], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "(resumed" in res.stdout or "final test accuracy" in res.stdout
    assert steps_of(out) == list(range(1, 21))
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # temp and lock gone


def test_sigkill_mid_run_of_a_numpy_trainer_is_refused_with_a_way_forward(tmp_path: Path) -> None:
    out = tmp_path / "r"
    res = run_cli(
        [*NUMPY_RUN, "--max_steps", "200", "--out", str(out)], tmp_path, fault="sigkill-at-step:150"
    )
    assert res.returncode == -signal.SIGKILL
    time.sleep(0.1)
    res = run_cli([*NUMPY_RUN, "--out", str(out)], tmp_path)
    assert res.returncode == 2
    line = [ln for ln in res.stderr.splitlines() if ln][-1]
    assert line.startswith("error: output directory") and f"--resume {out}" in line, line
