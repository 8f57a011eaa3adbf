"""Per-layer statistics: NumPy and torch agree on twins, the model is left alone, the trainer logs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from backproplab import nn
from backproplab.cli.main import main
from backproplab.instrument.layer_stats import (
    LayerStats,
    layer_stats,
    numpy_layer_stats,
    stats_record,
    torch_layer_stats,
)
from backproplab.torch_models import TorchMLP
from backproplab.verify.twin import build_twin

#: NumPy float32 statistics against the torch twin's, relative.
STATS_RTOL = 1e-4

N_IN, WIDTH, N_CLASSES = 20, 16, 5


def data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, N_IN)).astype(np.float32), rng.integers(0, N_CLASSES, n)


def assert_stats_close(a: list[LayerStats], b: list[LayerStats]) -> None:
    assert [s.name for s in a] == [s.name for s in b]
    for sa, sb in zip(a, b, strict=True):
        for key in (
            "act_mean",
            "act_std",
            "dead_fraction",
            "saturated_fraction",
            "grad_norm",
            "weight_norm",
            "update_ratio",
        ):
            va, vb = getattr(sa, key), getattr(sb, key)
            assert (va is None) == (vb is None), (sa.name, key)
            if va is not None:
                assert va == pytest.approx(vb, rel=STATS_RTOL, abs=1e-7), (sa.name, key, va, vb)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("activation", ["relu", "elu", "tanh"])
def test_numpy_and_torch_statistics_agree_on_twins(optimizer: str, activation: str) -> None:
    model = nn.MLP(
        N_IN,
        [WIDTH, WIDTH],
        N_CLASSES,
        activation=activation,
        init_scheme="kaiming",
        rng=np.random.default_rng(1),
    )
    twin = build_twin(model)
    x, y = data(64)
    if optimizer == "sgd":
        opt_np, opt_t = (
            nn.optim.SGD(list(model.parameters()), lr=0.1),
            torch.optim.SGD(twin.parameters(), lr=0.1),
        )
    else:
        opt_np, opt_t = (
            nn.optim.Adam(list(model.parameters()), lr=0.01),
            torch.optim.Adam(twin.parameters(), lr=0.01),
        )
    s_np = numpy_layer_stats(model, x, y, nn.SoftmaxCrossEntropy(), optimizer=opt_np)
    s_t = torch_layer_stats(twin, x, y, torch.nn.CrossEntropyLoss(), optimizer=opt_t)
    assert [s.name for s in s_np] == ["layers.0", "layers.1", "layers.2", "layers.3", "layers.4"]
    assert [s.kind for s in s_np[:2]] == [
        "Linear",
        {"relu": "ReLU", "elu": "ELU", "tanh": "Tanh"}[activation],
    ]
    assert_stats_close(s_np, s_t)
    assert s_np[1].dead_fraction is not None and s_np[0].dead_fraction is None
    assert s_np[0].update_ratio is not None and s_np[1].update_ratio is None


def test_sgd_update_ratio_is_lr_times_gradient_over_weight() -> None:
    model = nn.MLP(N_IN, [WIDTH], N_CLASSES, init_scheme="torch", rng=np.random.default_rng(2))
    x, y = data(32)
    loss = nn.SoftmaxCrossEntropy()
    stats = numpy_layer_stats(model, x, y, loss, optimizer=nn.optim.SGD(list(model.parameters()), lr=0.3))
    model.zero_grad()
    loss(model(x), y)
    model.backward(loss.backward())
    w = model.layers[2].weight  # type: ignore[attr-defined]
    expected = 0.3 * np.linalg.norm(w.grad.astype(np.float64)) / np.linalg.norm(w.data.astype(np.float64))
    assert stats[2].update_ratio == pytest.approx(expected, rel=1e-5)
    assert stats[2].grad_norm == pytest.approx(np.linalg.norm(w.grad.astype(np.float64)), rel=1e-6)
    by_lr = numpy_layer_stats(model, x, y, loss, learning_rate=0.3)
    assert by_lr[2].update_ratio == pytest.approx(expected, rel=1e-5)
    assert numpy_layer_stats(model, x, y, loss)[2].update_ratio is None


def test_dead_and_saturated_units_are_counted() -> None:
    model = nn.MLP(
        N_IN, [WIDTH], N_CLASSES, activation="relu", init_scheme="torch", rng=np.random.default_rng(3)
    )
    model.layers[0].bias.data[:4] = -1e3  # type: ignore[attr-defined]  # 4 units never fire
    model.layers[0].bias.data[4:] = 1e3  # type: ignore[attr-defined]  # the rest always do
    x, y = data(50)
    relu = numpy_layer_stats(model, x, y, nn.SoftmaxCrossEntropy())[1]
    assert relu.dead_fraction == pytest.approx(4 / WIDTH) and relu.saturated_fraction == pytest.approx(
        4 / WIDTH
    )
    tanh_model = nn.MLP(
        N_IN, [WIDTH], N_CLASSES, activation="tanh", init_scheme="torch", rng=np.random.default_rng(3)
    )
    # |pre-activation| ~1e5: saturated for every unit and example, whatever the draw (with 1e4, one
    # entry of seed 3's single-draw weights stays below 2.1)
    tanh_model.layers[0].weight.data *= 1e6  # type: ignore[attr-defined]
    tanh = numpy_layer_stats(tanh_model, x, y, nn.SoftmaxCrossEntropy())[1]
    assert tanh.saturated_fraction > 0.99 and tanh.dead_fraction == pytest.approx(1.0)  # type: ignore[operator]


def test_numpy_model_and_optimizer_are_left_as_they_were() -> None:
    model = nn.MLP(
        N_IN, [WIDTH], N_CLASSES, init_scheme="kaiming", rng=np.random.default_rng(4), input_grad=False
    )
    opt = nn.optim.Adam(list(model.parameters()), lr=0.01)
    x, y = data(32)
    loss = nn.SoftmaxCrossEntropy()
    loss(model(x), y)
    model.backward(loss.backward())
    opt.step()
    opt.zero_grad()
    state, opt_state = model.state_dict(), opt.state_dict()
    layer_stats(model, x, y, loss, optimizer=opt)
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    for a, b in zip(opt.state_dict()["state"], opt_state["state"], strict=True):
        for k in b:
            np.testing.assert_array_equal(a[k], b[k])


def test_torch_model_buffers_grads_and_optimizer_are_left_as_they_were() -> None:
    model = TorchMLP(
        N_IN,
        [WIDTH],
        N_CLASSES,
        batchnorm=True,
        init_scheme="kaiming",
        generator=torch.Generator().manual_seed(0),
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = data(32)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    torch.nn.functional.cross_entropy(model(xt), yt).backward()
    grads = [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]
    opt.step()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    steps = [s["step"].clone() for s in opt.state.values()]
    stats = layer_stats(model, xt, yt, torch.nn.CrossEntropyLoss(), optimizer=opt)
    assert [s.kind for s in stats] == ["Linear", "BatchNorm1d", "ELU", "Linear"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    for p, g in zip(model.parameters(), grads, strict=True):
        assert torch.equal(p.grad, g)  # type: ignore[arg-type]  # the trainer's grads are untouched
    assert [s["step"] for s in opt.state.values()] == steps


def test_stats_record_is_json_ready() -> None:
    model = nn.MLP(N_IN, [WIDTH], N_CLASSES, rng=np.random.default_rng(5))
    x, y = data(8)
    rec = stats_record(numpy_layer_stats(model, x, y, nn.SoftmaxCrossEntropy(), learning_rate=1e-3))
    assert set(rec) == {"layers.0", "layers.1", "layers.2"}
    assert set(rec["layers.0"]) >= {"kind", "act_mean", "act_std", "grad_norm", "update_ratio", "finite"}
    json.dumps(rec, allow_nan=False)


def test_trainer_track_stats_logs_statistics_and_does_not_change_training(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    base = ["train", "mlp-numpy", "--dataset", "digits", "--max_steps", "20", "--eval_freq", "10"]
    assert main([*base, "--track_stats", "--out", str(tmp_path / "stats")]) == 0
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    with_stats = [
        json.loads(line) for line in (tmp_path / "stats" / "metrics.jsonl").read_text().splitlines()
    ]
    plain = [json.loads(line) for line in (tmp_path / "plain" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in with_stats] == [r["train_loss"] for r in plain]
    evals = [r for r in with_stats if "test_acc" in r]
    assert [r["step"] for r in evals] == [10, 20]
    assert all(set(r["layer_stats"]) == {"layers.0", "layers.1", "layers.2"} for r in evals)
    assert evals[0]["layer_stats"]["layers.0"]["update_ratio"] > 0
    assert not any("layer_stats" in r for r in with_stats if "test_acc" not in r)
    assert not any("layer_stats" in r for r in plain)
    assert json.loads((tmp_path / "stats" / "config.json").read_text())["track_stats"] is True
