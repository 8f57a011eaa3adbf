"""Flatten dimensions into one."""

from __future__ import annotations

import numpy as np

from backproplab.nn.module import Module, check_dout, check_input


class Flatten(Module):
    """Merge dimensions ``start_dim..end_dim`` into one, as ``torch.nn.Flatten`` (defaults 1 and -1).

    (N, C, H, W) -> (N, C*H*W) with the defaults. Backward reshapes dout to the input shape,
    which is all that is cached.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, range(1, 33), {})
        s, e = self.start_dim % x.ndim, self.end_dim % x.ndim
        shape = (*x.shape[:s], int(np.prod(x.shape[s : e + 1])), *x.shape[e + 1 :])
        self._save_for_backward(x.shape, shape)
        return x.reshape(shape)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        in_shape, out_shape = self._saved()
        check_dout(self, dout, out_shape)
        return dout.reshape(in_shape)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
