"""The Module contract: caching, state dicts, modes, dtypes, input validation, serialization."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from nn_helpers import assert_close32, t32, torch_state

from backproplab import nn
from backproplab.errors import DataError, ShapeError
from backproplab.torch_models import TorchMLP

Factory = Callable[[], tuple[nn.Module, tuple[Any, ...]]]


def _x(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).normal(size=shape).astype(np.float32)


#: Every MLP-engine module with arguments for one forward call.
MODULES: dict[str, Factory] = {
    "Linear": lambda: (nn.Linear(3, 2, rng=np.random.default_rng(0)), (_x(4, 3),)),
    "ELU": lambda: (nn.ELU(0.5), (_x(2, 3),)),
    "ReLU": lambda: (nn.ReLU(), (_x(2, 3),)),
    "Tanh": lambda: (nn.Tanh(), (_x(2, 3),)),
    "Softmax": lambda: (nn.Softmax(1), (_x(2, 3),)),
    "Flatten": lambda: (nn.Flatten(), (_x(2, 3, 2),)),
    "CrossEntropy": lambda: (nn.CrossEntropy(), (np.full((2, 3), 1 / 3, dtype=np.float32), np.array([0, 2]))),
    "SoftmaxCrossEntropy": lambda: (nn.SoftmaxCrossEntropy(), (_x(2, 3), np.array([0, 2]))),
    "MLP": lambda: (nn.MLP(3, [4], 2, rng=np.random.default_rng(0)), (_x(2, 3),)),
    "Sequential": lambda: (
        nn.Sequential(nn.Linear(3, 4, rng=np.random.default_rng(0)), nn.Tanh()),
        (_x(2, 3),),
    ),
}


def _dout(module: nn.Module, out: Any) -> Any:
    return 1.0 if np.ndim(out) == 0 else np.ones_like(out)


# --------------------------------------------------------------------------------- forward cache
@pytest.mark.parametrize("name", sorted(MODULES))
def test_backward_without_forward_names_the_module(name: str) -> None:
    module, _ = MODULES[name]()
    with pytest.raises(RuntimeError, match="backward called without a forward"):
        module.backward(np.ones((2, 2), dtype=np.float32))
    # the message names the class that has no cache (the module itself, or its last child)
    with pytest.raises(RuntimeError) as info:
        module.backward(np.ones((2, 2), dtype=np.float32))
    leaf = name if name not in ("MLP", "Sequential") else ("Linear" if name == "MLP" else "Tanh")
    assert leaf in str(info.value)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_second_backward_raises(name: str) -> None:
    module, args = MODULES[name]()
    out = module(*args)
    module.backward(_dout(module, out))
    with pytest.raises(RuntimeError, match="without a forward"):
        module.backward(_dout(module, out))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_grad_forward_caches_nothing_and_gives_the_same_output(name: str) -> None:
    module, args = MODULES[name]()
    out = module(*args)
    module.backward(_dout(module, out))
    with nn.no_grad():
        assert not nn.is_grad_enabled()
        out2 = module(*args)
    assert nn.is_grad_enabled()
    np.testing.assert_array_equal(out2, out)
    assert all(m._cache is None for m in module.modules())
    with pytest.raises(RuntimeError, match="without a forward"):
        module.backward(_dout(module, out))


def test_no_grad_restores_state_after_an_exception() -> None:
    with pytest.raises(KeyError), nn.no_grad():
        raise KeyError("x")
    assert nn.is_grad_enabled()


# ---------------------------------------------------------------------------- names, state dicts
@pytest.mark.parametrize("hidden", [[], [5], [5, 4], [6, 5, 4]])
def test_parameter_and_state_dict_keys_equal_torch(hidden: list[int]) -> None:
    model, ref = nn.MLP(3, hidden, 2, rng=np.random.default_rng(0)), TorchMLP(3, hidden, 2)
    assert [k for k, _ in model.named_parameters()] == [k for k, _ in ref.named_parameters()]
    ours, theirs = model.state_dict(), ref.state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == tuple(theirs[k].shape) for k in ours)


def test_state_dict_returns_copies() -> None:
    model = nn.Linear(3, 2, rng=np.random.default_rng(0))
    sd = model.state_dict()
    sd["weight"][...] = 7
    assert not np.any(model.weight.data == 7)


def test_torch_state_dict_loads_and_outputs_agree() -> None:
    ref = TorchMLP(4, [6, 5], 3, init_scheme="torch", generator=torch.Generator().manual_seed(0))
    model = nn.MLP(4, [6, 5], 3, rng=np.random.default_rng(1))
    model.load_state_dict(ref.state_dict())  # torch tensors are accepted as values
    x = _x(5, 4)
    assert_close32(model(x), ref(t32(x)), "logits after loading torch weights")


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
    model, args = MODULES["MLP"]()
    out = model(*args)
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


def test_repr_matches_torch() -> None:
    model, ref = nn.MLP(4, [5, 3], 2, activation="tanh"), TorchMLP(4, [5, 3], 2, activation="tanh")
    assert repr(model) == repr(ref).replace("TorchMLP", "MLP")
    pairs = [
        (nn.ELU(0.5), torch.nn.ELU(0.5)),
        (nn.ReLU(), torch.nn.ReLU()),
        (nn.Softmax(1), torch.nn.Softmax(1)),
        (nn.Flatten(), torch.nn.Flatten()),
        (nn.Linear(3, 2, bias=False), torch.nn.Linear(3, 2, bias=False)),
    ]
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)
    assert repr(nn.CrossEntropy("sum")) == "CrossEntropy(reduction='sum')"


def test_to_float64_casts_parameters_grads_and_outputs() -> None:
    model, args = MODULES["MLP"]()
    out = model(*args)
    model.backward(np.ones_like(out))
    assert model.to(np.float64) is model and model.dtype == np.float64
    assert all(
        p.data.dtype == np.float64 and p.grad is not None and p.grad.dtype == np.float64
        for p in model.parameters()
    )
    y = model(args[0].astype(np.float64))
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
    with pytest.raises(ValueError, match=r"ReLU.backward expects dout of shape \(2, 3\), got \(3, 2\)"):
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
def test_npz_round_trip_with_torch_keys(tmp_path: Path) -> None:
    model = nn.MLP(4, [6, 5], 3, rng=np.random.default_rng(0), init_scheme="torch")
    path = tmp_path / "model.npz"
    nn.save_npz(path, model.state_dict())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]  # no temporary file left
    loaded = nn.load_npz(path)
    assert list(loaded) == list(model.state_dict()) == list(TorchMLP(4, [6, 5], 3).state_dict())
    twin = nn.MLP(4, [6, 5], 3, rng=np.random.default_rng(1))
    twin.load_state_dict(loaded)
    x = _x(2, 4)
    np.testing.assert_array_equal(twin(x), model(x))
    # and into torch: the same file gives the torch twin the same function
    ref = TorchMLP(4, [6, 5], 3)
    ref.load_state_dict(torch_state(loaded))
    assert_close32(model(x), ref(t32(x)), "torch loaded from npz")


def test_npz_saved_from_a_torch_state_dict_loads_into_numpy(tmp_path: Path) -> None:
    ref = TorchMLP(3, [4], 2, init_scheme="torch", generator=torch.Generator().manual_seed(3))
    path = tmp_path / "torch.npz"
    nn.save_npz(path, {k: v.detach().numpy() for k, v in ref.state_dict().items()})
    model = nn.MLP(3, [4], 2, rng=np.random.default_rng(0))
    model.load_state_dict(nn.load_npz(path))
    x = _x(5, 3)
    assert_close32(model(x), ref(t32(x)), "numpy loaded from a torch npz")


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
