"""Every case of the gradcheck table (``backproplab.verify.registry.CASES``): float64 against central
differences, float32 against the torch twin (nn_checks), and the Module contract of every module: no
backward without a forward, one backward per forward, nothing cached under no_grad, and a wrong
``dout`` shape in backward is the same ShapeError as a wrong input shape in forward."""

from __future__ import annotations

import inspect
import re
from typing import Any

import numpy as np
import pytest
from nn_checks import check_numeric, check_twin

from backproplab import nn
from backproplab.errors import ShapeError
from backproplab.verify import CASES, GradcheckCase, module_names
from backproplab.verify.registry import case_rng

CASE_PARAMS = [pytest.param(c, id=c.name) for c in CASES]


def test_every_nn_module_class_has_a_table_case() -> None:
    classes = {
        name
        for name, obj in vars(nn).items()
        if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj is not nn.Module
    }
    assert classes, "no Module classes found in backproplab.nn"
    missing = classes - set(module_names())
    assert not missing, f"add a GradcheckCase to backproplab.verify.registry.CASES for {sorted(missing)}"


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_case_matches_central_differences(case: GradcheckCase) -> None:
    # the slow whole-ConvNet case may be "suspect" on elements near zero (see SUSPECT_MEANING)
    check_numeric(case, seed=0, require_good=not case.slow)


@pytest.mark.torch
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_case_matches_its_torch_twin(case: GradcheckCase) -> None:
    check_twin(case, seed=0)


# ------------------------------------------------------------------------------------ the contract
def _build(case: GradcheckCase) -> tuple[nn.Module, tuple[Any, ...]]:
    """The case's module in float64 and the arguments of one forward call."""
    rng = case_rng(0, case.name)
    module = case.make_module(rng).double()
    args: tuple[Any, ...] = (case.make_input(rng),)
    if case.make_target is not None:
        args = (*args, case.make_target(rng))
    if case.before_forward is not None:
        case.before_forward(module)
    return module, args


def _dout(out: Any) -> Any:
    return 1.0 if np.ndim(out) == 0 else np.ones_like(out)


def _first_to_backward(module: nn.Module) -> str:
    """The class whose backward runs first (and so reports a missing forward): a container's last child."""
    while not isinstance(module, nn.Residual) and list(module.children()):
        module = list(module.children())[-1]
    return type(module).__name__


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_backward_without_forward_names_the_module(case: GradcheckCase) -> None:
    module, _ = _build(case)
    with pytest.raises(RuntimeError, match="backward called without a forward") as info:
        module.backward(np.ones((2, 2)))
    assert f"{_first_to_backward(module)}.backward" in str(info.value)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_second_backward_raises(case: GradcheckCase) -> None:
    module, args = _build(case)
    out = module(*args)
    module.backward(_dout(out))
    with pytest.raises(RuntimeError, match="without a forward"):
        module.backward(_dout(out))


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_no_grad_forward_caches_nothing_and_gives_the_same_output(case: GradcheckCase) -> None:
    module, args = _build(case)
    out = module(*args)
    module.backward(_dout(out))
    with nn.no_grad():
        assert not nn.is_grad_enabled()
        if case.before_forward is not None:
            case.before_forward(module)
        out2 = module(*args)
    assert nn.is_grad_enabled()
    np.testing.assert_array_equal(out2, out)
    assert all(m._cache is None for m in module.modules())
    with pytest.raises(RuntimeError, match="without a forward"):
        module.backward(_dout(out))


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_wrong_dout_shape_is_a_shape_error_naming_both_shapes(case: GradcheckCase) -> None:
    module, args = _build(case)
    out = module(*args)
    shape = np.shape(out)
    bad = np.ones((2,)) if not shape else np.ones((*shape[:-1], shape[-1] + 1))
    expected = re.escape(f"expects dout of shape {shape}")
    with pytest.raises(ShapeError, match=rf"{expected}.*got shape {re.escape(str(bad.shape))}"):
        module.backward(bad)
    if shape:  # not an array at all
        module(*args)
        with pytest.raises(ShapeError, match=rf"{expected}.*got a list"):
            module.backward(np.ones(shape).tolist())


def test_no_grad_restores_state_after_an_exception() -> None:
    with pytest.raises(KeyError), nn.no_grad():
        raise KeyError("x")
    assert nn.is_grad_enabled()


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_every_layer_with_parameters_has_reset_parameters(case: GradcheckCase) -> None:
    """reset_parameters(rng) puts back the layer's init: the same as a fresh layer of the same seed."""
    module, _ = _build(case)
    for name, layer in module.named_modules():
        if not layer._parameters:
            continue
        assert callable(getattr(layer, "reset_parameters", None)), f"{name or 'root'}: no reset_parameters"
        layer.reset_parameters(np.random.default_rng(5))
        again = {k: v.copy() for k, v in layer.state_dict().items()}
        layer.reset_parameters(np.random.default_rng(5))
        for key, value in layer.state_dict().items():
            np.testing.assert_array_equal(value, again[key], err_msg=f"{name}.{key}")
