"""Record what every leaf layer of a NumPy model sees in one forward and backward pass.

NumPy modules have no hooks, so :func:`record_leaves` wraps the ``forward`` and ``backward`` of
each leaf module (a module without sub-modules) *on the instance* for the duration of a
``with`` block; the model's own ``forward``/``backward`` run unchanged, containers with custom
forwards included. For each leaf it keeps, from the first call: the input X, the output Y, the
upstream gradient G = dL/dY handed to backward and the input gradient dL/dX it returned.

For leaves named in ``snapshot`` (stochastic layers such as Dropout) it also keeps a deep copy of
the module and of NumPy's global random state taken just before that first forward, so
:func:`replay_forward` can run the same forward again, with the same random draws, on another
input (a probe of ones reveals the dropout mask the recorded forward used).
"""

from __future__ import annotations

import contextlib
import copy as copy_module
from collections.abc import Collection, Iterator
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
    #: (deep copy of the module, np.random state) just before the first forward, when requested.
    snapshot: tuple[Module, Any] | None = None


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
def record_leaves(
    model: Module, *, copy: bool = True, snapshot: Collection[str] = ()
) -> Iterator[dict[str, LeafRecord]]:
    """Yield ``{leaf path: LeafRecord}``, filled in forward-call order by passes run in the block.

    ``copy`` keeps copies of the arrays, so later in-place changes cannot alter the record.
    Leaves named in ``snapshot`` get :attr:`LeafRecord.snapshot` (see the module docstring).
    The wrappers are removed when the block ends, even on an error.
    """
    records: dict[str, LeafRecord] = {}
    patched: list[Module] = []

    def wrap(name: str, mod: Module) -> None:
        fwd, bwd = mod.forward, mod.backward

        def forward(*args: Any, **kwargs: Any) -> Any:
            snap = None
            if name in snapshot and name not in records:
                clone = copy_module.deepcopy(mod)
                for attr in ("forward", "backward"):  # the copy must run the module's own methods
                    clone.__dict__.pop(attr, None)
                snap = (clone, np.random.get_state())  # noqa: NPY002 (a student's layer may use it)
            out = fwd(*args, **kwargs)
            rec = records.get(name)
            if rec is None:
                rec = records[name] = LeafRecord(name, mod, snapshot=snap)
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


def replay_forward(record: LeafRecord, x: np.ndarray) -> np.ndarray | None:
    """The recorded leaf's first forward run again on ``x``, with the random state it had then.

    None without a snapshot. NumPy's global random state is restored afterwards.
    """
    if record.snapshot is None:
        return None
    module, state = record.snapshot
    clone = copy_module.deepcopy(module)
    saved = np.random.get_state()  # noqa: NPY002
    try:
        np.random.set_state(state)  # noqa: NPY002
        return np.asarray(clone.forward(x))
    finally:
        np.random.set_state(saved)  # noqa: NPY002
