"""Trainable arrays."""

from __future__ import annotations

import numpy as np


class Parameter:
    """A trainable array and its gradient, as ``torch.nn.Parameter``.

    ``data`` holds the value. ``grad`` is ``None`` until a backward pass writes one, and backward
    passes accumulate into it (``grad += g``), as in PyTorch; ``Module.zero_grad`` resets it to
    ``None`` (PyTorch's ``set_to_none=True``), and optimizers skip parameters whose grad is None.
    """

    __slots__ = ("data", "grad")

    def __init__(self, data: np.ndarray) -> None:
        self.data: np.ndarray = np.ascontiguousarray(data)
        self.grad: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def accumulate(self, g: np.ndarray) -> None:
        """Add ``g`` to ``grad``; the first gradient after ``zero_grad`` is stored without a copy."""
        if g.shape != self.data.shape:
            raise AssertionError(f"gradient of shape {g.shape} for a parameter of shape {self.data.shape}")
        if self.grad is None:
            self.grad = g if g.dtype == self.data.dtype else g.astype(self.data.dtype)
        else:
            self.grad += g

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"
