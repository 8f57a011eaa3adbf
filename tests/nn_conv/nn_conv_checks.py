"""Checks shared by the tests of the NumPy conv layers: central differences in float64 and
float32 comparison against PyTorch, with named tolerances."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from backproplab.nn.grad_mode import no_grad
from backproplab.nn.module import Module

#: Central-difference step (float64) and the largest relative error accepted against it.
EPS = 1e-6
GRADCHECK_RTOL = 1e-6
#: Floor of the relative error's denominator, as a fraction of the tensor's largest gradient: the
#: central differences carry ~1e-10 of absolute round-off, which would dominate the relative error of
#: an element 1e4 times smaller than the largest (a real bug shows in the large elements too).
GRADCHECK_FLOOR_SCALE = 1e-3
#: float32 against torch float32: relative tolerance, and absolute tolerance as a fraction of the
#: largest magnitude of the reference tensor (sums of many float32 products round differently).
TORCH_RTOL = 1e-4
TORCH_ATOL_SCALE = 1e-5
#: Absolute floor for an all-zero reference.
TINY = 1e-30


def numeric_grad(f: Callable[[], np.ndarray], arr: np.ndarray, g: np.ndarray) -> np.ndarray:
    """d sum(f() * g) / d arr by central differences, perturbing ``arr`` in place one element at a time."""
    grad = np.zeros_like(arr)
    flat, gflat = arr.reshape(-1), grad.reshape(-1)
    assert np.shares_memory(flat, arr), "arr must be contiguous (perturbed in place)"
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + EPS
        plus = f()
        flat[i] = old - EPS
        minus = f()
        flat[i] = old
        gflat[i] = np.sum((plus - minus) * g) / (2 * EPS)
    return grad


def max_rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """max |a - n| / max(|a| + |n|, GRADCHECK_FLOOR_SCALE * max|n|, 1e-300)."""
    floor = max(GRADCHECK_FLOOR_SCALE * float(np.max(np.abs(numeric), initial=0.0)), 1e-300)
    return float(np.max(np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), floor)))


def gradcheck_module(
    module: Module, x: np.ndarray, rng: np.random.Generator, *, check_input: bool = True
) -> dict[str, float]:
    """Max relative error of dL/dX and of every parameter's grad, for L = sum(module(X) * G), G random.

    ``module`` and ``x`` must be float64; ``x`` must be C-contiguous (it is perturbed in place).
    """
    assert x.dtype == np.float64 and x.flags.c_contiguous
    module.zero_grad()
    y = module(x)
    g = rng.normal(size=y.shape)
    dx = module.backward(g)
    errors = {}

    def f() -> np.ndarray:
        with no_grad():  # probing forwards cache nothing
            return module(x)  # type: ignore[no-any-return]

    if check_input:
        errors["x"] = max_rel_error(dx, numeric_grad(f, x, g))
    for name, p in module.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        errors[name] = max_rel_error(p.grad, numeric_grad(f, p.data, g))
    return errors


def assert_close32(actual: np.ndarray, expected: np.ndarray | torch.Tensor, what: str) -> None:
    """float32 comparison with TORCH_RTOL and an absolute tolerance scaled to the reference's size."""
    if isinstance(expected, torch.Tensor):
        expected = expected.detach().numpy()
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs {expected.shape}"
    atol = TORCH_ATOL_SCALE * float(np.max(np.abs(expected), initial=0.0)) + TINY
    np.testing.assert_allclose(actual, expected, rtol=TORCH_RTOL, atol=atol, err_msg=what)


def channels_last(x: np.ndarray) -> np.ndarray:
    """The same NCHW array in channels-last memory (what the layers produce inside the ConvNet)."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
