"""The PyTorch side of :func:`~backproplab.verify.parity.compare_models`: the reference losses and
the runs of a torch layer (on the NumPy layer's own input and upstream gradient), of a loss and of
the whole twin, returning NumPy arrays by the parity table's quantity names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn as tnn

#: (torch output, torch target) -> scalar loss tensor.
TorchLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def reference_cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PyTorch's default: ``cross_entropy(logits, target)``, mean over the batch."""
    return F.cross_entropy(output, target)


def reference_nll_of_probabilities(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-mean log p[target] for probabilities p (a model ending in Softmax), log of max(p, tiny)."""
    logp = torch.log(output.clamp_min(torch.finfo(output.dtype).tiny))
    if target.dim() == 1:
        return F.nll_loss(logp, target)
    return -(target * logp).sum(dim=1).mean()


def as_tensor(a: Any) -> torch.Tensor:
    return torch.tensor(np.ascontiguousarray(a))


def as_array(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy()


def torch_target(y: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    y = np.asarray(y)
    return as_tensor(y).long() if np.issubdtype(y.dtype, np.integer) else as_tensor(y).to(dtype)


Arrays = dict[str, np.ndarray]


def backward_grads(x_t: torch.Tensor, module: tnn.Module) -> Arrays:
    """After a backward pass through ``module`` from ``x_t``: ``"input grad"`` (when ``x_t`` has one)
    and ``"<parameter name> grad"`` for every parameter that has one."""
    out: Arrays = {} if x_t.grad is None else {"input grad": x_t.grad.numpy()}
    for name, p in module.named_parameters():
        if p.grad is not None:
            out[f"{name} grad"] = p.grad.numpy()
    return out


def run_leaf(t_mod: tnn.Module, x: np.ndarray, grad_out: np.ndarray | None, dtype: torch.dtype) -> Arrays:
    """One torch layer on the NumPy layer's input (and upstream gradient): output, input and param grads."""
    x_t = as_tensor(x)
    if x_t.is_floating_point():
        x_t = x_t.to(dtype).requires_grad_(True)
    t_mod.zero_grad(set_to_none=True)
    y_t = t_mod(x_t)
    out: Arrays = {"output": y_t.detach().numpy()}
    if grad_out is not None:
        y_t.backward(as_tensor(grad_out).to(y_t.dtype))
        out.update(backward_grads(x_t, t_mod))
    return out


def run_loss(output: np.ndarray, y: np.ndarray, reference_loss: TorchLoss, dtype: torch.dtype) -> Arrays:
    o_t = as_tensor(output).to(dtype).requires_grad_(True)
    loss = reference_loss(o_t, torch_target(y, dtype))
    loss.backward()
    return {"loss": loss.detach().numpy(), "loss grad": o_t.grad.numpy()}  # type: ignore[union-attr]


def run_model(
    twin: tnn.Module, x: np.ndarray, y: np.ndarray, reference_loss: TorchLoss, dtype: torch.dtype
) -> Arrays:
    """The whole twin from x alone: output, loss, loss grad, input grad, every parameter grad."""
    x_t = as_tensor(x).to(dtype).requires_grad_(True)
    twin.zero_grad(set_to_none=True)
    o_t = twin(x_t)
    o_t.retain_grad()
    loss = reference_loss(o_t, torch_target(y, dtype))
    loss.backward()
    out: Arrays = {
        "output": o_t.detach().numpy(),
        "loss": loss.detach().numpy(),
        "loss grad": o_t.grad.numpy(),
    }
    out.update(backward_grads(x_t, twin))
    return out
