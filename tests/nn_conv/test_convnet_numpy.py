"""The NumPy ConvNet against the torch ConvNet: state-dict keys, weights across, forward/backward
parity in float32, running statistics; PreActBlock by central differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nn_conv_checks import GRADCHECK_RTOL, assert_close32, gradcheck_module

from backproplab.errors import ShapeError
from backproplab.nn import ConvNet, PreActBlock, load_npz, save_npz
from backproplab.torch_models.convnet import ConvNet as TorchConvNet
from backproplab.torch_models.convnet import PreActBlock as TorchPreActBlock

ATTRIBUTES = [
    "conv0", "preact1", "conv1", "maxpool1", "preact2_a", "preact2_b", "conv2", "maxpool2", "preact3_a",
    "preact3_b", "conv3", "maxpool3", "preact4_a", "preact4_b", "maxpool4", "preact5_a", "preact5_b",
    "maxpool5", "norm", "relu", "flatten", "linear",
]  # fmt: skip
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
#: Whole-network float32 parity. 13 convolutions and 12 BatchNorms, some normalising over only 8
#: values per channel at batch 2, amplify float32 rounding: measured deviations reach ~1e-3 of a
#: tensor's largest value (in float64 the same comparison agrees to ~1e-12, see
#: test_float64_twins_agree_to_round_off), so the float32 check allows 5e-3 of the scale.
NET_RTOL = 1e-2
NET_ATOL_SCALE = 5e-3
#: float64 twins: the same arithmetic up to summation order.
NET64_RTOL = 1e-9
NET64_ATOL_SCALE = 1e-10


def assert_close_net(
    actual: np.ndarray, expected: torch.Tensor, what: str, scale: float | None = None
) -> None:
    """NET_RTOL and NET_ATOL_SCALE * ``scale`` (default: the reference's largest value); the NET64_
    tolerances for float64."""
    ref = expected.detach().numpy()
    scale = float(np.abs(ref).max()) if scale is None else scale
    rtol, atol = (NET64_RTOL, NET64_ATOL_SCALE) if ref.dtype == np.float64 else (NET_RTOL, NET_ATOL_SCALE)
    np.testing.assert_allclose(actual, ref, rtol=rtol, atol=atol * scale, err_msg=what)


@pytest.fixture(scope="module")
def models() -> tuple[ConvNet, TorchConvNet]:
    tmodel = TorchConvNet(3, 10, generator=torch.Generator().manual_seed(0))
    model = ConvNet(3, 10, rng=np.random.default_rng(0))
    model.load_state_dict(tmodel.state_dict())
    return model, tmodel


def expected_keys() -> list[str]:
    keys = ["conv0.weight", "conv0.bias"]
    for name in ATTRIBUTES:
        if name.startswith("preact"):
            keys += [f"{name}.bn.{k}" for k in BN_KEYS] + [f"{name}.conv.weight", f"{name}.conv.bias"]
        elif name in ("conv1", "conv2", "conv3", "linear"):
            keys += [f"{name}.weight", f"{name}.bias"]
        elif name == "norm":
            keys += [f"norm.{k}" for k in BN_KEYS]
    return keys


def test_state_dict_keys_equal_torch(models: tuple[ConvNet, TorchConvNet]) -> None:
    model, tmodel = models
    assert list(model._modules) == ATTRIBUTES
    assert list(model.state_dict()) == expected_keys() == list(tmodel.state_dict())
    for key, value in tmodel.state_dict().items():
        assert model.state_dict()[key].shape == tuple(value.shape), key


def test_weights_load_across_both_ways(tmp_path: pytest.TempPathFactory) -> None:
    model = ConvNet(1, 7, rng=np.random.default_rng(1))
    tmodel = TorchConvNet(1, 7)
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    for key, value in tmodel.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), model.state_dict()[key], err_msg=key)
    path = tmp_path / "model.npz"  # type: ignore[operator]
    save_npz(path, model.state_dict())
    other = ConvNet(1, 7, rng=np.random.default_rng(2))
    other.load_state_dict(load_npz(path))
    np.testing.assert_array_equal(other.linear.weight.data, model.linear.weight.data)


def compare_step(model: ConvNet, tmodel: TorchConvNet, x: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    tx = torch.from_numpy(x.copy()).requires_grad_()
    y, ty = model(x), tmodel(tx)
    assert_close_net(y, ty, "logits")
    g = rng.normal(size=y.shape).astype(x.dtype)
    model.zero_grad()
    tmodel.zero_grad()
    dx = model.backward(g)
    ty.backward(torch.from_numpy(g))
    assert_close_net(dx, tx.grad, "dL/dx")  # type: ignore[arg-type]
    tparams = dict(tmodel.named_parameters())
    grads = {name: p.grad for name, p in model.named_parameters()}
    # biases of the convolutions feeding BatchNorm have a zero true gradient (BN removes per-channel
    # constants): both sides give round-off there, so the absolute tolerance is scaled to the
    # largest gradient of the whole model rather than to that tensor's own size
    scale = max(float(tparams[n].grad.abs().max()) for n in grads)  # type: ignore[union-attr]
    for name, grad in grads.items():
        assert grad is not None, name
        assert_close_net(grad, tparams[name].grad, name, scale)  # type: ignore[arg-type]


def test_forward_backward_match_torch_at_batch_2(models: tuple[ConvNet, TorchConvNet]) -> None:
    model, tmodel = models
    model.train()
    tmodel.train()
    x = np.random.default_rng(3).normal(size=(2, 3, 32, 32)).astype(np.float32)
    compare_step(model, tmodel, x, 4)
    tsd = tmodel.state_dict()
    for key, value in model.state_dict().items():  # running statistics after one training batch
        # one layer's rounding each
        assert_close32(np.asarray(value, dtype=np.float64), tsd[key].double(), key)


def test_float64_twins_agree_to_round_off() -> None:
    """The same comparison in float64 (a 16x16 input keeps it quick): any real mismatch shows here."""
    tmodel = TorchConvNet(3, 5, generator=torch.Generator().manual_seed(1)).double()
    model = ConvNet(3, 5, rng=np.random.default_rng(1), dtype=np.float64)
    model.load_state_dict(tmodel.state_dict())
    x = np.random.default_rng(2).normal(size=(2, 3, 16, 16))
    compare_step(model, tmodel, x, 3)


def test_eval_mode_and_odd_input_sizes_match_torch(models: tuple[ConvNet, TorchConvNet]) -> None:
    model, tmodel = models
    model.eval()
    tmodel.eval()
    try:
        x = np.random.default_rng(5).normal(size=(1, 3, 13, 9)).astype(np.float32)  # batch 1, odd sizes
        compare_step(model, tmodel, x, 6)
    finally:
        model.train()
        tmodel.train()


def test_preact_block_gradcheck_float64_and_torch() -> None:
    rng = np.random.default_rng(7)
    block = PreActBlock(3, rng=rng, dtype=np.float64)
    block.bn.weight.data = rng.uniform(0.5, 1.5, 3)  # type: ignore[union-attr]
    block.bn.bias.data = rng.normal(size=3)  # type: ignore[union-attr]
    errors = gradcheck_module(block, rng.normal(size=(2, 3, 4, 3)), rng)
    assert set(errors) == {"x", "bn.weight", "bn.bias", "conv.weight", "conv.bias"}
    assert max(errors.values()) < GRADCHECK_RTOL, errors

    tblock = TorchPreActBlock(3).double()
    tblock.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in block.state_dict().items()})
    x = rng.normal(size=(2, 3, 5, 5))
    tx = torch.from_numpy(x).requires_grad_()
    y, ty = block(x), tblock(tx)
    g = rng.normal(size=y.shape)
    ty.backward(torch.from_numpy(g))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(block.backward(g), tx.grad.numpy(), rtol=1e-10, atol=1e-12)  # type: ignore[union-attr]


def test_input_grad_false_and_errors() -> None:
    model = ConvNet(1, 4, rng=np.random.default_rng(8), input_grad=False)
    # digits-sized: 8 -> 4 -> 2 -> 1 -> 1 -> 1
    x = np.random.default_rng(9).normal(size=(2, 1, 8, 8)).astype(np.float32)
    y = model(x)
    assert y.shape == (2, 4)
    assert model.backward(np.ones_like(y)) is None
    assert model.conv0.weight.grad is not None
    with pytest.raises(ShapeError, match=r"\(N, 1, H, W\)"):
        model(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(ShapeError, match="at most 32x32"):
        model(np.zeros((2, 1, 33, 8), np.float32))
    with pytest.raises(RuntimeError, match="without a forward"):
        model.backward(np.ones_like(y))
