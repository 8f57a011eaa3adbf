"""PyTorch references of a user's layers and losses, built from their :class:`LayerView`.

:func:`torch_layer` returns the ``torch.nn`` module a layer of a given kind should equal, with the
user's parameter values copied in (torch's layout: a CS231n ``(D, M)`` affine weight is
transposed); :func:`run_reference` runs it on the user's own input and upstream gradient and
returns the output, the input gradient and every parameter gradient (torch's layout), as the
parity table compares them. Losses: :func:`reference_loss` is PyTorch's default, the mean over
the batch, of cross-entropy on logits or of ``-log p[target]`` on probabilities.

The conventions are PyTorch's: ``Linear`` computes ``Y = X W^T + b`` (W is ``(out, in)``), norms
use the biased variance and ``eps`` inside the square root, ``Softmax`` normalises ``dim=1``,
``MaxPool2d`` / ``Conv2d`` as torch. A Linear layer given an input of more than two dimensions
flattens it first, as CS231n's ``affine_forward`` does.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn as tnn

from backproplab.verify.protocol import LayerView


class FlattenLinear(tnn.Module):
    """``Linear`` on the input flattened to (N, D), as CS231n's ``affine_forward``."""

    def __init__(self, linear: tnn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.reshape(x.shape[0], -1))


def resolve_linear_layout(view: LayerView, x: np.ndarray, output: np.ndarray | None = None) -> None:
    """Decide whether a Linear layer's weight is stored as torch's (out, in) or transposed.

    From the shapes when the weight is not square (D input features); for a square weight from the
    layer's own forward output (``X W^T + b`` against ``X W + b``), torch's layout when neither
    or both explain it.
    """
    w = view.param("weight")
    if w is None or w.value.ndim != 2:
        return
    d = int(np.prod(x.shape[1:]))
    rows, cols = w.value.shape
    if rows != cols:
        w.transposed = rows == d and cols != d
        return
    if output is None:
        return
    b = view.param("bias")
    xf = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    wv = np.asarray(w.value, dtype=np.float64)
    bias = 0.0 if b is None else np.asarray(b.value, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64).reshape(len(x), -1)
    scale = max(float(np.abs(out).max()), 1e-30)
    torch_err = float(np.abs(xf @ wv.T + bias - out).max()) / scale
    transposed_err = float(np.abs(xf @ wv + bias - out).max()) / scale
    w.transposed = transposed_err < 1e-6 <= torch_err


def _tensor(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(np.ascontiguousarray(a), dtype=dtype)


def _load(module: tnn.Module, view: LayerView, dtype: torch.dtype) -> None:
    """Copy the view's parameters (torch layout) into ``module``'s weight / bias."""
    with torch.no_grad():
        for name in ("weight", "bias"):
            ref = view.param(name)
            target = getattr(module, name, None)
            if ref is not None and isinstance(target, torch.Tensor):
                value = _tensor(np.asarray(ref.torch_value()).reshape(target.shape), dtype)
                target.copy_(value)


def torch_layer(view: LayerView, x: np.ndarray, dtype: torch.dtype = torch.float64) -> tnn.Module | None:
    """The torch module the layer should equal on input ``x`` (None for a kind without reference)."""
    cfg = view.config
    kind = view.kind
    mod: tnn.Module
    if kind == "linear":
        w = view.param("weight")
        if w is None:
            return None
        out_f, in_f = np.asarray(w.torch_value()).shape
        lin = tnn.Linear(int(in_f), int(out_f), bias=view.param("bias") is not None)
        mod = FlattenLinear(lin) if x.ndim > 2 else lin
    elif kind == "elu":
        mod = tnn.ELU(alpha=float(cfg.get("alpha", 1.0)))
    elif kind == "relu":
        mod = tnn.ReLU()
    elif kind == "leaky_relu":
        mod = tnn.LeakyReLU(float(cfg.get("negative_slope", 0.01)))
    elif kind == "tanh":
        mod = tnn.Tanh()
    elif kind == "sigmoid":
        mod = tnn.Sigmoid()
    elif kind == "softmax":
        mod = tnn.Softmax(dim=int(cfg.get("dim", 1)))
    elif kind == "flatten":
        mod = tnn.Flatten()
    elif kind == "layernorm":
        d = int(x.shape[-1])
        mod = tnn.LayerNorm(
            d, eps=float(cfg.get("eps", 1e-5)), elementwise_affine=view.param("weight") is not None
        )
    elif kind == "batchnorm":
        cls = tnn.BatchNorm2d if x.ndim == 4 else tnn.BatchNorm1d
        mod = cls(int(x.shape[1]), eps=float(cfg.get("eps", 1e-5)), affine=view.param("weight") is not None)
    elif kind == "conv2d":
        w = view.param("weight")
        if w is None:
            return None
        f, c, kh, kw = np.asarray(w.torch_value()).shape
        stride, pad = int(cfg.get("stride", 1)), int(cfg.get("pad", 0))
        mod = tnn.Conv2d(int(c), int(f), (int(kh), int(kw)), stride, pad, bias=view.param("bias") is not None)
    elif kind == "maxpool2d":
        kh, kw = int(cfg.get("pool_height", 2)), int(cfg.get("pool_width", 2))
        mod = tnn.MaxPool2d((kh, kw), int(cfg.get("stride", 2)))
    else:
        return None
    mod = mod.to(dtype)
    if kind in ("linear", "layernorm", "batchnorm", "conv2d"):
        _load(mod.linear if isinstance(mod, FlattenLinear) else mod, view, dtype)
    return mod


def run_reference(
    module: tnn.Module, x: np.ndarray, dout: np.ndarray | None, dtype: torch.dtype = torch.float64
) -> dict[str, np.ndarray]:
    """``module`` on ``x`` (training mode): "output", and with ``dout`` "input grad" and
    "<param> grad" for each parameter (named as torch names them, e.g. "weight grad")."""
    x_t = _tensor(x, dtype).requires_grad_(dout is not None)
    module.zero_grad(set_to_none=True)
    y_t = module(x_t)
    out = {"output": y_t.detach().numpy()}
    if dout is not None:
        y_t.backward(_tensor(dout, dtype))
        out["input grad"] = x_t.grad.numpy()  # type: ignore[union-attr]
        for name, p in module.named_parameters():
            if p.grad is not None:
                out[f"{name.split('.')[-1]} grad"] = p.grad.numpy()
    return out


def reference_loss(
    scores: np.ndarray, y: np.ndarray, on: str, dtype: torch.dtype = torch.float64
) -> dict[str, np.ndarray]:
    """PyTorch's mean cross-entropy on ``scores`` (logits, or probabilities with ``on ==
    "probabilities"``) and index labels ``y``: "loss" and "loss grad" (dL/dscores)."""
    s = _tensor(scores, dtype).requires_grad_(True)
    t = torch.tensor(np.asarray(y), dtype=torch.long)
    if on == "probabilities":
        loss = F.nll_loss(torch.log(s.clamp_min(torch.finfo(dtype).tiny)), t)
    else:
        loss = F.cross_entropy(s, t)
    loss.backward()
    return {"loss": loss.detach().numpy(), "loss grad": s.grad.numpy()}  # type: ignore[union-attr]


def torch_twin(
    views: list[LayerView], x: np.ndarray, dtype: torch.dtype = torch.float64
) -> tnn.Sequential | None:
    """A ``Sequential`` of the references of ``views`` (None when one has no reference)."""
    mods: list[tnn.Module] = []
    h = torch.tensor(np.ascontiguousarray(x), dtype=dtype)
    for v in views:
        m = torch_layer(v, h.detach().numpy(), dtype)
        if m is None:
            return None
        with torch.no_grad():
            h = m(h)
        mods.append(m)
    return tnn.Sequential(*mods)
