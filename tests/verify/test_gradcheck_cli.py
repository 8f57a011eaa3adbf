"""``backproplab gradcheck``: exit codes, the table, JSON, and a planted broken module."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from backproplab import nn
from backproplab.cli.main import main
from backproplab.verify import registry
from backproplab.verify.registry import GradcheckCase, randomized


def test_builtins_pass_with_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    for case in registry.select_cases(None):
        assert case.name in out
    assert "wrong" not in out.split("rel error =")[0]
    assert "good < 1e-07, wrong > 0.01" in out
    assert "agree (seed 0)" in out


def test_one_module_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gradcheck", "--module", "Linear", "--seed", "3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["config"] == {"module": "Linear", "seed": 3, "eps": 1e-6, "json": True}
    assert data["ok"] is True
    assert [r["name"] for r in data["reports"]] == ["Linear", "Linear(bias=False)"]
    assert [c["tensor"] for c in data["reports"][0]["checks"]] == ["input", "weight", "bias"]
    assert all(
        c["verdict"] == "good" and c["max_rel_error"] < 1e-7 for r in data["reports"] for c in r["checks"]
    )


class LinearForgetsBias(nn.Linear):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        (x,) = self._saved()
        self.weight.accumulate(dout.T @ x)
        return dout @ self.weight.data  # type: ignore[no-any-return]


class LinearTransposed(nn.Linear):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        out = super().backward(dout)
        assert out is not None
        return dout @ self.weight.data.T  # type: ignore[no-any-return]


@pytest.fixture
def broken_cases(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [
        *registry.CASES,
        GradcheckCase(
            "BrokenLinear(no bias grad)", "BrokenLinear",
            lambda rng: randomized(LinearForgetsBias(4, 3, rng=rng), rng),
            lambda rng: rng.normal(size=(2, 4)),
        ),
        GradcheckCase(
            "BrokenLinear(transposed)", "BrokenLinear",
            lambda rng: randomized(LinearTransposed(3, 3, rng=rng), rng), lambda rng: rng.normal(size=(2, 3)),
        ),
    ]  # fmt: skip
    monkeypatch.setattr(registry, "CASES", cases)


@pytest.mark.usefixtures("broken_cases")
def test_planted_bug_exits_1_and_names_the_worst_element(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gradcheck", "--module", "BrokenLinear"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    bias_row = next(
        k
        for k, line in enumerate(lines)
        if line.startswith("BrokenLinear(no bias grad)") and "  bias  " in line
    )
    assert lines[bias_row].split()[-1] == "wrong"
    assert "worst element bias[" in lines[bias_row + 1] and "analytic 0 vs numeric" in lines[bias_row + 1]
    input_row = next(
        k
        for k, line in enumerate(lines)
        if line.startswith("BrokenLinear(transposed)") and "  input  " in line
    )
    assert lines[input_row].split()[-1] == "wrong"
    assert "worst element input[" in lines[input_row + 1]
    assert "WRONG gradients in 2 of 2 cases" in out


@pytest.mark.usefixtures("broken_cases")
def test_planted_bug_in_the_full_run_exits_1_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gradcheck", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    wrong = {r["name"] for r in data["reports"] if r["verdict"] == "wrong"}
    assert wrong == {"BrokenLinear(no bias grad)", "BrokenLinear(transposed)"}


def test_unknown_module_is_a_one_line_error_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gradcheck", "--module", "Nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "unknown module 'Nope'" in err and "Linear" in err and "SoftmaxCrossEntropy" in err


def test_bad_flags_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gradcheck", "--eps", "0"]) == 2
    assert "--eps must lie in (0, 1)" in capsys.readouterr().err
    assert main(["gradcheck", "--no-such-flag"]) == 2
    assert "unknown flag --no-such-flag" in capsys.readouterr().err


def test_console_entry_point_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "backproplab", "gradcheck", "--module", "Tanh"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Tanh" in proc.stdout and "good" in proc.stdout
