"""Layer normalisation three ways: autograd, a hand-derived ``autograd.Function``, and its module.

All three compute, over the last ``len(normalized_shape)`` dimensions of the input (M elements
per normalised group), as ``torch.nn.LayerNorm``:

    mu    = mean(x)                            (over the M elements of a group)
    var   = mean((x - mu)^2)                   (biased, as torch)
    x_hat = (x - mu) / sqrt(var + eps)         eps = 1e-5 by default
    y     = gamma * x_hat + beta

Parameters ``weight`` (gamma, init 1) and ``bias`` (beta, init 0) have shape ``normalized_shape``;
the names are torch's, so state dicts load across. Input shape (*, *normalized_shape); output has
the input's shape. A wrong trailing shape is a :class:`~backproplab.errors.ShapeError` naming
the expected and actual shapes.

Hand-derived backward, for upstream gradient G = dL/dy, with rstd = 1 / sqrt(var + eps) and
means taken over the M elements of each group:

    dL/dbeta  = sum over the batch dimensions of G
    dL/dgamma = sum over the batch dimensions of G * x_hat
    dL/dx     = rstd * (g - mean(g) - x_hat * mean(g * x_hat)),   g = G * gamma
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from backproplab.errors import ShapeError

DEFAULT_EPS = 1e-5


def _as_shape(normalized_shape: int | Sequence[int]) -> tuple[int, ...]:
    shape = (
        (normalized_shape,) if isinstance(normalized_shape, int) else tuple(int(s) for s in normalized_shape)
    )
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"normalized_shape must be positive sizes, got {normalized_shape!r}")
    return shape


def check_layernorm_input(name: str, x: torch.Tensor, normalized_shape: tuple[int, ...]) -> None:
    """Raise :class:`ShapeError` unless ``x`` is a floating tensor of shape (*, *normalized_shape)."""
    k = len(normalized_shape)
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{name} expects a torch.Tensor, got {type(x).__name__}")
    if x.dim() < k or tuple(x.shape[x.dim() - k :]) != normalized_shape:
        raise ShapeError(
            f"{name} expects an input of shape (*, {', '.join(map(str, normalized_shape))}), "
            f"got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ShapeError(f"{name} expects a floating-point input, got dtype {x.dtype}")


class _LayerNormBase(nn.Module):
    """Shape bookkeeping and the parameters shared by the two modules."""

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = DEFAULT_EPS,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.normalized_shape = _as_shape(normalized_shape)
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(self.normalized_shape, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(self.normalized_shape, device=device, dtype=dtype))

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"


class AutogradLayerNorm(_LayerNormBase):
    """LayerNorm written with tensor operations; PyTorch's autograd derives the backward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_layernorm_input(type(self).__name__, x, self.normalized_shape)
        dims = tuple(range(-len(self.normalized_shape), 0))
        mu = x.mean(dim=dims, keepdim=True)  # (*, 1, ..., 1)
        var = ((x - mu) ** 2).mean(dim=dims, keepdim=True)  # biased variance, (*, 1, ..., 1)
        x_hat = (x - mu) / torch.sqrt(var + self.eps)  # (*, *normalized_shape)
        return self.weight * x_hat + self.bias


class LayerNormFunction(torch.autograd.Function):
    """LayerNorm with the hand-derived backward of the module docstring; use ``LayerNormFunction.apply``.

    ``apply(x, weight, bias, eps)``: ``weight`` and ``bias`` have the shape of the trailing
    dimensions of ``x`` that are normalised. Saves x_hat and rstd (and gamma only when dL/dx is
    needed); backward returns None for every input whose ``ctx.needs_input_grad`` is False.
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = DEFAULT_EPS
    ) -> torch.Tensor:
        check_layernorm_input("LayerNormFunction", x, tuple(weight.shape))
        if bias.shape != weight.shape:
            raise ShapeError(
                f"LayerNormFunction: bias has shape {tuple(bias.shape)}, weight {tuple(weight.shape)}"
            )
        dims = tuple(range(-weight.dim(), 0))
        mu = x.mean(dim=dims, keepdim=True)  # (*, 1, ..., 1)
        xc = x - mu  # (*, *normalized_shape)
        var = (xc * xc).mean(dim=dims, keepdim=True)  # biased variance
        rstd = torch.rsqrt(var + eps)  # (*, 1, ..., 1)
        x_hat = xc * rstd
        needs_x, needs_w, _ = ctx.needs_input_grad[:3]
        # Only what backward uses: x_hat for dx and dgamma, rstd and gamma for dx.
        ctx.save_for_backward(
            x_hat if (needs_x or needs_w) else None, rstd if needs_x else None, weight if needs_x else None
        )
        ctx.dims = dims
        return x_hat * weight + bias

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x_hat, rstd, weight = ctx.saved_tensors
        needs_x, needs_w, needs_b = ctx.needs_input_grad[:3]
        dims = ctx.dims
        batch_dims = tuple(range(grad_out.dim() - len(dims)))
        dx = dw = db = None
        if needs_x:
            g = grad_out * weight  # (*, *normalized_shape)
            mean_g = g.mean(dim=dims, keepdim=True)
            mean_gx = (g * x_hat).mean(dim=dims, keepdim=True)
            dx = rstd * (g - mean_g - x_hat * mean_gx)
        if needs_w:
            dw = (grad_out * x_hat).sum(dim=batch_dims)  # (*normalized_shape)
        if needs_b:
            db = grad_out.sum(dim=batch_dims)
        return dx, dw, db, None


class LayerNorm(_LayerNormBase):
    """LayerNorm through :class:`LayerNormFunction` (the hand-derived backward)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_layernorm_input(type(self).__name__, x, self.normalized_shape)
        out: torch.Tensor = LayerNormFunction.apply(x, self.weight, self.bias, self.eps)
        return out
