"""Training trajectories: the NumPy model and its reference trained side by side, step by step.

:func:`run_trajectory` drives two :class:`TrajectorySide` objects (anything that can take a
training step on a batch and report its parameters and gradients by the torch model's names)
through the same batches and compares, after every step, the losses (computed before the update)
and the parameters: step s diverges when

* the relative loss difference |L_np - L_t| / |L_t| exceeds :data:`TRAJ_LOSS_RTOL`, or
* max over parameters of ||p_np - p_t|| / ||p_t|| exceeds :data:`TRAJ_PARAM_RTOL`,

for the dtype. Parameters whose gradient is zero up to rounding on both sides at every step so
far (||g|| <= :func:`noise_floor` x the largest gradient norm of that step: a bias before a
BatchNorm, which the normalisation cancels) are left out of the parameter comparison, with a
note: the loss does not depend on them, and an optimizer that normalises its steps (Adam: m /
sqrt(v)) turns their rounding noise, which differs between the two sides, into full-size steps.

At the first diverging step the report names the first parameter that left the reference and
tests hypotheses. Gradients that differ at step 1 (both sides start from the same parameters)
are a backward or loss bug, not the optimizer. Otherwise candidate update rules are recomputed,
at every step, from the gradients and the parameters before the step (for a sample of
:data:`SAMPLE_ELEMENTS` elements per tensor: the rules are element-wise), and the rule that
reproduced the NumPy side's update (to :data:`~backproplab.verify.hints.EXPLAIN_RTOL`, as
:func:`backproplab.verify.hints.explains`) at every step is named. The rules are fed the NumPy
side's *own* gradients and parameters: a mistake in the update rule may take several steps to
push the parameters past the tolerance, and by then the two sides' gradients differ because
their parameters do, so only the side's own inputs isolate its update rule (a hand-written rule
wrapped as a :class:`TrajectorySide` included). The candidates:

* SGD: momentum ignored, Nesterov ignored or added, momentum or weight decay with the wrong sign,
  weight decay ignored or added after the momentum, dampening ignored (e.g. the v = mu*v - lr*g form) or used where 1 - dampening
  belongs, a buffer started at zero, momentum as an exponential average;
* Adam: no bias correction (or only one of the two), eps inside the square root or before the
  bias correction, betas swapped, weight decay ignored, with the wrong sign or decoupled (AdamW);
* one constant factor c on torch's update, the same at every step and for every parameter (the
  learning rate applied twice: c = lr; left out: c = 1/lr; the step taken twice: c = 2);
* torch's rule for some parameters and one of the mistakes above for all the others (weight
  decay skipped for the biases).

:func:`compare_trajectories` builds both sides for a backproplab :class:`~backproplab.nn.Module`
and its torch twin. Dropout layers are compared in evaluation mode there (their random masks
differ between the two sides at every step), which the report's notes say.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from backproplab import nn
from backproplab.training.optimizers import OptimizerSpec
from backproplab.utils.jsonsafe import json_safe
from backproplab.verify.diff import tensor_diff
from backproplab.verify.gradcheck import backward_failure
from backproplab.verify.hints import (
    EXPLAIN_RTOL,
    RowContext,
    constant_factor,
    explains,
    factor_meaning,
    loss_reduction,
)

if TYPE_CHECKING:
    import torch
    from torch import nn as tnn

#: Trajectory: relative loss difference |L_np - L_torch| / |L_torch| tolerated per step, by dtype.
TRAJ_LOSS_RTOL: dict[str, float] = {"float32": 1e-3, "float64": 1e-8}
#: Trajectory: max over parameters of ||p_np - p_torch|| / ||p_torch|| tolerated per step, by dtype.
TRAJ_PARAM_RTOL: dict[str, float] = {"float32": 1e-3, "float64": 1e-8}
#: Elements per tensor on which the candidate update rules are recomputed (the rules are element-wise).
SAMPLE_ELEMENTS = 512


def noise_floor(dtype: str) -> float:
    """sqrt(machine epsilon) of the dtype: a gradient norm below this times the step's largest
    gradient norm is rounding noise (a true gradient of zero computed by cancellation), far below
    any gradient that carries signal (3.5e-4 in float32, 1.5e-8 in float64)."""
    return math.sqrt(float(np.finfo(np.dtype(dtype)).eps))


# ---------------------------------------------------------------------------- optimizers
UpdateRule = Callable[[dict[str, Any], np.ndarray, np.ndarray, int], np.ndarray]
"""``(state, p, g, t) -> delta``: the step of one tensor (p_new = p - delta) at step t = 1, 2, ...,
with ``state`` a dict the rule keeps between steps (float64 arrays)."""


def update_rule(spec: OptimizerSpec) -> UpdateRule:
    """torch.optim's update rule of ``spec``, in float64 (see :mod:`backproplab.nn.optim`)."""
    if spec.name == "sgd":
        return _sgd_rule(spec)
    if spec.name == "adam":
        return _adam_rule(spec)
    raise ValueError(f"no reference update rule for {spec.describe()}; trajectories compare sgd and adam")


def rule_hypotheses(spec: OptimizerSpec) -> list[tuple[str, UpdateRule]]:
    """(description, rule) of the usual ways to get ``spec`` wrong, for its settings (only those
    that give another update than torch's)."""
    return _sgd_hypotheses(spec) if spec.name == "sgd" else _adam_hypotheses(spec)


def _sgd_rule(
    s: OptimizerSpec,
    *,
    momentum: bool = True,
    nesterov: bool | None = None,
    wd: str = "l2",
    coef: str = "torch",
    zero_init: bool = False,
    mu_sign: float = 1.0,
) -> UpdateRule:
    """SGD with variants: ``wd`` "l2" (torch), "none" or "after" (added to the update after the
    momentum); ``coef`` of g in the buffer: "torch" (1 - dampening), "one" (dampening ignored),
    "dampening" (dampening where 1 - dampening belongs), "ema" (1 - momentum); ``zero_init``
    starts the buffer at zero instead of torch's b_1 = g; ``wd`` "minus" subtracts wd * p from the
    gradient; ``mu_sign`` -1 gives b = g - mu * b."""
    mu, lr, decay = mu_sign * s.momentum, s.lr, s.weight_decay
    nest = s.nesterov if nesterov is None else nesterov
    c = {"torch": 1 - s.dampening, "one": 1.0, "dampening": s.dampening, "ema": 1 - mu}[coef]
    first_is_g = not zero_init and coef != "ema"

    def step(st: dict[str, Any], p: np.ndarray, g: np.ndarray, t: int) -> np.ndarray:
        if wd in ("l2", "minus") and decay:
            g = g + (decay if wd == "l2" else -decay) * p
        if momentum and mu:
            b = st.get("b")
            b = g.copy() if b is None and first_is_g else mu * (0.0 if b is None else b) + c * g
            st["b"] = b
            g = g + mu * b if nest else b
        if wd == "after" and decay:
            g = g + decay * p
        return np.asarray(lr * g)

    return step


def _sgd_hypotheses(s: OptimizerSpec) -> list[tuple[str, UpdateRule]]:
    out: list[tuple[str, UpdateRule]] = []
    if s.momentum:
        out.append(
            (f"momentum ignored (plain SGD instead of momentum {s.momentum:g})", _sgd_rule(s, momentum=False))
        )
        if s.nesterov:
            out.append(
                ("Nesterov ignored (plain momentum instead of nesterov=True)", _sgd_rule(s, nesterov=False))
            )
        else:
            out.append(("Nesterov momentum where plain momentum was asked", _sgd_rule(s, nesterov=True)))
        out.append(
            ("momentum as an exponential average b = mu*b + (1-mu)*g (torch: b = mu*b + (1-dampening)*g)",
             _sgd_rule(s, coef="ema"))
        )  # fmt: skip
        if s.dampening:
            out.append(
                ("dampening ignored: b = mu*b + g (as in the v = mu*v - lr*g form)", _sgd_rule(s, coef="one"))
            )
            if s.dampening != 0.5:
                out.append(
                    (
                        "dampening where 1 - dampening belongs: b = mu*b + dampening*g",
                        _sgd_rule(s, coef="dampening"),
                    )
                )
            out.append(
                ("momentum buffer started at zero, b_1 = (1-dampening)*g (torch starts it at b_1 = g)",
                 _sgd_rule(s, zero_init=True))
            )  # fmt: skip
    if s.momentum:
        out.append(
            ("momentum with the wrong sign: b = g - mu*b (torch: b = mu*b + g)", _sgd_rule(s, mu_sign=-1.0))
        )
    if s.weight_decay:
        out.append(("weight decay ignored", _sgd_rule(s, wd="none")))
        out.append(("weight decay with the wrong sign: g - wd*p (torch: g + wd*p)", _sgd_rule(s, wd="minus")))
        if s.momentum:
            out.append(
                ("weight decay added after momentum (to the update, not to the gradient before the buffer)",
                 _sgd_rule(s, wd="after"))
            )  # fmt: skip
    return out


def _adam_rule(
    s: OptimizerSpec,
    *,
    correct_m: bool = True,
    correct_v: bool = True,
    eps: str = "torch",
    wd: str = "l2",
    swap: bool = False,
) -> UpdateRule:
    """Adam with variants: bias corrections dropped, ``eps`` "torch" (sqrt(v_hat) + eps), "inside"
    (sqrt(v_hat + eps)) or "before" ((sqrt(v) + eps) / sqrt(1 - b2^t)), ``wd`` "l2" (torch),
    "none" or "decoupled" (AdamW's p -= lr * wd * p), ``swap`` exchanges the betas."""
    b1, b2 = (s.betas[1], s.betas[0]) if swap else s.betas
    lr, decay = s.lr, s.weight_decay

    def step(st: dict[str, Any], p: np.ndarray, g: np.ndarray, t: int) -> np.ndarray:
        if wd in ("l2", "minus") and decay:
            g = g + (decay if wd == "l2" else -decay) * p
        m = b1 * st.get("m", 0.0) + (1 - b1) * g
        v = b2 * st.get("v", 0.0) + (1 - b2) * g * g
        st["m"], st["v"] = m, v
        m_hat = m / (1 - b1**t) if correct_m else m
        c2 = math.sqrt(1 - b2**t) if correct_v else 1.0
        if eps == "torch":
            denom = np.sqrt(v) / c2 + s.eps
        elif eps == "inside":
            denom = np.sqrt(v / c2**2 + s.eps)
        else:
            denom = (np.sqrt(v) + s.eps) / c2
        delta = lr * m_hat / denom
        if wd == "decoupled" and decay:
            delta = delta + lr * decay * p
        return np.asarray(delta)

    return step


def _adam_hypotheses(s: OptimizerSpec) -> list[tuple[str, UpdateRule]]:
    out: list[tuple[str, UpdateRule]] = [
        ("Adam without bias correction (m and v not divided by 1 - beta^t)", _adam_rule(s, correct_m=False, correct_v=False)),
        ("bias correction of the first moment only (v not divided by 1 - beta2^t)", _adam_rule(s, correct_v=False)),
        ("bias correction of the second moment only (m not divided by 1 - beta1^t)", _adam_rule(s, correct_m=False)),
        ("eps inside the square root: sqrt(v_hat + eps) (torch: sqrt(v_hat) + eps)", _adam_rule(s, eps="inside")),
        ("eps added before the bias correction: (sqrt(v) + eps) / sqrt(1 - beta2^t)", _adam_rule(s, eps="before")),
    ]  # fmt: skip
    if s.betas[0] != s.betas[1]:
        out.append(("betas swapped (beta1 for v, beta2 for m)", _adam_rule(s, swap=True)))
    if s.weight_decay:
        out.append(("weight decay ignored", _adam_rule(s, wd="none")))
        out.append(
            ("weight decay with the wrong sign: g - wd*p (torch: g + wd*p)", _adam_rule(s, wd="minus"))
        )
        out.append(
            ("decoupled weight decay (AdamW: p -= lr*wd*p) where Adam adds wd*p to the gradient", _adam_rule(s, wd="decoupled"))
        )  # fmt: skip
    return out


# ---------------------------------------------------------------------------- sides
class TrajectorySide(Protocol):
    """One model with its loss and optimizer, as :func:`run_trajectory` drives it."""

    def step(self, xb: np.ndarray, yb: np.ndarray) -> float:
        """Forward, loss, backward, optimizer step, zero grads; returns the loss before the update."""
        ...

    def parameters(self) -> dict[str, np.ndarray]:
        """Current values (copies), keyed by the torch model's parameter names."""
        ...

    def gradients(self) -> dict[str, np.ndarray]:
        """The gradients the last step used (copies), same keys."""
        ...


class ModuleSide:
    """A backproplab Module, a NumPy loss module and a backproplab optimizer as a TrajectorySide."""

    def __init__(self, model: nn.Module, loss: nn.Module, optimizer: nn.optim.Optimizer) -> None:
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self._params = dict(model.named_parameters())
        self._grads: dict[str, np.ndarray] = {}

    def step(self, xb: np.ndarray, yb: np.ndarray) -> float:
        value = self.loss(self.model(xb), yb)
        self.model.backward(self.loss.backward(1.0))
        self._grads = {k: p.grad.copy() for k, p in self._params.items() if p.grad is not None}
        self.optimizer.step()
        self.optimizer.zero_grad()
        return float(value)

    def parameters(self) -> dict[str, np.ndarray]:
        return {k: p.data.copy() for k, p in self._params.items()}

    def gradients(self) -> dict[str, np.ndarray]:
        return dict(self._grads)


class TorchSide:
    """A torch model, ``loss_fn(output, target)`` and a torch optimizer as a TrajectorySide."""

    def __init__(
        self, model: tnn.Module, loss_fn: Callable[..., Any], optimizer: torch.optim.Optimizer
    ) -> None:
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self._params = dict(model.named_parameters())
        self._grads: dict[str, np.ndarray] = {}
        self._dtype = next((p.dtype for p in model.parameters()), None)

    def step(self, xb: np.ndarray, yb: np.ndarray) -> float:
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        x_t = torch.tensor(np.ascontiguousarray(xb))
        if self._dtype is not None and x_t.is_floating_point():
            x_t = x_t.to(self._dtype)
        y = np.asarray(yb)
        y_t = torch.tensor(np.ascontiguousarray(y))
        y_t = y_t.long() if np.issubdtype(y.dtype, np.integer) else y_t.to(x_t.dtype)
        value = self.loss_fn(self.model(x_t), y_t)
        value.backward()
        self._grads = {
            k: p.grad.detach().numpy().copy() for k, p in self._params.items() if p.grad is not None
        }
        self.optimizer.step()
        return float(value.detach())

    def parameters(self) -> dict[str, np.ndarray]:
        return {k: p.detach().numpy().copy() for k, p in self._params.items()}

    def gradients(self) -> dict[str, np.ndarray]:
        return dict(self._grads)


# ---------------------------------------------------------------------------- report
@dataclass
class TrajectoryStep:
    """Losses of both models on one step's batch (before the update) and the parameter gap after it.

    ``worst_parameter`` is the compared parameter with the largest gap.
    """

    step: int
    loss_numpy: float
    loss_torch: float
    loss_rel_diff: float
    param_rel_diff: float
    diverges: bool
    worst_parameter: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return json_safe(vars(self))


@dataclass
class TrajectoryReport:
    """Step-by-step comparison of training both models (see :func:`run_trajectory`).

    ``optimizer`` is the optimizer's description (:meth:`OptimizerSpec.describe`),
    ``first_parameter`` the first parameter that left the reference at the first diverging step,
    ``excluded`` the parameters left out as rounding noise (see the module docstring).
    """

    optimizer: str
    learning_rate: float
    batch_size: int
    loss_rtol: float
    param_rtol: float
    steps: list[TrajectoryStep] = field(default_factory=list)
    hint: str | None = None
    first_parameter: str | None = None
    excluded: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    spec: OptimizerSpec | None = None

    @property
    def first_divergence(self) -> int | None:
        """The first step whose loss or parameters differ beyond tolerance, or None."""
        return next((s.step for s in self.steps if s.diverges), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer,
            "optimizer_spec": None if self.spec is None else asdict(self.spec),
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "loss_rtol": self.loss_rtol,
            "param_rtol": self.param_rtol,
            "first_divergence": self.first_divergence,
            "first_parameter": self.first_parameter,
            "hint": self.hint,
            "excluded": list(self.excluded),
            "notes": list(self.notes),
            "steps": [s.to_dict() for s in self.steps],
        }


def _rel(a: np.ndarray, ref: np.ndarray) -> float:
    """||a - ref|| / ||ref|| in float64 (0 when both are zero, inf when only ref is)."""
    a64, r64 = np.asarray(a, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if a64.shape != r64.shape:
        return math.inf
    num, den = float(np.linalg.norm(a64 - r64)), float(np.linalg.norm(r64))
    return num / den if den > 0 else (0.0 if num == 0 else math.inf)


def _norm(a: np.ndarray | None) -> float:
    return 0.0 if a is None else float(np.linalg.norm(np.asarray(a, dtype=np.float64)))


# ---------------------------------------------------------------------------- the run
def run_trajectory(
    numpy_side: TrajectorySide,
    torch_side: TrajectorySide,
    *,
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    optimizer: OptimizerSpec,
    batch_size: int | None,
    steps: int,
    dtype: str,
) -> TrajectoryReport:
    """Train both sides for ``steps`` steps on the same batches and compare each step.

    Each step draws ``batch_size`` indices of (x, y) without replacement from ``rng`` (the whole
    set when ``batch_size`` is None or at least len(x)). The sides must start from the same
    parameters and use the optimizer ``optimizer`` describes (the NumPy side may be a user's own
    update rule: the hypotheses are recomputed from the torch side's gradients). See the module
    docstring for the tolerances, the rounding-noise parameters and the hypotheses.
    """
    n = len(x)
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    if len(np.asarray(y)) != n or n < 1:
        raise ValueError(f"trajectory: x has {n} samples but y has {len(np.asarray(y))} labels")
    bs = n if batch_size is None or batch_size >= n else batch_size
    report = TrajectoryReport(
        optimizer.describe(), optimizer.lr, bs, TRAJ_LOSS_RTOL.get(dtype, 1e-3), TRAJ_PARAM_RTOL.get(dtype, 1e-3),
        spec=optimizer,
    )  # fmt: skip
    floor = noise_floor(dtype)
    rules = [("torch's rule", update_rule(optimizer)), *rule_hypotheses(optimizer)]
    start = torch_side.parameters()
    names = list(start)
    samples = {
        k: np.unique(np.linspace(0, v.size - 1, min(v.size, SAMPLE_ELEMENTS)).astype(np.int64))
        for k, v in start.items()
    }
    states: list[dict[str, dict[str, Any]]] = [{k: {} for k in names} for _ in rules]
    # fits[i][k]: rule i reproduced the NumPy side's update of parameter k at every step so far;
    # departs[i]: the first step where rule i failed to reproduce some parameter's update
    fits = [dict.fromkeys(names, True) for _ in rules]
    departs: list[int | None] = [None] * len(rules)
    scale = _ScaleFit()  # the NumPy update as c x torch's rule, one c for every step and parameter
    grad_diff_1: dict[str, float] = {}
    grad_missing_1: list[str] = []
    noise = set(names)  # parameters whose gradients were rounding noise at every step so far
    for step in range(1, steps + 1):
        idx = np.arange(n) if bs == n else np.sort(rng.choice(n, size=bs, replace=False))
        xb, yb = x[idx], np.asarray(y)[idx]  # (bs, ...), (bs,)
        before_np = numpy_side.parameters()
        try:
            ln = numpy_side.step(xb, yb)
        except Exception as e:  # a NumPy step that raises is the divergence, named, not a crash
            model = getattr(numpy_side, "model", None)
            what = (
                backward_failure(e, model).describe()
                if isinstance(model, nn.Module)
                else f"{type(e).__name__}: {e}"
            )
            report.steps.append(TrajectoryStep(step, math.nan, math.nan, math.inf, math.inf, True))
            report.hint = f"first divergence at step {step}: the NumPy training step raised: {what}"
            break
        lt = torch_side.step(xb, yb)
        after_np, after_t = numpy_side.parameters(), torch_side.parameters()
        g_np, g_t = numpy_side.gradients(), torch_side.gradients()
        gmax = max((_norm(g) for g in g_t.values()), default=0.0)
        for k in list(noise):
            if gmax == 0 or max(_norm(g_t.get(k)), _norm(g_np.get(k))) > floor * gmax:
                noise.discard(k)
        # every rule on the sampled elements, from the NumPy side's own gradients and parameters:
        # which of them reproduces the update the NumPy side made (at every step so far)
        if step == 1:
            grad_diff_1 = {k: _rel(g_np[k], g_t[k]) for k in g_t if k in g_np}
            grad_missing_1 = [k for k in g_t if k not in g_np]
        live = [k for k in names if k in g_np and k in after_np and k not in noise]
        actual = {k: (_flat(before_np[k]) - _flat(after_np[k]))[samples[k]] for k in live}
        for i, ((_, rule), st) in enumerate(zip(rules, states, strict=True)):
            for k in names:
                if k in g_np and k in before_np:
                    d = rule(st[k], _flat(before_np[k])[samples[k]], _flat(g_np[k])[samples[k]], step)
                    if k not in actual:
                        continue
                    if i == 0:
                        scale.observe(d, actual[k])
                    if not explains(d, actual[k], EXPLAIN_RTOL):
                        if departs[i] is None:
                            departs[i] = step
                        fits[i][k] = False
        loss_rel = abs(ln - lt) / abs(lt) if lt != 0 else (0.0 if ln == lt else math.inf)
        gaps = {k: _rel(after_np[k], after_t[k]) for k in names if k in after_np and k not in noise}
        worst = max(gaps, key=lambda k: gaps[k]) if gaps else None
        gap = gaps[worst] if worst is not None else 0.0
        diverges = not (loss_rel <= report.loss_rtol and gap <= report.param_rtol)
        report.steps.append(TrajectoryStep(step, ln, lt, loss_rel, gap, diverges, worst))
        if diverges and report.hint is None:
            first = next((k for k in names if gaps.get(k, 0.0) > report.param_rtol), None)
            report.first_parameter = first
            ctx = RowContext(
                "loss", "loss", np.asarray(ln), np.asarray(lt), tensor_diff(np.asarray(ln), np.asarray(lt)),
                report.loss_rtol, batch_size=bs,
            )  # fmt: skip
            reduction = loss_reduction(ctx) if loss_rel > report.loss_rtol else None
            report.hint = reduction or _explain(
                step, first, gaps, loss_rel, optimizer, rules, fits, departs[0], grad_diff_1, grad_missing_1,
                report.param_rtol, noise, scale.factor,
            )  # fmt: skip
    if noise:
        excluded = [k for k in names if k in noise]
        report.excluded = excluded
        report.notes.append(
            f"{', '.join(excluded)}: gradient zero up to rounding at every step (||g|| <= {floor:.2g} x the "
            "largest gradient norm; e.g. a bias before BatchNorm, which the normalisation cancels): the loss "
            "does not depend on it, and its rounding noise differs between the two sides (Adam even scales it "
            "to full-size steps), so it is left out of the parameter comparison"
        )
    return report


def _flat(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).ravel()


class _ScaleFit:
    """Whether every observed update is one constant c times torch's (a learning rate applied
    twice, a step taken twice): :func:`~backproplab.verify.hints.constant_factor` per tensor and
    step, and the same c (to EXPLAIN_RTOL) for all of them."""

    def __init__(self) -> None:
        self.c: float | None = None
        self.holds = True

    def observe(self, reference: np.ndarray, actual: np.ndarray) -> None:
        if not self.holds or not np.any(reference):
            return
        c = constant_factor(actual, reference, EXPLAIN_RTOL)
        if c is None or (self.c is not None and abs(c - self.c) > EXPLAIN_RTOL * abs(self.c)):
            self.holds = False
        elif self.c is None:
            self.c = c

    @property
    def factor(self) -> float | None:
        """c when it held at every observation and is no 1 (torch's rule itself), else None."""
        if not self.holds or self.c is None or abs(self.c - 1) <= EXPLAIN_RTOL:
            return None
        return self.c


def _scale_meaning(c: float, lr: float) -> str:
    lr_names = {
        f"the learning rate applied twice (lr^2 = {lr * lr:g} instead of lr = {lr:g})": lr,
        f"the learning rate left out (a step of g instead of lr*g, lr = {lr:g})": 1 / lr,
    }
    meaning = factor_meaning(c, None, lr_names if lr != 1 else None)
    if meaning is not None and "counted twice" in meaning:
        meaning = "the update applied twice (or a factor 2 in it)"
    return meaning or f"an effective learning rate of {c * lr:.4g} instead of {lr:g}"


def _explain(
    step: int,
    first: str | None,
    gaps: dict[str, float],
    loss_rel: float,
    spec: OptimizerSpec,
    rules: list[tuple[str, UpdateRule]],
    fits: list[dict[str, bool]],
    departs: int | None,
    grad_diff_1: dict[str, float],
    grad_missing_1: list[str],
    param_rtol: float,
    noise: set[str],
    scale: float | None = None,
) -> str:
    """The hint of the first diverging step (see the module docstring).

    At step 1 both sides start from the same parameters, so gradients that differ there are a
    backward or loss bug. Otherwise the update rules are judged on the NumPy side's own gradients
    and parameters (later gradients differ anyway once the parameters drift apart): a rule counts
    when it reproduced the NumPy update at every step so far.
    """
    head = f"first divergence at step {step}"
    if first is None:
        return f"{head}: loss differs by {loss_rel:.3g} (relative), parameters agree within {param_rtol:g}"
    head += f", first at parameter {first} ({gaps[first]:.3g} relative)"
    missing = [k for k in grad_missing_1 if k not in noise]
    bad = [k for k, v in grad_diff_1.items() if v > param_rtol and k not in noise]
    if missing or bad:
        k = (missing or bad)[0]
        what = "has no gradient" if k in missing else f"gradient differs by {grad_diff_1[k]:.3g} (relative)"
        return (
            f"{head}: the gradients already differ at step 1, from the same parameters ({k} {what}): a "
            "backward or loss bug, not the optimizer (see the per-layer table)"
        )
    name = "SGD" if spec.name == "sgd" else "Adam"
    matching = [label for (label, _), ok in zip(rules[1:], fits[1:], strict=True) if all(ok.values())]
    if all(fits[0].values()):
        return (
            f"{head}: {spec.describe()}: the NumPy update follows torch's rule on its own gradients at every "
            "step and the gradients agreed at step 1: the parameters drifted apart by rounding"
        )
    since = f" from step {departs}" if departs is not None else ""
    if matching:
        return (
            f"{head}: {spec.describe()}: the NumPy update departs from torch.optim.{name}'s{since} and matches "
            f"{matching[0]}"
        )
    if scale is not None:
        return (
            f"{head}: {spec.describe()}: the NumPy update is {scale:.4g} x torch.optim.{name}'s at every step "
            f"and for every parameter: {_scale_meaning(scale, spec.lr)}"
        )
    mixed = _mixed_explanation(rules, fits)
    if mixed:
        return (
            f"{head}: {spec.describe()}: the NumPy update departs from torch.optim.{name}'s{since}: {mixed}"
        )
    tried = "; ".join(label for label, _ in rules[1:]) or "none for these settings"
    tried += "; one constant factor on torch's update"
    return (
        f"{head}: {spec.describe()}: the NumPy update of {first} departs from torch.optim.{name}'s{since}, "
        f"and is not explained by a usual mistake either (tried: {tried}); compare it with torch's documented "
        "update"
    )


def _mixed_explanation(rules: list[tuple[str, UpdateRule]], fits: list[dict[str, bool]]) -> str | None:
    """Torch's rule for some parameters and one usual mistake for all the others (weight decay
    skipped for the biases), or None when that does not account for every parameter."""
    odd = [k for k, ok in fits[0].items() if not ok]
    for (label, _), ok in zip(rules[1:], fits[1:], strict=True):
        if all(ok[k] for k in odd):
            text = f"{label}, for {', '.join(odd)} only (the other parameters follow torch's rule)"
            if label == "weight decay ignored" and all(k.endswith("bias") for k in odd):
                text += (
                    ": weight decay skipped for the biases, where torch's weight_decay applies to every "
                    "parameter of the group (put the biases in a group with weight_decay=0 to match)"
                )
            return text
    return None


# ---------------------------------------------------------------------------- backproplab modules
def compare_trajectories(
    numpy_model: nn.Module,
    torch_model: tnn.Module | None = None,
    *,
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    loss: nn.Module | None = None,
    reference_loss: Callable[..., Any] | None = None,
    optimizer: str | OptimizerSpec = "sgd",
    learning_rate: float = 1e-3,
    batch_size: int | None = None,
    steps: int = 20,
) -> TrajectoryReport:
    """Train deep copies of ``numpy_model`` and its torch twin (or ``torch_model``) side by side.

    ``optimizer`` is an :class:`OptimizerSpec`, or "sgd" / "adam" with torch's defaults besides
    ``learning_rate``. The loss defaults as in :func:`backproplab.verify.parity.compare_models`.
    Dropout layers run in evaluation mode on both sides (noted in the report). Built on
    :func:`run_trajectory`.
    """
    from backproplab.instrument.recorder import record_leaves
    from backproplab.verify import parity as P
    from backproplab.verify.twin import is_random_dropout

    with np.errstate(all="ignore"):
        P._check_batch(x, y)
        spec = (
            optimizer if isinstance(optimizer, OptimizerSpec) else OptimizerSpec(optimizer, lr=learning_rate)
        )
        np_model = copy.deepcopy(numpy_model)
        np_model.zero_grad()
        twin = P._prepare_twin(np_model, torch_model)
        loss = copy.deepcopy(loss) if loss is not None else nn.SoftmaxCrossEntropy("mean")
        if reference_loss is None:
            was_training = np_model.training
            np_model.eval()  # a one-sample probe: BatchNorm in training mode needs more than one value
            with nn.no_grad(), record_leaves(np_model, copy=False) as records:
                np_model(x[:1])
            np_model.train(was_training)
            reference_loss = (
                P.reference_nll_of_probabilities if P._ends_in_softmax(records) else P.reference_cross_entropy
            )
        notes = []
        dropouts = [n for n, m in twin.named_modules() if n and is_random_dropout(m)]
        np_mods = dict(np_model.named_modules())
        for name in dropouts:
            twin.get_submodule(name).eval()
            if name in np_mods:
                np_mods[name].eval()
        if dropouts:
            notes.append(
                f"{', '.join(dropouts)}: Dropout compared in evaluation mode (the two sides would draw "
                "different masks at every step)"
            )
        numpy_side = ModuleSide(np_model, loss, spec.numpy(list(np_model.parameters())))
        torch_side = TorchSide(twin, reference_loss, spec.torch(list(twin.parameters())))
        report = run_trajectory(
            numpy_side, torch_side, x=x, y=y, rng=rng, optimizer=spec, batch_size=batch_size, steps=steps,
            dtype=np_model.dtype.name,
        )  # fmt: skip
    report.notes[:0] = notes
    return report
