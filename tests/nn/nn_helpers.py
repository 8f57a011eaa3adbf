"""Shared tolerances and helpers of the NumPy engine's tests (tests/nn)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from hypothesis import settings

from backproplab.verify import TensorCheck

#: Analytic (float64) against central differences (float64, eps = 1e-6), element-wise:
#: |a - n| <= NUMERIC_ATOL + NUMERIC_RTOL * |n|. Central differences carry ~1e-10 of rounding
#: noise for outputs of order 1; a wrong backward is off by the size of the gradient itself.
NUMERIC_RTOL = 1e-6
NUMERIC_ATOL = 1e-8

#: NumPy float32 against PyTorch float32 (same formulas, different summation orders).
F32_RTOL = 1e-5
F32_ATOL = 1e-6

#: Hypothesis budget of the shape-sweeping tests: small, as the suite must stay fast on 2 cores.
SHAPE_SETTINGS = settings(max_examples=25, deadline=None)


def assert_matches_numeric(check: TensorCheck) -> None:
    """The analytic gradient of one gradcheck tensor equals the numeric one within the tolerances."""
    assert check.verdict != "wrong", check.describe_worst()
    assert check.analytic_grad is not None and check.numeric_grad is not None
    np.testing.assert_allclose(
        check.analytic_grad, check.numeric_grad, rtol=NUMERIC_RTOL, atol=NUMERIC_ATOL, err_msg=check.tensor
    )


def t32(a: np.ndarray, requires_grad: bool = False) -> torch.Tensor:
    """A float32 torch tensor with the values of ``a`` (a copy)."""
    return torch.tensor(np.asarray(a, dtype=np.float32), requires_grad=requires_grad)


def torch_state(state: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A NumPy state dict as torch tensors (copies), for ``torch_module.load_state_dict``."""
    return {k: torch.tensor(np.array(v)) for k, v in state.items()}


def assert_close32(actual: np.ndarray, expected: torch.Tensor | np.ndarray, what: str) -> None:
    exp = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    assert np.shape(actual) == np.shape(exp), f"{what}: shape {np.shape(actual)} vs {np.shape(exp)}"
    np.testing.assert_allclose(actual, exp, rtol=F32_RTOL, atol=F32_ATOL, err_msg=what)
