"""Parity of a NumPy model with its PyTorch twin: per layer, then over a few training steps.

:func:`compare_models` runs one batch through the NumPy model and its loss (recording, for every
leaf layer, its input X, output Y, upstream gradient G and input gradient dL/dX), then checks
each leaf *on its own* against its torch twin: the twin layer gets the NumPy layer's own input
X and upstream gradient G, so a row differs only when that layer's forward or backward differs,
and the first differing row names the layer at fault (errors do not propagate down the table).
Rows, in this order:

* forward order: ``<layer> output`` for each leaf, then ``loss`` (the loss value);
* backward order: ``loss grad`` (dL/d model output), then for each leaf from the last to the
  first: ``input grad`` and one ``<param> grad`` per parameter.

The reference loss is PyTorch's default: ``cross_entropy(logits, y)`` with mean reduction, or,
when the model ends in a Softmax (its output is probabilities), ``nll_loss(log(p), y)`` with
mean reduction. The NumPy loss is the one given (``SoftmaxCrossEntropy("mean")`` by default), so
``SoftmaxCrossEntropy("sum")`` shows up as a loss that is B times the reference.

Then the whole model is compared end to end (twin run from X alone) on the output, the loss and
every gradient, with the looser :data:`END_TO_END_RTOL` on ``norm_rel_err`` (a ReLU kink can flip
between two roundings of the same pre-activation, which changes one element, not the norm).

A row agrees when its ``max_rel_err`` (max |A - B| / max |B|, see
:mod:`backproplab.verify.diff`) is at most the dtype's :data:`~backproplab.verify.diff.AGREE_RTOL`;
nonzero agreement is reported as "agree (float32 rounding)", never as a bug. Diverging rows get
a hint from :mod:`backproplab.verify.hints`.

:func:`compare_trajectories` (in :mod:`backproplab.verify.trajectory`, re-exported here) then
trains deep copies of both models with the same optimizer, hyperparameters and batches, and
compares the loss and parameters step by step.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import numpy as np
import torch
from torch import nn as tnn

from backproplab import nn
from backproplab.errors import ShapeError
from backproplab.instrument.recorder import LeafRecord, record_leaves, replay_forward
from backproplab.nn.module import Module
from backproplab.verify import hints as H
from backproplab.verify.diff import TensorDiff, agree_rtol, tensor_diff
from backproplab.verify.gradcheck import BackwardFailure, backward_failure
from backproplab.verify.parity_reference import (
    Arrays,
    TorchLoss,
    reference_cross_entropy,
    reference_nll_of_probabilities,
    run_leaf,
    run_loss,
    run_model,
)
from backproplab.verify.parity_report import (
    END_TO_END_RTOL,
    LOSS,
    MODEL,
    ParityReport,
    ParityRow,
    format_table,
)
from backproplab.verify.trajectory import (
    TRAJ_LOSS_RTOL,
    TRAJ_PARAM_RTOL,
    OptimizerSpec,
    TrajectoryReport,
    TrajectorySide,
    TrajectoryStep,
    compare_trajectories,
    run_trajectory,
)
from backproplab.verify.twin import (
    FixedMaskDropout,
    build_twin,
    copy_weights,
    is_random_dropout,
    replace_module,
    torch_dtype,
)

#: A row also agrees when its error against a float64 twin is at most this many times the float32
#: twin's own error against it: both sides then differ from exact arithmetic by rounding alone.
ROUNDING_NOISE_FACTOR = 100.0
#: In float64, an absolute error at most this large is rounding whatever the relative error: it
#: covers gradients that are zero up to rounding (a bias whose effect a later BatchNorm removes).
FLOAT64_ABS_FLOOR = 1e-12


__all__ = [
    "TRAJ_LOSS_RTOL",
    "TRAJ_PARAM_RTOL",
    "OptimizerSpec",
    "ParityReport",
    "ParityRow",
    "TrajectoryReport",
    "TrajectorySide",
    "TrajectoryStep",
    "compare_models",
    "compare_trajectories",
    "format_table",
    "run_trajectory",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _quiet(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``fn`` with NumPy's floating-point warnings off: non-finite values are reported as rows."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return wrapper


# ---------------------------------------------------------------------------- reference losses
def _ends_in_softmax(records: dict[str, LeafRecord]) -> bool:
    last = list(records.values())[-1] if records else None
    return last is not None and isinstance(last.module, nn.Softmax)


# ---------------------------------------------------------------------------- helpers
def _make_row(
    layer: str,
    quantity: str,
    order: str,
    value: np.ndarray,
    reference: np.ndarray,
    reference64: np.ndarray | None,
    rtol: float,
    dtype: str,
    *,
    end_to_end: bool = False,
    **ctx: Any,
) -> ParityRow:
    """Compare ``value`` with ``reference`` (the twin in the model's dtype).

    Agreement: ``max_rel_err`` (``norm_rel_err`` end to end) at most ``rtol``, or, with a float64
    twin's ``reference64``, an error against it within :data:`ROUNDING_NOISE_FACTOR` times the
    twin's own rounding error (which covers values that are zero up to rounding, such as a bias
    gradient that cancels exactly, where a relative error means nothing).
    """
    value, reference = np.asarray(value), np.asarray(reference)
    d = tensor_diff(value, reference)
    agrees = d.same_shape and d.finite and (d.norm_rel_err <= rtol if end_to_end else d.max_rel_err <= rtol)
    if dtype == "float64" and d.same_shape and d.finite:
        agrees = agrees or d.max_abs_err <= FLOAT64_ABS_FLOOR
    noise = None
    if reference64 is not None and d.same_shape and d.finite and reference64.shape == value.shape:
        r64, r32, v = (np.asarray(a, dtype=np.float64) for a in (reference64, reference, value))
        if end_to_end:
            noise, err = float(np.linalg.norm(r32 - r64)), float(np.linalg.norm(v - r64))
        else:
            noise, err = float(np.abs(r32 - r64).max(initial=0.0)), float(np.abs(v - r64).max(initial=0.0))
        agrees = agrees or err <= ROUNDING_NOISE_FACTOR * noise
    if agrees:
        return ParityRow(layer, quantity, order, d, H.agreement(dtype, d), rounding_noise=noise)
    context = H.RowContext(layer, quantity, value, reference, d, rtol, end_to_end=end_to_end, **ctx)
    return ParityRow(layer, quantity, order, d, "DIVERGES", H.diagnose(context)[0], rounding_noise=noise)


def _set_input_grads(model: Module, value: bool | None, saved: dict[int, bool]) -> None:
    for m in model.modules():
        if hasattr(m, "needs_input_grad"):
            if value is None:
                m.needs_input_grad = saved[id(m)]
            else:
                saved[id(m)] = m.needs_input_grad
                m.needs_input_grad = value


def _prepare_twin(numpy_model: Module, torch_model: tnn.Module | None) -> tnn.Module:
    if torch_model is None:
        return build_twin(numpy_model)
    twin = copy.deepcopy(torch_model)
    copy_weights(numpy_model, twin)
    return twin


def _check_batch(x: np.ndarray, y: np.ndarray) -> int:
    if not isinstance(x, np.ndarray) or x.ndim < 1 or len(x) < 1:
        raise ShapeError(
            f"parity needs a non-empty batch array x, got {getattr(x, 'shape', type(x).__name__)}"
        )
    if len(np.asarray(y)) != len(x):
        raise ShapeError(f"parity: x has {len(x)} samples but y has {len(np.asarray(y))} labels")
    return len(x)


# ---------------------------------------------------------------------------- per-layer parity
@_quiet
def compare_models(
    numpy_model: Module,
    torch_model: tnn.Module | None = None,
    *,
    x: np.ndarray,
    y: np.ndarray,
    loss: Module | None = None,
    reference_loss: TorchLoss | None = None,
) -> ParityReport:
    """Compare ``numpy_model`` (+ ``loss``) with its torch twin on the batch (x, y), layer by layer.

    ``torch_model`` defaults to :func:`~backproplab.verify.twin.build_twin`; one given is deep-copied
    and gets the NumPy weights, and its module paths must equal the NumPy ones (``layers.0``, ...)
    for the per-layer rows. ``loss`` is a NumPy loss module called as ``loss(output, y)``
    (default ``SoftmaxCrossEntropy("mean")``); ``reference_loss`` the torch loss (default: see
    the module docstring). For a float32 model a float64 copy of the twin also runs, to measure
    the twin's own rounding error (see :func:`_make_row`). The NumPy model's parameters and
    grads are left as they were.
    """
    batch = _check_batch(x, y)
    loss = loss if loss is not None else nn.SoftmaxCrossEntropy("mean")
    dtype = numpy_model.dtype.name
    rtol = agree_rtol(dtype)
    twin = _prepare_twin(numpy_model, torch_model)
    tdtype = next((p.dtype for p in twin.parameters()), torch_dtype(numpy_model.dtype))
    dropouts = [n for n, m in twin.named_modules() if n and is_random_dropout(m)]
    notes: list[str] = []

    # NumPy: one recorded forward and backward, with every input gradient computed.
    saved_grads = {name: p.grad for name, p in numpy_model.named_parameters()}
    saved_flags: dict[int, bool] = {}
    _set_input_grads(numpy_model, True, saved_flags)
    failure: BackwardFailure | None = None
    dx: np.ndarray | None = None
    try:
        numpy_model.zero_grad()
        with record_leaves(numpy_model, snapshot=dropouts) as records:
            out = numpy_model(x)
            loss_np = loss(out, y)
            dout = loss.backward(1.0)
            try:
                dx = numpy_model.backward(dout)
            except Exception as e:  # a backward that raises is a row of the table, not a crash
                failure = backward_failure(e, numpy_model)
        grads = {name: p.grad.copy() for name, p in numpy_model.named_parameters() if p.grad is not None}
    finally:
        _set_input_grads(numpy_model, None, saved_flags)
        for name, p in numpy_model.named_parameters():
            p.grad = saved_grads[name]

    shared = _share_dropout_masks(twin, records, dropouts, notes)
    twin64 = copy.deepcopy(twin).to(torch.float64) if tdtype != torch.float64 else None

    if reference_loss is None:
        probs = _ends_in_softmax(records)
        reference_loss = reference_nll_of_probabilities if probs else reference_cross_entropy
        ref_name = (
            "nll_loss(log p), mean (the model ends in a softmax)" if probs else "cross_entropy(logits), mean"
        )
    else:
        ref_name = getattr(reference_loss, "__name__", type(reference_loss).__name__)

    def rows_for(
        layer: str, order: str, names: list[str], value: Arrays, ref: Arrays, ref64: Arrays | None, **kw: Any
    ) -> list[ParityRow]:
        tol = kw.pop("rtol", rtol)
        return [
            _make_row(
                layer, q, order, value[q], ref[q], None if ref64 is None else ref64.get(q), tol, dtype, **kw
            )
            for q in names
            if q in value and q in ref
        ]

    # The loss on the NumPy model's own output (first: the layers' hints need to know if it agrees).
    lvalue: Arrays = {"loss": np.asarray(loss_np), "loss grad": dout}
    lref = run_loss(out, y, reference_loss, tdtype)
    lref64 = run_loss(out, y, reference_loss, torch.float64) if twin64 is not None else None
    lctx = {"output": out, "target": y, "batch_size": batch, "module": loss}
    loss_fwd = rows_for(LOSS, "forward", ["loss"], lvalue, lref, lref64, **lctx)
    loss_bwd = rows_for(LOSS, "backward", ["loss grad"], lvalue, lref, lref64, **lctx)
    loss_agrees = not any(r.diverges for r in loss_fwd + loss_bwd)

    fwd_rows: list[ParityRow] = []
    bwd_blocks: list[list[ParityRow]] = []
    mods = dict(twin.named_modules())
    mods64 = dict(twin64.named_modules()) if twin64 is not None else {}
    for name, rec in records.items():
        t_mod = mods.get(name)
        if t_mod is None:
            notes.append(f"{name}: the torch model has no module of that name; compared end to end only")
            continue
        if rec.forward_calls > 1:
            notes.append(f"{name}: called {rec.forward_calls} times per forward; its first call is compared")
        ctx = {
            "module": rec.module,
            "input": rec.input,
            "output": rec.output,
            "grad_output": rec.grad_output,
            "batch_size": batch,
            "loss_agrees": loss_agrees,
        }
        ref = run_leaf(t_mod, rec.input, rec.grad_output, tdtype)  # type: ignore[arg-type]
        ref64 = run_leaf(mods64[name], rec.input, rec.grad_output, torch.float64) if name in mods64 else None  # type: ignore[arg-type]
        value: Arrays = {"output": rec.output}  # type: ignore[dict-item]
        buffers = _buffer_values(rec, t_mod, mods64.get(name), ref, ref64, value)
        if rec.grad_input is not None:
            value["input grad"] = rec.grad_input
        for pname, _ in t_mod.named_parameters():
            g = grads.get(f"{name}.{pname}" if name else pname)
            if g is not None:
                value[f"{pname} grad"] = g
        fwd_rows += rows_for(name, "forward", ["output", *buffers], value, ref, ref64, **ctx)
        bwd_names = [q for q in value if q != "output" and q not in buffers]
        block = rows_for(name, "backward", bwd_names, value, ref, ref64, **ctx)
        if failure is not None and failure.module == name:
            block.insert(0, _failure_row(failure))
        bwd_blocks.append(block)
    if failure is not None and failure.module not in records:
        bwd_blocks.append([_failure_row(failure)])

    fwd_rows += loss_fwd
    rows = fwd_rows + loss_bwd
    for block in reversed(bwd_blocks):
        rows.extend(block)

    # End to end: the twin from x alone.
    evalue: Arrays = {"output": out, **lvalue}
    if dx is not None:
        evalue["input grad"] = dx
    evalue.update({f"{n} grad": g for n, g in grads.items()})
    eref = run_model(twin, x, y, reference_loss, tdtype)
    eref64 = run_model(twin64, x, y, reference_loss, torch.float64) if twin64 is not None else None
    e2e_kw = {"rtol": END_TO_END_RTOL(dtype), "end_to_end": True, "loss_agrees": loss_agrees}
    e2e = rows_for(MODEL, "forward", ["output", "loss"], evalue, eref, eref64, **e2e_kw, **lctx)
    if failure is None:
        e2e += rows_for(
            MODEL,
            "backward",
            [q for q in evalue if q.endswith("grad")],
            evalue,
            eref,
            eref64,
            **e2e_kw,
            **lctx,
        )
    else:
        notes.append("the NumPy backward raised, so the end-to-end gradients are not compared")
    if shared:
        notes.append(
            f"{', '.join(shared)}: Dropout in training mode; the torch twin uses the NumPy layer's own mask "
            "(read by replaying its forward, same random draws, on ones), so both drop the same elements"
        )

    report = ParityReport(rows, e2e, dtype, rtol, batch, ref_name, notes=notes)
    _summarise(report, records)
    return report


def _failure_row(failure: BackwardFailure) -> ParityRow:
    """The DIVERGES row of a NumPy backward that raised, naming the module and the parameter."""
    quantity = f"{failure.parameter} grad" if failure.parameter else "input grad"
    nan = math.nan
    shape = failure.shape or ()
    diff = TensorDiff((), shape, nan, nan, nan, nan, nan, False)
    return ParityRow(failure.module or MODEL, quantity, "backward", diff, "DIVERGES", failure.describe())


def _buffer_values(
    rec: LeafRecord,
    t_mod: tnn.Module,
    t_mod64: tnn.Module | None,
    ref: Arrays,
    ref64: Arrays | None,
    value: Arrays,
) -> list[str]:
    """Add the floating-point buffers both sides keep (BatchNorm's running statistics) after the
    layer's one forward to ``value`` / ``ref`` / ``ref64``; returns their names (skipped when the
    NumPy layer ran more than once)."""
    if rec.forward_calls != 1:
        return []
    np_buffers = dict(rec.module.named_buffers())
    t64 = dict(t_mod64.named_buffers()) if t_mod64 is not None else {}
    names = []
    for bname, tb in t_mod.named_buffers():
        nb = np_buffers.get(bname)
        if not tb.is_floating_point() or not isinstance(nb, np.ndarray) or "." in bname:
            continue
        value[bname] = np.array(nb, copy=True)
        ref[bname] = tb.detach().numpy().copy()
        if ref64 is not None and bname in t64:
            ref64[bname] = t64[bname].detach().numpy().copy()
        names.append(bname)
    return names


def _share_dropout_masks(
    twin: tnn.Module, records: dict[str, LeafRecord], names: list[str], notes: list[str]
) -> list[str]:
    """Replace each random torch dropout of ``twin`` by one with the NumPy layer's recorded mask.

    The mask is read by replaying the NumPy layer's first forward (same random state) on ones:
    keep = replay(1) != 0. Where the recorded input is nonzero, that must agree with the recorded
    output's zeros; if it does not (a forward whose draws cannot be replayed), the mask is taken
    from the recorded output there, and a note says so. Returns the names whose mask is shared.
    """
    shared = []
    for name in names:
        rec = records.get(name)
        if rec is None or not isinstance(rec.input, np.ndarray) or not isinstance(rec.output, np.ndarray):
            continue
        x, y = rec.input, rec.output
        try:
            probe = replay_forward(rec, np.ones_like(x))
        except Exception:  # a forward that cannot be replayed: fall back on the output's zeros
            probe = None
        if probe is None or probe.shape != x.shape:
            keep = y != 0
            notes.append(f"{name}: its Dropout mask could not be replayed; taken from its output's zeros")
        else:
            keep = probe != 0
            live = x != 0
            if ((y != 0) != keep)[live].any():
                keep = np.where(live, y != 0, keep)
                notes.append(
                    f"{name}: replaying its forward gave another mask than the recorded one; the mask is taken "
                    "from the recorded output's zeros"
                )
        if rec.forward_calls > 1:
            notes.append(f"{name}: called more than once per forward; only its first mask is shared")
        p = float(getattr(twin.get_submodule(name), "p", 0.5))
        replace_module(twin, name, FixedMaskDropout(keep, p))
        shared.append(name)
    return shared


def _summarise(report: ParityReport, records: dict[str, LeafRecord]) -> None:
    """Fill ``report.hints`` and ``report.notes`` from the rows."""
    diverging = [r for r in report.rows if r.diverges]
    for r in diverging:
        report.hints.append(f"{r.label}: {r.hint}")
    if not diverging:
        e2e = [r for r in report.end_to_end if r.diverges]
        if e2e:
            report.hints.append(
                f"every layer agrees on its own, but the composed model differs from {e2e[0].label} on "
                f"({e2e[0].hint}): check how the model chains its layers (its forward/backward)"
            )
    for name, rec in records.items():
        m = rec.module
        if isinstance(m, nn.Softmax) and rec.output is not None and rec.output.ndim == 2 and m.dim % 2 == 0:
            report.hints.append(
                f"{name}: Softmax(dim={m.dim}) normalises over the batch axis of its (N, C) input: use dim=1"
            )
    if report.batch_size == 1:
        report.notes.append(
            "batch size 1: sum and mean reductions give the same loss and gradients, so the reduction "
            "cannot be checked (use a batch of 2 or more)"
        )
    if report.first_divergence is None:
        by_tol = [r.diff.max_rel_err for r in report.rows if r.diff.max_rel_err <= report.rtol]
        near_zero = [r.label for r in report.rows if r.diff.max_rel_err > report.rtol]
        worst = max(by_tol, default=0.0)
        n = len(report.rows) + len(report.end_to_end)
        if worst > 0 or near_zero:
            report.notes.append(
                f"all {n} compared tensors agree; the largest per-layer difference, {worst:.2g} of the "
                f"tensor's scale, is {report.dtype} rounding (tolerance {report.rtol:g}), not a bug"
            )
        else:
            report.notes.append(f"all {n} compared tensors agree exactly")
        if near_zero:
            report.notes.append(
                f"{', '.join(near_zero)}: zero up to rounding (terms that cancel, e.g. a bias before "
                f"BatchNorm); equal to a float64 twin within {ROUNDING_NOISE_FACTOR:g}x the float32 twin's "
                "own rounding error"
            )
