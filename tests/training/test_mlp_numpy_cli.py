"""`backproplab train mlp-numpy` end to end on the real 8x8 digits, and its error handling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from backproplab.cli.main import main
from backproplab.nn import load_npz
from backproplab.torch_models import TorchMLP

pytest.importorskip("sklearn")

DIGITS_MIN_ACC = 0.85  # the default MLP on 8x8 digits; measured ~0.95 after 600 steps


def run_cli(*args: str) -> int:
    return main(list(args))


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "digits"
    code = run_cli(
        "train",
        "mlp-numpy",
        "--dataset",
        "digits",
        "--max_steps",
        "600",
        "--eval_freq",
        "200",
        "--out",
        str(out),
    )
    assert code == 0
    return out


def test_run_directory_holds_every_output(digits_run: Path) -> None:
    cfg = json.loads((digits_run / "config.json").read_text())
    assert cfg["dnn_hidden_units"] == "100" and cfg["learning_rate"] == 1e-3 and cfg["batch_size"] == 200
    assert cfg["max_steps"] == 600 and cfg["seed"] == 42 and cfg["trainer"] == "mlp-numpy"
    records = [json.loads(line) for line in (digits_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 601))
    evals = [r for r in records if "test_acc" in r]
    assert [r["step"] for r in evals] == [200, 400, 600]
    assert all(np.isfinite(r["train_loss"]) for r in records)
    summary = json.loads((digits_run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 600
    assert summary["final_test_acc"] == evals[-1]["test_acc"] >= DIGITS_MIN_ACC
    assert summary["best_test_acc"] == max(r["test_acc"] for r in evals)
    assert summary["samples_per_second"] > 0
    assert (digits_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_loss_decreases_from_ln_num_classes(digits_run: Path) -> None:
    records = [json.loads(line) for line in (digits_run / "metrics.jsonl").read_text().splitlines()]
    first = records[0]["train_loss"]
    assert abs(first - np.log(10)) < 0.01  # 1e-4 init: uniform predictions at the start
    assert np.mean([r["train_loss"] for r in records[-50:]]) < 0.5 * first


def test_model_npz_loads_into_the_torch_twin(digits_run: Path) -> None:
    import torch

    state = load_npz(digits_run / "model.npz")
    assert list(state) == ["layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"]
    assert state["layers.0.weight"].shape == (100, 64)
    twin = TorchMLP(64, [100], 10)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})


def test_same_seed_same_metrics(tmp_path: Path) -> None:
    logs = []
    for name in ("a", "b"):
        assert run_cli("train", "mlp-numpy", "--dataset", "digits", "--max_steps", "30", "--eval_freq", "10",
                       "--out", str(tmp_path / name)) == 0  # fmt: skip
        logs.append((tmp_path / name / "metrics.jsonl").read_text())
    assert logs[0] == logs[1]
    assert run_cli("train", "mlp-numpy", "--dataset", "digits", "--max_steps", "30", "--eval_freq", "10",
                   "--seed", "7", "--out", str(tmp_path / "c")) == 0  # fmt: skip
    assert (tmp_path / "c" / "metrics.jsonl").read_text() != logs[0]


def test_non_finite_loss_stops_with_the_likely_cause(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sum"
    code = run_cli("train", "mlp-numpy", "--dataset", "digits", "--loss_reduction", "sum", "--learning_rate", "1",
                   "--max_steps", "200", "--out", str(out))  # fmt: skip
    err = capsys.readouterr().err
    assert code == 3  # EXIT_DIVERGED: not the 2 of a bad flag
    assert err.startswith("error: training loss became") and err.count("\n") == 1
    assert "--loss_reduction sum" in err and "200x" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and 1 <= summary["steps"] < 200
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == summary["steps"]
    assert records[-1]["train_loss"] in ("nan", "inf") and np.isfinite(records[0]["train_loss"])
    assert (out / "curves.png").is_file()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dnn_hidden_units", "100,,10"], "comma-separated positive integers"),
        (["--dnn_hidden_units", "100,-3"], "comma-separated positive integers"),
        (["--max_steps", "-5"], "--max_steps must be a positive integer, got -5"),
        (["--learning_rate", "0"], "--learning_rate must be positive"),
        (["--data_dir", "/nonexistent/cifar"], "/nonexistent/cifar"),
    ],
)
def test_bad_flags_are_one_line_errors(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli("train", "mlp-numpy", *flags, "--out", str(tmp_path / "run"))
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_unknown_flags_and_bad_choices_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["train", "mlp-numpy", "--learning-rate", "1"], ["train", "mlp-numpy", "--optimizer", "rmsprop"],
                 ["train", "mlp-numpy", "--max_steps", "ten"]):  # fmt: skip
        try:  # an unknown flag is the CLI's own one-line error; a bad value is argparse's (SystemExit)
            code = run_cli(*argv)
        except SystemExit as exc:
            code = exc.code
        assert code == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and "did you mean --learning_rate?" in err


def test_refuses_to_overwrite_a_non_empty_output_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mine.txt").write_text("precious")
    assert run_cli("train", "mlp-numpy", "--dataset", "digits", "--out", str(tmp_path)) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_plot_overlays_runs(digits_run: Path, tmp_path: Path) -> None:
    other = tmp_path / "tanh"
    assert run_cli("train", "mlp-numpy", "--dataset", "digits", "--activation", "tanh", "--max_steps", "100",
                   "--eval_freq", "50", "--out", str(other)) == 0  # fmt: skip
    picture = tmp_path / "both.png"
    assert run_cli("plot", str(digits_run), str(other), "-o", str(picture)) == 0
    assert picture.read_bytes()[:4] == b"\x89PNG"
    assert run_cli("plot", str(tmp_path / "nothing"), "-o", str(tmp_path / "x.png")) == 2


def test_demo_falls_back_to_digits_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKPROPLAB_CACHE", str(tmp_path / "empty-cache"))  # no CIFAR-10 decoded there
    assert run_cli("demo", "--out", str(tmp_path / "demo")) == 0
    out = capsys.readouterr().out
    assert "training on scikit-learn's 8x8 digits" in out
    assert "final test accuracy:" in out and str(tmp_path / "demo" / "curves.png") in out
