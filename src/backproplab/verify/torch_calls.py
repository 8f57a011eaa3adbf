"""The leaf modules a PyTorch model calls in one forward pass, in call order, with what they saw."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn as tnn


@dataclass
class LeafCall:
    """One call of a leaf module (no children): its dotted name, the module, and (when recorded)
    its first input and its output, detached."""

    name: str
    module: tnn.Module
    input: torch.Tensor | None = None
    output: torch.Tensor | None = None


def forward_calls(
    model: tnn.Module, x: torch.Tensor, *, record: bool = False, grad: bool = False
) -> tuple[list[LeafCall], object]:
    """Every leaf-module call of ``model(x)``, repeats included (one activation module applied after
    each layer is one module called several times), and the model's output of that same pass (a
    Dropout draws its mask once). ``record`` keeps inputs and outputs; ``grad`` runs the forward
    with autograd on (the caller's backward then follows)."""
    leaves = {n: m for n, m in model.named_modules() if next(m.children(), None) is None}
    calls: list[LeafCall] = []

    def hook(module: tnn.Module, args: tuple[object, ...], out: object, name: str) -> None:
        first = args[0] if args and isinstance(args[0], torch.Tensor) else None
        calls.append(
            LeafCall(
                name,
                module,
                first.detach().clone() if record and first is not None else None,
                out.detach().clone() if record and isinstance(out, torch.Tensor) else None,
            )
        )

    hooks = [m.register_forward_hook(lambda mod, a, o, n=n: hook(mod, a, o, n)) for n, m in leaves.items()]
    try:
        with torch.set_grad_enabled(grad):
            output = model(x)
    finally:
        for h in hooks:
            h.remove()
    return calls, output


def leaf_calls(
    model: tnn.Module, x: torch.Tensor, *, record: bool = False, grad: bool = False
) -> list[LeafCall]:
    """The calls of :func:`forward_calls`, without the output."""
    return forward_calls(model, x, record=record, grad=grad)[0]
