"""The training doctor: quick checks that tell why a network will not learn, before it trains.

:func:`diagnose` runs, on one batch of a NumPy or PyTorch model, the checks below; each gives
PASS, WARN or FAIL with a one-line reason and, when not PASS, a suggested fix:

* **initial loss**: cross-entropy at init against ln(C) (uniform predictions over C classes).
  PASS within :data:`INIT_LOSS_TOL` (relative); B * ln(C) (within :data:`SUM_RATIO_TOL`) for a batch
  of B >= :data:`SUM_MIN_BATCH` is FAIL (the loss sums over the batch); otherwise WARN up to
  :data:`INIT_LOSS_FAIL` times ln(C), FAIL beyond.
* **non-finite values**: NaN or inf in the inputs, the loss, any activation or weight gradient.
* **batch-size scaling**: the gradient norm for the batch repeated k = 1, 2, 4 times. Repeating
  the batch changes neither the per-sample gradients nor a mean (nor BatchNorm's statistics), so
  with mean reduction the norm is exactly constant and with sum reduction exactly k times larger:
  the fitted exponent of norm ~ k^e is 0 (PASS) or 1 (FAIL: sum reduction, the effective learning
  rate is lr * batch size); anything else (beyond :data:`SCALING_TOL`) is WARN. Dropout layers run
  in evaluation mode for this check: the repeats would draw different masks, and averaging over
  more masks shrinks the norm although nothing is wrong.
* **activations**: per activation layer, the fraction of dead units (:data:`DEAD_WARN`,
  :data:`DEAD_FAIL`), of saturated entries (:data:`SATURATED_WARN`; only for functions that
  saturate, Tanh and ELU: ReLU's flat half y <= 0 holds about half the entries of a freshly
  initialised layer by symmetry, which is how ReLU works, not saturation; its failure mode, units
  inactive on the whole batch, is the dead-unit count) and the output's standard deviation
  relative to the input's (below :data:`ACT_STD_VANISHING`: the signal vanishes).
* **updates**: per weight, ||dW|| / ||W|| for one optimizer step. CS231n's rule of thumb: about
  1e-3 is healthy. Below :data:`UPDATE_RATIO_VANISHING` (1e-6) the layer effectively does not
  learn (FAIL: vanishing updates, such as the practical's N(0, 1e-4^2) init in a deep MLP);
  below :data:`UPDATE_RATIO_LOW` WARN (slow); above :data:`UPDATE_RATIO_HIGH` (1e-1) WARN (the
  updates overwrite the weights: exploding).
* **overfit one batch**: K optimizer steps on a copy of the model, on :data:`OVERFIT_BATCH`
  samples. PASS when the batch is fitted (accuracy 1, or the loss down to
  :data:`OVERFIT_LOSS_FRACTION` of its start); WARN when the loss fell but not that far (or by
  less than :data:`OVERFIT_MIN_DROP`: it barely learns); FAIL when it rose or became non-finite.

:func:`plot_stats` draws the per-layer statistics (activation mean and std, dead and saturated
fractions, gradient norms, update/weight ratios with the thresholds).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backproplab.nn.dropout import Dropout
from backproplab.nn.grad_mode import no_grad
from backproplab.nn.module import Module
from backproplab.utils.atomic import atomic_path
from backproplab.verify.layer_stats import LayerStats, numpy_layer_stats, torch_layer_stats

#: Initial loss within this relative distance of ln(C) passes (a kaiming-initialised last layer gives
#: logits of std ~1.4, a loss ~1.3 x ln(C): slightly overconfident, no reason to warn).
INIT_LOSS_TOL = 0.5
#: An initial loss within this relative distance of B x ln(C) is attributed to sum reduction.
SUM_RATIO_TOL = 0.25
#: Initial loss above this many times ln(C) fails (overconfident random predictions).
INIT_LOSS_FAIL = 3.0
#: The initial-loss check attributes a loss of about B x ln(C) to sum reduction only from this batch
#: size on (at B = 2 an overconfident mean looks the same; the batch-scaling check tells them apart).
SUM_MIN_BATCH = 8
#: Batch-scaling exponent within this of 0 (mean) passes, within this of 1 (sum) fails.
SCALING_TOL = 0.1
#: Repetitions of the batch for the scaling check.
SCALING_REPEATS = (1, 2, 4)
#: Dead-unit fraction of an activation layer above which the check warns / fails.
DEAD_WARN, DEAD_FAIL = 0.1, 0.5
#: Saturated-entry fraction of an activation layer above which the check warns.
SATURATED_WARN = 0.5
#: Activation kinds whose flat region is not a saturation (see the module docstring).
NON_SATURATING_KINDS = ("ReLU",)
#: Activation std below this fraction of the input's std: the signal vanishes through the layers.
ACT_STD_VANISHING = 1e-4
#: Update/weight ratio thresholds (healthy is about 1e-3, CS231n).
UPDATE_RATIO_VANISHING, UPDATE_RATIO_LOW, UPDATE_RATIO_HIGH = 1e-6, 1e-5, 1e-1
#: Default number of steps and samples of the overfitting check.
OVERFIT_STEPS, OVERFIT_BATCH = 100, 32
#: The overfitting check passes when the loss reaches this fraction of its start (or accuracy 1).
OVERFIT_LOSS_FRACTION = 0.1
#: A relative loss drop below this over the overfitting run counts as "barely learns".
OVERFIT_MIN_DROP = 0.01

STATUSES = ("PASS", "WARN", "FAIL")


@dataclass
class Check:
    """One check's verdict: ``status`` in PASS/WARN/FAIL, a one-line ``reason`` and ``fix``."""

    name: str
    status: str
    reason: str
    fix: str = ""
    values: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DoctorReport:
    """All checks and the per-layer statistics they used."""

    checks: list[Check]
    stats: list[LayerStats]
    batch_size: int
    num_classes: int

    @property
    def worst(self) -> str:
        return max((c.status for c in self.checks), key=STATUSES.index, default="PASS")

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "worst": self.worst,
            "batch_size": self.batch_size,
            "num_classes": self.num_classes,
            "checks": [c.to_dict() for c in self.checks],
            "layer_stats": [s.to_dict() for s in self.stats],
        }


# ---------------------------------------------------------------------------- model back ends
class Backend:
    """What the checks need from a model: loss, gradient norm, statistics, a training step."""

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    def grad_norm(self, x: np.ndarray, y: np.ndarray) -> float:
        """||dL/dparams|| on (x, y), with Dropout layers in evaluation mode (deterministic)."""
        raise NotImplementedError

    def stats(self, x: np.ndarray, y: np.ndarray) -> list[LayerStats]:
        raise NotImplementedError

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    def copy(self) -> Backend:
        raise NotImplementedError


class NumpyBackend(Backend):
    """A NumPy model, its loss module and ``make_optimizer(params) -> Optimizer``."""

    def __init__(self, model: Module, loss: Module, make_optimizer: Callable[[list[Any]], Any]) -> None:
        self.model, self.loss_fn, self.make_optimizer = model, loss, make_optimizer
        self.optimizer = make_optimizer(list(model.parameters()))

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        with no_grad():
            return float(self.loss_fn(self.model(x), y))

    def grad_norm(self, x: np.ndarray, y: np.ndarray) -> float:
        params = list(self.model.parameters())
        saved = [p.grad for p in params]
        dropouts = [m for m in self.model.modules() if isinstance(m, Dropout) and m.training]
        try:
            for m in dropouts:
                m.eval()
            for p in params:
                p.grad = None
            self.loss_fn(self.model(x), y)
            self.model.backward(self.loss_fn.backward(1.0))
            return math.sqrt(
                sum(float(np.sum(np.square(p.grad, dtype=np.float64))) for p in params if p.grad is not None)
            )
        finally:
            for m in dropouts:
                m.train()
            for p, g in zip(params, saved, strict=True):
                p.grad = g

    def stats(self, x: np.ndarray, y: np.ndarray) -> list[LayerStats]:
        return numpy_layer_stats(self.model, x, y, self.loss_fn, optimizer=self.optimizer)

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        loss = self.loss_fn(self.model(x), y)
        self.model.backward(self.loss_fn.backward(1.0))
        self.optimizer.step()
        self.optimizer.zero_grad()
        return float(loss)

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        with no_grad():
            return float((self.model(x).argmax(axis=1) == y).mean())

    def copy(self) -> NumpyBackend:
        return NumpyBackend(copy.deepcopy(self.model), copy.deepcopy(self.loss_fn), self.make_optimizer)


class TorchBackend(Backend):
    """A torch model, ``loss_fn(output, target)`` and ``make_optimizer(params) -> torch optimizer``."""

    def __init__(
        self, model: Any, loss_fn: Callable[[Any, Any], Any], make_optimizer: Callable[[list[Any]], Any]
    ) -> None:
        self.model, self.loss_fn, self.make_optimizer = model, loss_fn, make_optimizer
        self.optimizer = make_optimizer(list(model.parameters()))

    @staticmethod
    def _t(a: np.ndarray) -> Any:
        import torch

        return torch.as_tensor(np.ascontiguousarray(a))

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        import torch

        with torch.no_grad():
            return float(self.loss_fn(self.model(self._t(x)), self._t(y)))

    def grad_norm(self, x: np.ndarray, y: np.ndarray) -> float:
        import torch

        params = list(self.model.parameters())
        saved = [p.grad for p in params]
        dropouts = [
            m
            for m in self.model.modules()
            if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.training
        ]
        try:
            for m in dropouts:
                m.eval()
            for p in params:
                p.grad = None
            self.loss_fn(self.model(self._t(x)), self._t(y)).backward()
            return math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in params if p.grad is not None))
        finally:
            for m in dropouts:
                m.train()
            for p, g in zip(params, saved, strict=True):
                p.grad = g

    def stats(self, x: np.ndarray, y: np.ndarray) -> list[LayerStats]:
        return torch_layer_stats(self.model, x, y, self.loss_fn, optimizer=self.optimizer)

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(self._t(x)), self._t(y))
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        import torch

        with torch.no_grad():
            return float((self.model(self._t(x)).argmax(dim=1).numpy() == y).mean())

    def copy(self) -> TorchBackend:
        return TorchBackend(copy.deepcopy(self.model), self.loss_fn, self.make_optimizer)


# ---------------------------------------------------------------------------- checks
def check_initial_loss(loss: float, num_classes: int, batch_size: int) -> Check:
    """Loss at init against ln(C)."""
    name = "initial loss"
    expected = math.log(num_classes)
    values = {"loss": loss, "ln_num_classes": expected}
    if not math.isfinite(loss):
        return Check(
            name, "FAIL", f"initial loss is {loss}", "check the inputs and the init for NaN/inf", values
        )
    ratio = loss / expected
    values["ratio"] = ratio
    if batch_size >= SUM_MIN_BATCH and abs(ratio / batch_size - 1) <= SUM_RATIO_TOL:
        return Check(
            name,
            "FAIL",
            f"initial loss {loss:.4g} = {ratio:.3g} x ln({num_classes}) = about batch size {batch_size} x "
            "ln(C): the loss sums over the batch",
            "use mean reduction (--loss_reduction mean)",
            values,
        )
    if abs(ratio - 1) <= INIT_LOSS_TOL:
        return Check(
            name,
            "PASS",
            f"initial loss {loss:.4g} vs ln({num_classes}) = {expected:.4g}: near-uniform predictions",
            "",
            values,
        )
    if ratio < 1:
        return Check(
            name,
            "WARN",
            f"initial loss {loss:.4g} is below ln({num_classes}) = {expected:.4g}: predictions already "
            "informed at init",
            "check that the labels do not leak into the inputs and that the loss is a mean per sample",
            values,
        )
    status = "WARN" if ratio <= INIT_LOSS_FAIL else "FAIL"
    return Check(
        name,
        status,
        f"initial loss {loss:.4g} is {ratio:.3g} x ln({num_classes}) = {expected:.4g}: overconfident random "
        "predictions",
        "shrink the init of the last layer (e.g. --init torch) or normalise the inputs",
        values,
    )


def check_batch_scaling(norms: list[float], repeats: tuple[int, ...] = SCALING_REPEATS) -> Check:
    """Gradient norm for the batch repeated k times: exponent 0 (mean) or 1 (sum)."""
    name = "batch-size scaling"
    values: dict[str, Any] = {"repeats": list(repeats), "grad_norms": norms}
    if not all(math.isfinite(n) and n > 0 for n in norms):
        return Check(
            name,
            "FAIL",
            f"gradient norms {norms} are zero or non-finite",
            "check the non-finite and update checks",
            values,
        )
    e = float(np.polyfit(np.log(repeats), np.log(norms), 1)[0])
    values["exponent"] = e
    desc = ", ".join(f"{n:.3g} at {k}x" for k, n in zip(repeats, norms, strict=True))
    if abs(e) <= SCALING_TOL:
        return Check(
            name, "PASS", f"gradient norm does not grow with the batch ({desc}): mean reduction", "", values
        )
    if abs(e - 1) <= SCALING_TOL:
        return Check(
            name,
            "FAIL",
            f"gradient norm grows with the batch size ({desc}, ~ k^{e:.2f}): the loss sums over the batch",
            "use mean reduction (--loss_reduction mean): with sum the effective learning rate is lr x batch "
            "size",
            values,
        )
    return Check(
        name,
        "WARN",
        f"gradient norm scales as k^{e:.2f} with the batch repeated k times ({desc}); expected k^0 for a "
        "mean",
        "check how the loss is reduced over the batch",
        values,
    )


def check_nonfinite(x: np.ndarray, loss: float, stats: list[LayerStats]) -> Check:
    """NaN or inf anywhere in inputs, loss, activations or weight gradients."""
    name = "non-finite values"
    if not np.isfinite(x).all():
        return Check(name, "FAIL", "the inputs contain NaN or inf", "clean or re-normalise the data")
    if not math.isfinite(loss):
        return Check(
            name, "FAIL", f"the loss is {loss}", "lower the learning rate; check the init and the loss"
        )
    bad = [s.name for s in stats if not s.finite]
    if bad:
        return Check(
            name,
            "FAIL",
            f"NaN or inf in the activations or gradients of {', '.join(bad)}",
            "lower the learning rate; check those layers",
        )
    return Check(name, "PASS", "inputs, loss, activations and gradients are finite")


def check_activations(stats: list[LayerStats], input_std: float) -> Check:
    """Dead units, saturated entries and vanishing signal in the activation layers."""
    name = "activations"
    acts = [s for s in stats if s.is_activation]
    if not acts:
        return Check(name, "PASS", "no activation layers")
    values = {
        s.name: {"dead": s.dead_fraction, "saturated": s.saturated_fraction, "std": s.act_std} for s in acts
    }
    dead = max(acts, key=lambda s: s.dead_fraction or 0.0)
    saturating = [s for s in acts if s.kind not in NON_SATURATING_KINDS] or [LayerStats("-", "-")]
    sat = max(saturating, key=lambda s: s.saturated_fraction or 0.0)
    small = min(acts, key=lambda s: s.act_std if s.act_std is not None else math.inf)
    rel_std = (small.act_std or 0.0) / input_std if input_std > 0 else math.inf
    d, s_frac = dead.dead_fraction or 0.0, sat.saturated_fraction or 0.0
    if d > DEAD_FAIL:
        return Check(
            name,
            "FAIL",
            f"{d:.0%} of the units of {dead.name} ({dead.kind}) are dead on the whole batch",
            "lower the learning rate (--learning_rate) or use ELU (--activation elu) / a smaller init bias",
            values,
        )
    if d > DEAD_WARN:
        return Check(
            name,
            "WARN",
            f"{d:.0%} of the units of {dead.name} ({dead.kind}) are dead on the whole batch",
            "lower the learning rate (--learning_rate) or use ELU (--activation elu)",
            values,
        )
    if s_frac > SATURATED_WARN:
        return Check(
            name,
            "WARN",
            f"{s_frac:.0%} of the outputs of {sat.name} ({sat.kind}) are saturated",
            "normalise the inputs or shrink the init",
            values,
        )
    if rel_std < ACT_STD_VANISHING:
        return Check(
            name,
            "WARN",
            f"the signal vanishes: {small.name} output std {small.act_std:.2g} = {rel_std:.2g} x the input's",
            "use a scaled init (--init kaiming or torch) instead of N(0, 1e-4^2)",
            values,
        )
    return Check(
        name,
        "PASS",
        f"dead units at most {d:.0%}, saturated at most {s_frac:.0%}, smallest std {rel_std:.2g} x the "
        "input's",
        "",
        values,
    )


def check_updates(stats: list[LayerStats]) -> Check:
    """Update/weight ratios of one optimizer step: vanishing, slow, healthy or exploding."""
    name = "updates"
    ws = [s for s in stats if s.update_ratio is not None]
    if not ws:
        return Check(name, "PASS", "no weights to update")
    values = {s.name: {"update_ratio": s.update_ratio, "grad_norm": s.grad_norm} for s in ws}
    lo = min(ws, key=lambda s: s.update_ratio or 0.0)
    hi = max(ws, key=lambda s: s.update_ratio or 0.0)
    r_lo, r_hi = lo.update_ratio or 0.0, hi.update_ratio or 0.0
    if not math.isfinite(r_hi):
        return Check(
            name, "FAIL", f"non-finite update/weight ratio at {hi.name}", "lower the learning rate", values
        )
    if r_lo < UPDATE_RATIO_VANISHING:
        n_van = sum((s.update_ratio or 0.0) < UPDATE_RATIO_VANISHING for s in ws)
        return Check(
            name,
            "FAIL",
            f"vanishing updates: ||dW||/||W|| = {r_lo:.2g} at {lo.name} ({n_van} of {len(ws)} weights below "
            f"{UPDATE_RATIO_VANISHING:g}; healthy ~1e-3)",
            "use a scaled init (--init kaiming) instead of N(0, 1e-4^2) in a deep MLP, fewer layers, or Adam "
            "(--optimizer adam)",
            values,
        )
    if r_hi > UPDATE_RATIO_HIGH:
        return Check(
            name,
            "WARN",
            f"exploding updates: ||dW||/||W|| = {r_hi:.2g} at {hi.name} (healthy ~1e-3): one step rewrites "
            "the weights",
            "lower the learning rate; check the loss reduction (sum multiplies the gradients by the batch "
            "size)",
            values,
        )
    if r_lo < UPDATE_RATIO_LOW:
        return Check(
            name,
            "WARN",
            f"slow updates: ||dW||/||W|| = {r_lo:.2g} at {lo.name} (healthy ~1e-3)",
            "raise the learning rate or use a scaled init",
            values,
        )
    return Check(name, "PASS", f"||dW||/||W|| between {r_lo:.2g} and {r_hi:.2g} (healthy ~1e-3)", "", values)


def check_overfit(losses: list[float], accuracy: float, steps: int, n: int) -> Check:
    """Whether ``steps`` optimizer steps fit a batch of ``n`` samples."""
    name = "overfit one batch"
    first, last = losses[0], losses[-1]
    values = {"steps": steps, "samples": n, "loss_start": first, "loss_end": last, "accuracy": accuracy}
    if not all(math.isfinite(v) for v in losses):
        step = next(i for i, v in enumerate(losses) if not math.isfinite(v)) + 1
        return Check(
            name,
            "FAIL",
            f"the loss became non-finite at step {step} of {steps} on {n} samples",
            "lower the learning rate",
            values,
        )
    if accuracy == 1.0 or last <= OVERFIT_LOSS_FRACTION * first:
        return Check(
            name,
            "PASS",
            f"fits {n} samples in {steps} steps (loss {first:.4g} -> {last:.4g}, accuracy {accuracy:.0%})",
            "",
            values,
        )
    if last >= first:
        return Check(
            name,
            "FAIL",
            f"the loss rose on {n} samples in {steps} steps ({first:.4g} -> {last:.4g})",
            "lower the learning rate; check the backward pass (backproplab parity)",
            values,
        )
    drop = 1 - last / first
    what = "barely learns" if drop < OVERFIT_MIN_DROP else "does not fit the batch yet"
    return Check(
        name,
        "WARN",
        f"{what}: loss {first:.4g} -> {last:.4g} ({drop:.1%} lower, accuracy {accuracy:.0%}) on {n} samples "
        f"in {steps} steps",
        "raise the learning rate, use Adam (--optimizer adam) or a scaled init (--init kaiming)",
        values,
    )


# ---------------------------------------------------------------------------- the whole run
def diagnose(
    backend: Backend,
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_classes: int,
    batch_size: int,
    overfit_steps: int = OVERFIT_STEPS,
    overfit_batch: int = OVERFIT_BATCH,
) -> DoctorReport:
    """Run every check on the first ``batch_size`` samples of (x, y) (see the module docstring).

    The model is not changed: the overfitting run trains a copy. NumPy's overflow and invalid-value
    warnings are silenced: non-finite values are what the checks report.
    """
    with np.errstate(all="ignore"):
        return _diagnose(backend, x, y, num_classes, batch_size, overfit_steps, overfit_batch)


def _diagnose(
    backend: Backend,
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    batch_size: int,
    overfit_steps: int,
    overfit_batch: int,
) -> DoctorReport:
    b = min(batch_size, len(x))
    xb, yb = x[:b], y[:b]  # (b, ...), (b,)
    loss0 = backend.loss(xb, yb)
    stats = backend.stats(xb, yb)
    checks = [check_initial_loss(loss0, num_classes, b), check_nonfinite(xb, loss0, stats)]
    norms = [backend.grad_norm(np.concatenate([xb] * k), np.concatenate([yb] * k)) for k in SCALING_REPEATS]
    checks.append(check_batch_scaling(norms))
    checks.append(check_activations(stats, float(np.std(xb, dtype=np.float64))))
    checks.append(check_updates(stats))
    m = min(overfit_batch, len(x))
    clone = backend.copy()
    xo, yo = x[:m], y[:m]  # (m, ...), (m,)
    losses = [clone.train_step(xo, yo) for _ in range(overfit_steps)]
    losses.append(clone.loss(xo, yo))
    checks.append(check_overfit(losses, clone.accuracy(xo, yo), overfit_steps, m))
    return DoctorReport(checks, stats, b, num_classes)


def format_report(report: DoctorReport) -> str:
    """One line per check (status, name, reason) and an indented fix line when it is not PASS."""
    lines = [
        f"doctor: {len(report.checks)} checks on a batch of {report.batch_size} ({report.num_classes} "
        "classes)"
    ]
    for c in report.checks:
        lines.append(f"{c.status:<4}  {c.name}: {c.reason}")
        if c.status != "PASS" and c.fix:
            lines.append(f"      fix: {c.fix}")
    lines.append("")
    lines.append(
        f"{'layer':<12} {'kind':<8} {'act mean':>9} {'act std':>9} {'dead':>6} {'sat':>6} {'grad norm':>10} "
        f"{'upd/weight':>10}"
    )
    for s in report.stats:

        def f(v: float | None, fmt: str = ".3g") -> str:
            return "-" if v is None else format(v, fmt)

        lines.append(
            f"{s.name:<12} {s.kind:<8} {f(s.act_mean):>9} {f(s.act_std):>9} {f(s.dead_fraction, '.0%'):>6} "
            f"{f(s.saturated_fraction, '.0%'):>6} {f(s.grad_norm):>10} {f(s.update_ratio):>10}"
        )
    lines.append(f"verdict: {report.worst}")
    return "\n".join(lines)


#: A panel of positive values gets a log axis when its largest / smallest exceeds this.
LOG_PANEL_RANGE = 10.0


def _bars(ax: Any, labels: list[str], values: list[float | None], title: str, color: str = "C0") -> None:
    """Bars of ``values`` per layer: a log axis when they span decades, a value of exactly 0 drawn as
    "0" on the axis (no bar at 1e-30), a missing one as "n/a", and "none" when there is nothing."""
    ax.set_title(title, fontsize=10)
    if not labels:
        ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes, fontsize=11)
        ax.set_xticks([])
        return
    xs = np.arange(len(labels))
    positive = [v for v in values if v is not None and v > 0]
    log = bool(positive) and max(positive) / min(positive) > LOG_PANEL_RANGE
    ax.bar(xs, [v if v is not None and v > 0 else 0.0 for v in values], color=color)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(min(positive) / 3, max(positive) * 3)
    for xi, v in zip(xs, values, strict=True):
        if v is None or v <= 0:
            text = "n/a" if v is None else "0"
            ax.annotate(text, (xi, 0), xycoords=("data", "axes fraction"), xytext=(0, 3),
                        textcoords="offset points", ha="center", va="bottom", fontsize=9, color="black")  # fmt: skip
    ax.set_xticks(xs, labels, fontsize=7)
    ax.set_ylabel("log scale" if log else "", fontsize=8)


def _threshold(ax: Any, level: float, color: str, label: str) -> None:
    ax.axhline(level, color=color, linestyle="--", linewidth=0.9, label=f"{label} ({level:g})")


def plot_stats(stats: list[LayerStats], path: str | os.PathLike[str], title: str = "") -> Path:
    """Draw the per-layer statistics in four panels and write the picture atomically to ``path``.

    Panels: layer outputs' std and |mean|; dead and saturated fractions of the activation layers (with
    the warning thresholds); weight-gradient norms; update / weight ratios (with the vanishing, healthy
    and exploding levels). See :func:`_bars` for axes and zeros.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acts = [s for s in stats if s.act_mean is not None]
    ws = [s for s in stats if s.weight_norm is not None]
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    _bars(
        axes[0, 0],
        [f"{s.name}\n{s.kind}" for s in acts],
        [s.act_std for s in acts],
        "layer outputs: std (dots: |mean|)",
    )
    if acts:
        means = [abs(s.act_mean or 0.0) for s in acts]
        axes[0, 0].plot(
            np.arange(len(acts)), [m if m > 0 else np.nan for m in means], "o", color="C1", label="|mean|"
        )
        axes[0, 0].legend(fontsize=8)
    ax = axes[0, 1]
    act_only = [s for s in acts if s.is_activation]
    ax.set_title("activations: dead / saturated fraction", fontsize=10)
    if act_only:
        xs = np.arange(len(act_only))
        ax.bar(xs - 0.2, [s.dead_fraction for s in act_only], width=0.4, label="dead units")
        ax.bar(xs + 0.2, [s.saturated_fraction for s in act_only], width=0.4, label="saturated entries")
        ax.set_xticks(xs, [s.name for s in act_only], fontsize=7)
        _threshold(ax, DEAD_WARN, "orange", "dead: warn")
        _threshold(ax, SATURATED_WARN, "red", "saturated: warn")
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "none (no activation layers)", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
    names = [s.name for s in ws]
    _bars(axes[1, 0], names, [s.grad_norm for s in ws], "weight gradient norm ||dL/dW||", "C2")
    _bars(axes[1, 1], names, [s.update_ratio for s in ws], "update / weight ratio ||dW|| / ||W||", "C2")
    if ws:
        for level, color, label in (
            (UPDATE_RATIO_VANISHING, "red", "vanishing"),
            (1e-3, "green", "healthy ~"),
            (UPDATE_RATIO_HIGH, "red", "exploding"),
        ):
            _threshold(axes[1, 1], level, color, label)
        axes[1, 1].set_yscale("log")  # the thresholds span five decades
        axes[1, 1].set_ylim(
            UPDATE_RATIO_VANISHING / 10, max([UPDATE_RATIO_HIGH * 10, *(s.update_ratio or 0 for s in ws)])
        )
        axes[1, 1].set_ylabel("log scale", fontsize=8)
        axes[1, 1].legend(fontsize=8)
    for a in axes.ravel():
        a.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)
