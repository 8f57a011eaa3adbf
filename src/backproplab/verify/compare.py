"""Parity of a user's own NumPy model with the user's own PyTorch model: "the blog's evening, in one call".

:func:`compare` takes a NumPy model that need not be built on backproplab (its layers found from a
list attribute, or given; their parameters through the conventions and mapping of
:mod:`backproplab.verify.protocol`) and a PyTorch model written independently (its leaf modules
in forward order). It pairs the layers in order by kind (a parameterless NumPy layer without a torch
counterpart, such as a final softmax before a loss on probabilities, is compared with its own
torch reference), copies the NumPy weights into a float64 copy of the torch model, so both start
equal, and then:

1. runs one batch through the NumPy model and its loss, recording each layer's input, output,
   upstream gradient and input gradient, and checks each layer on its own against its torch
   counterpart on the same input and upstream gradient (rows as ``backproplab check`` prints them,
   with the parity tool's hints); the first failing row names the layer at fault;
2. compares the losses and every parameter gradient end to end;
3. trains both for ``steps`` steps with the same batches and optimizer and compares the
   trajectories (:func:`backproplab.verify.trajectory.run_trajectory`); ``numpy_step`` lets the
   user's own update rule (``numpy_step(model, lr)``) stand in for backproplab's optimizer, and a
   divergence names the optimizer and the first parameter that leaves the reference.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn as tnn

from backproplab import nn
from backproplab.errors import ShapeError
from backproplab.verify import check as C
from backproplab.verify import hints as H
from backproplab.verify.diff import tensor_diff
from backproplab.verify.protocol import (
    LayerRecord,
    LayerView,
    LossView,
    ModelView,
    ParamRef,
    functional_loss_view,
    kind_from_name,
    loss_view_of,
    model_view,
    module_loss_view,
)
from backproplab.verify.references import resolve_linear_layout
from backproplab.verify.torch_calls import leaf_calls
from backproplab.verify.trajectory import OptimizerSpec, TorchSide, TrajectoryReport, run_trajectory
from backproplab.verify.twin import FixedMaskDropout, is_random_dropout, replace_module


@dataclass
class CompareReport:
    """Rows (per layer, then end to end), the layer pairing, the trajectory and notes."""

    rows: list[C.CheckRow]
    pairs: list[tuple[str, str]]
    trajectory: TrajectoryReport | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def first_divergence(self) -> C.CheckRow | None:
        return next((r for r in self.rows if r.status == C.FAIL), None)

    @property
    def ok(self) -> bool:
        traj_ok = self.trajectory is None or self.trajectory.first_divergence is None
        return self.first_divergence is None and traj_ok

    def format(self) -> str:
        """The report as text: pairing, rows, first divergence, trajectory, verdict."""
        lines = ["layers: " + ", ".join(f"{a} <-> {b}" for a, b in self.pairs), ""]
        w = max([6, *(len(r.module) for r in self.rows)])
        wc = max([5, *(len(r.check) for r in self.rows)])
        for r in self.rows:
            lines.append(f"{r.module:<{w}}  {r.check:<{wc}}  {r.status:<4}  {r.detail}")
            if r.status != C.PASS and r.where:
                lines.append(f"{'':<{w}}  at {r.where}")
        first = self.first_divergence
        lines += [
            "",
            f"first divergence: {first.module}: {first.check}: {first.detail}"
            if first
            else "first divergence: none",
        ]
        if self.trajectory is not None:
            t = self.trajectory
            fd = t.first_divergence
            lines.append(
                f"trajectory ({len(t.steps)} steps): "
                + ("agrees at every step" if fd is None else f"diverges from step {fd}: {t.hint}")
            )
            lines += [f"note: {n}" for n in t.notes]
        lines += [f"note: {n}" for n in self.notes]
        lines.append("PARITY HOLDS" if self.ok else "PARITY BROKEN")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "pairs": [list(p) for p in self.pairs],
            "rows": [r.to_dict() for r in self.rows],
            "trajectory": None if self.trajectory is None else self.trajectory.to_dict(),
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------- pairing
def torch_leaves(model: tnn.Module, x: np.ndarray) -> list[tuple[str, tnn.Module]]:
    """(name, module) of the model's leaf modules in the order its forward first calls them on ``x``."""
    dtype = next((p.dtype for p in model.parameters()), torch.float64)
    seen: dict[str, tnn.Module] = {}
    for call in leaf_calls(model, torch.tensor(np.ascontiguousarray(x), dtype=dtype)):
        seen.setdefault(call.name, call.module)
    return list(seen.items())


def _has_params(m: tnn.Module) -> bool:
    return next(m.parameters(), None) is not None


def pair_layers(
    views: list[LayerView], leaves: list[tuple[str, tnn.Module]]
) -> list[tuple[LayerView, str | None]]:
    """Pair each NumPy layer with the torch leaf of the same kind, in order (see the module docstring)."""
    pairs: list[tuple[LayerView, str | None]] = []
    j = 0
    for v in views:
        k = j
        while (
            k < len(leaves)
            and kind_from_name(type(leaves[k][1]).__name__) != v.kind
            and not _has_params(leaves[k][1])
        ):
            k += 1  # a parameterless torch leaf (Flatten, Identity) the NumPy model does without
        if v.kind == "other" and v.params and k < len(leaves) and _has_params(leaves[k][1]):
            v.kind = kind_from_name(type(leaves[k][1]).__name__)  # a name that tells nothing: torch's says
        if k < len(leaves) and kind_from_name(type(leaves[k][1]).__name__) == v.kind:
            pairs.append((v, leaves[k][0]))
            j = k + 1
        elif not v.params:
            pairs.append((v, None))
        else:
            got = f"{leaves[k][0]} ({type(leaves[k][1]).__name__})" if k < len(leaves) else "no more leaves"
            raise ShapeError(
                f"compare: cannot pair the NumPy layer {v.name} ({v.kind}) with a PyTorch leaf: the next one with parameters is {got}; pass layers= in the torch model's order"
            )
    rest = [n for n, m in leaves[j:] if _has_params(m)]
    if rest:
        raise ShapeError(
            f"compare: the PyTorch model has layers with parameters that no NumPy layer matches: {rest}"
        )
    return pairs


def _copy_weights(
    pairs: list[tuple[LayerView, str | None]],
    model: tnn.Module,
    inputs: list[np.ndarray | None],
    outputs: list[np.ndarray | None],
) -> dict[int, str]:
    """Copy every NumPy parameter into the torch model (torch layout); return {id(ParamRef): torch name}."""
    names: dict[int, str] = {}
    params = dict(model.named_parameters())
    for (view, leaf), xin, out in zip(pairs, inputs, outputs, strict=True):
        if leaf is None:
            continue
        if view.kind == "linear" and xin is not None:
            resolve_linear_layout(view, xin, out)
        for ref in view.params:
            key = f"{leaf}.{ref.torch_name}" if leaf else ref.torch_name
            if key not in params:
                have = [n for n in params if n.startswith(f"{leaf}.")]
                raise ShapeError(
                    f"compare: {view.name} has parameter {ref.name} ({ref.torch_name}), the torch leaf {leaf} has {have}"
                )
            value = np.asarray(ref.torch_value(), dtype=np.float64)
            if tuple(params[key].shape) != value.shape:
                raise ShapeError(
                    f"compare: {view.name}.{ref.name} has shape {value.shape} in torch's layout, {key} has {tuple(params[key].shape)}"
                )
            with torch.no_grad():
                params[key].copy_(torch.tensor(value))
            names[id(ref)] = key
        missing = [
            f"{leaf}.{n}"
            for n, _ in model.get_submodule(leaf).named_parameters()
            if f"{leaf}.{n}" not in names.values()
        ]
        if missing:
            found = ", ".join(f"{r.torch_name} (from {r.name})" for r in view.params) or "none"
            raise ShapeError(
                f"compare: the PyTorch leaf {leaf} ({type(model.get_submodule(leaf)).__name__}) has parameters "
                f"{missing} that the NumPy layer {view.name} does not give (found: {found}); name its "
                "attributes with param_map={torch name: (value attribute, gradient attribute)}"
            )
    return names


def as_loss_view(loss: Any, numpy_model: ModelView) -> LossView:
    """A :class:`LossView` of what the user gave (None: cross-entropy on the model's output kind).

    A loss object whose ``backward`` takes two arguments is the template's ``forward(x, y)`` /
    ``backward(x, y)`` (one-hot targets); one whose ``backward`` takes none or one uses what its
    ``forward(scores, y)`` cached (index targets). :func:`~backproplab.verify.check.loss_convention`
    then finds the target format its code takes.
    """
    if isinstance(loss, LossView):
        return loss
    probs = bool(numpy_model.layers) and numpy_model.layers[-1].kind == "softmax"
    on = "probabilities" if probs else "logits"
    if loss is None:
        return module_loss_view(nn.CrossEntropy() if probs else nn.SoftmaxCrossEntropy(), on)
    if isinstance(loss, nn.Module):
        return module_loss_view(loss, on)
    if callable(getattr(loss, "forward", None)) and callable(getattr(loss, "backward", None)):
        return loss_view_of(loss, on)
    if callable(loss):
        return functional_loss_view(loss, on)
    raise ShapeError(f"compare: loss must be a loss object or function, got {type(loss).__name__}")


def _default_torch_loss(
    model: tnn.Module, leaves: list[tuple[str, tnn.Module]]
) -> Callable[..., torch.Tensor]:
    if leaves and isinstance(leaves[-1][1], tnn.Softmax):
        return lambda p, t: F.nll_loss(torch.log(p.clamp_min(torch.finfo(p.dtype).tiny)), t)
    return F.cross_entropy


class UserModelSide:
    """A user's NumPy model as a :class:`~backproplab.verify.trajectory.TrajectorySide`: the
    parameters by the paired torch names; the update by backproplab's optimizer of ``spec`` on
    the user's own arrays, or by the user's ``numpy_step(model, lr)``."""

    def __init__(
        self,
        model: ModelView,
        loss: LossView,
        names: dict[int, str],
        spec: OptimizerSpec,
        numpy_step: Callable[[Any, float], None] | None,
        masks: list[tuple[int, FixedMaskDropout]] | None = None,
    ) -> None:
        self.model, self.loss, self.spec, self.numpy_step = model, loss, spec, numpy_step
        self.masks = masks or []  # (layer index, the twin's Dropout that takes that layer's mask)
        self.refs: list[tuple[str, ParamRef]] = [
            (names[id(p)], p) for _, p in model.named_params() if id(p) in names
        ]
        self._grads: dict[str, np.ndarray] = {}
        self.optimizer = None
        if numpy_step is None:
            wrapped = []
            for name, ref in self.refs:
                param = nn.Parameter(ref.value)
                if not np.shares_memory(param.data, ref.value):
                    raise ShapeError(
                        f"compare: parameter {name} is not a contiguous array; pass numpy_step= to update it yourself"
                    )
                wrapped.append(param)
            self.wrapped = wrapped
            self.optimizer = spec.numpy(wrapped)

    def step(self, xb: np.ndarray, yb: np.ndarray) -> float:
        if self.masks:
            with self.model.record() as records:
                value, _, _ = C.loss_and_backward(self.model, self.loss, xb, yb)
            for i, module in self.masks:
                module.set_keep(recorded_keep(records[i]))
        else:
            value, _, _ = C.loss_and_backward(self.model, self.loss, xb, yb)
        self._grads = {
            n: np.array(r.torch_grad(), dtype=np.float64) for n, r in self.refs if r.grad is not None
        }
        if self.numpy_step is not None:
            with C.calling("numpy_step"):
                self.numpy_step(self.model.obj, self.spec.lr)
        else:
            assert self.optimizer is not None
            for param, (_, ref) in zip(self.wrapped, self.refs, strict=True):
                g = ref.grad
                param.grad = None if g is None else np.asarray(g, dtype=np.float64)
            self.optimizer.step()
        return value

    def parameters(self) -> dict[str, np.ndarray]:
        return {n: np.array(r.torch_value(), dtype=np.float64) for n, r in self.refs}

    def gradients(self) -> dict[str, np.ndarray]:
        return dict(self._grads)


def recorded_keep(rec: LayerRecord) -> np.ndarray:
    """The 0/1 mask a user's dropout layer applied in the recorded pass: kept where its output is
    nonzero, and where its input is zero (after a ReLU) where its input gradient is nonzero."""
    assert rec.input is not None and rec.output is not None
    kept_out = rec.output != 0
    if rec.grad_input is None or rec.grad_input.shape != rec.input.shape:
        return kept_out.astype(np.float64)
    return np.where(rec.input != 0, kept_out, rec.grad_input != 0).astype(np.float64)  # same shape as x


def _share_dropout_masks(
    pairs: list[tuple[LayerView, str | None]], records: list[LayerRecord], twin: tnn.Module
) -> list[tuple[int, str, FixedMaskDropout]]:
    """Replace each random torch Dropout paired with a NumPy layer by one with that layer's recorded
    mask; (layer index, leaf name, module) of each."""
    out = []
    for i, ((_, leaf), rec) in enumerate(zip(pairs, records, strict=True)):
        if leaf is None or rec.input is None or rec.output is None:
            continue
        module = twin.get_submodule(leaf)
        if is_random_dropout(module) and rec.output.shape == rec.input.shape:
            fixed = FixedMaskDropout(recorded_keep(rec), float(module.p))  # type: ignore[arg-type]
            replace_module(twin, leaf, fixed.double())
            out.append((i, leaf, fixed))
    return out


def _dropout_mode_row(
    view: LayerView, leaf: str | None, module: tnn.Module | None, rec: LayerRecord
) -> C.CheckRow | None:
    """A FAIL row when the NumPy layer drops units while its torch Dropout is off (evaluation mode)."""
    if not isinstance(module, tnn.modules.dropout._DropoutNd) or is_random_dropout(module):
        return None
    if rec.input is None or rec.output is None or rec.output.shape != rec.input.shape:
        return None
    dropped = int(((rec.output == 0) & (rec.input != 0)).sum())
    if not dropped:
        return None
    return C.CheckRow(
        view.name, f"vs {leaf} ({type(module).__name__}): output vs PyTorch", C.FAIL,
        f"the NumPy layer drops units ({dropped} of {rec.input.size} set to 0) while {leaf} is in evaluation "
        "mode (Dropout off): switch the NumPy dropout to evaluation as well (its training flag or mode), "
        "or the torch model to train()",
        view.method_where("forward"),
    )  # fmt: skip


def working_dtype(model: ModelView, scores: np.ndarray) -> str:
    """ "float32" when the NumPy model's parameters or scores are float32 (or narrower), else "float64"."""
    dtypes = [np.asarray(p.value).dtype for _, p in model.named_params()] + [np.asarray(scores).dtype]
    narrow = any(np.issubdtype(d, np.floating) and d.itemsize < 8 for d in dtypes)
    return "float32" if narrow else "float64"


def _loss_row(
    model: ModelView,
    loss: LossView,
    value: float,
    reference: np.ndarray,
    layer_rows: list[C.CheckRow],
    records: list[LayerRecord],
    y: np.ndarray,
) -> C.CheckRow:
    """The end-to-end loss row. When a layer's output already differs, the loss differs because
    of it: the row points at that layer, not at the loss."""
    d = tensor_diff(np.asarray(value), reference)
    if C.agrees(d):
        return C.CheckRow(model.name, "end to end: loss", C.PASS, f"{value:.6g} on both sides")
    ctx = H.RowContext(
        "loss", "loss", np.asarray(value), reference, d, C.REFERENCE_RTOL,
        output=records[-1].output if records else None, target=y, batch_size=len(y),
    )  # fmt: skip
    detail = H.diagnose(ctx)[0]
    upstream = next(
        (r for r in layer_rows if r.status == C.FAIL and r.check.endswith("output vs PyTorch")),
        None,
    )
    if upstream is not None:
        return C.CheckRow(
            model.name, "end to end: loss", C.FAIL,
            f"{detail}; {upstream.module} already fails above ({upstream.check}): fix that first", upstream.where,
        )  # fmt: skip
    return C.CheckRow(model.name, "end to end: loss", C.FAIL, detail, loss.where)


# ---------------------------------------------------------------------------- compare
def compare(
    numpy_model: Any,
    torch_model: tnn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    layers: list[Any] | None = None,
    param_map: dict[str, tuple[str, str]] | None = None,
    loss: Any = None,
    torch_loss: Callable[..., torch.Tensor] | None = None,
    optimizer: OptimizerSpec | str = "sgd",
    learning_rate: float = 1e-2,
    numpy_step: Callable[[Any, float], None] | None = None,
    steps: int = 10,
    batch_size: int | None = None,
    seed: int = 0,
) -> CompareReport:
    """Compare the user's NumPy model with the user's PyTorch model on the batch (x, y).

    ``layers``: the NumPy model's layers in forward order (default: found by
    :func:`~backproplab.verify.protocol.layers_of`); ``param_map``: ``{torch name: (value attribute,
    gradient attribute)}`` for layers whose parameters are plain attributes; ``loss``: the NumPy
    loss (an object with ``forward(x, y)`` / ``backward(x, y)``, or with ``forward(x, y)`` and a
    ``backward()`` that uses what forward cached, a ``(loss, dx)`` function, a backproplab loss, or
    None for cross-entropy; index or one-hot targets, whichever its code runs on); ``torch_loss``: the torch loss (default
    ``F.cross_entropy``, or the NLL of probabilities when the torch model ends in a Softmax);
    ``optimizer``: "sgd", "adam" or an :class:`OptimizerSpec` (``learning_rate`` for the names);
    ``steps=0`` skips the trajectory. Neither model is modified: both are deep-copied, and the
    torch model keeps its mode (see the module docstring for Dropout and float32).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    if x.ndim < 2 or len(x) != len(y):
        raise ShapeError(
            f"compare: x must be a batch (N, ...) with one label per sample, got x {x.shape} and y {y.shape}"
        )
    memo: dict[int, Any] = {}
    user = copy.deepcopy(numpy_model, memo)
    objs = None if layers is None else [memo.get(id(o), o) for o in layers]
    npm = model_view(user, objs, param_map=param_map)
    if not npm.layers:
        raise ShapeError(
            f"compare: found no layers in {type(numpy_model).__name__}: keep them in a list attribute or pass layers="
        )
    loss_view = C.loss_convention(as_loss_view(loss, npm), np.random.default_rng(seed))  # index or one-hot
    twin = copy.deepcopy(torch_model).double()  # in the mode the user left it (eval: Dropout off)
    leaves = torch_leaves(twin, x)
    pairs = pair_layers(npm.layers, leaves)
    spec = optimizer if isinstance(optimizer, OptimizerSpec) else OptimizerSpec(optimizer, lr=learning_rate)

    # 1. the NumPy passes, recorded; weights into the twin (layouts resolved on the recorded inputs),
    # and the twin's random Dropouts replaced by the masks the NumPy layers drew
    with npm.record() as records:
        value, dscores, _ = C.loss_and_backward(npm, loss_view, x, y)
    dtype = working_dtype(npm, dscores)  # the gradient of the scores has their dtype
    names = _copy_weights(pairs, twin, [r.input for r in records], [r.output for r in records])
    masks = _share_dropout_masks(pairs, records, twin)
    modules = dict(twin.named_modules())
    rows: list[C.CheckRow] = []
    for (view, leaf), rec in zip(pairs, records, strict=True):
        if rec.input is None or rec.grad_output is None:
            rows.append(
                C.CheckRow(
                    view.name,
                    "output vs PyTorch",
                    C.FAIL,
                    "the model's forward/backward never called this layer",
                    view.where,
                )
            )
            continue
        arrays: dict[str, np.ndarray] = {"output": rec.output} if rec.output is not None else {}
        if rec.grad_input is not None:
            arrays["input grad"] = rec.grad_input
        for p in view.params:
            if p.torch_grad() is not None:
                arrays[f"{p.torch_name} grad"] = np.array(p.torch_grad(), dtype=np.float64)
        mode_row = _dropout_mode_row(view, leaf, modules.get(leaf) if leaf else None, rec)
        if mode_row is not None:
            rows.append(mode_row)
            continue
        module = copy.deepcopy(modules[leaf]) if leaf is not None else None
        label = (
            f"vs {leaf} ({type(modules[leaf]).__name__})" if leaf is not None else "vs its PyTorch reference"
        )
        rows += C.compare_rows(
            view, rec.input, rec.grad_output, arrays, check_prefix=f"{label}: ", summary=True, module=module
        )

    # 2. end to end, on the same pass: the loss and every parameter gradient
    tloss = torch_loss or _default_torch_loss(twin, leaves)
    twin.zero_grad(set_to_none=True)
    lt = tloss(twin(torch.tensor(x)), torch.tensor(y))
    lt.backward()
    rows.append(_loss_row(npm, loss_view, value, lt.detach().numpy(), rows, records, y))
    tparams = dict(twin.named_parameters())
    for _, ref in npm.named_params():
        name = names.get(id(ref))
        g = ref.torch_grad()
        tg = tparams[name].grad if name else None
        if name is None or tg is None:
            continue
        if g is None:
            rows.append(
                C.CheckRow(
                    npm.name, f"end to end: {name} grad", C.FAIL, "the NumPy backward wrote no gradient", ""
                )
            )
            continue
        dg = tensor_diff(np.asarray(g, dtype=np.float64), tg.numpy())
        if not C.agrees(dg):
            ctx = H.RowContext(
                name,
                f"{ref.torch_name} grad",
                np.asarray(g, dtype=np.float64),
                tg.numpy(),
                dg,
                C.REFERENCE_RTOL,
                batch_size=len(x),
            )
            rows.append(C.CheckRow(npm.name, f"end to end: {name} grad", C.FAIL, H.describe(ctx), ""))
    if not any(r.check.startswith("end to end: ") and r.check.endswith("grad") for r in rows):
        rows.append(
            C.CheckRow(npm.name, "end to end: parameter gradients", C.PASS, f"{len(names)} gradients agree")
        )
    report = CompareReport(rows, [(v.name, leaf or "(reference)") for v, leaf in pairs])
    if masks:
        report.notes.append(
            f"{', '.join(leaf for _, leaf, _ in masks)}: Dropout in training mode on both sides; the PyTorch "
            "side drops what the NumPy layer dropped (its mask, recovered from its output and input gradient) "
            "in every pass"
        )
    if dtype != "float64":
        report.notes.append(f"the NumPy model computes in {dtype}: the trajectory uses {dtype} tolerances")

    # 3. the trajectory, on fresh copies with the same starting weights
    if steps > 0:
        memo2: dict[int, Any] = {}
        user2 = copy.deepcopy(user, memo2)
        objs2 = [memo2[id(v.obj)] for v in npm.layers]
        npm2 = model_view(user2, objs2, param_map=param_map)
        names2 = {}
        for (_, r1), (_, r2) in zip(npm.named_params(), npm2.named_params(), strict=True):
            r2.transposed = r1.transposed  # the layouts resolved above
            if id(r1) in names:
                names2[id(r2)] = names[id(r1)]
        side = UserModelSide(npm2, loss_view, names2, spec, numpy_step, masks=[(i, m) for i, _, m in masks])
        tside = TorchSide(twin, tloss, spec.torch(list(twin.parameters())))
        report.trajectory = run_trajectory(
            side,
            tside,
            x=x,
            y=y,
            rng=np.random.default_rng(seed),
            optimizer=spec,
            batch_size=batch_size,
            steps=steps,
            dtype=dtype,
        )
    return report
