"""``backproplab check`` from the command line: table, JSON, exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from backproplab.cli.main import main

FIXTURES = Path(__file__).parent / "fixtures"


def test_passing_folder_exits_0_with_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(FIXTURES / "cs231n"), "--only", "affine"]) == 0
    out = capsys.readouterr().out
    assert "affine_forward  gradient check: input" in out
    assert "10 checks: 10 PASS, 0 WARN, 0 FAIL" in out and out.rstrip().endswith("CHECK PASSED")


def test_failure_exits_1_and_names_file_and_line(
    planted: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = planted("cs231n", "layers.py", "return loss, dx / n", "return loss, dx")
    assert main(["check", str(folder), "--only", "softmax_loss"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "sum instead of mean" in out
    assert f"at {folder.resolve() / 'layers.py'}:" in out
    assert out.rstrip().endswith("CHECK FAILED")


def test_json_report(planted: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    folder = planted("cs231n", "layers.py", "db = dout.sum(axis=0)", "db = dout.sum(axis=0) * 2")
    assert main(["check", str(folder), "--only", "affine", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["counts"]["FAIL"] >= 1
    bias = [r for r in data["rows"] if r["check"] == "bias grad vs PyTorch"]
    assert (
        bias
        and bias[0]["status"] == "FAIL"
        and bias[0]["where"].endswith(tuple(f":{i}" for i in range(1, 200)))
    )


@pytest.mark.parametrize("path", ["/nonexistent/folder", __file__ + ".txt"])
def test_bad_path_is_one_line_exit_2(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: check:") and err.count("\n") == 1


def test_nothing_found_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.py").write_text("X = 1\n")
    assert main(["check", str(tmp_path)]) == 2
    assert "found nothing to check" in capsys.readouterr().err
