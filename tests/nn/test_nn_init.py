"""Weight initialisers: distributions, torch's fan and gain conventions, determinism per seed, and
``reset_parameters(rng)``: each weight drawn once, from the explicit generator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backproplab import nn
from backproplab.nn import init

#: Sample statistics of n draws: the std estimate has relative standard error ~ 1/sqrt(2n), the
#: mean estimate std/sqrt(n); we allow STAT_SIGMAS of them (a failure by chance is ~1e-6 likely).
STAT_SIGMAS = 5.0


def _check_std(a: np.ndarray, expected_std: float, expected_mean: float = 0.0) -> None:
    n = a.size
    assert abs(a.std() / expected_std - 1) < STAT_SIGMAS / math.sqrt(2 * n), (
        f"std {a.std()} vs {expected_std}"
    )
    assert abs(a.mean() - expected_mean) < STAT_SIGMAS * expected_std / math.sqrt(n), f"mean {a.mean()}"


def test_practical_init_is_normal_1e_minus_4_with_zero_bias() -> None:
    model = nn.MLP(1000, [500], 10, rng=np.random.default_rng(0), init_scheme="practical")
    w = model.layers[0].weight.data  # type: ignore[attr-defined]
    assert w.shape == (500, 1000) and w.dtype == np.float32
    _check_std(w.astype(np.float64), init.PRACTICAL_STD)
    assert init.PRACTICAL_STD == 1e-4
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert not p.data.any(), name


def test_torch_default_bounds_and_std() -> None:
    fan_in = 400
    layer = nn.Linear(fan_in, 300, rng=np.random.default_rng(1))
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) gives exactly 1/sqrt(fan_in)
    w = layer.weight.data.astype(np.float64)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.999 * bound
    _check_std(w, bound / math.sqrt(3))  # U(-b, b) has std b / sqrt(3)
    assert layer.bias is not None and np.abs(layer.bias.data).max() <= bound


@pytest.mark.parametrize(("nonlinearity", "gain"), [("relu", math.sqrt(2)), ("tanh", 5 / 3), ("linear", 1.0)])
def test_kaiming_normal_std(nonlinearity: str, gain: float) -> None:
    w = np.empty((600, 300))
    init.kaiming_normal_(w, np.random.default_rng(2), nonlinearity=nonlinearity)
    _check_std(w, gain / math.sqrt(300))


def test_kaiming_scheme_in_mlp_uses_the_hidden_nonlinearity() -> None:
    model = nn.MLP(400, [300], 200, activation="tanh", rng=np.random.default_rng(3), init_scheme="kaiming")
    _check_std(model.layers[0].weight.data.astype(np.float64), (5 / 3) / math.sqrt(400))  # type: ignore[attr-defined]
    _check_std(model.layers[2].weight.data.astype(np.float64), 1 / math.sqrt(300))  # type: ignore[attr-defined]


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(5, 3), (8, 4, 3, 3), (2, 7, 1, 5)])
def test_fans_equal_torch(shape: tuple[int, ...]) -> None:
    import torch

    ours = init.calculate_fan_in_and_fan_out(np.empty(shape))
    assert ours == torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


@pytest.mark.torch
@pytest.mark.parametrize(
    ("name", "param"),
    [
        ("linear", None),
        ("relu", None),
        ("tanh", None),
        ("leaky_relu", 0.2),
        ("leaky_relu", None),
        ("selu", None),
        ("sigmoid", None),
    ],
)
def test_gains_equal_torch(name: str, param: float | None) -> None:
    import torch

    assert init.calculate_gain(name, param) == pytest.approx(
        torch.nn.init.calculate_gain(name, param), rel=1e-12
    )


@pytest.mark.parametrize("scheme", init.INIT_SCHEMES)
def test_each_scheme_is_deterministic_for_a_seed(scheme: str) -> None:
    def weights(seed: int) -> dict[str, np.ndarray]:
        return nn.MLP(20, [10], 5, rng=np.random.default_rng(seed), init_scheme=scheme).state_dict()

    a, b, c = weights(7), weights(7), weights(8)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert any(not np.array_equal(a[k], c[k]) for k in a if k.endswith("weight"))


def test_unknown_scheme_and_nonlinearity_are_errors() -> None:
    p = nn.Parameter(np.empty((2, 2)))
    with pytest.raises(ValueError, match="unknown init scheme 'xavier'"):
        init.init_layer_(p, None, "xavier", np.random.default_rng(0))
    with pytest.raises(ValueError, match="unsupported nonlinearity 'gelu'"):
        init.calculate_gain("gelu")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.calculate_fan_in_and_fan_out(np.empty(3))


# --------------------------------------------------------------------------------- reset_parameters
@pytest.mark.parametrize(
    "make",
    [
        lambda rng: nn.Linear(6, 4, rng=rng),
        lambda rng: nn.Linear(6, 4, bias=False, rng=rng, init_scheme="kaiming", nonlinearity="tanh"),
        lambda rng: nn.Conv2d(3, 5, 3, rng=rng),
        lambda rng: nn.Conv2d(2, 3, (1, 2), bias=False, rng=rng, dtype=np.float64),
    ],
    ids=["Linear", "Linear(kaiming, no bias)", "Conv2d", "Conv2d(1x2, no bias, float64)"],
)
def test_reset_parameters_draws_what_init_draws(make) -> None:  # type: ignore[no-untyped-def]
    fresh = make(np.random.default_rng(3))
    layer = make(np.random.default_rng(99))
    layer.reset_parameters(np.random.default_rng(3))
    for k, v in fresh.state_dict().items():
        np.testing.assert_array_equal(layer.state_dict()[k], v, err_msg=k)
        assert layer.state_dict()[k].dtype == v.dtype


@pytest.mark.parametrize("cls", [nn.BatchNorm1d, nn.BatchNorm2d])
def test_batchnorm_reset_parameters_is_torchs(cls: type) -> None:
    """gamma 1, beta 0, running mean 0, running var 1, no batches tracked, as torch's reset_parameters."""
    bn = cls(3)
    buffers = dict(bn.named_buffers())
    for p in bn.parameters():
        p.data[...] = 7
    bn.eval().train()
    bn(
        np.random.default_rng(0)
        .normal(size=(4, 3, 2, 2)[: 2 if cls is nn.BatchNorm1d else 4])
        .astype(np.float32)
    )
    bn.reset_parameters(np.random.default_rng(0))
    sd = bn.state_dict()
    np.testing.assert_array_equal(sd["weight"], 1)
    np.testing.assert_array_equal(sd["bias"], 0)
    np.testing.assert_array_equal(sd["running_mean"], 0)
    np.testing.assert_array_equal(sd["running_var"], 1)
    assert int(sd["num_batches_tracked"]) == 0
    assert all(b is buffers[k] for k, b in bn.named_buffers())  # reset in place: still the registered arrays


def test_layernorm_reset_parameters_is_torchs() -> None:
    ln = nn.LayerNorm((2, 3))
    ln.weight.data[...], ln.bias.data[...] = 5, 5
    ln.reset_parameters()
    np.testing.assert_array_equal(ln.weight.data, 1)
    np.testing.assert_array_equal(ln.bias.data, 0)


@pytest.mark.parametrize("scheme", init.INIT_SCHEMES)
def test_mlp_draws_each_weight_once_in_layer_order(scheme: str) -> None:
    """The MLP's weights are exactly the draws of layers built one after the other from the same generator,
    each with the chosen scheme, and the generator has moved on by those draws only."""
    rng = np.random.default_rng(11)
    model = nn.MLP(5, [4, 3], 2, activation="tanh", rng=rng, init_scheme=scheme)
    ref_rng = np.random.default_rng(11)
    layers = [
        nn.Linear(5, 4, rng=ref_rng, init_scheme=scheme, nonlinearity="tanh"),
        nn.Linear(4, 3, rng=ref_rng, init_scheme=scheme, nonlinearity="tanh"),
        nn.Linear(3, 2, rng=ref_rng, init_scheme=scheme, nonlinearity="linear"),
    ]
    for i, layer in enumerate(layers):
        for k, v in layer.state_dict().items():
            np.testing.assert_array_equal(model.state_dict()[f"layers.{2 * i}.{k}"], v, err_msg=f"{i}.{k}")
    assert rng.bit_generator.state == ref_rng.bit_generator.state


def test_practical_mlp_first_weight_is_the_generators_first_draw() -> None:
    """No hidden draw before the scheme's: the first layer's weight is N(0, 1e-4^2) from the start of the stream."""
    model = nn.MLP(6, [5], 3, rng=np.random.default_rng(4))
    expected = np.random.default_rng(4).normal(0.0, init.PRACTICAL_STD, size=(5, 6)).astype(np.float32)
    np.testing.assert_array_equal(model.layers[0].weight.data, expected)  # type: ignore[attr-defined]


def test_linear_rejects_an_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="unknown init scheme 'xavier'"):
        nn.Linear(2, 2, rng=np.random.default_rng(0), init_scheme="xavier")
