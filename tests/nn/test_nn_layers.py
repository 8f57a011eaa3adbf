"""The MLP engine's layers over random shapes: float64 against central differences and float32 against
the torch twin (nn_checks.CHECKS), every gradient (input and parameters) element by element.

Each test builds one GradcheckCase from the hypothesis draw, by the gradcheck table's conventions:
random parameters (never gamma = 1 or a zero bias), inputs away from kinks, a random upstream gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nn_checks import CHECKS, SHAPE_SETTINGS, TOLERANCES

from backproplab import nn
from backproplab.verify import GradcheckCase
from backproplab.verify.registry import (
    away_from_zero,
    index_targets,
    onehot_targets,
    probabilities,
    randomized,
    soft_targets,
)

seeds = st.integers(0, 2**32 - 1)
sizes = st.integers(1, 6)
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)
Check = Callable[..., object]


def case(name: str, make_module, make_input, make_target=None) -> GradcheckCase:  # type: ignore[no-untyped-def]
    return GradcheckCase(name, name.split("(")[0], make_module, make_input, make_target)


@pytest.mark.parametrize("check", CHECKS)
@SHAPE_SETTINGS
@given(seed=seeds, n=sizes, d_in=sizes, d_out=sizes, bias=st.booleans())
def test_linear(check: Check, seed: int, n: int, d_in: int, d_out: int, bias: bool) -> None:
    c = case(
        "Linear",
        lambda rng: randomized(nn.Linear(d_in, d_out, bias=bias, rng=rng), rng),
        lambda rng: rng.normal(size=(n, d_in)),
    )
    check(c, seed, tensors=["input", "weight", "bias"] if bias else ["input", "weight"])


@pytest.mark.parametrize("check", CHECKS)
@SHAPE_SETTINGS
@given(seed=seeds, shape=shapes, alpha=st.sampled_from([1.0, 0.3, 2.5]) | st.floats(0.05, 3.0))
def test_elu(check: Check, seed: int, shape: tuple[int, ...], alpha: float) -> None:
    check(case("ELU", lambda rng: nn.ELU(alpha), lambda rng: 3 * away_from_zero(rng, shape)), seed)


@pytest.mark.parametrize("check", CHECKS)
@SHAPE_SETTINGS
@given(seed=seeds, shape=shapes)
def test_relu(check: Check, seed: int, shape: tuple[int, ...]) -> None:
    check(case("ReLU", lambda rng: nn.ReLU(), lambda rng: away_from_zero(rng, shape)), seed)


@pytest.mark.parametrize("check", CHECKS)
@SHAPE_SETTINGS
@given(seed=seeds, shape=shapes)
def test_tanh(check: Check, seed: int, shape: tuple[int, ...]) -> None:
    check(case("Tanh", lambda rng: nn.Tanh(), lambda rng: 2 * rng.normal(size=shape)), seed)


@pytest.mark.parametrize("check", CHECKS)
@SHAPE_SETTINGS
@given(seed=seeds, shape=shapes, data=st.data())
def test_softmax_any_dim(check: Check, seed: int, shape: tuple[int, ...], data: st.DataObject) -> None:
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    check(case("Softmax", lambda rng: nn.Softmax(dim), lambda rng: 3 * rng.normal(size=shape)), seed)


@pytest.mark.parametrize("check", CHECKS)
@SHAPE_SETTINGS
@given(seed=seeds, shape=st.lists(st.integers(1, 3), min_size=1, max_size=4).map(tuple), data=st.data())
def test_flatten(check: Check, seed: int, shape: tuple[int, ...], data: st.DataObject) -> None:
    nd = len(shape)
    start = data.draw(st.integers(0, nd - 1), label="start_dim")
    end = data.draw(st.integers(start, nd - 1), label="end_dim")
    end_arg = data.draw(st.sampled_from([end, end - nd]), label="end_dim as given")
    check(case("Flatten", lambda rng: nn.Flatten(start, end_arg), lambda rng: rng.normal(size=shape)), seed)


TARGETS = {"index": index_targets, "one-hot": onehot_targets, "soft": soft_targets}


@pytest.mark.parametrize("check", CHECKS)
@SHAPE_SETTINGS
@given(
    seed=seeds,
    n=sizes,
    c=sizes,
    kind=st.sampled_from(sorted(TARGETS)),
    red=st.sampled_from(["mean", "sum"]),
)
def test_cross_entropy_on_probabilities(check: Check, seed: int, n: int, c: int, kind: str, red: str) -> None:
    """torch: nll_loss(log P) for index targets, -sum(T log P) (/ N) for distributions."""
    c_ = case(
        "CrossEntropy",
        lambda rng: nn.CrossEntropy(red),
        lambda rng: probabilities(rng, n, c),
        TARGETS[kind](n, c),
    )
    check(c_, seed)


@pytest.mark.parametrize("check", CHECKS)
@SHAPE_SETTINGS
@given(
    seed=seeds,
    n=sizes,
    c=sizes,
    kind=st.sampled_from(sorted(TARGETS)),
    red=st.sampled_from(["mean", "sum"]),
    smoothing=st.sampled_from([0.0, 0.1]),
)
def test_softmax_cross_entropy(
    check: Check, seed: int, n: int, c: int, kind: str, red: str, smoothing: float
) -> None:
    """torch: cross_entropy (index or probability targets, label smoothing)."""
    c_ = case(
        "SoftmaxCrossEntropy",
        lambda rng: nn.SoftmaxCrossEntropy(red, label_smoothing=smoothing),
        lambda rng: 3 * rng.normal(size=(n, c)),
        TARGETS[kind](n, c),
    )
    check(c_, seed)


@pytest.mark.parametrize("check", CHECKS)
@SHAPE_SETTINGS
@given(
    seed=seeds,
    n=sizes,
    widths=st.lists(st.integers(1, 6), min_size=2, max_size=5),  # n_inputs, hidden (depth 0..3), n_classes
    activation=st.sampled_from(["elu", "relu", "tanh"]),
)
def test_mlp_depth_0_to_3(check: Check, seed: int, n: int, widths: list[int], activation: str) -> None:
    n_in, hidden, n_out = widths[0], widths[1:-1], widths[-1]
    names = [f"layers.{2 * i}.{p}" for i in range(len(hidden) + 1) for p in ("weight", "bias")]
    c = case(
        "MLP",
        lambda rng: randomized(nn.MLP(n_in, hidden, n_out, activation=activation, rng=rng), rng),
        lambda rng: rng.normal(size=(n, n_in)),
    )
    check(c, seed, tensors=["input", *names])


@SHAPE_SETTINGS
@given(seed=seeds, n=sizes)
def test_sequential_and_loss_head_end_to_end(seed: int, n: int) -> None:
    """Softmax then CrossEntropy (the practical's head) composed by hand equals the fused loss's gradient."""
    rng = np.random.default_rng(seed)
    logits, y = rng.normal(size=(n, 4)), rng.integers(0, 4, size=n)
    soft, ce, fused = nn.Softmax(1), nn.CrossEntropy(), nn.SoftmaxCrossEntropy()
    ce(soft(logits), y)
    two_step = soft.backward(ce.backward())
    fused(logits, y)
    TOLERANCES["composition"].assert_close(two_step, fused.backward(), "softmax + CE vs fused")
