"""Record what every leaf layer of a NumPy model sees in one forward and backward pass.

NumPy modules have no hooks, so :func:`record_leaves` wraps the ``forward`` and ``backward`` of
each leaf module (a module without sub-modules) *on the instance* for the duration of a
``with`` block; the model's own ``forward``/``backward`` run unchanged, containers with custom
forwards included. For each leaf it keeps, from the first call: the input X, the output Y, the
upstream gradient G = dL/dY handed to backward and the input gradient dL/dX it returned.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from backproplab.nn.module import Module


@dataclass
class LeafRecord:
    """One leaf layer's arrays from its first forward and backward call (None if not called)."""

    name: str
    module: Module
    input: np.ndarray | None = None
    output: np.ndarray | None = None
    grad_output: np.ndarray | None = None
    grad_input: np.ndarray | None = None
    forward_calls: int = 0
    backward_calls: int = 0


def leaf_modules(model: Module) -> list[tuple[str, Module]]:
    """(dotted path, module) of every module without sub-modules, in registration order.

    A model without sub-modules is its own single leaf, named ``""``.
    """
    return [(name, m) for name, m in model.named_modules() if next(m.children(), None) is None]


def _keep(a: Any, copy: bool) -> Any:
    if isinstance(a, np.ndarray):
        return a.copy() if copy else a
    return a


@contextlib.contextmanager
def record_leaves(model: Module, *, copy: bool = True) -> Iterator[dict[str, LeafRecord]]:
    """Yield ``{leaf path: LeafRecord}``, filled in forward-call order by passes run in the block.

    ``copy`` keeps copies of the arrays, so later in-place changes cannot alter the record.
    The wrappers are removed when the block ends, even on an error.
    """
    records: dict[str, LeafRecord] = {}
    patched: list[Module] = []

    def wrap(name: str, mod: Module) -> None:
        fwd, bwd = mod.forward, mod.backward

        def forward(*args: Any, **kwargs: Any) -> Any:
            out = fwd(*args, **kwargs)
            rec = records.get(name)
            if rec is None:
                rec = records[name] = LeafRecord(name, mod)
            if rec.forward_calls == 0:
                rec.input = _keep(args[0], copy) if args else None
                rec.output = _keep(out, copy)
            rec.forward_calls += 1
            return out

        def backward(dout: Any) -> Any:
            dx = bwd(dout)
            rec = records.get(name)
            if rec is not None:
                if rec.backward_calls == 0:
                    rec.grad_output = _keep(dout, copy)
                    rec.grad_input = _keep(dx, copy)
                rec.backward_calls += 1
            return dx

        object.__setattr__(mod, "forward", forward)
        object.__setattr__(mod, "backward", backward)
        patched.append(mod)

    try:
        for name, mod in leaf_modules(model):
            wrap(name, mod)
        yield records
    finally:
        for mod in patched:
            for attr in ("forward", "backward"):
                mod.__dict__.pop(attr, None)
