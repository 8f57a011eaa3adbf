"""The NumPy ConvNet against the torch ConvNet: state-dict keys, weights across, forward/backward and
running statistics in float32 and float64 (nn_checks.check_twin); PreActBlock in float64. (Both against
central differences and PreActBlock in float32: the table cases, test_nn_modules.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nn_checks import check_twin

from backproplab.nn import ConvNet, PreActBlock, load_npz, save_npz
from backproplab.torch_models.convnet import ConvNet as TorchConvNet
from backproplab.verify import GradcheckCase
from backproplab.verify.registry import randomized_constants, with_running_stats

ATTRIBUTES = [
    "conv0", "preact1", "conv1", "maxpool1", "preact2_a", "preact2_b", "conv2", "maxpool2", "preact3_a",
    "preact3_b", "conv3", "maxpool3", "preact4_a", "preact4_b", "maxpool4", "preact5_a", "preact5_b",
    "maxpool5", "norm", "relu", "flatten", "linear",
]  # fmt: skip
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


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


def convnet_case(
    name: str, shape: tuple[int, ...], n_classes: int = 10, *, eval_mode: bool = False
) -> GradcheckCase:
    """The ConvNet (PyTorch's default init from the case's generator, BatchNorm gamma and beta random),
    in training mode or in eval mode with random running statistics, on N(0, 1) inputs of ``shape``."""

    def make_module(rng: np.random.Generator) -> ConvNet:
        model = randomized_constants(ConvNet(3, n_classes, rng=rng), rng)
        return with_running_stats(model, rng) if eval_mode else model  # type: ignore[return-value]

    return GradcheckCase(name, "ConvNet", make_module, lambda rng: rng.normal(size=shape))


def test_forward_backward_match_torch_at_batch_2() -> None:
    """Logits, dL/dx, every parameter gradient (atol scaled to the model's largest gradient: the biases
    of convolutions that feed a BatchNorm have a zero true gradient) and, after the training batch, the
    running statistics (one layer's rounding each)."""
    check_twin(
        convnet_case("ConvNet train", (2, 3, 32, 32)), 4, grad_scale="model", buffer_tolerance="float32_sums"
    )


def test_float64_twins_agree_to_round_off() -> None:
    """The same comparison in float64 (a 16x16 input keeps it quick): any real mismatch shows here."""
    check_twin(
        convnet_case("ConvNet train float64", (2, 3, 16, 16), 5), 3, dtype=np.float64, grad_scale="model"
    )


def test_eval_mode_and_odd_input_sizes_match_torch() -> None:
    """Batch 1, odd sizes, eval mode with random running statistics."""
    case = convnet_case("ConvNet eval", (1, 3, 13, 9), eval_mode=True)
    check_twin(case, 6, grad_scale="model", buffer_tolerance="float32_sums")


def test_preact_block_matches_torch_in_float64() -> None:
    block = GradcheckCase(
        "PreActBlock(3)",
        "PreActBlock",
        lambda rng: randomized_constants(PreActBlock(3, rng=rng), rng),
        lambda rng: rng.normal(size=(2, 3, 5, 5)),
    )
    check_twin(block, 7, dtype=np.float64)
