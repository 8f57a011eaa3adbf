"""The one check of a NumPy module, over a case of the gradcheck table (``backproplab.verify.registry``).

In the spirit of tinygrad's ``helper_test_op``: a test describes a module configuration once, as a
:class:`~backproplab.verify.registry.GradcheckCase` (a module factory and an input factory, parameters
random by the table's conventions), either one of :data:`~backproplab.verify.registry.CASES` or one
built from a hypothesis draw, and hands it to

* :func:`check_numeric`: float64, the analytic gradients of the input and of every parameter against
  central differences (:func:`backproplab.verify.gradcheck`, a random upstream gradient), within
  ``TOLERANCES["numeric"]``;
* :func:`check_twin`: float32 (or float64), forward, input gradient, every parameter gradient and every
  buffer (running statistics) against the module's PyTorch twin
  (:func:`backproplab.verify.twin.build_twin`, weights copied), for the same random upstream gradient,
  within the case's named tolerance (:data:`TWIN_TOLERANCE`).

Both draw from the case's own generator (``case_rng(seed, case.name)``), so they see the same module,
input and upstream gradient. :data:`CHECKS` parametrizes a test over both; the torch one carries the
``torch`` marker and imports torch only when it runs, so ``pytest -m "not torch" tests/nn`` runs the
engine's checks where torch is not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import settings

from backproplab import nn
from backproplab.verify import GradcheckCase, GradcheckReport, run_case
from backproplab.verify.registry import case_rng, randomized

#: Hypothesis budget of the shape-sweeping tests: small, as the suite must stay fast on 2 cores.
SHAPE_SETTINGS = settings(max_examples=25, deadline=None)


@dataclass(frozen=True)
class Tolerance:
    """|actual - expected| <= atol' + rtol * |expected| element-wise, where atol' is ``atol``, times
    max(``min_scale``, the largest |expected| of the tensor, or ``scale`` when given) if ``relative_atol``."""

    rtol: float
    atol: float
    relative_atol: bool = False
    min_scale: float = 0.0

    def assert_close(self, actual: Any, expected: Any, what: str, scale: float | None = None) -> None:
        actual, expected = np.asarray(actual), np.asarray(expected)
        assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
        atol = self.atol
        if self.relative_atol:
            size = float(np.max(np.abs(expected), initial=0.0)) if scale is None else scale
            atol *= max(self.min_scale, size)
        np.testing.assert_allclose(actual, expected, rtol=self.rtol, atol=atol + TINY, err_msg=what)


#: Absolute floor of every comparison (an all-zero reference).
TINY = 1e-30

#: Every tolerance of the engine's tests, by name.
TOLERANCES: dict[str, Tolerance] = {
    # float64 analytic gradient against float64 central differences (eps = 1e-6): their rounding noise
    # is ~1e-10 for O(1) outputs; a wrong backward is off by the size of the gradient itself
    "numeric": Tolerance(rtol=1e-6, atol=1e-8),
    # float32 against torch float32, element-wise layers, Linear, the MLP and the losses: the same
    # formulas, different summation orders
    "float32": Tolerance(rtol=1e-5, atol=1e-6),
    # float32 against torch float32 for layers that sum many products or normalise (Conv2d, pooling,
    # BatchNorm, LayerNorm): atol relative to the tensor's largest value
    "float32_sums": Tolerance(rtol=1e-4, atol=1e-5, relative_atol=True),
    # LayerNorm in float32: ill-conditioned groups (nearly equal values) lose digits in proportion to
    # the gradient's size, so atol is relative to max(1, largest value)
    "float32_layernorm": Tolerance(rtol=1e-4, atol=2e-5, relative_atol=True, min_scale=1.0),
    # the whole ConvNet in float32: 13 convolutions and 12 BatchNorms, some over 8 values per channel
    # at batch 2, amplify float32 rounding to ~1e-3 of a tensor's largest value
    "float32_network": Tolerance(rtol=1e-2, atol=5e-3, relative_atol=True),
    # running statistics (buffers) of one layer after float32 steps against torch's
    "float32_running_stats": Tolerance(rtol=1e-5, atol=0.0),
    # float64 twins, one block: the same arithmetic up to summation order
    "float64_layer": Tolerance(rtol=1e-10, atol=1e-12),
    # float64 twins, the whole ConvNet
    "float64_network": Tolerance(rtol=1e-9, atol=1e-10, relative_atol=True),
    # optimizer trajectories in float64 (the same formulas in the same order, a few roundings a step)
    "float64_trajectory": Tolerance(rtol=1e-12, atol=1e-14),
    # the same in float32 (10 steps of float32 updates, differently fused)
    "float32_trajectory": Tolerance(rtol=1e-5, atol=1e-6),
    # two float64 computations of the same gradient by different formulas (composed vs fused)
    "composition": Tolerance(rtol=1e-10, atol=1e-14),
}

#: The twin tolerance of a module class (by the case's ``module`` name); "float32" for the others.
TWIN_TOLERANCE: dict[str, str] = {
    "Conv2d": "float32_sums",
    "MaxPool2d": "float32_sums",
    "AdaptiveAvgPool2d": "float32_sums",
    "GlobalAvgPool2d": "float32_sums",
    "BatchNorm1d": "float32_sums",
    "BatchNorm2d": "float32_sums",
    "PreActBlock": "float32_sums",
    "LayerNorm": "float32_layernorm",
    "ConvNet": "float32_network",
}
#: In float64 the twins agree to round-off.
TWIN_TOLERANCE_FLOAT64: dict[str, str] = {"ConvNet": "float64_network"}


def assert_matches_numeric(report: GradcheckReport, *, require_good: bool = True) -> None:
    """Every gradient of ``report`` equals its central differences within ``TOLERANCES["numeric"]``;
    with ``require_good`` each tensor's verdict must be "good" (max rel error < 1e-7) as well."""
    assert report.checks, f"{report.name}: nothing was checked"
    for check in report.checks:
        assert check.verdict != "wrong", f"{report.name}: {check.describe_worst()}"
        if require_good:
            assert check.verdict == "good", f"{report.name}: {check.describe_worst()}"
        assert check.analytic_grad is not None and check.numeric_grad is not None
        TOLERANCES["numeric"].assert_close(
            check.analytic_grad, check.numeric_grad, f"{report.name}: {check.tensor}"
        )


def check_numeric(
    case: GradcheckCase,
    seed: int = 0,
    *,
    tensors: list[str] | None = None,
    require_good: bool = False,
    **_: Any,
) -> GradcheckReport:
    """Check ``case`` in float64 against central differences; ``tensors`` (if given) is the exact list
    of tensors that must be checked ("input", then the parameters in registration order)."""
    report = run_case(case, seed)
    if tensors is not None:
        assert [c.tensor for c in report.checks] == tensors
    assert_matches_numeric(report, require_good=require_good)
    return report


# ------------------------------------------------------------------------------------- the torch twin
def _is_loss(module: nn.Module) -> bool:
    return isinstance(module, nn.CrossEntropy | nn.SoftmaxCrossEntropy)


def _loss_reference(module: nn.Module, scores: Any, target: np.ndarray) -> Any:
    """torch's value of the loss ``module`` at ``scores`` (a tensor) and ``target``."""
    import torch
    import torch.nn.functional as F

    red = module.reduction  # type: ignore[attr-defined]
    index = np.issubdtype(target.dtype, np.integer)
    t = torch.from_numpy(np.ascontiguousarray(target))  # float targets are in the scores' dtype already
    if isinstance(module, nn.SoftmaxCrossEntropy):
        return F.cross_entropy(scores, t, reduction=red, label_smoothing=module.label_smoothing)
    if index:
        return F.nll_loss(torch.log(scores), t, reduction=red)
    total = -(t * torch.log(scores)).sum()
    return total / scores.shape[0] if red == "mean" else total


def _share_dropout_masks(module: nn.Module, twin: Any) -> Any:
    """Replace every training-mode torch dropout of ``twin`` by one with the NumPy layer's mask (read
    from its cache after the forward); returns the twin (itself replaced if it is the dropout)."""
    from backproplab.verify.twin import FixedMaskDropout, replace_module

    for name, m in module.named_modules():
        if isinstance(m, nn.Dropout) and m.training and m.p > 0:
            assert m._cache is not None, "the NumPy forward must run first"
            fixed = FixedMaskDropout(m._cache[0] != 0, m.p)
            if not name:
                return fixed
            replace_module(twin, name, fixed)
    return twin


def channels_last(x: np.ndarray) -> np.ndarray:
    """The same NCHW array in channels-last memory (what the layers produce inside the ConvNet)."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def check_twin(
    case: GradcheckCase,
    seed: int = 0,
    *,
    dtype: type = np.float32,
    nhwc_memory: bool = False,
    tolerance: str | None = None,
    buffer_tolerance: str | None = None,
    grad_scale: str = "tensor",
    exact_output: bool = False,
    **_: Any,
) -> None:
    """Compare ``case`` with its PyTorch twin in ``dtype``: output (or loss), input gradient, parameter
    gradients and buffers after the step, for the same random upstream gradient.

    ``nhwc_memory`` feeds 4-D inputs and upstream gradients in channels-last memory. ``grad_scale="model"``
    scales the absolute tolerance of every parameter gradient by the largest gradient of the whole
    model (the biases of convolutions that feed a BatchNorm have a zero true gradient: both sides give
    round-off there). ``buffer_tolerance`` names the tolerance of the buffers (default in float32:
    "float32_running_stats", one layer's rounding);
    ``exact_output`` asks for a bit-equal output (a max is exact).
    """
    import torch

    from backproplab.verify.twin import build_twin

    rng = case_rng(seed, case.name)
    module = case.make_module(rng).to(dtype)
    x = np.asarray(case.make_input(rng), dtype=dtype)
    target = case.make_target(rng) if case.make_target is not None else None
    if target is not None and np.issubdtype(target.dtype, np.floating):
        target = target.astype(dtype)
    table = TWIN_TOLERANCE_FLOAT64 if dtype == np.float64 else TWIN_TOLERANCE
    default = "float64_layer" if dtype == np.float64 else "float32"
    tol = TOLERANCES[tolerance or table.get(case.module, default)]
    layout: Callable[[np.ndarray], np.ndarray] = channels_last if nhwc_memory and x.ndim == 4 else lambda a: a

    twin = None if _is_loss(module) else build_twin(module)  # before the forward: BatchNorm updates buffers
    if case.before_forward is not None:
        case.before_forward(module)
    raw = module(layout(x)) if target is None else module(layout(x), target)
    if target is not None:
        assert isinstance(raw, np.floating), f"{case.name}: a loss is a NumPy scalar, got {type(raw)}"
    y = np.asarray(raw)
    if twin is not None:
        twin = _share_dropout_masks(module, twin)  # while the NumPy layers hold their masks
    assert y.dtype == dtype, f"{case.name}: output dtype {y.dtype}"
    g = np.asarray(rng.normal(size=y.shape), dtype=dtype)  # the upstream gradient, as gradcheck draws it
    dx = module.backward(layout(g) if g.ndim == 4 else g) if target is None else module.backward(g[()])

    xt = torch.from_numpy(x.copy()).requires_grad_()
    if twin is None:
        yt = _loss_reference(module, xt, target)  # type: ignore[arg-type]
    else:
        yt = twin(xt)
    yt.backward(torch.from_numpy(g.copy()))

    tol.assert_close(y, yt.detach().numpy(), f"{case.name}: output")
    if exact_output:
        np.testing.assert_array_equal(y, yt.detach().numpy(), err_msg=f"{case.name}: output")
    assert xt.grad is not None
    assert dx is not None and np.asarray(dx).dtype == dtype, f"{case.name}: input gradient dtype"
    tol.assert_close(dx, xt.grad.numpy(), f"{case.name}: input gradient")
    if twin is None:
        return
    tparams = dict(twin.named_parameters())
    grads = dict(module.named_parameters())
    assert list(grads) == list(tparams), f"{case.name}: parameter names"
    scale = None
    if grad_scale == "model" and tparams:
        scale = max(float(p.grad.abs().max()) for p in tparams.values() if p.grad is not None)
    for name, p in grads.items():
        tgrad = tparams[name].grad
        assert p.grad is not None and tgrad is not None, f"{case.name}: {name} got no gradient"
        assert p.grad.dtype == dtype, f"{case.name}: {name} gradient dtype"
        tol.assert_close(p.grad, tgrad.numpy(), f"{case.name}: {name} gradient", scale)
    tstate = twin.state_dict()
    if buffer_tolerance is None:
        buffer_tolerance = "float32_running_stats" if dtype == np.float32 else table.get(case.module, default)
    btol = TOLERANCES[buffer_tolerance]
    for key, value in module.named_buffers():  # running statistics after the step
        if np.issubdtype(np.asarray(value).dtype, np.integer):
            assert int(value) == int(tstate[key]), f"{case.name}: {key}"
        else:
            btol.assert_close(value, tstate[key].numpy(), f"{case.name}: {key}")


#: Parametrize a test over both checks: ``@pytest.mark.parametrize("check", CHECKS)``, then
#: ``check(case, seed, ...)`` (each takes the other's keywords and ignores them).
CHECKS = [
    pytest.param(check_numeric, id="float64-numeric"),
    pytest.param(check_twin, id="float32-torch", marks=pytest.mark.torch),
]


def conv_case(case: dict[str, Any], algorithm: str = "auto") -> GradcheckCase:
    """A drawn Conv2d geometry (``c_in``, ``c_out``, ``kernel``, ``stride``, ``padding``, ``bias``,
    ``n``, ``h``, ``w``; kernel 3, stride 1 where absent) as a gradcheck case: random weights and
    bias, N(0, 1) input, computed by ``algorithm``."""
    return GradcheckCase(
        "Conv2d",
        "Conv2d",
        lambda rng: randomized(
            nn.Conv2d(
                case["c_in"],
                case["c_out"],
                case.get("kernel", 3),
                case.get("stride", 1),
                case["padding"],
                case["bias"],
                rng=rng,
                algorithm=algorithm,
            ),
            rng,
        ),
        lambda rng: rng.normal(size=(case["n"], case["c_in"], case["h"], case["w"])),
    )
