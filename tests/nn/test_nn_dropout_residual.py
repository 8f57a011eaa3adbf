"""Dropout (mask scaling, evaluation identity, explicit generator) and the generic Residual block.

Their gradients against central differences and the torch twin (a shared mask for dropout) are the
table cases "Dropout(p=0.3) train/eval" and "Residual(Linear, Tanh)" (test_nn_modules.py)."""

from __future__ import annotations

import numpy as np
import pytest

from backproplab.nn import Dropout, Module, Residual

#: x * (1 / (1 - p)) in float32 against the same product in float64, rounded.
SCALE_RTOL = 1e-6
#: Dropped fraction of 100 000 values against p: 5 standard deviations of a Bernoulli mean.
DROP_FRACTION_TOL = 5 * np.sqrt(0.3 * 0.7 / 100_000)


def test_dropout_scales_survivors_and_drops_about_p() -> None:
    p = 0.3
    drop = Dropout(p, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).uniform(1, 2, size=(100, 1000)).astype(np.float32)
    y = drop(x)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=SCALE_RTOL)  # inverted dropout: scale 1/(1-p)
    assert abs((~kept).mean() - p) < DROP_FRACTION_TOL
    g = np.random.default_rng(2).normal(size=x.shape).astype(np.float32)
    dx = drop.backward(g)
    np.testing.assert_allclose(dx, np.where(kept, g / (1 - p), 0), rtol=SCALE_RTOL)


def test_dropout_is_reproducible_from_its_generator_and_identity_in_eval() -> None:
    x = np.ones((4, 50), np.float32)
    a = Dropout(0.5, rng=np.random.default_rng(7))(x)
    b = Dropout(0.5, rng=np.random.default_rng(7))(x)
    c = Dropout(0.5, rng=np.random.default_rng(8))(x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    drop = Dropout(0.5, rng=np.random.default_rng(7)).eval()
    np.testing.assert_array_equal(drop(x), x)
    g = np.full_like(x, 3.0)
    np.testing.assert_array_equal(drop.backward(g), g)
    np.testing.assert_array_equal(Dropout(0.0)(x), x)
    np.testing.assert_array_equal(Dropout(1.0)(x), 0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Dropout(1.5)


class PassThrough(Module):
    """An inner module whose backward returns dout itself (as a reshape or an identity may)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._save_for_backward(True)
        return x * 2

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self._saved()
        return dout


def test_residual_never_modifies_dout_in_place() -> None:
    block = Residual(PassThrough())
    x = np.ones((2, 3))
    np.testing.assert_array_equal(block(x), 3 * x)
    g = np.full((2, 3), 5.0)
    dx = block.backward(g)
    np.testing.assert_array_equal(dx, 10.0)
    np.testing.assert_array_equal(g, 5.0)  # the caller's dout is untouched
    with pytest.raises(RuntimeError, match=r"Residual\.backward called without a forward"):
        block.backward(g)
