"""BatchNorm1d/2d: central differences (float64) and the torch twin (float32) in train and eval mode
(nn_checks), running statistics with torch's momentum convention, state-dict keys and errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from nn_checks import CHECKS, TOLERANCES

from backproplab.errors import ShapeError
from backproplab.nn import BatchNorm1d, BatchNorm2d
from backproplab.nn.batchnorm import _BatchNorm
from backproplab.verify import GradcheckCase

#: Values per channel of a training-mode gradient comparison (see test_batchnorm).
MIN_VALUES_GRADCHECK = 3


def randomise(bn: _BatchNorm, rng: np.random.Generator) -> None:
    """Random gamma, beta and running statistics (so no test relies on gamma = 1, beta = 0)."""
    dt = bn.weight.data.dtype if bn.weight is not None else np.float64
    if bn.affine:
        bn.weight.data = rng.uniform(0.5, 1.5, bn.num_features).astype(dt)  # type: ignore[union-attr]
        bn.bias.data = rng.normal(size=bn.num_features).astype(dt)  # type: ignore[union-attr]
    if bn.track_running_stats:
        bn.load_state_dict(
            {
                **bn.state_dict(),
                "running_mean": rng.normal(size=bn.num_features),
                "running_var": rng.uniform(0.5, 2, bn.num_features),
            }
        )


@st.composite
def bn_cases(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(["1d-2", "1d-3", "2d"]))
    c = draw(st.integers(1, 4))
    n = draw(st.integers(1, 3))
    if kind == "1d-2":
        n = max(n, 2)  # training needs more than one value per channel
        shape: tuple[int, ...] = (n, c)
    elif kind == "1d-3":
        shape = (n, c, draw(st.integers(2 if n == 1 else 1, 5)))
    else:
        shape = (n, c, draw(st.integers(1, 5)), draw(st.integers(2 if n == 1 else 1, 5)))
    return {"kind": kind, "shape": shape, "training": draw(st.booleans()), "affine": draw(st.booleans())}


def bn_case(case: dict[str, Any]) -> GradcheckCase:
    """Random gamma, beta and running statistics (randomise), the drawn mode, input N(1, 2^2)."""
    c = case["shape"][1]
    cls = BatchNorm2d if case["kind"] == "2d" else BatchNorm1d

    def make_module(rng: np.random.Generator) -> _BatchNorm:
        bn = cls(c, affine=case["affine"])
        randomise(bn, rng)
        return bn.train(case["training"])  # type: ignore[return-value]

    return GradcheckCase(
        cls.__name__, cls.__name__, make_module, lambda rng: rng.normal(1.0, 2.0, case["shape"])
    )


@pytest.mark.parametrize("check", CHECKS)
@settings(max_examples=25, deadline=None)
@given(case=bn_cases(), seed=st.integers(0, 2**16), nhwc_memory=st.booleans())
def test_batchnorm(check: Callable[..., object], case: dict[str, Any], seed: int, nhwc_memory: bool) -> None:
    """float64: every gradient against central differences; float32: output, gradients and running
    statistics against torch (channels-last memory or not)."""
    # with 2 values per channel the training output is +-1 whatever X, and dL/dX ~ eps / |x1 - x2|^3
    # is round-off noise: ask for at least 3
    assume(not case["training"] or np.prod(case["shape"]) // case["shape"][1] >= MIN_VALUES_GRADCHECK)
    tensors = ["input", "weight", "bias"] if case["affine"] else ["input"]
    check(bn_case(case), seed, tensors=tensors, nhwc_memory=nhwc_memory)


@pytest.mark.torch
@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_running_statistics_follow_torch_over_several_steps(momentum: float | None) -> None:
    """running = (1 - m) running + m batch_stat, unbiased variance; None: cumulative average; then eval."""
    import torch

    rng = np.random.default_rng(11)
    bn, tbn = BatchNorm2d(3, momentum=momentum), torch.nn.BatchNorm2d(3, momentum=momentum)
    randomise(bn, rng)
    tbn.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in bn.state_dict().items()})
    for step in range(5):
        x = rng.normal(step, 1 + step, size=(4, 3, 3, 5)).astype(np.float32)
        bn(x)
        bn.backward(np.ones_like(x))  # release the cache
        tbn(torch.from_numpy(x))
    tsd = tbn.state_dict()
    assert int(bn.state_dict()["num_batches_tracked"]) == int(tsd["num_batches_tracked"]) == 5
    for key in ("running_mean", "running_var"):
        TOLERANCES["float32_running_stats"].assert_close(bn.state_dict()[key], tsd[key].numpy(), key)
    bn.eval()
    tbn.eval()
    x = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    TOLERANCES["float32_sums"].assert_close(bn(x), tbn(torch.from_numpy(x)).detach().numpy(), "eval output")


def test_running_stats_by_hand() -> None:
    x = np.array([[1.0], [3.0], [8.0]])  # mean 4, biased var 26/3, unbiased var 13
    bn = BatchNorm1d(1, dtype=np.float64)
    y = bn(x)
    np.testing.assert_allclose(bn.running_mean, [0.9 * 0 + 0.1 * 4.0])
    np.testing.assert_allclose(bn.running_var, [0.9 * 1 + 0.1 * 13.0])
    np.testing.assert_allclose(y[:, 0], (x[:, 0] - 4.0) / np.sqrt(26.0 / 3 + 1e-5))


@pytest.mark.torch
def test_state_dict_keys_and_dtypes_match_torch() -> None:
    import torch

    bn = BatchNorm2d(5)
    sd, tsd = bn.state_dict(), torch.nn.BatchNorm2d(5).state_dict()
    assert list(sd) == list(tsd) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert sd["num_batches_tracked"].dtype == np.int64 and sd["num_batches_tracked"].shape == ()
    assert sd["running_var"].dtype == np.float32
    twos = {k: torch.from_numpy(np.asarray(v)) * 0 + 2 for k, v in tsd.items()}
    bn.load_state_dict(twos)  # torch tensors load
    assert int(bn.num_batches_tracked) == 2 and bn.num_batches_tracked.dtype == np.int64
    bn(np.ones((2, 5, 1, 1), np.float32))
    assert int(bn.state_dict()["num_batches_tracked"]) == 3  # updated in place, still registered


def test_no_cache_under_no_grad_and_errors() -> None:
    from backproplab.nn import no_grad

    bn = BatchNorm2d(3)
    with no_grad():
        y = bn(np.ones((2, 3, 2, 2), np.float32))
    with pytest.raises(RuntimeError, match=r"BatchNorm2d\.backward called without a forward"):
        bn.backward(y)
    with pytest.raises(ShapeError, match="more than 1 value per channel"):
        bn(np.ones((1, 3, 1, 1), np.float32))
    with pytest.raises(ShapeError, match="more than 1 value per channel"):
        BatchNorm1d(3)(np.ones((1, 3), np.float32))
    bn.eval()
    bn(np.ones((1, 3, 1, 1), np.float32))  # evaluation uses the running statistics: fine
    with pytest.raises(ShapeError, match="expects size 3 in dimension 1"):
        bn(np.ones((2, 4, 2, 2), np.float32))
    with pytest.raises(ShapeError, match="2 or 3-D input"):
        BatchNorm1d(3)(np.ones((2, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm2d(3, momentum=1.5)
