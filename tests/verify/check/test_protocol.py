"""The one view of a user's layer: adapters for the formats students write."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from backproplab import nn
from backproplab.errors import ShapeError
from backproplab.verify.check import FAIL, PASS, layer_rows
from backproplab.verify.protocol import kind_from_name, layers_of, view_of
from backproplab.verify.usercode import run_check

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    ("name", "kind"),
    [("LinearModule", "linear"), ("ELUModule", "elu"), ("RELUModule", "relu"), ("LeakyReLU", "leaky_relu"),
     ("SoftMaxModule", "softmax"), ("CrossEntropyModule", "loss"), ("CustomLayerNormAutograd", "layernorm"),
     ("BatchNorm1d", "batchnorm"), ("Conv2d", "conv2d"), ("MaxPool2d", "maxpool2d"), ("Affine", "linear"),
     ("GELU", "other"), ("Helper", "other")],
)  # fmt: skip
def test_kind_from_name(name: str, kind: str) -> None:
    assert kind_from_name(name) == kind


def test_class_layers_with_attribute_parameters_pass() -> None:
    report = run_check(FIXTURES / "classes")
    assert {f.split(" ")[0] for f in report.found} == {"Affine", "Tanh", "Sigmoid"}  # Helper is not a layer
    assert report.ok and all(r.status == PASS for r in report.rows), [
        r for r in report.rows if r.status != PASS
    ]
    names = {r.check for r in report.rows if r.module == "Affine"}
    assert {"gradient check: W", "gradient check: b", "weight grad vs PyTorch"} <= names


@pytest.mark.parametrize(
    ("old", "new", "module", "hint"),
    [
        ("return dout * (1 - self.y**2)", "return dout * (1 - self.y)", "Tanh", "1 - y where the derivative is 1 - y^2"),
        ("return dout * self.y * (1 - self.y)", "return dout * self.y", "Sigmoid", "the factor (1 - y)"),
    ],
)  # fmt: skip
def test_activation_backward_mistakes_in_class_layers_are_named(
    planted: Callable[..., Path], old: str, new: str, module: str, hint: str
) -> None:
    fails = [
        r
        for r in run_check(planted("classes", "my_layers.py", old, new), only=module).rows
        if r.status == FAIL
    ]
    assert any(r.check == "input grad vs PyTorch" and hint in r.detail for r in fails), [
        (r.check, r.detail) for r in fails
    ]


def test_transposed_weight_gradient_in_a_class_layer_is_named(planted: Callable[..., Path]) -> None:
    folder = planted("classes", "my_layers.py", "self.dW = self.x.T @ dout", "self.dW = (self.x.T @ dout).T")
    fails = [r for r in run_check(folder, only="Affine").rows if r.status == FAIL]
    assert any("shape" in r.detail for r in fails), fails


def test_explicit_parameter_mapping() -> None:
    class Scale:
        def __init__(self) -> None:
            self.gain = np.ones(4)

        def forward(self, x: np.ndarray) -> np.ndarray:
            self.x = x
            return x * self.gain

        def backward(self, dout: np.ndarray) -> np.ndarray:
            self.d_gain = (dout * self.x).sum(axis=0)
            return dout * self.gain

    view = view_of(Scale(), param_map={"weight": ("gain", "d_gain")})
    assert [(p.name, p.torch_name) for p in view.params] == [("gain", "weight")]
    rows = layer_rows(
        lambda: view_of(Scale(), param_map={"weight": ("gain", "d_gain")}),
        lambda r: r.normal(size=(3, 4)),
        np.random.default_rng(0),
    )
    grad = [r for r in rows if r.check.startswith("gradient check")]
    assert [r.check for r in grad] == ["gradient check: input", "gradient check: gain"]
    assert all(r.status == PASS for r in grad)
    assert any("no PyTorch reference" in r.detail for r in rows)  # kind "other": gradient check only
    with pytest.raises(ShapeError, match="no array attribute 'scale'"):
        view_of(Scale(), param_map={"weight": ("scale", "d_scale")})


def test_backproplab_module_and_plain_object_views() -> None:
    lin = nn.Linear(3, 2, rng=np.random.default_rng(0)).to(np.float64)
    v = view_of(lin)
    assert v.kind == "linear" and [p.torch_name for p in v.params] == ["weight", "bias"]
    rows = layer_rows(
        lambda: view_of(nn.Linear(5, 3, rng=np.random.default_rng(0)).to(np.float64)),
        lambda r: r.normal(size=(4, 5)),
        np.random.default_rng(0),
    )
    assert all(r.status == PASS for r in rows), [r for r in rows if r.status != PASS]
    with pytest.raises(ShapeError, match="has no backward"):
        view_of(object.__new__(type("NoBackward", (), {"forward": lambda self, x: x})))


def test_layers_of_skips_the_loss() -> None:
    class Layer:
        def forward(self, x: np.ndarray) -> np.ndarray:
            return x

        def backward(self, d: np.ndarray) -> np.ndarray:
            return d

    class CrossEntropyModule:
        def forward(self, x: np.ndarray, y: np.ndarray) -> float:
            return 0.0

        def backward(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return x

    class Model:
        def __init__(self) -> None:
            self.a, self.b, self.loss = Layer(), Layer(), CrossEntropyModule()

    m = Model()
    assert layers_of(m) == [m.a, m.b]


def test_gradcheck_takes_the_templates_dict_format() -> None:
    """``gradcheck`` on the practical's own module format: ``params``/``grads`` dicts of plain arrays
    with a wrong bias gradient found and the module left unchanged; float32 is refused, naming it."""
    import sys

    from backproplab.verify.gradcheck import gradcheck

    sys.modules.pop("modules", None)  # another test's "modules" (a user folder) must not stand in
    sys.path.insert(0, str(FIXTURES / "template"))
    try:
        import modules
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(0)
    layer = modules.LinearModule(5, 3)
    layer.params["weight"] = rng.normal(size=(3, 5))
    before = layer.params["weight"].copy()
    report = gradcheck(layer, rng.normal(size=(4, 5)), rng=rng)
    assert [c.tensor for c in report.checks] == ["input", "params['weight']", "params['bias']"]
    assert report.ok and report.max_rel_error < 1e-6
    np.testing.assert_array_equal(layer.params["weight"], before)

    class HalfBias(modules.LinearModule):
        def backward(self, dout: np.ndarray) -> np.ndarray:
            dx = super().backward(dout)
            self.grads["bias"] = self.grads["bias"] / 2
            return dx

    bad = gradcheck(HalfBias(5, 3), rng.normal(size=(4, 5)), rng=rng)
    assert not bad.ok and bad["params['bias']"].verdict == "wrong"
    assert "half" in bad["params['bias']"].note
    layer.params["weight"] = layer.params["weight"].astype(np.float32)
    with pytest.raises(ShapeError, match=r"params\['weight'\]. of LinearModule is float32"):
        gradcheck(layer, rng.normal(size=(4, 5)), rng=rng)


def test_class_conv_and_pool_layers_are_built_with_their_settings() -> None:
    """Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=1) and MaxPool2d(kernel_size):
    built by argument name, checked against torch layers with the same padding and window."""
    report = run_check(FIXTURES / "conv_classes")
    assert {f.split(" ")[0] for f in report.found} == {"Conv2d", "MaxPool2d"}
    assert report.ok and all(r.status == PASS for r in report.rows), [
        (r.module, r.check, r.detail) for r in report.rows if r.status != PASS
    ]


@pytest.mark.parametrize(
    ("old", "new", "module", "check", "hint"),
    [
        ("np.tensordot(patch, self.W,", "np.tensordot(patch, self.W[:, :, ::-1, ::-1],",
         "Conv2d", "output vs PyTorch", "kernel rotated by 180 degrees"),
        ("m = win == win.max(axis=(2, 3), keepdims=True)", "m = np.ones_like(win)",
         "MaxPool2d", "input grad vs PyTorch", "to every position of its window"),
    ],
)  # fmt: skip
def test_planted_conv_and_pool_bugs_are_named(
    planted: Callable[..., Path], old: str, new: str, module: str, check: str, hint: str
) -> None:
    folder = planted("conv_classes", "conv_layers.py", old, new)
    fails = [r for r in run_check(folder, only=module).rows if r.status == FAIL]
    assert any(r.check == check and hint in r.detail for r in fails), [(r.check, r.detail) for r in fails]


def test_layers_built_from_arrays_and_a_caching_loss_pass() -> None:
    """Affine(W, b) gets arrays; SoftmaxWithLoss (forward(x, t), backward(dout=1)) is a loss on
    logits; its log(p + 1e-7) is exact except for predictions this wrong: a WARN, not a FAIL."""
    report = run_check(FIXTURES / "array_classes")
    assert report.found == ["Affine (linear)", "SoftmaxWithLoss (loss)"]
    bad = [(r.check, r.detail) for r in report.rows if r.status != PASS]
    assert report.ok and len(bad) == 1 and bad[0][0] == "large logits: loss vs PyTorch", bad
    assert "log(p + 1e-07) or a clip at 1e-07" in bad[0][1] and "bounded by -log(1e-07) = 16.1" in bad[0][1]


@pytest.mark.parametrize(
    ("old", "new", "check", "hint"),
    [
        ("dx[np.arange(n), self.t] -= 1", "dx[np.arange(n), self.t] -= 0.9\n        dx -= 0.1 / dx.shape[1]",
         "loss grad vs PyTorch", "label smoothing 0.1"),
        ("return dout * dx / n", "return dout * dx", "loss grad vs PyTorch", "batch size 5"),
    ],
)  # fmt: skip
def test_planted_caching_loss_bugs_are_named(
    planted: Callable[..., Path], old: str, new: str, check: str, hint: str
) -> None:
    rows = run_check(planted("array_classes", "layers.py", old, new), only="SoftmaxWithLoss").rows
    hits = [r for r in rows if r.check == check]
    assert hits and hits[0].status == FAIL and hint in hits[0].detail, [(r.check, r.detail) for r in rows]
