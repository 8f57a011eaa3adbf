"""The doctor's checks, each a function of measured numbers (losses, gradient norms, per-layer
statistics) to a :class:`Check`. :func:`~backproplab.verify.doctor.diagnose` runs them, on one batch
of a NumPy or PyTorch model; each gives
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

"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from backproplab.instrument.layer_stats import LayerStats

#: Initial loss within this relative distance of ln(C) passes (a kaiming-initialised last layer gives
#: logits of std ~1.4, a loss of 1.3 to 1.8 x ln(C) depending on the draw (measured on a template
#: MLP over four seeds: 1.33 to 1.73): slightly overconfident, no reason to warn).
INIT_LOSS_TOL = 1.0
#: Below ln(C), an initial loss passes within this relative distance only (a random classifier
#: cannot do much better than uniform: far below means the loss or the labels are off).
INIT_LOSS_LOW_TOL = 0.5
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
    if 1 - INIT_LOSS_LOW_TOL <= ratio <= 1 + INIT_LOSS_TOL:
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
