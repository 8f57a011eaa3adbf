"""The doctor's checks: each verdict on hand-made numbers, on planted problems, and through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from backproplab import nn
from backproplab.cli.main import main
from backproplab.instrument.layer_stats import LayerStats
from backproplab.torch_models import TorchMLP
from backproplab.verify import doctor as D
from backproplab.verify.doctor_figure import _bars

N_IN, WIDTH, N_CLASSES, BATCH = 24, 32, 5, 32


def data(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, N_IN)).astype(np.float32), rng.integers(0, N_CLASSES, n)


def numpy_backend(hidden: list[int], *, init: str = "torch", reduction: str = "mean", optimizer: str = "sgd",
                  lr: float = 0.05, activation: str = "elu") -> D.NumpyBackend:  # fmt: skip
    model = nn.MLP(
        N_IN, hidden, N_CLASSES, activation=activation, init_scheme=init, rng=np.random.default_rng(1)
    )

    def make(params: list[Any]) -> Any:
        return nn.optim.SGD(params, lr=lr) if optimizer == "sgd" else nn.optim.Adam(params, lr=lr)

    return D.NumpyBackend(model, nn.SoftmaxCrossEntropy(reduction), make)


def torch_backend(
    hidden: list[int], *, init: str = "torch", reduction: str = "mean", lr: float = 0.05
) -> D.TorchBackend:
    model = TorchMLP(N_IN, hidden, N_CLASSES, init_scheme=init, generator=torch.Generator().manual_seed(1))
    return D.TorchBackend(
        model, torch.nn.CrossEntropyLoss(reduction=reduction), lambda p: torch.optim.SGD(p, lr=lr)
    )


def run(backend: D.Backend, x: np.ndarray | None = None, steps: int = 30) -> D.DoctorReport:
    if x is None:
        x, y = data()
    else:
        y = data(len(x))[1]
    return D.diagnose(
        backend, x, y, num_classes=N_CLASSES, batch_size=BATCH, overfit_steps=steps, overfit_batch=16
    )


# ---------------------------------------------------------------------------- verdicts on numbers
def test_initial_loss_verdicts() -> None:
    ln10 = math.log(10)
    assert D.check_initial_loss(ln10, 10, 200).status == "PASS"
    s = D.check_initial_loss(200 * ln10, 10, 200)
    assert s.status == "FAIL" and "sums over the batch" in s.reason and "mean" in s.fix
    assert D.check_initial_loss(2.2 * ln10, 10, 2).status == "WARN"  # batch 2: cannot blame the reduction
    assert "sums" not in D.check_initial_loss(2.2 * ln10, 10, 2).reason
    assert D.check_initial_loss(1.3 * ln10, 10, 200).status == "PASS"
    assert D.check_initial_loss(1.8 * ln10, 10, 200).status == "PASS"  # a Kaiming-initialised last layer
    assert D.check_initial_loss(10 * ln10, 10, 200).status == "FAIL"
    assert D.check_initial_loss(0.3 * ln10, 10, 200).status == "WARN"
    assert D.check_initial_loss(math.nan, 10, 200).status == "FAIL"


def test_batch_scaling_verdicts() -> None:
    assert D.check_batch_scaling([2.0, 2.0, 2.0]).status == "PASS"
    s = D.check_batch_scaling([2.0, 4.0, 8.0])
    assert (
        s.status == "FAIL"
        and s.values["exponent"] == pytest.approx(1.0)
        and "sums over the batch" in s.reason
    )
    assert D.check_batch_scaling([2.0, 2.8, 4.0]).status == "WARN"
    assert D.check_batch_scaling([0.0, 0.0, 0.0]).status == "FAIL"


def ws(*ratios: float | None) -> list[LayerStats]:
    return [
        LayerStats(f"layers.{2 * i}", "Linear", update_ratio=r, weight_norm=1.0, grad_norm=1.0)
        for i, r in enumerate(ratios)
    ]


def test_update_ratio_verdicts() -> None:
    assert D.check_updates(ws(1e-3, 5e-3)).status == "PASS"
    v = D.check_updates(ws(1e-3, 1e-9, 0.0))
    assert (
        v.status == "FAIL"
        and "vanishing updates" in v.reason
        and "layers.4" in v.reason
        and "2 of 3" in v.reason
    )
    assert D.check_updates(ws(1e-3, 5e-6)).status == "WARN"
    e = D.check_updates(ws(1e-3, 0.5))
    assert e.status == "WARN" and "exploding" in e.reason and "layers.2" in e.reason
    assert D.check_updates(ws(1e-3, math.inf)).status == "FAIL"


def test_overfit_verdicts() -> None:
    assert D.check_overfit([2.3, 0.1], 0.5, 10, 16).status == "PASS"
    assert D.check_overfit([2.3, 2.0], 1.0, 10, 16).status == "PASS"  # accuracy 1
    assert D.check_overfit([2.3, 1.5], 0.5, 10, 16).status == "WARN"
    slow = D.check_overfit([2.3, 2.299], 0.2, 10, 16)
    assert slow.status == "WARN" and "barely learns" in slow.reason
    assert D.check_overfit([2.3, 2.4], 0.2, 10, 16).status == "FAIL"
    assert "step 2" in D.check_overfit([2.3, math.nan, math.nan], 0.0, 2, 16).reason


# ---------------------------------------------------------------------------- planted problems
@pytest.mark.parametrize("make", [numpy_backend, torch_backend], ids=["numpy", "torch"])
def test_mean_reduction_passes_and_sum_reduction_is_flagged(make: Any) -> None:
    mean = run(make([WIDTH]))
    scaling = mean.check("batch-size scaling")
    assert scaling.status == "PASS" and abs(scaling.values["exponent"]) < 1e-4
    assert mean.check("initial loss").status == "PASS" and mean.check("non-finite values").status == "PASS"
    total = run(make([WIDTH], reduction="sum"))
    scaling = total.check("batch-size scaling")
    assert scaling.status == "FAIL" and abs(scaling.values["exponent"] - 1) < 1e-4
    assert (
        total.check("initial loss").status == "FAIL" and "batch size 32" in total.check("initial loss").reason
    )
    assert total.worst == "FAIL"


@pytest.mark.parametrize("make", [numpy_backend, torch_backend], ids=["numpy", "torch"])
def test_practical_init_in_a_deep_mlp_has_vanishing_updates(make: Any) -> None:
    deep = run(make([WIDTH] * 5, init="practical", lr=1e-3))
    upd = deep.check("updates")
    assert upd.status == "FAIL" and "vanishing updates" in upd.reason
    assert deep.check("activations").status == "WARN" and "vanishes" in deep.check("activations").reason
    assert deep.check("overfit one batch").status in ("WARN", "FAIL")
    assert deep.check("initial loss").status == "PASS"  # the loss alone does not show it
    shallow = run(make([WIDTH], init="kaiming"))
    assert shallow.check("updates").status == "PASS"


def test_healthy_model_passes_every_check_and_is_not_changed() -> None:
    backend = numpy_backend([WIDTH], init="kaiming", optimizer="adam", lr=0.01)
    state = backend.model.state_dict()
    report = run(backend, steps=60)
    assert [c.status for c in report.checks] == ["PASS"] * 6, D.format_report(report)
    for k, v in backend.model.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    assert all(p.grad is None for p in backend.model.parameters())


def test_dead_relu_units_fail() -> None:
    backend = numpy_backend([WIDTH], activation="relu")
    backend.model.layers[0].bias.data[: WIDTH * 3 // 4] = -1e3  # type: ignore[attr-defined]
    act = run(backend).check("activations")
    assert act.status == "FAIL" and "75% of the units of layers.1 (ReLU) are dead" in act.reason


def test_exploding_updates_and_non_finite_inputs() -> None:
    big = run(numpy_backend([WIDTH], reduction="sum", lr=1.0))
    assert big.check("updates").status == "WARN" and "exploding" in big.check("updates").reason
    x, _ = data()
    x[3, 5] = np.nan
    nan = run(numpy_backend([WIDTH]), x=x, steps=2)
    assert (
        nan.check("non-finite values").status == "FAIL" and "inputs" in nan.check("non-finite values").reason
    )


def test_plot_and_report_text(tmp_path: Path) -> None:
    report = run(numpy_backend([WIDTH, WIDTH]), steps=5)
    path = D.plot_stats(report.stats, tmp_path / "sub" / "stats.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = D.format_report(report)
    assert text.count("\n") > 10 and "verdict:" in text and "layers.4" in text
    json.dumps(report.to_dict(), allow_nan=False)


# ---------------------------------------------------------------------------- CLI
def test_cli_writes_report_picture_and_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "doc"
    code = main(
        [
            "doctor",
            "--dnn_hidden_units",
            "16",
            "--batch_size",
            "32",
            "--overfit_steps",
            "5",
            "--out",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    report = json.loads((out / "doctor.json").read_text())
    assert code == (1 if report["worst"] == "FAIL" else 0)
    assert [c["name"] for c in report["checks"]] == [
        "initial loss",
        "non-finite values",
        "batch-size scaling",
        "activations",
        "updates",
        "overfit one batch",
    ]
    assert (
        report["config"]["dnn_hidden_units"] == "16"
        and json.loads((out / "config.json").read_text())["tool"] == "doctor"
    )
    assert (out / "doctor.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "PASS  batch-size scaling" in text


def test_cli_sum_reduction_on_the_torch_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "doctor",
            "--model",
            "mlp-torch",
            "--loss_reduction",
            "sum",
            "--dnn_hidden_units",
            "16",
            "--batch_size",
            "32",
            "--overfit_steps",
            "3",
            "--warmup_steps",
            "2",
            "--json",
            "--out",
            str(tmp_path / "d"),
            "--plot",
            str(tmp_path / "p.png"),
        ]
    )
    data_ = json.loads(capsys.readouterr().out)
    assert code == 1
    scaling = next(c for c in data_["checks"] if c["name"] == "batch-size scaling")
    assert scaling["status"] == "FAIL" and "mean reduction" in scaling["fix"]
    assert (tmp_path / "p.png").is_file() and data_["plot"] == str(tmp_path / "p.png")


def test_cli_bad_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--overfit_steps", "0"]) == 2
    assert "--overfit_steps must be a positive integer" in capsys.readouterr().err


def test_figure_panels_show_zero_as_zero_none_as_none_and_log_only_across_decades() -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3)
    _bars(axes[0], ["a", "b", "c"], [1e-2, 0.0, 1e-9], "t")
    _bars(axes[1], [], [], "t")
    _bars(axes[2], ["a", "b"], [0.4, 0.5], "t")
    texts = [[t.get_text() for t in ax.texts] for ax in axes]
    plt.close(fig)
    assert texts[0] == ["0"] and axes[0].get_yscale() == "log"
    assert min(p.get_height() for p in axes[0].patches) == 0  # the zero is no bar at 1e-30
    assert texts[1] == ["none"]
    assert texts[2] == [] and axes[2].get_yscale() == "linear"
