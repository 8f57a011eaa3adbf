"""``backproplab sweep`` on the command line: a bad flag or value is one ``error:`` line and exit 2
before any trial starts (and before Ray is imported); ``--dry_run`` lists the trials; commands that
do not sweep never import Ray."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sweep_helpers import write_spec

from backproplab.cli.main import main

TINY = """
trainer = "mlp-numpy"
[fixed]
dataset = "digits"
validation_size = 300
max_steps = 20
eval_freq = 10
[space]
learning_rate = { grid = [0.001, 0.003] }
"""

#: What Ray reads from the environment, set by the sweep command in its own process.
RAY_ENV = ("RAY_AIR_NEW_OUTPUT", "TUNE_DISABLE_STRICT_METRIC_CHECKING", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[object, str, str]:
    try:
        code: object = main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_an_unknown_flag_is_the_command_lines_error_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, TINY.replace("max_steps = 20", "lr = 0.1"))
    code, _, err = run_main(["sweep", str(spec), "--out", str(tmp_path / "sw")], capsys)
    assert code == 2
    assert err == f"error: {spec} [fixed]: unknown flag --lr; did you mean --learning_rate?\n"
    assert not (tmp_path / "sw").exists()


def test_an_impossible_drawn_value_is_an_error_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in RAY_ENV:
        monkeypatch.delenv(var, raising=False)
    spec = write_spec(tmp_path, TINY.replace("[0.001, 0.003]", "[0.001, 1e39]"))
    code, _, err = run_main(["sweep", str(spec), "--out", str(tmp_path / "sw")], capsys)
    assert code == 2
    assert err.startswith(
        f"error: {spec}: trial 2 of 2 (learning_rate=1e+39): --learning_rate must be a finite number"
    )
    assert err.count("\n") == 1 and not (tmp_path / "sw").exists()


def test_bad_sweep_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, TINY)
    cases = [
        (["sweep"], "takes a sweep file (SWEEP.toml) or --resume SWEEP_DIR, got neither"),
        (["sweep", str(spec), "--resume", str(tmp_path)], "got both"),
        (
            ["sweep", "--resume", str(tmp_path), "--out", "x"],
            "only --address, --max_concurrent and --cpus_per_trial",
        ),
        (["sweep", str(spec), "--max_concurrent", "0"], "--max_concurrent must be a positive integer, got 0"),
        (
            ["sweep", str(spec), "--max_concurent", "1"],
            "unknown flag --max_concurent; did you mean --max_concurrent?",
        ),
        (["sweep", str(tmp_path / "missing.toml")], "does not exist"),
    ]
    for argv, message in cases:
        code, _, err = run_main(argv, capsys)
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)
    code, _, err = run_main(["sweep", "--resume", str(tmp_path)], capsys)
    assert code == 2 and "is not a sweep directory (no sweep.json)" in err


def test_dry_run_lists_the_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in RAY_ENV:
        monkeypatch.delenv(var, raising=False)
    spec = write_spec(tmp_path, TINY)
    code, out, _ = run_main(["sweep", str(spec), "--dry_run", "--set", "max_steps=30"], capsys)
    assert code == 0
    assert out.splitlines() == [
        "2 trials of train mlp-numpy, selecting on val_acc (max):",
        "  trial-00  learning_rate=0.001",
        "  trial-01  learning_rate=0.003",
    ]


def test_the_sweep_errors_and_other_commands_never_import_ray(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, TINY.replace("max_steps = 20", "lr = 0.1"))
    script = f"""
import sys
from backproplab.cli.main import main
assert main(["sweep", {str(spec)!r}]) == 2
assert main(["train", "mlp-numpy", "--dataset", "digits", "--max_steps", "2", "--eval_freq", "2",
             "--validation_size", "100", "--out", {str(tmp_path / "run")!r}]) == 0
print("ray" in sys.modules, "torch" in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "False False"
