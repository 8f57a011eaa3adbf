"""Gradient checking: a module's backward pass against central differences in float64.

For a module with output Y = forward(X) and a random upstream gradient G of Y's shape, the
scalar function checked is f(X, params) = sum(Y * G), whose gradient with respect to X is exactly
what ``backward(G)`` must return, and with respect to each parameter what it must accumulate
into that parameter's ``grad``. A loss ``L = forward(scores, target)`` is a scalar, so G is a
random scalar and ``backward(G)`` must return G * dL/dscores.

Numerical gradient (central differences, one element at a time, in float64)::

    num[i] = sum((forward(x + eps e_i) - forward(x - eps e_i)) * G) / (2 eps)

The two outputs are subtracted before they are contracted with G, as in CS231n's
``eval_numerical_gradient_array``: outputs that do not depend on x[i] cancel exactly, so the
rounding noise is that of the few outputs that change (about 1e-10 with eps = 1e-6), not that of
the whole sum.

Relative error, per element, as CS231n's ``rel_error``::

    rel[i] = |a[i] - n[i]| / max(|a[i]| + |n[i]|, REL_ERROR_FLOOR)

and a tensor's verdict comes from its largest rel[i]: below :data:`GOOD_MAX_REL_ERROR` "good",
above :data:`WRONG_MIN_REL_ERROR` "wrong", in between "suspect" (see :data:`SUSPECT_MEANING`).

The module handed in is never modified: the check runs on a deep copy, cast to float64 with
``module.to(np.float64)`` for this package's modules. Other objects (a student's own layer) are
supported when they have ``forward``/``backward`` and expose parameters in any format of
:mod:`backproplab.verify.protocol` (``named_parameters()``, the practical template's ``params``/``grads``
dicts of arrays, a ``params`` list of objects with ``.data`` and ``.grad``, ``W``/``dW`` attributes);
their parameters must already be float64 (casting them from outside could miss arrays the
object keeps elsewhere), and a float32 one is refused with a clear message.
"""

from __future__ import annotations

import copy
import math
import traceback
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from backproplab.errors import ShapeError
from backproplab.nn.grad_mode import no_grad
from backproplab.nn.module import Module
from backproplab.utils.jsonsafe import json_safe
from backproplab.utils.table import format_table as text_table

#: Default step of the central differences: near the optimum cbrt(float64 eps) ~ 6e-6 for
#: smooth functions, and far below the margin the built-in cases keep from kinks (1e-3).
DEFAULT_EPS = 1e-6
#: A tensor whose largest relative error is below this is "good" (CS231n: "probably happy").
GOOD_MAX_REL_ERROR = 1e-7
#: A tensor whose largest relative error is above this is "wrong": the backward pass has a bug.
WRONG_MIN_REL_ERROR = 1e-2
#: Floor of the denominator of the relative error, as in CS231n's ``rel_error``, so that two
#: gradients that are both (nearly) zero do not divide by zero.
REL_ERROR_FLOOR = 1e-8

GOOD, SUSPECT, WRONG = "good", "suspect", "wrong"
VERDICTS = (GOOD, SUSPECT, WRONG)

#: What a "suspect" verdict means, printed under the CLI's table.
SUSPECT_MEANING = (
    f"suspect ({GOOD_MAX_REL_ERROR:g} <= max rel error <= {WRONG_MIN_REL_ERROR:g}) is not a failure "
    "but deserves a look. With a correct backward it happens when the worst element is nearly zero "
    "(below ~1e-3: float64 central differences are accurate to ~1e-10 in absolute terms; compare its "
    "analytic and numeric values, or try another --seed), when an input lies within eps of a kink (ReLU "
    "at 0, a max with ties), or when some arithmetic inside runs in float32; otherwise it is a small bug "
    "such as a missing term"
)


@dataclass(frozen=True)
class BackwardFailure:
    """A backward pass that raised: where (module path, parameter) and the error.

    ``module`` is the dotted path of the innermost module whose ``backward`` was running ("" for
    the root), ``parameter`` the name, within that module, of the parameter whose ``accumulate``
    raised (None when the error came from elsewhere), ``shape`` that parameter's shape.
    """

    module: str
    parameter: str | None
    error: str
    shape: tuple[int, ...] | None = None

    def describe(self) -> str:
        """One line naming the module and the parameter."""
        where = self.module or "the module"
        if self.parameter is None:
            return f"{where}.backward raised {self.error}"
        return (
            f"{where}.backward raised {self.error} while accumulating the gradient of {self.parameter!r} "
            f"(shape {self.shape}) of {where}: it must have the parameter's shape (transposed or not reduced "
            "over the batch?)"
        )


def backward_failure(
    exc: BaseException, model: Any, params: list[tuple[str, Any]] | None = None
) -> BackwardFailure:
    """Locate the exception ``exc`` raised by ``model``'s backward from its traceback.

    The innermost frame whose ``self`` is one of ``params`` (default: the model's parameters, by
    dotted name) gives the parameter (``Parameter.accumulate``'s shape check names neither it nor
    its module); the innermost frame whose ``self`` is a sub-module of ``model`` gives the module.
    """
    if params is None:
        params = list(model.named_parameters()) if isinstance(model, Module) else named_parameters_of(model)
    mods = {id(m): n for n, m in model.named_modules()} if isinstance(model, Module) else {id(model): ""}
    # a protocol ParamRef stands for the Parameter object it reads from (its value box)
    by_id = {id(getattr(p, "value_box", p)): (n, p) for n, p in params}
    found_param: tuple[str, Any] | None = None
    module: str | None = None
    for frame, _ in reversed(list(traceback.walk_tb(exc.__traceback__))):
        obj = frame.f_locals.get("self")
        if found_param is None and id(obj) in by_id:
            found_param = by_id[id(obj)]
        if module is None and id(obj) in mods:
            module = mods[id(obj)]
    error = f"{type(exc).__name__}: {exc}"
    if found_param is None:
        return BackwardFailure(module or "", None, error)
    full, p = found_param
    owner, _, local = full.rpartition(".")
    if isinstance(model, Module) and owner in mods.values():
        module = owner
    else:
        local = full
    return BackwardFailure(module or "", local, error, tuple(np.shape(p.data)))


def rel_error(analytic: np.ndarray, numeric: np.ndarray) -> np.ndarray:
    """Element-wise |a - n| / max(|a| + |n|, REL_ERROR_FLOOR) (CS231n's rel_error, before its max)."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    return np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), REL_ERROR_FLOOR)


def verdict_for(max_rel_error: float) -> str:
    """ "good" below GOOD_MAX_REL_ERROR, "wrong" above WRONG_MIN_REL_ERROR (or not finite), else "suspect"."""
    if not math.isfinite(max_rel_error) or max_rel_error > WRONG_MIN_REL_ERROR:
        return WRONG
    return GOOD if max_rel_error < GOOD_MAX_REL_ERROR else SUSPECT


def numerical_gradient(
    f: Callable[[np.ndarray], Any],
    x: np.ndarray,
    eps: float = DEFAULT_EPS,
    dout: np.ndarray | float | None = None,
) -> np.ndarray:
    """Central-difference gradient of ``sum(f(x) * dout)`` with respect to ``x``, in float64.

    grad[i] = sum((f(x + eps e_i) - f(x - eps e_i)) * dout) / (2 eps), for every element i of x.
    ``f`` returns a scalar (``dout=None`` means 1) or an array of ``dout``'s shape. ``x`` must be a
    float64 array; it is perturbed in place, one element at a time, and each element is restored
    to its exact original value, so ``f`` may read x through another reference (a parameter).
    Costs 2 * x.size calls of ``f``.
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        got = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
        raise ShapeError(
            f"numerical_gradient needs a float64 array, got {got}: in float32, central differences keep "
            "only about 3 significant digits"
        )
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    g = 1.0 if dout is None else np.asarray(dout, dtype=np.float64)
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = float(x[i])
        x[i] = old + eps
        plus = np.array(
            f(x), dtype=np.float64
        )  # copies: f may return a view of x (Flatten) or a reused buffer
        x[i] = old - eps
        minus = np.array(f(x), dtype=np.float64)
        x[i] = old
        if np.shape(g) != () and plus.shape != np.shape(g):
            raise ShapeError(
                f"numerical_gradient: f returned shape {plus.shape}, dout has shape {np.shape(g)}"
            )
        grad[i] = np.sum((plus - minus) * g) / (2 * eps)
    return grad


@dataclass(frozen=True)
class TensorCheck:
    """The comparison of one gradient (the input's or one parameter's) with central differences.

    ``worst_index``, ``analytic`` and ``numeric`` describe the element with the largest relative
    error; ``note`` explains a failure that is not a number (no gradient written, wrong shape).
    ``ratio`` is analytic / numeric when that is one constant c in every element (checked
    element-wise, see :func:`constant_ratio`); the note then says what c suggests (the batch size,
    1/N, -1, 2, 1/2: see :func:`backproplab.verify.hints.factor_meaning`).
    ``analytic_grad`` and ``numeric_grad`` are the two full gradients (float64), for a closer look.
    """

    tensor: str
    shape: tuple[int, ...]
    max_rel_error: float
    max_abs_error: float
    verdict: str
    worst_index: tuple[int, ...] | None = None
    analytic: float = math.nan
    numeric: float = math.nan
    note: str = ""
    #: analytic / numeric when it is one constant over every element (a wrong tensor only), else None.
    ratio: float | None = None
    analytic_grad: np.ndarray | None = field(default=None, repr=False, compare=False)
    numeric_grad: np.ndarray | None = field(default=None, repr=False, compare=False)

    def describe_worst(self) -> str:
        """One line: where the worst element is, its analytic and numeric values, and the note if any."""
        if self.worst_index is None:
            return self.note
        where = f"worst element {self.tensor}[{', '.join(str(i) for i in self.worst_index)}]: "
        line = f"{where}analytic {self.analytic:.10g} vs numeric {self.numeric:.10g}"
        return f"{line} ({self.note})" if self.note else line


@dataclass(frozen=True)
class GradcheckReport:
    """All tensors checked for one module (input first, then parameters in registration order)."""

    name: str
    checks: tuple[TensorCheck, ...]
    eps: float
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """The worst verdict of the checks ("good" when there is nothing to check)."""
        return max((c.verdict for c in self.checks), key=VERDICTS.index, default=GOOD)

    @property
    def ok(self) -> bool:
        """True unless some tensor is "wrong"."""
        return self.verdict != WRONG

    @property
    def max_rel_error(self) -> float:
        return max((c.max_rel_error for c in self.checks), default=0.0)

    def __getitem__(self, tensor: str) -> TensorCheck:
        for c in self.checks:
            if c.tensor == tensor:
                return c
        raise KeyError(f"{self.name}: no tensor {tensor!r}; checked {[c.tensor for c in self.checks]}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (:func:`~backproplab.utils.jsonsafe.json_safe`: an infinite error is "inf")."""
        return json_safe(
            {
                "name": self.name,
                "verdict": self.verdict,
                "eps": self.eps,
                "details": dict(self.details),
                "checks": [
                    {
                        **_fields(c),
                        "shape": list(c.shape),
                        "worst_index": None if c.worst_index is None else list(c.worst_index),
                    }
                    for c in self.checks
                ],
            }
        )


def _fields(c: TensorCheck) -> dict[str, Any]:
    """The scalar fields of a check (the full gradients left out)."""
    return {f.name: getattr(c, f.name) for f in fields(c) if f.name not in ("analytic_grad", "numeric_grad")}


def format_table(reports: list[GradcheckReport]) -> str:
    """A text table: module, tensor, shape, max rel error, verdict; a failure adds its worst element."""
    header = ("module", "tensor", "shape", "max rel error", "verdict")
    rows: list[tuple[str, ...]] = []
    notes: dict[int, str] = {}
    for r in reports:
        for c in r.checks:
            if c.verdict != GOOD:
                notes[len(rows)] = c.describe_worst()
            rows.append(
                (
                    r.name,
                    c.tensor,
                    "x".join(map(str, c.shape)) or "scalar",
                    f"{c.max_rel_error:.2e}",
                    c.verdict,
                )
            )
    notes = {k: f"-> {note}" for k, note in notes.items()}
    return "\n".join(text_table(header, rows, right=(3,), notes=notes))


# ---------------------------------------------------------------------------------------- the check
def named_parameters_of(module: Any) -> list[tuple[str, Any]]:
    """(name, parameter) pairs of a layer in any format of :mod:`backproplab.verify.protocol`
    (``named_parameters()``, the template's ``params``/``grads`` dicts of arrays, a ``params`` list
    of objects with ``.data``/``.grad``, or ``W``/``dW``-style attributes). Each parameter has a
    ``.data`` array (the live value) and a ``.grad``."""
    from backproplab.verify.protocol import params_of

    return [(ref.name, ref) for ref in params_of(module)]


def _prepare(module: Any) -> tuple[Any, list[tuple[str, Any]]]:
    """A float64 deep copy of ``module`` with cleared grads, and its parameters."""
    for attr in ("forward", "backward"):
        if not callable(getattr(module, attr, None)):
            raise TypeError(
                f"gradcheck needs an object with forward() and backward(), "
                f"{type(module).__name__} has no {attr}()"
            )
    work = copy.deepcopy(module)
    if isinstance(work, Module):
        work.to(np.float64)
        work.zero_grad()
    params = named_parameters_of(work)
    if not isinstance(work, Module):
        for name, p in params:
            if p.data.dtype != np.float64:
                raise ShapeError(
                    f"gradcheck needs float64 parameters, but {name!r} of {type(module).__name__} is "
                    f"{p.data.dtype}: create the module in float64 (in float32 central differences keep "
                    "only ~3 digits; casting from outside could miss arrays the object keeps elsewhere)"
                )
            p.clear_grad()
    return work, params


def _as_float64(name: str, value: Any, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ShapeError(f"gradcheck: {what} {name} must be floating point, got dtype {arr.dtype}")
    if arr.dtype != np.float64:
        raise ShapeError(
            f"gradcheck: {what} {name} is {arr.dtype} although the input and parameters are float64; "
            "some array inside the module is still float32 (gradcheck needs float64 throughout)"
        )
    return arr


#: analytic / numeric counts as one constant when c * numeric reproduces analytic to this (relative
#: to the largest |analytic|): far above central differences' error, far below any real difference.
RATIO_RTOL = 1e-4


def constant_ratio(analytic: np.ndarray, numeric: np.ndarray) -> float | None:
    """The c with analytic = c * numeric in every element (to :data:`RATIO_RTOL`), else None."""
    a, n = np.asarray(analytic, dtype=np.float64), np.asarray(numeric, dtype=np.float64)
    nn_ = float((n * n).sum())
    if a.shape != n.shape or nn_ == 0 or not np.isfinite(a).all():
        return None
    c = float((a * n).sum() / nn_)
    scale = max(float(np.abs(a).max()), float(np.abs(n).max()))
    return c if float(np.abs(a - c * n).max()) <= RATIO_RTOL * scale else None


def ratio_note(c: float, batch_size: int | None) -> str:
    """ "analytic = 8 x numeric = the batch size: a sum where the loss averages, or a missing 1/N"."""
    from backproplab.verify.hints import factor_meaning  # hints imports the nn modules

    meaning = factor_meaning(c, batch_size)
    text = f"analytic = {c:.4g} x numeric in every element"
    return f"{text} = {meaning}" if meaning else f"{text}: a constant factor"


def _compare(
    tensor: str, analytic: Any, numeric: np.ndarray, missing_note: str, batch_size: int | None = None
) -> TensorCheck:
    """Compare one gradient; ``analytic`` None counts as zeros, and ``missing_note`` says why it failed.

    A wrong gradient that is one constant times the numeric one gets ``ratio`` and a note on it.
    """
    shape = tuple(numeric.shape)
    if analytic is None:
        a = np.zeros_like(numeric)
        note_if_wrong = f"{missing_note}; the numeric gradient is not zero"
    else:
        a = np.asarray(analytic, dtype=np.float64)
        note_if_wrong = ""
        if a.shape != numeric.shape:
            return TensorCheck(
                tensor, shape, math.inf, math.inf, WRONG,
                note=f"{tensor}: the analytic gradient has shape {a.shape}, expected {shape}",
                analytic_grad=a, numeric_grad=numeric,
            )  # fmt: skip
    if numeric.size == 0:
        return TensorCheck(tensor, shape, 0.0, 0.0, GOOD, analytic_grad=a, numeric_grad=numeric)
    rel = np.nan_to_num(rel_error(a, numeric), nan=np.inf)  # a NaN in the gradient counts as wrong
    k = np.unravel_index(int(np.argmax(rel)), shape)
    max_rel = float(rel[k])
    verdict = verdict_for(max_rel)
    ratio = constant_ratio(a, numeric) if verdict == WRONG and analytic is not None else None
    if ratio is not None:
        note_if_wrong = ratio_note(ratio, batch_size)
    return TensorCheck(
        tensor=tensor,
        shape=shape,
        max_rel_error=max_rel,
        max_abs_error=float(np.max(np.abs(a - numeric))),
        verdict=verdict,
        worst_index=tuple(int(i) for i in k),
        analytic=float(a[k]),
        numeric=float(numeric[k]),
        note=note_if_wrong if verdict != GOOD else "",
        ratio=ratio,
        analytic_grad=a,
        numeric_grad=numeric,
    )


def gradcheck(
    module: Any,
    x: np.ndarray,
    *,
    target: np.ndarray | None = None,
    dout: np.ndarray | float | None = None,
    rng: np.random.Generator | None = None,
    eps: float = DEFAULT_EPS,
    check_input: bool = True,
    only_params: Collection[str] | None = None,
    before_forward: Callable[[Any], None] | None = None,
    name: str | None = None,
) -> GradcheckReport:
    """Compare ``module``'s backward pass with central differences, in float64.

    The scalar checked is f = sum(forward(x) * dout) (or dout * forward(x, target) for a loss,
    given ``target``). ``dout`` defaults to standard normal draws from ``rng`` (required then);
    a random upstream gradient, unlike ones, catches a backward that sums or transposes where it
    should not. Checks the input gradient that ``backward`` returns (unless ``check_input`` is
    False) and every parameter's accumulated ``grad`` (or only those named in ``only_params``: each
    element costs two forward passes, too many for a large model). ``before_forward(module)`` runs before
    every forward call (for example to reseed a dropout mask so every forward draws the same one):
    the forward must be a deterministic function of the input and parameters.

    The module is not modified: the check runs on a float64 deep copy (see the module docstring).
    Returns a :class:`GradcheckReport`; it does not raise on a wrong gradient.
    """
    if dout is None and rng is None:
        raise ValueError(
            "gradcheck needs rng= (a np.random.Generator) to draw the upstream gradient, or dout="
        )
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
        got = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
        raise ShapeError(f"gradcheck needs a floating-point NumPy input, got {got}")
    work, params = _prepare(module)
    label = name or type(module).__name__
    if only_params is not None:
        unknown = sorted(set(only_params) - {pname for pname, _ in params})
        if unknown:
            raise ValueError(
                f"gradcheck: {label} has no parameters {unknown}; it has {[pname for pname, _ in params]}"
            )
        params = [(pname, p) for pname, p in params if pname in only_params]
    x64 = np.array(x, dtype=np.float64)  # a copy: the analytic pass may cache it by reference
    if target is not None:
        target = np.array(target)
        if np.issubdtype(target.dtype, np.floating):
            target = target.astype(np.float64)

    def forward(inp: np.ndarray) -> Any:
        if before_forward is not None:
            before_forward(work)
        return work.forward(inp) if target is None else work.forward(inp, target)

    # analytic gradients
    out = _as_float64("output", forward(x64), "the forward")
    if dout is None:
        assert rng is not None
        g = np.asarray(rng.normal(size=out.shape), dtype=np.float64)  # same shape as the output
    else:
        g = np.asarray(dout, dtype=np.float64)
        if g.shape != out.shape:
            raise ShapeError(
                f"gradcheck: dout has shape {g.shape}, the output of {label} has shape {out.shape}"
            )
    details = {"input_shape": list(x.shape), "output_shape": list(out.shape)}
    try:
        dx = work.backward(float(g) if out.ndim == 0 else g)
    except Exception as e:  # a backward that raises is a failure of this check, not a crash
        fail = backward_failure(e, work, named_parameters_of(work))
        tensor = fail.parameter or "input"
        shape = fail.shape if fail.shape is not None else tuple(x.shape)
        where = f"{label}: " + fail.describe().replace("the module.", f"{label}.", 1)
        check = TensorCheck(tensor, shape, math.inf, math.inf, WRONG, note=where)
        return GradcheckReport(name=label, checks=(check,), eps=eps, details={**details, "error": fail.error})
    batch_size = int(x.shape[0]) if x.ndim >= 1 else None
    analytic = {
        pname: (None if p.grad is None else np.array(p.grad, dtype=np.float64)) for pname, p in params
    }

    # numerical gradients
    checks = []
    with no_grad():
        if check_input:
            num_dx = numerical_gradient(forward, x64.copy(), eps, g)
            missing = "backward returned None instead of the input gradient (forgot to return dx?)"
            checks.append(_compare("input", dx, num_dx, missing, batch_size))
        for pname, p in params:
            if p.data.dtype != np.float64:
                raise ShapeError(
                    f"gradcheck: parameter {pname!r} is {p.data.dtype} after the cast to float64"
                )
            num = numerical_gradient(lambda _: forward(x64), p.data, eps, g)
            missing = "backward wrote no gradient (grad is None)"
            checks.append(_compare(pname, analytic[pname], num, missing, batch_size))
    return GradcheckReport(name=label, checks=tuple(checks), eps=eps, details=details)


def iter_failures(reports: list[GradcheckReport]) -> Iterator[tuple[GradcheckReport, TensorCheck]]:
    """(report, check) for every tensor whose verdict is not "good"."""
    for r in reports:
        for c in r.checks:
            if c.verdict != GOOD:
                yield r, c
