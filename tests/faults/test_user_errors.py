"""Flags and environments that used to end in a traceback: each is one ``error:`` line and exit 2."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from faultkit import NUMPY_RUN, TORCH_RUN, one_error_line

from backproplab import nn
from backproplab.cli.main import main
from backproplab.errors import BackproplabError, StateDictKeyError

TRAINERS = ["mlp-numpy", "mlp-torch", "convnet", "convnet-numpy"]


@pytest.mark.parametrize("trainer", TRAINERS)
def test_a_negative_seed(trainer: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", trainer, "--dataset", "digits", "--seed", "-1", "--out", str(tmp_path / "r")]) == 2
    assert one_error_line(capsys.readouterr().err) == "error: --seed must be a non-negative integer, got -1"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("trainer", ["mlp-numpy", "mlp-torch"])
def test_hidden_units_that_cannot_fit_in_memory(trainer: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", trainer, "--dataset", "fashion-mnist", "--dnn_hidden_units", "1000000000"]
    assert main(args) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--dnn_hidden_units 1000000000: the MLP (784 inputs) has 795,000,000,010 parameters" in line
    assert "TiB of memory to train" in line and "is available" in line


@pytest.mark.parametrize("trainer", ["mlp-torch", "convnet"])
def test_a_learning_rate_beyond_float32(trainer: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", trainer, "--dataset", "digits", "--learning_rate", "1e300"]) == 2
    assert "--learning_rate must be a finite number of at most 3.4e+38" in one_error_line(
        capsys.readouterr().err
    )


def test_a_huge_learning_rate_that_fits_float32_ends_as_a_diverged_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], torch_one_thread: None
) -> None:
    out = tmp_path / "r"
    assert main([*TORCH_RUN, "--learning_rate", "1e30", "--out", str(out)]) == 3  # EXIT_DIVERGED
    assert "training loss became nan" in one_error_line(capsys.readouterr().err)
    assert (out / "metrics.jsonl").read_text() and '"diverged"' in (out / "summary.json").read_text()


def test_out_below_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    for args in (NUMPY_RUN, TORCH_RUN):
        assert main([*args, "--out", str(tmp_path / "file" / "run")]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"cannot create the run directory {tmp_path / 'file' / 'run'}" in line
        assert f"a component of the path is a file, not a directory ({tmp_path / 'file'})" in line


def test_out_on_a_read_only_file_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_mkdir = os.mkdir

    def read_only(path: object, mode: int = 0o777, *a: object, **k: object) -> None:
        if str(path).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        real_mkdir(path, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "mkdir", read_only)
    assert main([*NUMPY_RUN, "--out", str(tmp_path / "ro")]) == 2
    assert "the file system is read-only; choose another --out" in one_error_line(capsys.readouterr().err)


def test_an_oserror_from_the_environment_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from backproplab.training import mlp_numpy

    def denied(cfg: object, **kw: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", "/somewhere/curves.png")

    monkeypatch.setattr(mlp_numpy, "run", denied)
    assert main(["train", "mlp-numpy"]) == 2
    assert (
        one_error_line(capsys.readouterr().err)
        == "error: cannot write /somewhere/curves.png: Permission denied"
    )


def test_load_state_dict_key_errors_are_the_projects_own() -> None:
    model = nn.Linear(2, 3)
    for state, shown in [({"weight": np.zeros((3, 2))}, "missing keys ['bias']"),
                         ({**model.state_dict(), "extra": np.zeros(1)}, "unexpected keys ['extra']")]:  # fmt: skip
        with pytest.raises(StateDictKeyError) as e:
            model.load_state_dict(state)
        assert isinstance(e.value, BackproplabError) and isinstance(e.value, KeyError)
        assert str(e.value).startswith("load_state_dict for Linear: ") and shown in str(e.value)
