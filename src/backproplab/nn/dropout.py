"""Dropout (inverted), as ``torch.nn.Dropout``."""

from __future__ import annotations

import numpy as np

from backproplab.nn.module import Module, check_dout, check_input


class Dropout(Module):
    """Y = X * M / (1 - p) in training, with M[i] ~ Bernoulli(1 - p) drawn from ``rng``; Y = X in evaluation.

    Any shape. Each element is zeroed with probability ``p`` and the survivors are scaled by
    1 / (1 - p), so E[Y] = X (torch's inverted dropout); ``p = 1`` zeroes everything, ``p = 0`` is
    the identity. Backward: dL/dX = G * M / (1 - p) in training, G in evaluation. Caches the scaled
    mask M / (1 - p). The mask draws come from ``rng`` (``None``: a fresh unseeded generator); the
    streams differ from torch's, so parity tests share the mask, not the seed.
    """

    def __init__(self, p: float = 0.5, *, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout probability must lie in [0, 1], got {p}")
        self.p = float(p)
        self.rng = rng if rng is not None else np.random.default_rng()

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, range(0, 33), {})
        if not self.training or self.p == 0.0:
            # the identity's "mask": ones of x's shape as a broadcast view (no memory), so backward
            # checks dout's shape and subclasses read the one-element cache (mask,) in every mode
            self._save_for_backward(np.broadcast_to(x.dtype.type(1), x.shape))
            return x.copy()
        keep = (
            self.rng.random(x.shape, dtype=x.dtype if x.dtype in (np.float32, np.float64) else np.float64)
            >= self.p
        )
        scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        mask = keep.astype(x.dtype) * x.dtype.type(scale)  # M / (1 - p), same shape as x
        self._save_for_backward(mask)
        return x * mask

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (mask,) = self._saved()
        check_dout(self, dout, mask.shape)
        return dout * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"
