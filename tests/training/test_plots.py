"""``backproplab plot`` and the run's curves: log axis, labels, data sets, diverged runs, formats."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib
import pytest

from backproplab.cli.main import main
from backproplab.errors import ConfigError
from backproplab.training.plots import plot_run_dirs, plot_runs, run_labels


def _run(root: Path, name: str, losses: list[float], **config: Any) -> Path:
    d = root / name
    d.mkdir()
    records = [{"step": i + 1, "train_loss": v} for i, v in enumerate(losses)]
    if len(losses) >= 10 and all(math.isfinite(v) for v in losses):
        records[9].update(test_loss=losses[9], test_acc=0.5)
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = {"trainer": "mlp-numpy", "dataset": "cifar10", "learning_rate": 1e-3, "out": str(d), **config}
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def _svg_text(path: Path, runs: list[tuple[str, list[dict[str, Any]]]], **kw: Any) -> str:
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # keep text as text, to read it back
        plot_runs(runs, path, **kw)
    return path.read_text()


def test_diverged_run_gets_a_log_axis_and_a_mark(tmp_path: Path) -> None:
    good = [{"step": i, "train_loss": 2.3 - 0.01 * i} for i in range(1, 30)]
    bad = [{"step": i, "train_loss": 2.3 * 10 ** (i * 3)} for i in range(1, 13)] + [
        {"step": 13, "train_loss": float("nan")}
    ]
    svg = _svg_text(tmp_path / "a.svg", [("mean", good), ("sum", bad)])
    assert "(log scale)" in svg and "diverged at step 13" in svg
    svg = _svg_text(tmp_path / "b.svg", [("mean", good)])
    assert "(log scale)" not in svg and "diverged" not in svg
    svg = _svg_text(tmp_path / "c.svg", [("mean", good), ("sum", bad)], logy=False)
    assert "(log scale)" not in svg


def test_single_diverged_run_says_so_in_its_title_and_empty_accuracy_panel(tmp_path: Path) -> None:
    bad = [{"step": 1, "train_loss": 2.3}, {"step": 2, "train_loss": "nan"}]
    svg = _svg_text(tmp_path / "d.svg", [("r", bad)], title="mlp-numpy on cifar10")
    assert "mlp-numpy on cifar10 (diverged at step 2)" in svg
    assert "none: the run diverged before its first evaluation" in svg


def test_labels_name_what_differs(tmp_path: Path) -> None:
    configs = [
        {"trainer": "mlp-numpy", "dataset": "cifar10", "learning_rate": 0.001, "out": "a", "seed": 1},
        {"trainer": "mlp-numpy", "dataset": "cifar10", "learning_rate": 0.01, "out": "b", "seed": 1},
    ]
    assert run_labels(configs, ["a", "b"]) == ["learning_rate=0.001", "learning_rate=0.01"]
    configs[1]["trainer"] = "mlp-torch"
    assert run_labels(configs, ["a", "b"]) == [
        "mlp-numpy learning_rate=0.001",
        "mlp-torch learning_rate=0.01",
    ]
    assert run_labels([configs[0], dict(configs[0])], ["a", "b"]) == ["a", "b"]
    torch_run = {**configs[0], "trainer": "convnet", "device": "cpu", "amp": "none"}
    numpy_run = {**configs[0], "trainer": "convnet-numpy"}  # no --device, --amp: not a difference
    assert run_labels([torch_run, numpy_run], ["a", "b"]) == ["convnet", "convnet-numpy"]


def test_mixed_datasets_are_refused_unless_asked(tmp_path: Path) -> None:
    a = _run(tmp_path, "a", [2.3, 2.2])
    b = _run(tmp_path, "b", [2.3, 2.1], dataset="fashion-mnist")
    with pytest.raises(ConfigError, match="different data sets"):
        plot_run_dirs([a, b], tmp_path / "x.png")
    assert plot_run_dirs([a, b], tmp_path / "x.png", mixed_datasets=True).stat().st_size > 0


@pytest.mark.parametrize(("ext", "magic"), [("png", b"\x89PNG"), ("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_format_follows_the_extension(tmp_path: Path, ext: str, magic: bytes) -> None:
    a = _run(tmp_path, "a", [2.3, 2.2, 2.0])
    out = plot_run_dirs([a], tmp_path / f"curves.{ext}")
    assert out.read_bytes().startswith(magic)


def test_cli_labels_title_and_bad_extension(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _run(tmp_path, "a", [2.3] * 12)
    b = _run(tmp_path, "b", [2.0] * 12, learning_rate=0.1)
    out = tmp_path / "c.png"
    assert main(["plot", str(a), str(b), "-o", str(out), "--labels", "slow,fast", "--title", "two"]) == 0
    assert out.is_file()
    assert main(["plot", str(a), "-o", str(tmp_path / "c.jpg")]) == 2
    assert "use a .png, .svg or .pdf" in capsys.readouterr().err
    assert main(["plot", str(a), str(b), "-o", str(out), "--labels", "one"]) == 2
    assert "--labels has 1 labels for 2 runs" in capsys.readouterr().err
