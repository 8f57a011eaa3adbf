"""Per-layer statistics of one forward and backward pass, for NumPy and PyTorch models.

For one batch (x, y) and a loss, every leaf layer (a module without sub-modules) that is an
activation or owns a weight gets a :class:`LayerStats`:

* ``act_mean``, ``act_std``: mean and standard deviation of the layer's output;
* for activations (ReLU, ELU, Tanh), with a unit = a feature (N, C) or a channel (N, C, H, W):
  ``saturated_fraction``, the fraction of output entries in the flat region of the function
  (ReLU: y <= 0; ELU: y <= -:data:`ELU_SATURATION` * alpha, i.e. x <= -3 for the default;
  Tanh: |y| >= :data:`TANH_SATURATION`), where the derivative is (almost) zero, and
  ``dead_fraction``, the fraction of units that are in it for *every* entry of the batch (a
  dead unit passes no gradient at all; with a batch of one, every inactive unit looks dead);
* for layers with a ``weight``: ``grad_norm`` = ||dL/dW||, ``weight_norm`` = ||W|| and
  ``update_ratio`` = ||dW|| / ||W||, where dW is the change one step of ``optimizer`` would make
  (measured by taking the step and undoing it, optimizer state included) or, without an
  optimizer, ``learning_rate`` * dL/dW (plain SGD). CS231n's rule of thumb: about 1e-3 is
  healthy, far below it the layer does not learn, far above it the updates overwrite the weights;
* ``finite``: whether the output and the weight gradient are free of NaN and inf.

The model is left as it was: parameters, their gradients (None or not), optimizer state and
buffers (BatchNorm running statistics) are restored. :func:`layer_stats` takes a NumPy
:class:`~backproplab.nn.Module` or a ``torch.nn.Module``; torch is imported only for the latter.
:func:`stats_record` turns the list into the JSON-ready mapping that trainers log into
``metrics.jsonl`` under ``"layer_stats"``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from backproplab.instrument.recorder import leaf_modules, record_leaves
from backproplab.nn.activations import ELU, ReLU, Tanh
from backproplab.nn.module import Module
from backproplab.nn.parameter import Parameter
from backproplab.utils.jsonsafe import json_safe

if TYPE_CHECKING:
    import torch

#: ELU entries with y <= -ELU_SATURATION * alpha (x <= ln(1 - 0.95) = -3) count as saturated.
ELU_SATURATION = 0.95
#: Tanh entries with |y| >= TANH_SATURATION (derivative 1 - y^2 <= 0.06) count as saturated.
TANH_SATURATION = 0.97


@dataclass
class LayerStats:
    """Statistics of one layer (see the module docstring); None where they do not apply."""

    name: str
    kind: str
    act_mean: float | None = None
    act_std: float | None = None
    dead_fraction: float | None = None
    saturated_fraction: float | None = None
    grad_norm: float | None = None
    weight_norm: float | None = None
    update_ratio: float | None = None
    finite: bool = True

    @property
    def is_activation(self) -> bool:
        return self.dead_fraction is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (:func:`~backproplab.utils.jsonsafe.json_safe`: NaN is "nan")."""
        return json_safe(asdict(self))


def stats_record(stats: list[LayerStats]) -> dict[str, dict[str, Any]]:
    """``{layer name: {statistic: value}}`` for a metrics.jsonl record."""
    return {s.name: {k: v for k, v in s.to_dict().items() if k != "name"} for s in stats}


def _inactive(kind: str, y: np.ndarray, alpha: float) -> np.ndarray | None:
    if kind == "relu":
        return y <= 0
    if kind == "elu":
        return y <= -ELU_SATURATION * alpha
    if kind == "tanh":
        return np.abs(y) >= TANH_SATURATION
    return None


def _activation_stats(s: LayerStats, y: np.ndarray, kind: str | None, alpha: float = 1.0) -> None:
    y64 = np.asarray(y, dtype=np.float64)
    s.finite = s.finite and bool(np.isfinite(y64).all())
    s.act_mean, s.act_std = float(y64.mean()), float(y64.std())
    flat = _inactive(kind, y64, alpha) if kind else None
    if flat is None:
        return
    s.saturated_fraction = float(flat.mean())
    per_unit = (
        np.moveaxis(flat, 1, 0).reshape(flat.shape[1], -1) if flat.ndim >= 2 else flat.reshape(-1, 1)
    )  # (units, N*...)
    s.dead_fraction = float(per_unit.all(axis=1).mean())


def _weight_stats(s: LayerStats, w: np.ndarray, g: np.ndarray | None, update: np.ndarray | None) -> None:
    s.weight_norm = float(np.linalg.norm(np.asarray(w, dtype=np.float64)))
    if g is not None:
        g64 = np.asarray(g, dtype=np.float64)
        s.finite = s.finite and bool(np.isfinite(g64).all())
        s.grad_norm = float(np.linalg.norm(g64))
    if update is not None:
        un = float(np.linalg.norm(np.asarray(update, dtype=np.float64)))
        s.update_ratio = un / s.weight_norm if s.weight_norm > 0 else (0.0 if un == 0 else math.inf)


# ---------------------------------------------------------------------------- NumPy
_NUMPY_KINDS: list[tuple[type[Module], str]] = [(ReLU, "relu"), (ELU, "elu"), (Tanh, "tanh")]


def _numpy_kind(m: Module) -> str | None:
    return next((k for cls, k in _NUMPY_KINDS if isinstance(m, cls)), None)


def numpy_layer_stats(
    model: Module,
    x: np.ndarray,
    y: np.ndarray,
    loss: Module,
    *,
    optimizer: Any = None,
    learning_rate: float | None = None,
) -> list[LayerStats]:
    """Statistics of a NumPy model on (x, y) with the NumPy ``loss`` module (see the module docstring).

    ``optimizer`` is a :class:`backproplab.nn.optim.Optimizer` over the model's parameters.
    """
    params = dict(model.named_parameters())
    saved_grads = {n: p.grad for n, p in params.items()}
    buffers = {n: np.array(b, copy=True) for n, b in model.named_buffers()}
    try:
        for p in params.values():
            p.grad = None
        with record_leaves(model) as records:
            out = model(x)
            loss(out, y)
            model.backward(loss.backward(1.0))
        updates: dict[str, np.ndarray] = {}
        if optimizer is not None:
            before = {n: p.data.copy() for n, p in params.items()}
            state = optimizer.state_dict()
            optimizer.step()
            for n, p in params.items():
                updates[n] = p.data - before[n]  # the step's change
                p.data[...] = before[n]
            optimizer.load_state_dict(state)
        elif learning_rate is not None:
            updates = {n: learning_rate * p.grad for n, p in params.items() if p.grad is not None}
        stats = []
        for name, m in leaf_modules(model):
            kind = _numpy_kind(m)
            w = getattr(m, "weight", None)
            w = w if isinstance(w, Parameter) else None
            if kind is None and w is None:
                continue
            s = LayerStats(name, type(m).__name__)
            rec = records.get(name)
            if rec is not None and isinstance(rec.output, np.ndarray):
                _activation_stats(s, rec.output, kind, getattr(m, "alpha", 1.0))
            if w is not None:
                key = f"{name}.weight" if name else "weight"
                _weight_stats(s, w.data, w.grad, updates.get(key))
            stats.append(s)
        return stats
    finally:
        for n, p in params.items():
            p.grad = saved_grads[n]
        if buffers:
            model.load_state_dict(buffers, strict=False)


# ---------------------------------------------------------------------------- PyTorch
def _torch_kind(m: torch.nn.Module) -> str | None:
    from torch import nn

    for cls, k in ((nn.ReLU, "relu"), (nn.ELU, "elu"), (nn.Tanh, "tanh")):
        if isinstance(m, cls):
            return k
    return None


def torch_layer_stats(
    model: torch.nn.Module,
    x: Any,
    y: Any,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    optimizer: torch.optim.Optimizer | None = None,
    learning_rate: float | None = None,
) -> list[LayerStats]:
    """Statistics of a torch model on (x, y) with ``loss_fn(output, y)`` (see the module docstring).

    ``x`` and ``y`` are tensors (or arrays, converted) on the model's device; activations are
    captured with forward hooks on the leaf modules.
    """
    import torch

    x = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(x))
    y = y if isinstance(y, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(y))
    params = dict(model.named_parameters())
    saved_grads = {n: p.grad for n, p in params.items()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    outputs: dict[str, torch.Tensor] = {}
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    handles = []
    for name, m in leaves:

        def hook(_m: Any, _inp: Any, out: Any, name: str = name) -> None:
            if isinstance(out, torch.Tensor) and name not in outputs:
                outputs[name] = out.detach()

        handles.append(m.register_forward_hook(hook))
    try:
        for p in params.values():
            p.grad = None
        try:
            loss_fn(model(x), y).backward()
        finally:
            for h in handles:
                h.remove()
        updates: dict[str, np.ndarray] = {}
        if optimizer is not None:
            with torch.no_grad():
                before = {n: p.detach().clone() for n, p in params.items()}
                state = copy.deepcopy(optimizer.state_dict())
                optimizer.step()
                for n, p in params.items():
                    updates[n] = (p.detach() - before[n]).double().cpu().numpy()
                    p.copy_(before[n])
                optimizer.load_state_dict(state)
        elif learning_rate is not None:
            updates = {
                n: learning_rate * p.grad.double().cpu().numpy()
                for n, p in params.items()
                if p.grad is not None
            }
        stats = []
        for name, m in leaves:
            kind = _torch_kind(m)
            w = getattr(m, "weight", None)
            w = w if isinstance(w, torch.nn.Parameter) else None
            if kind is None and w is None:
                continue
            s = LayerStats(name, type(m).__name__)
            if name in outputs:
                _activation_stats(
                    s, outputs[name].double().cpu().numpy(), kind, float(getattr(m, "alpha", 1.0))
                )
            if w is not None:
                g = None if w.grad is None else w.grad.double().cpu().numpy()
                _weight_stats(
                    s,
                    w.detach().double().cpu().numpy(),
                    g,
                    updates.get(f"{name}.weight" if name else "weight"),
                )
            stats.append(s)
        return stats
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.grad = saved_grads[n]
            for n, b in model.named_buffers():
                b.copy_(buffers[n])


def layer_stats(
    model: Any,
    x: Any,
    y: Any,
    loss: Any,
    *,
    optimizer: Any = None,
    learning_rate: float | None = None,
) -> list[LayerStats]:
    """:func:`numpy_layer_stats` for a NumPy model, :func:`torch_layer_stats` for a torch one."""
    if isinstance(model, Module):
        return numpy_layer_stats(model, x, y, loss, optimizer=optimizer, learning_rate=learning_rate)
    return torch_layer_stats(model, x, y, loss, optimizer=optimizer, learning_rate=learning_rate)


def first_batch_stats(
    model: Any, x: Any, y: Any, loss: Any, optimizer: Any, batch_size: int
) -> dict[str, Any]:
    """``{"layer_stats": ...}`` of :func:`layer_stats` on the first ``batch_size`` samples of (x, y):
    what the trainers' ``--track_stats`` logs at each evaluation (the model is left unchanged)."""
    n = min(batch_size, len(x))
    return {"layer_stats": stats_record(layer_stats(model, x[:n], y[:n], loss, optimizer=optimizer))}
