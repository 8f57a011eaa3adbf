"""Batch normalisation: ``BatchNorm1d`` and ``BatchNorm2d``, with PyTorch's conventions."""

from __future__ import annotations

import numpy as np

from backproplab.errors import ShapeError
from backproplab.nn import init
from backproplab.nn.module import Module, check_dout, check_input
from backproplab.nn.parameter import Parameter


def _rows(x: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """(M, C) rows of ``x`` (N, C, *S) with the channel axis last, and the channels-last shape (N, *S, C).

    No copy for (N, C) inputs nor for channels-last NCHW memory (see :mod:`backproplab.nn.conv`).
    """
    moved = np.moveaxis(x, 1, -1)  # (N, *S, C), a view
    return moved.reshape(-1, x.shape[1]), moved.shape


def _unrows(rows: np.ndarray, moved_shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of :func:`_rows`: (M, C) -> (N, C, *S), a view of ``rows``."""
    return np.moveaxis(rows.reshape(moved_shape), -1, 1)


class _BatchNorm(Module):
    """Shared implementation; the subclasses fix the accepted input dimensions.

    Y = gamma * (X - mu) / sqrt(var + eps) + beta, per channel (axis 1), with statistics over every
    other axis (M = N * prod(spatial) values per channel).

    * Training: mu and var are the batch mean and the *biased* batch variance (divide by M). The
      running statistics follow torch's momentum convention,
      running = (1 - momentum) * running + momentum * batch_stat, with the *unbiased* variance
      (divide by M - 1) for ``running_var``; ``momentum=None`` uses the cumulative average
      (momentum = 1 / num_batches_tracked). ``num_batches_tracked`` counts the training batches.
    * Evaluation: mu and var are the running statistics (with ``track_running_stats``).

    Parameters: ``weight`` (gamma, init 1) and ``bias`` (beta, init 0), shape (C,), when ``affine``.
    Buffers (state dict keys as torch): ``running_mean`` (init 0), ``running_var`` (init 1),
    ``num_batches_tracked`` (int64 scalar, init 0), when ``track_running_stats``.

    Backward, with X_hat = (X - mu) / sqrt(var + eps) and G = dL/dY (per channel, sums over the M values):
    dL/dgamma = sum G X_hat, dL/dbeta = sum G;
    training: dL/dX = gamma / sqrt(var + eps) * (G - sum(G) / M - X_hat * sum(G X_hat) / M);
    evaluation (constant statistics): dL/dX = gamma / sqrt(var + eps) * G.
    Caches X_hat and 1 / sqrt(var + eps). Works in channels-last memory for 4-D inputs and returns
    arrays in the input's memory layout.
    """

    _ndims: tuple[int, ...] = ()
    # registered buffers (with track_running_stats); Module.load_state_dict may replace the arrays,
    # so they are always read through these attributes and updated in place
    running_mean: np.ndarray
    running_var: np.ndarray
    num_batches_tracked: np.ndarray

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        dtype: np.dtype | type = np.float32,
    ) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"{type(self).__name__} needs num_features >= 1, got {num_features}")
        if eps <= 0:
            raise ValueError(f"{type(self).__name__} needs eps > 0, got {eps}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{type(self).__name__} needs momentum in [0, 1] or None, got {momentum}")
        self.num_features, self.eps, self.momentum = num_features, float(eps), momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight: Parameter | None = Parameter(np.empty(num_features, dtype=dtype)) if affine else None
        self.bias: Parameter | None = Parameter(np.empty(num_features, dtype=dtype)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", np.empty(num_features, dtype=dtype))
            self.register_buffer("running_var", np.empty(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.empty((), dtype=np.int64))
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, ``num_batches_tracked`` 0 (in place), as torch."""
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def reset_parameters(self, rng: np.random.Generator | None = None) -> None:
        """gamma 1, beta 0 and :meth:`reset_running_stats`, as torch; draws nothing (``rng`` is
        accepted so every layer's ``reset_parameters(rng)`` has one signature)."""
        self.reset_running_stats()
        if self.weight is not None and self.bias is not None:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def _uses_batch_stats(self) -> bool:
        return self.training or not self.track_running_stats

    def _update_running_stats(self, mean: np.ndarray, var_biased: np.ndarray, m: int) -> None:
        # in place (np.add(..., out=)), so the registered buffers stay the same arrays
        nbt = self.num_batches_tracked
        np.add(nbt, 1, out=nbt)
        factor = 1.0 / float(nbt) if self.momentum is None else self.momentum
        rm, rv = self.running_mean, self.running_var
        rm *= 1.0 - factor
        rm += factor * mean
        rv *= 1.0 - factor
        rv += (factor * m / (m - 1)) * var_biased  # unbiased batch variance

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, self._ndims, {1: self.num_features})
        if not self.affine and self.track_running_stats and x.dtype != self.running_mean.dtype:
            raise ShapeError(
                f"{type(self).__name__} has {self.running_mean.dtype} buffers but got a {x.dtype} input"
            )
        rows, moved_shape = _rows(x)  # (M, C)
        m = rows.shape[0]
        if self._uses_batch_stats():
            if m < 2:
                raise ShapeError(
                    f"{type(self).__name__} in training needs more than 1 value per channel, "
                    f"got input shape {x.shape}"
                )
            ones = np.ones(m, dtype=rows.dtype)
            mean = (ones @ rows) / m  # (C,): a BLAS matrix-vector product sums the rows
            x_hat = rows - mean  # (M, C), centred
            var = np.einsum("mc,mc->c", x_hat, x_hat) / m  # (C,) biased variance
            if self.track_running_stats and self.training:
                self._update_running_stats(mean, var, m)
        else:
            mean = self.running_mean
            var = self.running_var
            x_hat = rows - mean  # (M, C)
        inv_std = (1.0 / np.sqrt(var + self.eps)).astype(x.dtype)  # (C,)
        x_hat *= inv_std  # (M, C), normalised
        if self.affine:
            assert self.weight is not None and self.bias is not None
            y = x_hat * self.weight.data  # (M, C)
            y += self.bias.data
        else:
            y = x_hat.copy()
        self._save_for_backward(x_hat, inv_std, self._uses_batch_stats(), x.shape)
        return _unrows(y, moved_shape)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x_hat, inv_std, batch_stats, shape = self._saved()
        check_dout(self, dout, shape)
        g, moved_shape = _rows(dout)  # (M, C)
        m = g.shape[0]
        ones = np.ones(m, dtype=g.dtype)
        sum_g = ones @ g  # (C,)  sum over rows, as a BLAS matrix-vector product
        sum_gx = np.einsum("mc,mc->c", g, x_hat)  # (C,)
        if self.affine:
            assert self.weight is not None and self.bias is not None
            self.weight.accumulate(sum_gx)
            self.bias.accumulate(sum_g)
            scale = self.weight.data * inv_std  # (C,) gamma / sqrt(var + eps)
        else:
            scale = inv_std
        if not batch_stats:
            return _unrows(g * scale, moved_shape)
        dx = x_hat * (-scale * sum_gx / m)  # (M, C)
        dx -= scale * sum_g / m
        dx += g * scale
        return _unrows(dx, moved_shape)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs, as ``torch.nn.BatchNorm1d``
    (see :class:`_BatchNorm`)."""

    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) inputs, as ``torch.nn.BatchNorm2d`` (see :class:`_BatchNorm`)."""

    _ndims = (4,)
