"""Weights as safetensors with torch's keys, both ways: the engine's file loads into the torch twin with
``safetensors.torch.load_file`` and ``load_state_dict`` unchanged, and a torch-saved file loads here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backproplab import nn
from backproplab.errors import DataError
from backproplab.torch_models import ConvNet as TorchConvNet
from backproplab.torch_models import TorchMLP


def test_numpy_mlp_to_torch(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    model = nn.MLP(12, [7, 5], 3, rng=np.random.default_rng(0))
    path = tmp_path / "model.safetensors"
    nn.save_safetensors(path, model.state_dict())
    twin = TorchMLP(12, [7, 5], 3)
    twin.load_state_dict(load_file(str(path)))  # strict: every key and shape must match
    x = np.random.default_rng(1).normal(size=(4, 12)).astype(np.float32)
    np.testing.assert_allclose(twin(torch.tensor(x)).detach().numpy(), model(x), rtol=1e-5, atol=1e-6)


def test_torch_convnet_to_numpy(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    twin = TorchConvNet(3, 10).eval()
    path = tmp_path / "t.safetensors"
    save_file({k: v.contiguous() for k, v in twin.state_dict().items()}, str(path))
    model = nn.ConvNet(3, 10, rng=np.random.default_rng(0))
    model.load_state_dict(nn.load_safetensors(path))  # strict: BatchNorm's num_batches_tracked included
    model.eval()
    x = np.random.default_rng(2).normal(size=(2, 3, 32, 32)).astype(np.float32)
    with nn.no_grad():
        out = model(x)
    np.testing.assert_allclose(out, twin(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_corrupt_or_missing_file_is_a_data_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(DataError, match="cannot read safetensors file"):
        nn.load_safetensors(bad)
    with pytest.raises(DataError, match="not found"):
        nn.load_safetensors(tmp_path / "none.safetensors")


def test_numpy_convnet_to_torch_strictly(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    model = nn.ConvNet(3, 10, rng=np.random.default_rng(3))
    model(np.random.default_rng(4).normal(size=(2, 3, 32, 32)).astype(np.float32))  # one training-mode batch
    path = tmp_path / "c.safetensors"
    nn.save_safetensors(path, model.state_dict())
    twin = TorchConvNet(3, 10)
    twin.load_state_dict(load_file(str(path)))  # strict, running statistics and step counters included
    sd = twin.state_dict()
    assert int(sd["norm.num_batches_tracked"]) == 1
    np.testing.assert_array_equal(sd["norm.running_mean"].numpy(), model.state_dict()["norm.running_mean"])


def test_trainer_writes_model_safetensors_the_torch_twin_loads(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from backproplab.cli.main import main

    out = tmp_path / "run"
    args = [
        "train",
        "mlp-numpy",
        "--dataset",
        "digits",
        "--max_steps",
        "5",
        "--eval_freq",
        "5",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    twin = TorchMLP(64, [100], 10)
    twin.load_state_dict(load_file(str(out / "model.safetensors")))
    np.testing.assert_array_equal(
        twin.state_dict()["layers.0.weight"].numpy(), nn.load_npz(out / "model.npz")["layers.0.weight"]
    )
