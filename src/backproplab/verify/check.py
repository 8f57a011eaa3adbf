"""Checks of a user's own layers, losses and models: the engine behind ``backproplab check``.

Every check is one :class:`CheckRow` with PASS, WARN or FAIL. For a layer (a :class:`LayerView`):

* **gradient check** (float64): random parameters, a random upstream gradient G, and the analytic
  gradients of f = sum(forward(x) * G) against central differences, for the input and every
  parameter; a large tensor is checked on :data:`MAX_CHECKED_ELEMENTS` sampled elements, as
  CS231n's ``grad_check_sparse``. A gradient check is self-consistent only: a loss that sums
  instead of averaging passes it.
* **against PyTorch**: the forward value, the input gradient and every parameter gradient against
  the torch layer of the same kind with the same parameters (see
  :mod:`backproplab.verify.references`), within :data:`REFERENCE_RTOL` of the reference's scale.
  This is the absolute check that catches the sum-instead-of-mean loss. A difference gets the
  parity tool's hint (:mod:`backproplab.verify.hints`).
* **edge cases**: a batch of one sample; forward called twice before one backward (the backward
  must use the last forward's input); the input and upstream gradient arrays left unmodified;
  for a softmax and a loss, large logits and a single class.

For a model: per-layer parity against a PyTorch twin built from its layer list, end to end, then
a short real training run with the doctor's verdicts (initial loss against ln(C), batch-size
scaling of the gradient, overfitting one batch).

An exception raised inside the user's code is a FAIL row naming the module, the call and the
message, with the user's file and line; it never ends the run.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from backproplab import nn
from backproplab.training.optimizers import OptimizerSpec
from backproplab.verify import hints as H
from backproplab.verify.diff import TensorDiff, tensor_diff
from backproplab.verify.failing_line import failing_line, user_frame
from backproplab.verify.gradcheck import (
    DEFAULT_EPS,
    WRONG_MIN_REL_ERROR,
    constant_ratio,
    ratio_note,
    rel_error,
)
from backproplab.verify.protocol import FunctionalLayer, LayerView, LossView, ModelView, source_of
from backproplab.verify.references import (
    reference_loss,
    resolve_linear_layout,
    run_reference,
    torch_layer,
    torch_twin,
)

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
STATUSES = (PASS, WARN, FAIL)
#: A value agrees with its float64 torch reference when max |a - r| <= this * max |r|.
#: float64 arithmetic in a different order differs by ~1e-15; a float32 implementation by ~1e-7.
REFERENCE_RTOL = 1e-5
#: A user layer's float64 gradient check passes below this largest relative error. Stricter than
#: 1e-5 flags correct code whose gradients are near zero somewhere (central differences are
#: accurate to about 1e-10 absolute) or whose loss takes log(p + 1e-7); the comparison with PyTorch
#: (REFERENCE_RTOL of the reference's scale) is the absolute test.
USER_GRAD_PASS_REL = 1e-5
#: ... or when max |a - r| <= REFERENCE_RTOL * this, whatever max |r| is. The checks' inputs and
#: parameters are of order 1, so a bug moves a value by about its own scale; this floor covers
#: references that are zero up to rounding, or exactly (a single class's cross-entropy is 0, and a
#: correct ``-log(p + 1e-12)`` gives -1e-12), where a relative error means nothing.
REFERENCE_SCALE_FLOOR = 1.0
#: At most this many elements of a tensor are checked by central differences (sampled at random).
MAX_CHECKED_ELEMENTS = 60
#: Standard deviation of the random parameter values the checks draw.
PARAM_STD = 0.5
#: Inputs of kinked layers (ReLU, max-pool) are kept this far from their kinks.
KINK_MARGIN = 1e-3
#: Offset and scale of the "large logits" edge case.
LARGE_LOGIT = 1000.0


@dataclass
class CheckRow:
    """One check of one module: PASS/WARN/FAIL, a one-line detail (the hint on a failure), and the
    user's ``file:line`` the row points at."""

    module: str
    check: str
    status: str
    detail: str = ""
    where: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckReport:
    """Every row of a ``check`` run over ``path``, and what was found there."""

    path: str
    rows: list[CheckRow] = field(default_factory=list)
    found: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.status != FAIL for r in self.rows)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "found": self.found,
            "counts": {s: self.count(s) for s in STATUSES},
            "rows": [r.to_dict() for r in self.rows],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


# ---------------------------------------------------------------------------- user exceptions
class UserCodeError(Exception):
    """An exception raised inside the user's code, with the call that raised it."""

    def __init__(self, call: str, exc: BaseException) -> None:
        line = failing_line(exc)
        super().__init__(
            f"{call} raised {type(exc).__name__}: {exc}".strip() + (f" ({line})" if line else "")
        )
        self.call, self.exc, self.where = call, exc, user_frame(exc)


@contextmanager
def calling(call: str) -> Iterator[None]:
    """Turn any exception raised inside the block (the user's code) into a :class:`UserCodeError`."""
    try:
        with np.errstate(all="ignore"):
            yield
    except UserCodeError:
        raise
    except Exception as e:  # the user's code may raise anything
        raise UserCodeError(call, e) from e


def guarded(module: str, check: str, fn: Callable[[], list[CheckRow]], where: str = "") -> list[CheckRow]:
    """Rows of ``fn()``, or one FAIL row naming the call and the message if the user's code raised."""
    try:
        return fn()
    except UserCodeError as e:
        msg = str(e).splitlines()[0]
        if isinstance(e.exc, AssertionError) and "gradient of shape" in str(e.exc):
            msg += " (a gradient of the wrong shape was accumulated into a parameter)"
        return [CheckRow(module, check, FAIL, msg[:600], e.where or where)]
    except Exception as e:  # a reference that cannot run on this input: say so, do not end the run
        return [
            CheckRow(module, check, WARN, f"could not run this check ({type(e).__name__}: {str(e)[:200]})")
        ]


def gradient_status(max_rel_error: float) -> str:
    """PASS below USER_GRAD_PASS_REL, FAIL above gradcheck's WRONG_MIN_REL_ERROR (or not finite),
    else WARN."""
    if not max_rel_error <= WRONG_MIN_REL_ERROR:
        return FAIL
    return PASS if max_rel_error < USER_GRAD_PASS_REL else WARN


def _ratio_text(analytic: np.ndarray, numeric: np.ndarray, batch_size: int | None) -> str:
    """ "; analytic = c x numeric ..." when the two differ by one constant factor other than 1."""
    ratio = constant_ratio(analytic, numeric)
    if ratio is None or abs(ratio - 1) <= 1e-3:
        return ""
    return f"; {ratio_note(ratio, batch_size)}"


def agrees(d: TensorDiff) -> bool:
    """Whether a value agrees with its reference: same shape, finite, and max |a - r| at most
    REFERENCE_RTOL * max(max |r|, REFERENCE_SCALE_FLOOR)."""
    if not (d.same_shape and d.finite):
        return False
    return d.max_rel_err <= REFERENCE_RTOL or d.max_abs_err <= REFERENCE_RTOL * REFERENCE_SCALE_FLOOR


# ---------------------------------------------------------------------------- the pieces
def randomize(view: LayerView, rng: np.random.Generator, std: float = PARAM_STD) -> None:
    """Give every parameter random float64 values (a norm's scale around 1), in place."""
    for p in view.params:
        shape = p.value.shape
        value = rng.normal(0.0, std, size=shape)
        if view.kind in ("layernorm", "batchnorm") and p.torch_name == "weight":
            value = 1.0 + value
        p.assign(value.astype(np.float64))


def forward_backward(view: LayerView, x: np.ndarray, g: np.ndarray | None) -> dict[str, np.ndarray]:
    """The layer's output, and with ``g`` its input gradient and parameter gradients (torch layout),
    each a copy. Gradients are cleared before the backward."""
    x_in = np.array(x, dtype=np.float64)
    with calling(f"{view.name}.forward"):
        out = np.array(view.forward(x), dtype=np.float64)
    if view.kind == "linear":  # before the gradients are read in torch's layout
        resolve_linear_layout(view, x_in, out)
    result = {"output": out}
    if g is None:
        return result
    view.zero_grad()
    with calling(f"{view.name}.backward"):
        dx = view.backward(g)
    if dx is not None:
        result["input grad"] = np.array(dx, dtype=np.float64)
    for p in view.params:
        grad = p.torch_grad()
        if grad is not None:
            result[f"{p.torch_name} grad"] = np.array(grad, dtype=np.float64)
    return result


def _sample(size: int, rng: np.random.Generator, limit: int = MAX_CHECKED_ELEMENTS) -> np.ndarray:
    return np.arange(size) if size <= limit else np.sort(rng.choice(size, size=limit, replace=False))


def gradcheck_rows(
    view: LayerView,
    x: np.ndarray,
    g: np.ndarray,
    rng: np.random.Generator,
    *,
    eps: float = DEFAULT_EPS,
    loss: bool = False,
) -> list[CheckRow]:
    """Central differences of f = sum(forward(x) * g) against the analytic gradients (float64)."""
    x = np.array(x, dtype=np.float64)
    analytic = forward_backward(view, x.copy(), g)
    rows = []

    def f() -> float:
        with calling(f"{view.name}.forward"):
            # a copy: a forward that modifies its input in place must not corrupt the perturbation
            return float(np.sum(np.asarray(view.forward(x_work.copy()), dtype=np.float64) * g))

    targets: list[tuple[str, np.ndarray, Any, str]] = [("input", x, analytic.get("input grad"), "dx")]
    for p in view.params:
        grad = p.grad  # the user's layout, as the value perturbed below
        targets.append((p.name, p.value, None if grad is None else np.array(grad, dtype=np.float64), p.name))
    x_work = x.copy()
    for label, array, agrad, _ in targets:
        arr = x_work if label == "input" else array
        check = f"gradient check: {label}"
        if agrad is None:
            rows.append(
                CheckRow(
                    view.name,
                    check,
                    FAIL,
                    "backward returned None (forgot to return dx?)"
                    if label == "input"
                    else "backward wrote no gradient for this parameter",
                    view.method_where("backward"),
                )
            )
            continue
        if agrad.shape != arr.shape:
            rows.append(
                CheckRow(
                    view.name,
                    check,
                    FAIL,
                    f"gradient has shape {agrad.shape}, the {label} has shape {arr.shape}",
                    view.method_where("backward"),
                )
            )
            continue
        idx = _sample(arr.size, rng)
        num = np.empty(len(idx))
        for j, i in enumerate(idx):
            k = np.unravel_index(int(i), arr.shape)  # perturbs the live array, whatever its strides
            old = float(arr[k])
            arr[k] = old + eps
            plus = f()
            arr[k] = old - eps
            minus = f()
            arr[k] = old
            num[j] = (plus - minus) / (2 * eps)
        ana = agrad.reshape(-1)[idx]
        rel = np.nan_to_num(rel_error(ana, num), nan=np.inf)
        worst = int(np.argmax(rel))
        status = gradient_status(float(rel[worst]))
        detail = f"max rel error {float(rel[worst]):.2e} over {len(idx)} of {arr.size} elements"
        if status != PASS:
            detail += (
                f"; worst element {int(idx[worst])}: analytic {ana[worst]:.6g} vs numeric {num[worst]:.6g}"
                + _ratio_text(ana, num, len(x) if x.ndim else None)
            )
        rows.append(
            CheckRow(
                view.name, check, status, detail, "" if status == PASS else view.method_where("backward")
            )
        )
    return rows


def _equivalent_module(view: LayerView, x: np.ndarray) -> Any:
    """A backproplab module of the layer's kind with its settings, for the hints' hypotheses."""
    cfg = view.config
    w, b = view.param("weight"), view.param("bias")
    m: Any
    if view.kind == "linear" and w is not None:
        wt = np.asarray(w.torch_value(), dtype=np.float64)
        m = nn.Linear(wt.shape[1], wt.shape[0], bias=b is not None, rng=np.random.default_rng(0)).to(
            np.float64
        )
        m.weight.data = wt.copy()
        if b is not None and m.bias is not None:
            m.bias.data = np.asarray(b.value, dtype=np.float64).copy()
        return m
    if view.kind == "elu":
        return nn.ELU(float(cfg.get("alpha", 1.0)))
    if view.kind == "softmax":
        return nn.Softmax(int(cfg.get("dim", 1)))
    if view.kind == "layernorm":
        m = nn.LayerNorm(int(x.shape[-1]), eps=float(cfg.get("eps", 1e-5))).to(np.float64)
        if w is not None:
            m.weight.data = np.asarray(w.value, dtype=np.float64).copy()
        if b is not None:
            m.bias.data = np.asarray(b.value, dtype=np.float64).copy()
        return m
    if view.kind == "batchnorm":
        cls = nn.BatchNorm2d if x.ndim == 4 else nn.BatchNorm1d
        m = cls(int(x.shape[1]), eps=float(cfg.get("eps", 1e-5)), dtype=np.float64)
        if w is not None:
            m.weight.data = np.asarray(w.value, dtype=np.float64).reshape(-1).copy()
        if b is not None:
            m.bias.data = np.asarray(b.value, dtype=np.float64).reshape(-1).copy()
        return m
    if view.kind == "conv2d" and w is not None:
        wt = np.asarray(w.torch_value(), dtype=np.float64)
        f, c, kh, kw = wt.shape
        m = nn.Conv2d(c, f, (kh, kw), int(cfg.get("stride", 1)), int(cfg.get("pad", 0)), bias=b is not None,
                      rng=np.random.default_rng(0), dtype=np.float64, algorithm="im2col")  # fmt: skip
        m.weight.data = wt.copy()
        if b is not None and m.bias is not None:
            m.bias.data = np.asarray(b.value, dtype=np.float64).reshape(-1).copy()
        return m
    if view.kind == "maxpool2d":
        kh, kw = int(cfg.get("pool_height", 2)), int(cfg.get("pool_width", 2))
        return nn.MaxPool2d((kh, kw), int(cfg.get("stride", 2)))
    if view.kind == "dropout" and isinstance(cfg.get("p"), float):
        return nn.Dropout(float(cfg["p"]), rng=np.random.default_rng(0))
    return None


def compare_rows(
    view: LayerView,
    x: np.ndarray,
    g: np.ndarray,
    value: dict[str, np.ndarray],
    *,
    check_prefix: str = "",
    summary: bool = False,
    module: Any = None,
) -> list[CheckRow]:
    """The layer's arrays ``value`` (output, input grad, param grads) against torch's on (x, g).

    The reference is ``module`` (a torch module holding the same parameters) or, by default, the
    torch layer of the view's kind (:func:`~backproplab.verify.references.torch_layer`). One row
    per quantity, or with ``summary`` one PASS row for the layer unless one differs.
    """
    if view.kind == "linear":
        resolve_linear_layout(view, x, value.get("output"))
    if module is None:
        module = torch_layer(view, x)
    if module is None:
        return [
            CheckRow(
                view.name,
                f"{check_prefix}against PyTorch",
                WARN,
                f"no PyTorch reference for a layer of kind {view.kind!r}: gradient check only",
            )
        ]
    ref = run_reference(module, x, g)
    rows = []
    equivalent = _equivalent_module(view, x)
    agreeing = []
    for q in ("output", "input grad", *(f"{p.torch_name} grad" for p in view.params)):
        if q not in ref or q not in value:
            continue
        if q.endswith(" grad") and q != "input grad" and _same_up_to_unit_axes(value[q], ref[q]):
            # a (1, C) bias gradient where torch keeps (C,): equal under broadcasting
            value[q] = value[q].reshape(ref[q].shape)
        d = tensor_diff(value[q], ref[q])
        if agrees(d):
            agreeing.append(q)
            if not summary:
                rows.append(
                    CheckRow(
                        view.name, f"{check_prefix}{q} vs PyTorch", PASS, f"max rel error {d.max_rel_err:.1e}"
                    )
                )
            continue
        ctx = H.RowContext(
            view.name, q, value[q], ref[q], d, REFERENCE_RTOL,
            module=equivalent, input=x, output=value.get("output"), grad_output=g, batch_size=len(x), kind=view.kind,
        )  # fmt: skip
        hint = H.diagnose(ctx)[0]
        where = view.method_where("forward" if q == "output" else "backward")
        rows.append(CheckRow(view.name, f"{check_prefix}{q} vs PyTorch", FAIL, hint, where))
    if summary and not rows:
        rows.append(CheckRow(view.name, f"{check_prefix}vs PyTorch", PASS, f"{', '.join(agreeing)} agree"))
    if (
        "output" in value
        and "output" not in agreeing
        and any(r.check.endswith("output vs PyTorch") for r in rows)
    ):
        for r in rows:  # a wrong output makes the gradients that depend on it wrong too
            if r.status == FAIL and not r.check.endswith("output vs PyTorch"):
                r.detail += " (the output differs too: fix the forward first)"
    return rows


def _same_up_to_unit_axes(a: np.ndarray, b: np.ndarray) -> bool:
    """Shapes that differ only by axes of length 1 ((1, C) against (C,))."""
    return a.shape != b.shape and a.size == b.size and np.squeeze(a).shape == np.squeeze(b).shape


def _shape(x: np.ndarray) -> str:
    return "x".join(map(str, x.shape))


def layer_rows(
    view_factory: Callable[[], LayerView],
    make_input: Callable[[np.random.Generator], np.ndarray],
    rng: np.random.Generator,
) -> list[CheckRow]:
    """Every check of one layer: gradient check, against PyTorch, edge cases (see module docstring).

    ``view_factory`` makes a fresh layer (so that one failing check cannot spoil the next);
    ``make_input`` draws an input batch.
    """
    probe = view_factory()
    name, where = probe.name, probe.where
    rows: list[CheckRow] = []

    def fresh() -> LayerView:
        with calling(f"{name}()"):
            v = view_factory()
        randomize(v, rng)
        return v

    x = make_input(rng)

    def grad_check() -> list[CheckRow]:
        v = fresh()
        out = forward_backward(v, x.copy(), None)["output"]
        return gradcheck_rows(v, x, rng.normal(size=out.shape), rng)

    def against_torch() -> list[CheckRow]:
        v = fresh()
        out = forward_backward(v, x.copy(), None)["output"]
        g = rng.normal(size=out.shape)
        return compare_rows(v, x, g, forward_backward(v, x.copy(), g))

    rows += guarded(name, "gradient check", grad_check, where)
    main = guarded(name, "against PyTorch", against_torch, where)
    rows += main
    edge: list[tuple[str, Callable[[], list[CheckRow]]]] = []
    if not (probe.kind == "batchnorm" and x.ndim == 2):  # one value per feature: nothing to normalise
        edge.append(("batch of 1", lambda: _batch_of_one(fresh(), x)))
    if probe.kind == "softmax":
        edge += [
            ("large logits", lambda: _softmax_large(fresh(), x, rng)),
            ("one class", lambda: _softmax_one_class(fresh(), x, rng)),
        ]
    if edge and any(r.status == FAIL for r in main):
        names = ", ".join(n for n, _ in edge)
        rows.append(CheckRow(name, names, WARN, "not judged while the comparison with PyTorch above fails"))
    elif edge:
        for label, fn in edge:
            rows += guarded(name, label, fn, where)
    rows += guarded(name, "forward twice", lambda: _forward_twice(fresh(), x, make_input(rng), rng), where)
    # functions return their gradients (nothing can carry over); a dropout's second pass draws another mask
    if probe.params and probe.kind != "dropout" and not isinstance(probe.obj, FunctionalLayer):
        rows += guarded(name, "backward twice", lambda: _backward_twice(fresh(), x, rng), where)
    rows += guarded(name, "input unmodified", lambda: _unmodified(fresh(), x, rng), where)
    return rows


def _batch_of_one(view: LayerView, x: np.ndarray) -> list[CheckRow]:
    x1 = x[:1].copy()
    out = forward_backward(view, x1.copy(), None)["output"]
    g = np.random.default_rng(1).normal(size=out.shape)
    rows = compare_rows(
        view, x1, g, forward_backward(view, x1.copy(), g), check_prefix="batch of 1: ", summary=True
    )
    return _merge(view.name, "batch of 1", rows, f"input {_shape(x1)}")


def _forward_twice(
    view: LayerView, x: np.ndarray, other: np.ndarray, rng: np.random.Generator
) -> list[CheckRow]:
    """forward(other), forward(x), backward(g) must give what forward(x), backward(g) gives on a copy
    of the layer with the same parameters: self-consistency, so a bug elsewhere is not blamed here."""
    twin = copy.deepcopy(view)
    with calling(f"{view.name}.forward"):
        view.forward(other.copy())
    out = forward_backward(view, x.copy(), None)["output"]
    g = rng.normal(size=out.shape)
    with calling(f"{view.name}.forward"):
        view.forward(other.copy())
    twice = forward_backward(view, x.copy(), g)
    once = forward_backward(twin, x.copy(), g)
    bad = []
    for q, ref in once.items():
        d = tensor_diff(twice.get(q, np.full(ref.shape, np.nan)), ref)
        if not agrees(d):
            bad.append(q)
    if bad:
        return [
            CheckRow(
                view.name, "forward twice", FAIL,
                f"after forward(a), forward(b), backward(g) the {', '.join(bad)} differ from those of forward(b), "
                "backward(g): backward uses state from an earlier forward (cache every forward's input)",
                view.method_where("forward"),
            )
        ]  # fmt: skip
    return [CheckRow(view.name, "forward twice", PASS, "backward after two forwards uses the last input")]


def _backward_twice(view: LayerView, x: np.ndarray, rng: np.random.Generator) -> list[CheckRow]:
    """forward(x), backward(g) twice, nothing reset in between, against one pass.

    The practical's template and CS231n-style layers *set* their gradients in backward (their
    training loops never reset them): a ``+=`` there makes every step's update larger than the
    last. PyTorch-style layers, with a ``zero_grad()`` to reset them, accumulate by contract."""
    out = forward_backward(view, x.copy(), None)["output"]
    g = rng.normal(size=out.shape)
    once = forward_backward(view, x.copy(), g)  # gradients cleared, one backward
    with calling(f"{view.name}.forward"):
        view.forward(x.copy())
    with calling(f"{view.name}.backward"):
        view.backward(g.copy())
    accumulated: list[str] = []
    other: list[str] = []
    for p in view.params:
        q, ref, got = f"{p.torch_name} grad", once.get(f"{p.torch_name} grad"), p.torch_grad()
        if ref is None or got is None or not np.abs(ref).any():
            continue  # nothing to compare, or a zero gradient that cannot show a factor
        got = np.asarray(got, dtype=np.float64)
        if agrees(tensor_diff(got, ref)):
            continue
        (accumulated if agrees(tensor_diff(got, 2 * ref)) else other).append(q)
    resettable = callable(getattr(view.obj, "zero_grad", None))
    if other:
        status, detail = (
            FAIL,
            (
                f"a second forward/backward with the same input and upstream gradient changes the {', '.join(other)} "
                "(neither the same nor twice): backward depends on state left by the earlier pass"
            ),
        )
    elif accumulated and not resettable:
        status, detail = (
            FAIL,
            (
                f"the {', '.join(accumulated)} accumulate across backward calls (2x after two passes) and the "
                "layer has no zero_grad(): the training loop's next step would use the sum of all earlier "
                "gradients; assign them (grads[...] = ...) instead of adding (+=)"
            ),
        )
    elif accumulated:
        status, detail = PASS, "gradients accumulate across backward calls until zero_grad(), as in PyTorch"
    else:
        status, detail = PASS, "each backward sets the gradients afresh"
    return [
        CheckRow(
            view.name,
            "backward twice",
            status,
            detail,
            view.method_where("backward") if status == FAIL else "",
        )
    ]


def _unmodified(view: LayerView, x: np.ndarray, rng: np.random.Generator) -> list[CheckRow]:
    xin = x.copy()
    with calling(f"{view.name}.forward"):
        out = np.asarray(view.forward(xin))
    changed = []
    if not np.array_equal(xin, x, equal_nan=True):
        changed.append("forward modified its input array in place")
    g = rng.normal(size=out.shape)
    gin = g.copy()
    with calling(f"{view.name}.backward"):
        view.backward(gin)
    if not np.array_equal(gin, g, equal_nan=True):
        changed.append("backward modified the upstream gradient array in place")
    if not np.array_equal(xin, x, equal_nan=True) and not changed:
        changed.append("backward modified the forward's input array in place")
    if changed:
        return [
            CheckRow(
                view.name,
                "input unmodified",
                FAIL,
                "; ".join(changed) + " (copy before writing)",
                view.method_where("backward" if "backward" in changed[0] else "forward"),
            )
        ]
    return [
        CheckRow(view.name, "input unmodified", PASS, "forward and backward leave their arguments unchanged")
    ]


def _softmax_large(view: LayerView, x: np.ndarray, rng: np.random.Generator) -> list[CheckRow]:
    xl = x * 10 + LARGE_LOGIT
    out = forward_backward(view, xl.copy(), None)["output"]
    if not np.isfinite(out).all():
        return [
            CheckRow(
                view.name,
                "large logits",
                FAIL,
                f"non-finite output for logits around {LARGE_LOGIT:g}: subtract the row max before exp (the max trick)",
                view.method_where("forward"),
            )
        ]
    g = rng.normal(size=out.shape)
    rows = compare_rows(
        view, xl, g, forward_backward(view, xl.copy(), g), check_prefix="large logits: ", summary=True
    )
    return _merge(view.name, "large logits", rows, f"logits around {LARGE_LOGIT:g}")


def _softmax_one_class(view: LayerView, x: np.ndarray, rng: np.random.Generator) -> list[CheckRow]:
    x1 = x[:, :1].copy()
    out = forward_backward(view, x1.copy(), None)["output"]
    g = rng.normal(size=out.shape)
    rows = compare_rows(
        view, x1, g, forward_backward(view, x1.copy(), g), check_prefix="one class: ", summary=True
    )
    return _merge(view.name, "one class", rows, "a single class")


def _merge(module: str, check: str, rows: list[CheckRow], what: str) -> list[CheckRow]:
    """One row for an edge case: PASS naming ``what``, or its failing rows renamed to ``check``."""
    bad = [r for r in rows if r.status != PASS]
    if not bad:
        return [CheckRow(module, check, PASS, what)]
    return [
        CheckRow(module, f"{check}: {r.check.split(': ', 1)[-1]}", r.status, r.detail, r.where) for r in bad
    ]


# ---------------------------------------------------------------------------- losses
#: A loss convention (scores and targets) is recognised when the loss equals PyTorch's to this.
CONVENTION_RTOL = 1e-4


def loss_convention(view: LossView, rng: np.random.Generator, n: int = 5, c: int = 4) -> LossView:
    """``view`` with the scores ("logits" or "probabilities") and targets ("index" or "onehot") its
    code takes: the first combination (its own scores first, one-hot targets first) whose value
    equals PyTorch's cross-entropy (to CONVENTION_RTOL); else the first that runs (a buggy loss
    keeps the convention its code runs with); else ``view`` itself (its rows then show the error)."""
    z = rng.normal(size=(n, c))
    y = rng.integers(0, c, size=n)
    runs: LossView | None = None
    for on in (view.on, "logits" if view.on == "probabilities" else "probabilities"):
        s = z if on == "logits" else np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)  # (n, c)
        want = float(reference_loss(s, y, on)["loss"])
        for targets in ("onehot", "index"):  # one-hot first: unambiguous even for a single class
            candidate = replace(view, on=on, targets=targets)
            try:
                with np.errstate(all="ignore"):
                    value, grad = candidate.value_and_grad(s.copy(), y)
            except Exception:  # the user's code on another convention: try the next
                continue
            if np.shape(grad) != s.shape:
                continue
            runs = runs or candidate
            if abs(value - want) <= CONVENTION_RTOL * abs(want):
                return candidate
    return runs or view


def loss_rows(
    loss_factory: Callable[[], LossView], rng: np.random.Generator, n: int = 5, c: int = 4
) -> list[CheckRow]:
    """Gradient check, PyTorch's mean cross-entropy, and edge cases of a loss."""
    probe = loss_factory()
    name, where = probe.name, probe.where

    def scores(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
        z = rng.normal(size=(n, c))
        if probe.on == "probabilities":
            return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)  # (n, c), rows sum to 1
        return z

    def value_and_grad(loss: LossView, s: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        with calling(f"{name}.forward/backward"):
            return loss.value_and_grad(s.copy(), y)

    def compare(s: np.ndarray, y: np.ndarray, prefix: str) -> list[CheckRow]:
        loss = loss_factory()
        value, grad = value_and_grad(loss, s, y)
        ref = reference_loss(s, y, probe.on)
        rows = []
        for q, v in (("loss", np.asarray(value)), ("loss grad", grad)):
            d = tensor_diff(v, ref[q])
            if agrees(d):
                rows.append(
                    CheckRow(name, f"{prefix}{q} vs PyTorch", PASS, f"max rel error {d.max_rel_err:.1e}")
                )
                continue
            ctx = H.RowContext("loss", q, v, ref[q], d, REFERENCE_RTOL, output=s, target=y, batch_size=len(s))
            at = loss.method_where("forward" if q == "loss" else "backward")
            hint = H.diagnose(ctx)[0]
            status = WARN if hint.startswith(H.CLIPPED_LOG_HINT) else FAIL  # a common, benign convention
            rows.append(CheckRow(name, f"{prefix}{q} vs PyTorch", status, hint, at))
        return rows

    def unmodified() -> list[CheckRow]:
        s0, y0 = scores(rng, n, c), rng.integers(0, c, size=n)
        loss = loss_factory()
        s_in, t_in = s0.copy(), loss.prepare_targets(y0, c)
        t0 = t_in.copy()
        with calling(f"{name}.forward/backward"):
            loss.fn(s_in, t_in)
        if not (np.array_equal(s_in, s0) and np.array_equal(t_in, t0)):
            return [
                CheckRow(
                    name,
                    "input unmodified",
                    FAIL,
                    "the loss modified its input or target array in place (copy before writing)",
                    where,
                )
            ]
        return [CheckRow(name, "input unmodified", PASS, "scores and targets left unchanged")]

    def grad_check() -> list[CheckRow]:
        s = scores(rng, n, c)
        y = rng.integers(0, c, size=n)
        loss = loss_factory()
        _, grad = value_and_grad(loss, s, y)
        num = np.empty(s.size)
        work = s.copy()
        flat = work.reshape(-1)
        for i in range(s.size):
            old = flat[i]
            flat[i] = old + DEFAULT_EPS
            plus, _ = value_and_grad(loss_factory(), work, y)
            flat[i] = old - DEFAULT_EPS
            minus, _ = value_and_grad(loss_factory(), work, y)
            flat[i] = old
            num[i] = (plus - minus) / (2 * DEFAULT_EPS)
        if grad.shape != s.shape:
            return [
                CheckRow(
                    name,
                    "gradient check: scores",
                    FAIL,
                    f"gradient has shape {grad.shape}, the scores {s.shape}",
                    where,
                )
            ]
        ana = grad.reshape(-1)
        rel = np.nan_to_num(rel_error(ana, num), nan=np.inf)
        k = int(np.argmax(rel))
        status = gradient_status(float(rel[k]))
        detail = f"max rel error {float(rel[k]):.2e} over {s.size} elements"
        if status != PASS:
            detail += f"; worst element {k}: analytic {ana[k]:.6g} vs numeric {num[k]:.6g}" + _ratio_text(
                ana, num, n
            )
        note = (
            " (self-consistent only: a sum instead of a mean passes this; see the PyTorch rows)"
            if status == PASS
            else ""
        )
        return [
            CheckRow(name, "gradient check: scores", status, detail + note, "" if status == PASS else where)
        ]

    def large() -> list[CheckRow]:
        if probe.on == "probabilities":
            s = np.full((n, c), 0.0)
            s[:, 0] = 1.0  # softmax of logits far apart: exact zeros in the other classes
            y = np.zeros(n, dtype=np.int64)
            value, grad = value_and_grad(loss_factory(), s, y)
            if not (math.isfinite(value) and np.isfinite(grad).all()):
                return [
                    CheckRow(
                        name,
                        "large logits",
                        WARN,
                        "probabilities that underflowed to exactly 0 (softmax of large logits) give a non-finite loss or gradient: 0 * log(0) or y / p at p = 0; clip p (e.g. np.clip(p, 1e-12, 1)) or skip classes with y = 0",
                        where,
                    )
                ]
            return [
                CheckRow(
                    name,
                    "large logits",
                    PASS,
                    "probabilities with exact zeros give a finite loss and gradient",
                )
            ]
        s = rng.normal(size=(n, c)) * 10 + LARGE_LOGIT
        y = rng.integers(0, c, size=n)
        value, grad = value_and_grad(loss_factory(), s, y)
        if not (math.isfinite(value) and np.isfinite(grad).all()):
            return [
                CheckRow(
                    name,
                    "large logits",
                    FAIL,
                    f"non-finite loss or gradient for logits around {LARGE_LOGIT:g}: use the max trick / log-sum-exp",
                    where,
                )
            ]
        return _merge(name, "large logits", compare(s, y, "large logits: "), f"logits around {LARGE_LOGIT:g}")

    rows = guarded(name, "gradient check", grad_check, where)
    s, y = scores(rng, n, c), rng.integers(0, c, size=n)
    main = guarded(name, "against PyTorch", lambda: compare(s, y, ""), where)
    rows += main
    if any(r.status == FAIL for r in main):
        rows.append(
            CheckRow(
                name,
                "batch of 1, one class, large logits",
                WARN,
                "not judged while the comparison with PyTorch above fails",
            )
        )
        return rows + guarded(name, "input unmodified", unmodified, where)
    rows += guarded(
        name,
        "batch of 1",
        lambda: _merge(name, "batch of 1", compare(s[:1], y[:1], "batch of 1: "), "a single sample"),
        where,
    )
    rows += guarded(
        name,
        "one class",
        lambda: _merge(
            name,
            "one class",
            compare(scores(rng, n, 1), np.zeros(n, dtype=np.int64), "one class: "),
            "a single class",
        ),
        where,
    )
    rows += guarded(name, "large logits", large, where)

    rows += guarded(name, "input unmodified", unmodified, where)
    return rows


# ---------------------------------------------------------------------------- models
def model_param_grads(model: ModelView) -> dict[str, np.ndarray]:
    """``{<layer>.<name> grad: gradient}`` in torch layout after a backward."""
    out = {}
    for key, p in model.named_params():
        g = p.torch_grad()
        if g is not None:
            out[f"{key} grad"] = np.array(g, dtype=np.float64)
    return out


def loss_and_backward(
    model: ModelView, loss: LossView, x: np.ndarray, y: np.ndarray
) -> tuple[float, np.ndarray, Any]:
    """Forward, loss, and the model's backward: (loss, dL/doutput, dL/dx)."""
    with calling(f"{model.name}.forward"):
        out = model.forward(x)
    with calling(f"{loss.name}.forward/backward"):
        value, dout = loss.value_and_grad(out, y)
    model.zero_grad()
    with calling(f"{model.name}.backward"):
        dx = model.backward(dout)
    return value, dout, dx


def model_parity_rows(model: ModelView, loss: LossView, x: np.ndarray, y: np.ndarray) -> list[CheckRow]:
    """Per-layer parity of the model's own passes against torch layers, then end to end."""
    rows: list[CheckRow] = []
    with model.record() as records:
        try:
            value, _, _ = loss_and_backward(model, loss, x, y)
        except UserCodeError as e:
            skipped = [v.name for v, r in zip(model.layers, records, strict=True) if r.input is None]
            if not skipped:
                raise
            # a backward that fails on state its forward never made: name the layers forward skipped
            return [
                CheckRow(model.name, "forward", FAIL,
                         f"the model's forward never called {', '.join(skipped)}; then {str(e)[:300]}",
                         source_of(getattr(model.obj, "forward", None)) or e.where),
            ]  # fmt: skip
    for view, rec in zip(model.layers, records, strict=True):
        if view.kind == "linear" and rec.input is not None:
            resolve_linear_layout(view, rec.input, rec.output)  # before reading the gradients' layout
        if rec.input is None or rec.grad_output is None:
            rows.append(
                CheckRow(
                    model.name,
                    f"{view.name}",
                    FAIL,
                    "the model's forward/backward never called this layer",
                    view.where,
                )
            )
            continue
        assert rec.output is not None
        arrays: dict[str, np.ndarray] = {"output": rec.output}
        if rec.grad_input is not None:
            arrays["input grad"] = rec.grad_input
        for p in view.params:
            if p.torch_grad() is not None:
                arrays[f"{p.torch_name} grad"] = np.array(p.torch_grad(), dtype=np.float64)
        rows += compare_rows(
            view, rec.input, rec.grad_output, arrays, check_prefix=f"in {model.name}: ", summary=True
        )
    twin = torch_twin(model.layers, x)
    if twin is None:
        rows.append(
            CheckRow(model.name, "end to end", WARN, "a layer has no PyTorch reference: per-layer rows only")
        )
        return rows
    import torch

    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    out_t = twin(xt)
    out_t.retain_grad()
    probs = loss.on == "probabilities"
    ref = reference_loss(out_t.detach().numpy(), y, loss.on)
    lt = (
        torch.nn.functional.nll_loss(torch.log(out_t.clamp_min(1e-300)), torch.tensor(y))
        if probs
        else torch.nn.functional.cross_entropy(out_t, torch.tensor(y))
    )
    lt.backward()
    d_out = tensor_diff(model.forward(x), out_t.detach().numpy())
    ok = agrees(d_out)
    rows.append(
        CheckRow(
            model.name,
            "end to end: output",
            PASS if ok else FAIL,
            f"max rel error {d_out.max_rel_err:.1e}"
            if ok
            else f"the model's output differs from its layers chained in PyTorch: {H.describe(H.RowContext('(model)', 'output', model.forward(x), out_t.detach().numpy(), d_out, REFERENCE_RTOL))}: check how forward chains the layers",
            "" if ok else source_of_method(model, "forward"),
        )
    )
    d_loss = tensor_diff(np.asarray(value), ref["loss"])
    if agrees(d_loss):
        rows.append(
            CheckRow(model.name, "end to end: loss", PASS, f"{value:.6g} = PyTorch's mean cross-entropy")
        )
    else:
        ctx = H.RowContext(
            "loss",
            "loss",
            np.asarray(value),
            ref["loss"],
            d_loss,
            REFERENCE_RTOL,
            output=model.forward(x),
            target=y,
            batch_size=len(x),
        )
        rows.append(
            CheckRow(model.name, "end to end: loss", FAIL, H.diagnose(ctx)[0], loss.method_where("forward"))
        )
    grads = model_param_grads(model)
    bad = []
    for name, tp in twin.named_parameters():
        g = grads.get(f"{name} grad")
        if g is None or tp.grad is None:
            bad.append(f"{name}: no gradient")
            continue
        tg = tp.grad.numpy()
        if _same_up_to_unit_axes(g, tg):
            g = g.reshape(tg.shape)
        d = tensor_diff(g, tg)
        if not agrees(d):
            bad.append(
                f"{name} grad: {H.describe(H.RowContext(name, name + ' grad', g, tg, d, REFERENCE_RTOL, batch_size=len(x)))}"
            )
    rows.append(
        CheckRow(
            model.name,
            "end to end: parameter gradients",
            FAIL if bad else PASS,
            (bad[0] + (f"; {len(bad) - 1} more gradients differ" if len(bad) > 1 else ""))
            if bad
            else f"{len(grads)} gradients agree",
            source_of_method(model, "backward") if bad else "",
        )
    )
    return rows


def source_of_method(model: ModelView, method: str) -> str:
    from backproplab.verify.protocol import source_of

    return source_of(getattr(model.obj, method, None))


class _UserBackend:
    """The doctor's back end for a user's model: loss, gradient norm, an SGD step on its arrays."""

    def __init__(self, model: ModelView, loss: LossView, lr: float) -> None:
        self.model, self.loss, self.lr = model, loss, lr

    def loss_value(self, x: np.ndarray, y: np.ndarray) -> float:
        with calling(f"{self.model.name}.forward"):
            out = self.model.forward(x)
        with calling(f"{self.loss.name}.forward/backward"):
            return self.loss.value_and_grad(out, y)[0]

    def grad_norm(self, x: np.ndarray, y: np.ndarray) -> float:
        loss_and_backward(self.model, self.loss, x, y)
        return float(math.sqrt(sum(float(np.sum(g * g)) for g in model_param_grads(self.model).values())))

    def train_step(self, x: np.ndarray, y: np.ndarray, optimizer: Any) -> float:
        value, _, _ = loss_and_backward(self.model, self.loss, x, y)
        for param, (_, ref) in zip(optimizer.params, self.model.named_params(), strict=True):
            g = ref.grad
            param.grad = None if g is None else np.asarray(g, dtype=param.data.dtype)
        optimizer.step()
        return value

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        with calling(f"{self.model.name}.forward"):
            return float(np.mean(self.model.forward(x).argmax(axis=1) == y))


#: The doctor's run on a user's model: batch size of the loss checks, overfitting steps and samples,
#: and the Adam learning rate of the overfitting run.
DOCTOR_BATCH, DOCTOR_OVERFIT_STEPS, DOCTOR_OVERFIT_SAMPLES, DOCTOR_LR = 64, 100, 32, 1e-2


def doctor_rows(
    make_model: Callable[[], ModelView], loss: LossView, x: np.ndarray, y: np.ndarray, num_classes: int
) -> list[CheckRow]:
    """The doctor's verdicts on a short real training run of the user's model with its own init."""
    from backproplab.verify import doctor

    model = make_model()
    b = min(DOCTOR_BATCH, len(x))
    xb, yb = x[:b], y[:b]
    # a buggy model may overflow while it trains: the verdicts say so, NumPy's warnings would only add noise
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        backend = _UserBackend(model, loss, DOCTOR_LR)
        checks = [doctor.check_initial_loss(backend.loss_value(xb, yb), num_classes, b)]
        norms = [
            backend.grad_norm(np.concatenate([xb] * k), np.concatenate([yb] * k))
            for k in doctor.SCALING_REPEATS
        ]
        checks.append(doctor.check_batch_scaling(norms))
        m = min(DOCTOR_OVERFIT_SAMPLES, len(x))
        fit = _UserBackend(make_model(), loss, DOCTOR_LR)
        params = []
        for _, ref in fit.model.named_params():
            if ref.value.dtype != np.float64:
                ref.assign(ref.value.astype(np.float64))
            params.append(nn.Parameter(ref.value))
        opt = OptimizerSpec("adam", lr=DOCTOR_LR).numpy(params)
        losses = [fit.train_step(x[:m], y[:m], opt) for _ in range(DOCTOR_OVERFIT_STEPS)]
        losses.append(fit.loss_value(x[:m], y[:m]))
        checks.append(doctor.check_overfit(losses, fit.accuracy(x[:m], y[:m]), DOCTOR_OVERFIT_STEPS, m))
    return [
        CheckRow(
            model.name,
            f"training: {c.name}",
            c.status,
            c.reason + (f" -> {c.fix}" if c.fix and c.status != PASS and "--" not in c.fix else ""),
        )
        for c in checks
    ]
