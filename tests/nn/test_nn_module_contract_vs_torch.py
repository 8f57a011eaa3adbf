"""The Module contract against torch: parameter and state-dict keys, torch state dicts loading, reprs, and
npz files shared with the torch MLP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from nn_checks import TOLERANCES

from backproplab import nn
from backproplab.torch_models import TorchMLP


def _x(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).normal(size=shape).astype(np.float32)


def _torch_out(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    return model(torch.from_numpy(x)).detach().numpy()  # type: ignore[no-any-return]


def _torch_state(state: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.array(v)) for k, v in state.items()}


@pytest.mark.parametrize("hidden", [[], [5], [5, 4], [6, 5, 4]])
def test_parameter_and_state_dict_keys_equal_torch(hidden: list[int]) -> None:
    model, ref = nn.MLP(3, hidden, 2, rng=np.random.default_rng(0)), TorchMLP(3, hidden, 2)
    assert [k for k, _ in model.named_parameters()] == [k for k, _ in ref.named_parameters()]
    ours, theirs = model.state_dict(), ref.state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == tuple(theirs[k].shape) for k in ours)


def test_torch_state_dict_loads_and_outputs_agree() -> None:
    ref = TorchMLP(4, [6, 5], 3, init_scheme="torch", generator=torch.Generator().manual_seed(0))
    model = nn.MLP(4, [6, 5], 3, rng=np.random.default_rng(1))
    model.load_state_dict(ref.state_dict())  # torch tensors are accepted as values
    x = _x(5, 4)
    TOLERANCES["float32"].assert_close(model(x), _torch_out(ref, x), "logits after loading torch weights")


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
    ref.load_state_dict(_torch_state(loaded))
    TOLERANCES["float32"].assert_close(model(x), _torch_out(ref, x), "torch loaded from npz")


def test_npz_saved_from_a_torch_state_dict_loads_into_numpy(tmp_path: Path) -> None:
    ref = TorchMLP(3, [4], 2, init_scheme="torch", generator=torch.Generator().manual_seed(3))
    path = tmp_path / "torch.npz"
    nn.save_npz(path, {k: v.detach().numpy() for k, v in ref.state_dict().items()})
    model = nn.MLP(3, [4], 2, rng=np.random.default_rng(0))
    model.load_state_dict(nn.load_npz(path))
    x = _x(5, 3)
    TOLERANCES["float32"].assert_close(model(x), _torch_out(ref, x), "numpy loaded from a torch npz")
