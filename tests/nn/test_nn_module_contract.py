"""The Module contract: state dicts, modes, dtypes, input validation, serialization (caching and
backward shape checks of every module: test_nn_modules.py; against torch: test_nn_module_contract_vs_torch.py)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from backproplab import nn
from backproplab.errors import DataError, ShapeError


def _x(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).normal(size=shape).astype(np.float32)


def _mlp_and_input() -> tuple[nn.MLP, np.ndarray]:
    return nn.MLP(3, [4], 2, rng=np.random.default_rng(0)), _x(2, 3)


# ---------------------------------------------------------------------------- names, state dicts
def test_state_dict_returns_copies() -> None:
    model = nn.Linear(3, 2, rng=np.random.default_rng(0))
    sd = model.state_dict()
    sd["weight"][...] = 7
    assert not np.any(model.weight.data == 7)


def _snapshot(module: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in module.state_dict().items()}


def _assert_unchanged(module: nn.Module, before: dict[str, np.ndarray]) -> None:
    after = module.state_dict()
    assert list(after) == list(before)
    for k, v in before.items():
        assert np.array_equal(after[k], v), f"{k} changed by a failed load"


def test_load_state_dict_strict_errors_change_nothing() -> None:
    model = nn.MLP(3, [4], 2, rng=np.random.default_rng(0))
    before = _snapshot(model)
    good = {k: np.full_like(v, 0.5) for k, v in before.items()}

    missing = dict(good)
    del missing["layers.2.bias"]
    with pytest.raises(KeyError, match=r"missing keys \['layers.2.bias'\]"):
        model.load_state_dict(missing)
    _assert_unchanged(model, before)

    with pytest.raises(KeyError, match=r"unexpected keys \['layers.9.weight'\]"):
        model.load_state_dict({**good, "layers.9.weight": np.zeros(1)})
    _assert_unchanged(model, before)

    # the bad key comes last, after keys that would load fine: still nothing changes
    bad_shape = {**good, "layers.2.bias": np.zeros(5, dtype=np.float32)}
    with pytest.raises(ShapeError, match=r"layers.2.bias expects shape \(2,\), the state dict has \(5,\)"):
        model.load_state_dict(bad_shape)
    _assert_unchanged(model, before)


def test_load_state_dict_non_strict_loads_what_is_there_and_casts() -> None:
    model = nn.MLP(3, [4], 2, rng=np.random.default_rng(0))
    before = _snapshot(model)
    model.load_state_dict({"layers.0.bias": np.arange(4, dtype=np.float64)}, strict=False)
    np.testing.assert_array_equal(model.state_dict()["layers.0.bias"], [0, 1, 2, 3])
    assert model.state_dict()["layers.0.bias"].dtype == np.float32
    np.testing.assert_array_equal(model.state_dict()["layers.0.weight"], before["layers.0.weight"])


# ---------------------------------------------------------------------------- grads, modes, repr
def test_zero_grad_sets_every_grad_to_none() -> None:
    model, x = _mlp_and_input()
    out = model(x)
    model.backward(np.ones_like(out))
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_train_and_eval_propagate_to_every_submodule() -> None:
    model = nn.MLP(3, [4, 4], 2, rng=np.random.default_rng(0))
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    assert model.train() is model and all(m.training for m in model.modules())


def test_to_float64_casts_parameters_grads_and_outputs() -> None:
    model, x = _mlp_and_input()
    out = model(x)
    model.backward(np.ones_like(out))
    assert model.to(np.float64) is model and model.dtype == np.float64
    assert all(
        p.data.dtype == np.float64 and p.grad is not None and p.grad.dtype == np.float64
        for p in model.parameters()
    )
    y = model(x.astype(np.float64))
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, out, rtol=1e-5, atol=1e-7)  # the float32 values, now in float64
    assert model.float().dtype == np.float32
    assert nn.Tanh().dtype == np.float32  # no parameters: float32 by convention


def test_setattr_before_super_init_is_a_clear_error() -> None:
    class Bad(nn.Module):
        def __init__(self) -> None:
            self.x = 1

    with pytest.raises(RuntimeError, match=r"Bad.__init__ must call super\(\).__init__\(\) first"):
        Bad()


def test_sequential_rejects_non_modules() -> None:
    with pytest.raises(TypeError, match="got int at position 1"):
        nn.Sequential(nn.Tanh(), 3)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------- input checks
def test_linear_wrong_shape_and_dtype_name_expected_and_actual() -> None:
    layer = nn.Linear(5, 2)
    with pytest.raises(ShapeError, match=r"Linear expects size 5 in dimension 1, got input shape \(3, 4\)"):
        layer(np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ShapeError, match=r"Linear expects a 2-D input, got shape \(5,\)"):
        layer(np.zeros(5, dtype=np.float32))
    with pytest.raises(ShapeError, match="Linear expects a floating-point input, got dtype int64"):
        layer(np.zeros((3, 5), dtype=np.int64))
    with pytest.raises(ShapeError, match="Linear has float32 parameters but got a float64 input"):
        layer(np.zeros((3, 5)))
    with pytest.raises(ShapeError, match="expects a NumPy array, got list"):
        layer([[0.0] * 5])  # type: ignore[arg-type]


def test_mlp_and_activation_input_errors() -> None:
    with pytest.raises(ShapeError, match=r"Linear expects size 3 in dimension 1, got input shape \(2, 7\)"):
        nn.MLP(3, [4], 2)(np.zeros((2, 7), dtype=np.float32))
    with pytest.raises(ShapeError, match="Tanh expects a floating-point input, got dtype int64"):
        nn.Tanh()(np.zeros(3, dtype=np.int64))
    with pytest.raises(
        ShapeError, match=r"ReLU.backward expects dout of shape \(2, 3\).*, got shape \(3, 2\)"
    ):
        relu = nn.ReLU()
        relu(np.ones((2, 3)))
        relu.backward(np.ones((3, 2)))
    with pytest.raises(ValueError, match="activation must be one of"):
        nn.MLP(3, [4], 2, activation="gelu")


def test_loss_head_label_errors_through_the_mlp_pipeline() -> None:
    logits = nn.MLP(3, [4], 2, rng=np.random.default_rng(0))(_x(3, 3))
    with pytest.raises(DataError, match=r"labels must lie in \[0, 1\] for 2 classes, got range \[0, 5\]"):
        nn.SoftmaxCrossEntropy()(logits, np.array([0, 1, 5]))


# -------------------------------------------------------------------------------- serialization
def test_load_npz_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="weights file not found"):
        nn.load_npz(tmp_path / "absent.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="cannot read weights file"):
        nn.load_npz(bad)
    truncated = tmp_path / "truncated.npz"
    nn.save_npz(truncated, {"w": np.arange(100.0)})
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(DataError, match="cannot read weights file"):
        nn.load_npz(truncated)
    assert not zipfile.is_zipfile(bad)
