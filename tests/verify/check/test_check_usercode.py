"""``backproplab check`` on the practical's template and on CS231n-style layers: every check passes on
correct files, and each planted bug is a FAIL on the right module with the right hint."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from backproplab.verify.check import FAIL, PASS, WARN
from backproplab.verify.usercode import run_check

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("folder", ["template", "cs231n"])
def test_correct_files_pass_every_check(folder: str) -> None:
    report = run_check(FIXTURES / folder)
    bad = [(r.module, r.check, r.detail) for r in report.rows if r.status != PASS]
    assert bad == []
    assert len(report.rows) >= 50
    names = " ".join(report.found)
    expected = (
        [
            "LinearModule",
            "ELUModule",
            "SoftMaxModule",
            "CrossEntropyModule",
            "MLP",
            "CustomLayerNormManualFunction",
        ]
        if folder == "template"
        else [
            "affine_forward",
            "relu_forward",
            "softmax_loss",
            "batchnorm_forward",
            "conv_forward_naive",
            "dropout_forward",
        ]
    )
    for name in expected:
        assert name in names


# (file, old, new, module that must FAIL, words of its check, words of the hint)
TEMPLATE_BUGS = [
    (
        "modules.py",
        '"weight": np.random.normal(0.0, 1e-4, size=(out_features, in_features)),',
        '"weight": np.zeros((out_features, in_features)),',
        "MLP",
        "initialisation",
        "constant weights in layers[0] (LinearModule) (all 0)",
    ),
    (
        "mlp_numpy.py",
        "self.layers += [LinearModule(sizes[-1], n_classes), SoftMaxModule()]",
        "self.layers += [LinearModule(n_hidden[-1], n_classes), SoftMaxModule()]",
        "MLP",
        "no hidden layers",
        "MLP(6, [], 3) raised IndexError",
    ),
    (
        "modules.py",
        "return y * (dout - (dout * y).sum(axis=1, keepdims=True))",
        "return y * (1 - y) * dout",
        "SoftMaxModule",
        "input grad vs PyTorch",
        "the Jacobian's diagonal only",
    ),
    (
        "modules.py",
        "np.clip(x, 1e-12, None))) / x.shape[0]",
        "np.clip(x, 1e-12, None)))",
        "CrossEntropyModule",
        "loss vs PyTorch",
        "sum instead of mean",
    ),
    (
        "modules.py",
        "return -y / np.clip(x, 1e-12, None) / x.shape[0]",
        "return -y / np.clip(x, 1e-12, None)",
        "CrossEntropyModule",
        "loss grad vs PyTorch",
        "batch size 5",
    ),
    (
        "modules.py",
        "np.exp(np.minimum(self.x, 0)))",
        "np.exp(self.forward(self.x)))",
        "ELUModule",
        "input grad vs PyTorch",
        "ELU derivative taken from the output",
    ),
    (
        "modules.py",
        'self.grads["bias"] = dout.sum(axis=0)',
        'self.grads["bias"] = dout.mean(axis=0)',
        "LinearModule",
        "bias grad vs PyTorch",
        "1/batch size",
    ),
    (
        "modules.py",
        'self.grads["weight"] = dout.T @ self.x',
        'self.grads["weight"] = self.x.T @ dout',
        "LinearModule",
        "gradient check: params['weight']",
        "shape",
    ),
    (
        "modules.py",
        "e = np.exp(x - x.max(axis=1, keepdims=True))",
        "e = np.exp(x)",
        "SoftMaxModule",
        "large logits",
        "max trick",
    ),
    (
        "modules.py",
        "(dout * y).sum(axis=1, keepdims=True)",
        "(dout * y).sum(axis=0, keepdims=True)",
        "SoftMaxModule",
        "input grad vs PyTorch",
        "wrong axis",
    ),
    (
        "modules.py",
        "e = np.exp(x - x.max(axis=1, keepdims=True))",
        "x -= x.max(axis=1, keepdims=True)\n        e = np.exp(x)",
        "SoftMaxModule",
        "input unmodified",
        "modified its input",
    ),
    (
        "modules.py",
        "        self.x = x\n        return x @",
        "        if not hasattr(self, 'x'):\n            self.x = x\n        return x @",
        "LinearModule",
        "forward twice",
        "earlier forward",
    ),
    (
        "modules.py",
        'return dout @ self.params["weight"]',
        'return -(dout @ self.params["weight"])',
        "LinearModule",
        "gradient check: input",
        "sign flipped",
    ),
    (
        "custom_layernorm.py",
        "var = input.var(dim=1, unbiased=False, keepdim=True)\n        return",
        "var = input.var(dim=1, unbiased=True, keepdim=True)\n        return",
        "CustomLayerNormAutograd",
        "output vs PyTorch",
        "unbiased variance",
    ),
    (
        "custom_layernorm.py",
        "inv = 1.0 / torch.sqrt(var + eps)",
        "inv = 1.0 / (torch.sqrt(var) + eps)",
        "CustomLayerNormManualFunction",
        "output vs PyTorch",
        "eps outside the square root",
    ),
    (
        "custom_layernorm.py",
        "n * gx - gx.sum(1, keepdim=True) - xhat * (gx * xhat).sum(1, keepdim=True)",
        "n * gx - gx.sum(1, keepdim=True)",
        "CustomLayerNormManualFunction",
        "torch.autograd.gradcheck",
        "finite differences",
    ),
    (
        "mlp_numpy.py",
        "for layer in reversed(self.layers):",
        "for layer in self.layers[::-1][:-1]:",
        "MLP",
        "layers[0]",
        "never called",
    ),
    (
        "modules.py",
        'self.grads["weight"] = dout.T @ self.x',
        'self.grads["weight"] += dout.T @ self.x',
        "LinearModule",
        "backward twice",
        "weight grad accumulate across backward calls",
    ),
    (
        "modules.py",
        'self.grads["bias"] = dout.sum(axis=0)',
        'self.grads["bias"] = dout[0]',
        "LinearModule",
        "bias grad vs PyTorch",
        "sample 0's upstream gradient alone",
    ),
    (
        "mlp_numpy.py",
        "self.layers += [LinearModule(sizes[-1], n_classes), SoftMaxModule()]",
        "self.layers += [LinearModule(sizes[-1], n_classes), ELUModule(), SoftMaxModule()]",
        "MLP",
        "layers",
        "activation (layers[5] (ELUModule)) after the last Linear layer",
    ),
    (
        "mlp_numpy.py",
        "self.layers += [LinearModule(a, b), ELUModule()]",
        "self.layers += [LinearModule(a, b)]",
        "MLP",
        "layers",
        "no activation between layers[0] (LinearModule) and layers[1] (LinearModule)",
    ),
]

CS231N_BUGS = [
    (
        "layers.py",
        "    rows = dout.transpose(0, 2, 3, 1).reshape(-1, c)\n    m = rows.shape[0]",
        "    rows = dout.reshape(-1, c)\n    m = rows.shape[0]",
        "spatial_batchnorm_forward",
        "input grad vs PyTorch",
        "a reshape without its transpose in backward",
    ),
    (
        "layers.py",
        'bn_param["running_mean"] = momentum * running_mean + (1 - momentum) * mu',
        'bn_param["running_mean"] = (1 - momentum) * running_mean + momentum * mu',
        "batchnorm_forward",
        "running statistics",
        "momentum and 1 - momentum swapped",
    ),
    (
        "layers.py",
        "dx = (g - g.mean(axis=0) - xhat * (g * xhat).mean(axis=0)) / np.sqrt(var + eps)",
        "dx = (g - xhat * (g * xhat).mean(axis=0)) / np.sqrt(var + eps)",
        "batchnorm_forward with batchnorm_backward_alt",
        "input grad vs PyTorch",
        "the term through the batch mean",
    ),
    (
        "layers.py",
        "mask = (np.random.rand(*x.shape) < p) / p",
        "mask = (np.random.rand(*x.shape) > p) / p",
        "dropout_forward",
        "mask and scale",
        "the keep test is inverted",
    ),
    (
        "layers.py",
        "return dout * (cache > 0)",
        "return dout * (dout > 0)",
        "relu_forward",
        "input grad vs PyTorch",
        "the mask is taken from the upstream gradient (dout > 0)",
    ),
    (
        "layers.py",
        "dx = (d * dxhat - dxhat.sum(axis=1, keepdims=True) - xhat * (dxhat * xhat).sum(axis=1, keepdims=True)) / (",
        "dx = (d * dxhat - dxhat.sum(axis=0, keepdims=True) - xhat * (dxhat * xhat).sum(axis=0, keepdims=True)) / (",
        "layernorm_forward",
        "input grad vs PyTorch",
        "LayerNorm backward sums over the batch axis (axis 0)",
    ),
    (
        "layers.py",
        "patch = xp[:, :, i * stride : i * stride + hh, j * stride : j * stride + ww]",
        "patch = xp[:, :, i : i + hh, j : j + ww]",
        "conv_forward_naive (stride 2, pad 0)",
        "output vs PyTorch",
        "the windows step by 1, not by the stride 2",
    ),
    (
        "layers.py",
        "out[:, :, i, j] = x[:, :, i * s : i * s + ph, j * s : j * s + pw].max(axis=(2, 3))",
        "out[:, :, i, j] = x[:, :, i * s : i * s + ph, j * s : j * s + ph].max(axis=(2, 3))",
        "max_pool_forward_naive (3x2 windows, stride 1)",
        "output vs PyTorch",
        "",
    ),
    (
        "layers.py",
        "db = dout.sum(axis=0)",
        "db = dout.mean(axis=0)",
        "affine_forward",
        "bias grad vs PyTorch",
        "1/batch size",
    ),
    (
        "layers.py",
        "return dout * (cache > 0)",
        "return dout * (cache >= 0) + 0.01 * (cache < 0)",
        "relu_forward",
        "input grad vs PyTorch",
        "where the input is negative",
    ),
    (
        "layers.py",
        "return loss, dx / n",
        "return loss, dx",
        "softmax_loss",
        "loss grad vs PyTorch",
        "sum instead of mean",
    ),
    (
        "layers.py",
        "mu, var = x.mean(axis=0), x.var(axis=0)",
        "mu, var = x.mean(axis=0), x.var(axis=0, ddof=1)",
        "batchnorm_forward",
        "output vs PyTorch",
        "unbiased",
    ),
    (
        "layers.py",
        "mask = (np.random.rand(*x.shape) < p) / p",
        "mask = (np.random.rand(*x.shape) < p) / (1 - p)",
        "dropout_forward",
        "mask and scale",
        "1/keep probability",
    ),
    (
        "layers.py",
        "return dx, dw, dout.sum(axis=(0, 2, 3))",
        "return dx, dw, dout.sum(axis=(0, 2, 3)) / dout.shape[0]",
        "conv_forward_naive",
        "bias grad vs PyTorch",
        "batch size",
    ),
    (
        "layers.py",
        "mask = window == window.max(axis=(2, 3), keepdims=True)",
        "mask = np.ones_like(window) / (ph * pw)",
        "max_pool_forward_naive",
        "input grad vs PyTorch",
        "spreads each upstream gradient evenly over its window",
    ),
    (
        "layers.py",
        "mask = window == window.max(axis=(2, 3), keepdims=True)",
        "mask = np.ones_like(window)",
        "max_pool_forward_naive",
        "input grad vs PyTorch",
        "to every position of its window",
    ),
    (
        "layers.py",
        "out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b",
        "out[:, :, i, j] = np.tensordot(patch, w[:, :, ::-1, ::-1], axes=([1, 2, 3], [1, 2, 3])) + b",
        "conv_forward_naive",
        "output vs PyTorch",
        "kernel rotated by 180 degrees (a true convolution)",
    ),
    (
        "layers.py",
        "dxp[sl] += np.tensordot(dout[:, :, i, j], w, axes=([1], [0]))",
        "dxp[sl] += np.tensordot(dout[:, :, i, j], w[:, :, ::-1, ::-1], axes=([1], [0]))",
        "conv_forward_naive",
        "input grad vs PyTorch",
        "input gradient with the kernel rotation wrong",
    ),
    (
        "layers.py",
        "return dx, dw, dout.sum(axis=(0, 2, 3))",
        "return dx, dw[:, :, ::-1, ::-1], dout.sum(axis=(0, 2, 3))",
        "conv_forward_naive",
        "weight grad vs PyTorch",
        "weight gradient rotated by 180 degrees",
    ),
    (
        "layers.py",
        "(n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))",
        "(n * dxhat - xhat * (dxhat * xhat).sum(axis=0))",
        "batchnorm_forward",
        "input grad vs PyTorch",
        "the term through the batch mean",
    ),
    (
        "layers.py",
        "(n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))",
        "(n * dxhat - dxhat.sum(axis=0))",
        "batchnorm_forward",
        "input grad vs PyTorch",
        "the term through the batch variance",
    ),
    (
        "layers.py",
        "(n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))",
        "(n * dxhat)",
        "batchnorm_forward",
        "input grad vs PyTorch",
        "treated as constants",
    ),
    (
        "layers.py",
        "mu, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)",
        "mu, var = x.mean(axis=0, keepdims=True), x.var(axis=0, keepdims=True)",
        "layernorm_forward",
        "output vs PyTorch",
        "normalised over the batch (axis 0), as BatchNorm does",
    ),
]


def _assert_planted(report_rows: list, module: str, check: str, hint: str) -> None:
    fails = [r for r in report_rows if r.status == FAIL]
    assert fails, "the planted bug was not found"
    on_module = [r for r in fails if r.module == module and check in r.check]
    assert on_module, [(r.module, r.check, r.detail) for r in fails]
    assert any(hint in r.detail for r in on_module), [r.detail for r in on_module]
    assert all(r.where and ":" in r.where for r in on_module), "a failure names the user's file and line"

    def base(m: str) -> str:  # a variant's or an alternative backward's rows share the forward
        return re.split(r" \(| with ", m)[0]

    others = {r.module for r in fails if base(r.module) != base(module)}
    # only the module with the bug, or the model built from it, may fail
    assert others <= {"MLP"} or all(r.startswith("layers[") for r in others - {"MLP"}), others


@pytest.mark.parametrize(
    ("file", "old", "new", "module", "check", "hint"),
    TEMPLATE_BUGS,
    ids=[b[3] + ":" + b[4] for b in TEMPLATE_BUGS],
)
def test_template_planted_bug_is_named(
    planted: Callable[..., Path], file: str, old: str, new: str, module: str, check: str, hint: str
) -> None:
    only = None if module == "MLP" else module
    report = run_check(planted("template", file, old, new), only=only)
    _assert_planted(report.rows, module, check, hint)


@pytest.mark.parametrize(
    ("file", "old", "new", "module", "check", "hint"), CS231N_BUGS, ids=[b[3] for b in CS231N_BUGS]
)
def test_cs231n_planted_bug_is_named(
    planted: Callable[..., Path], file: str, old: str, new: str, module: str, check: str, hint: str
) -> None:
    only = module.split("_forward")[0]
    report = run_check(planted("cs231n", file, old, new), only=only)
    _assert_planted(report.rows, module, check, hint)


def test_sum_loss_is_found_in_the_model_and_by_the_doctor(planted: Callable[..., Path]) -> None:
    """The blog's bug: the practical's own unit test passes it (self-consistent), check does not."""
    folder = planted(
        "template", "modules.py", "np.clip(x, 1e-12, None))) / x.shape[0]", "np.clip(x, 1e-12, None)))"
    )
    report = run_check(folder)
    rows = {(r.module, r.check): r for r in report.rows}
    assert rows[("MLP", "end to end: loss")].status == FAIL
    assert "batch size 4" in rows[("MLP", "end to end: loss")].detail
    assert rows[("MLP", "training: initial loss")].status == FAIL
    assert "sums over the batch" in rows[("MLP", "training: initial loss")].detail


def test_exception_in_user_code_is_a_fail_row_not_a_crash(planted: Callable[..., Path]) -> None:
    folder = planted(
        "template", "modules.py", 'return dout @ self.params["weight"]', 'raise ValueError("not done yet")'
    )
    report = run_check(folder, only="LinearModule")
    rows = [r for r in report.rows if r.status == FAIL]
    assert rows and all("LinearModule.backward raised ValueError: not done yet" in r.detail for r in rows)
    assert all(r.where.endswith("modules.py:21") for r in rows)


def test_a_shape_error_names_the_line_and_its_arrays_shapes(planted: Callable[..., Path]) -> None:
    """NumPy's "matmul: Input operand 1 has a mismatch" with the arrays of the user's line."""
    folder = planted(
        "template",
        "modules.py",
        'return dout @ self.params["weight"]',
        'return dout @ self.params["weight"].T',
    )
    report = run_check(folder, only="LinearModule")
    rows = [r for r in report.rows if r.status == FAIL and "raised ValueError" in r.detail]
    assert rows, [r.detail for r in report.rows]
    pattern = r'in `return dout @ self.params\["weight"\].T`: dout (\d+)x(\d+), self.params\["weight"\].T (\d+)x(\d+)'
    for r in rows:
        m = re.search(pattern, r.detail)
        assert m, r.detail
        assert m[2] != m[3]  # the mismatch, visible: dout's columns against W.T's rows
        assert r.where.endswith("modules.py:21")


def test_import_error_is_a_fail_row(planted: Callable[..., Path]) -> None:
    folder = planted(
        "template", "mlp_numpy.py", "class MLP:", "import nonexistent_package_xyz\n\n\nclass MLP:"
    )
    report = run_check(folder)
    imp = [r for r in report.rows if r.check == "import"]
    assert len(imp) == 1 and imp[0].status == FAIL and "ModuleNotFoundError" in imp[0].detail
    assert imp[0].where.endswith("mlp_numpy.py:6")
    assert any(
        r.module == "LinearModule" and r.status == PASS for r in report.rows
    )  # the other files still run


def test_probabilities_with_exact_zeros_warn(planted: Callable[..., Path]) -> None:
    folder = planted(
        "template",
        "modules.py",
        "return -y / np.clip(x, 1e-12, None) / x.shape[0]",
        "return -y / x / x.shape[0]",
    )
    report = run_check(folder, only="CrossEntropy")
    large = [r for r in report.rows if r.check == "large logits"]
    assert [r.status for r in large] == [WARN]
    assert "underflowed to exactly 0" in large[0].detail
    assert report.ok  # a warning is not a failure


def test_an_epsilon_inside_the_log_is_not_a_failure(planted: Callable[..., Path]) -> None:
    """-log(p + 1e-12) is correct; with a single class the reference loss is exactly 0 and this one
    -1e-12: no relative error means anything there (the checks' absolute floor)."""
    folder = planted(
        "template",
        "modules.py",
        "return -np.sum(y * np.log(np.clip(x, 1e-12, None))) / x.shape[0]",
        "return -np.sum(y * np.log(x + 1e-12)) / x.shape[0]",
    )
    report = run_check(folder, only="CrossEntropy")
    assert [(r.check, r.detail) for r in report.rows if r.status != PASS] == []
    assert any(r.check == "one class" for r in report.rows)


ACCUMULATING_LAYER = """
import numpy as np


class Affine:
    def __init__(self, n_in, n_out):
        self.W = np.random.normal(size=(n_in, n_out))
        self.b = np.zeros(n_out)
        self.dW, self.db = np.zeros_like(self.W), np.zeros_like(self.b)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW += self.x.T @ dout
        self.db += dout.sum(axis=0)
        return dout @ self.W.T
"""


@pytest.mark.parametrize("resettable", [False, True])
def test_gradients_that_accumulate_need_a_zero_grad(tmp_path: Path, resettable: bool) -> None:
    """A layer whose backward adds into its gradients fails unless it has PyTorch's contract: a
    zero_grad() that resets them."""
    code = ACCUMULATING_LAYER
    if resettable:
        code += "\n    def zero_grad(self):\n        self.dW[...] = 0\n        self.db[...] = 0\n"
    (tmp_path / "layers.py").write_text(code)
    rows = [r for r in run_check(tmp_path).rows if r.check == "backward twice"]
    assert len(rows) == 1
    if resettable:
        assert rows[0].status == PASS and "as in PyTorch" in rows[0].detail
    else:
        assert rows[0].status == FAIL and "weight grad, bias grad accumulate" in rows[0].detail
        assert rows[0].where.endswith("layers.py:15")


def test_gradient_rows_of_a_layer_with_a_wrong_output_point_at_the_forward(
    planted: Callable[..., Path],
) -> None:
    folder = planted(
        "template",
        "modules.py",
        "self.out = e / e.sum(axis=1, keepdims=True)",
        "self.out = e / e.sum(axis=0, keepdims=True)",
    )
    rows = {r.check: r for r in run_check(folder, only="SoftMaxModule").rows}
    assert rows["output vs PyTorch"].status == FAIL
    assert rows["input grad vs PyTorch"].detail.endswith("(the output differs too: fix the forward first)")


def test_the_report_is_reproducible_with_global_random_inits() -> None:
    """The template draws its weights from np.random: check seeds it, so two runs give one report."""
    first, second = run_check(FIXTURES / "template"), run_check(FIXTURES / "template")
    assert [(r.check, r.detail) for r in first.rows] == [(r.check, r.detail) for r in second.rows]
    other = run_check(FIXTURES / "template", seed=1)
    assert [r.detail for r in other.rows] != [r.detail for r in first.rows]


def test_a_row_vector_bias_is_no_false_alarm(tmp_path: Path) -> None:
    """A (1, C) bias and its (1, C) gradient broadcast as torch's (C,): correct code, PASS."""
    folder = tmp_path / "template"
    shutil.copytree(FIXTURES / "template", folder)
    p = folder / "modules.py"
    text = p.read_text()
    for old, new in (
        ('"bias": np.zeros(out_features),', '"bias": np.zeros((1, out_features)),'),
        ('"bias": np.zeros(out_features)}', '"bias": np.zeros((1, out_features))}'),
        ('self.grads["bias"] = dout.sum(axis=0)', 'self.grads["bias"] = dout.sum(axis=0, keepdims=True)'),
    ):
        assert text.count(old) == 1
        text = text.replace(old, new)
    p.write_text(text)
    report = run_check(folder)
    assert report.ok and all(r.status == PASS for r in report.rows), [
        (r.module, r.check, r.detail) for r in report.rows if r.status != PASS
    ]


@pytest.mark.parametrize(
    ("old", "new", "check", "hint"),
    [
        ("loss, dout = softmax_loss(scores, y)", "loss, dout = softmax_loss(scores, y)\n        loss, dout = loss * len(y), dout * len(y)",
         "loss vs PyTorch", "sum instead of mean"),
        ('loss += 0.5 * self.reg * np.sum(self.params[f"W{i}"] ** 2)',
         'loss += 0.5 * self.reg * (np.sum(self.params[f"W{i}"] ** 2) + np.sum(self.params[f"b{i}"] ** 2))',
         "regularisation", "the biases are regularised too"),
        ('grads[f"W{i}"] += self.reg * self.params[f"W{i}"]', 'grads[f"W{i}"] += 2 * self.reg * self.params[f"W{i}"]',
         "gradient check", "max rel error"),
    ],
)  # fmt: skip
def test_cs231n_model_class_mistakes_are_named(
    planted: Callable[..., Path], old: str, new: str, check: str, hint: str
) -> None:
    rows = run_check(planted("cs231n", "fc_net.py", old, new), only="FullyConnectedNet").rows
    hits = [r for r in rows if r.check == check and r.status == FAIL]
    assert hits and hint in hits[0].detail, [(r.check, r.status, r.detail) for r in rows]
    assert hits[0].where.endswith("fc_net.py:19")  # loss()


def test_an_assignment_1_two_layer_net_with_reg_as_an_argument_passes(planted: Callable[..., Path]) -> None:
    report = run_check(FIXTURES / "cs231n_a1")
    assert report.found == ["TwoLayerNet (model)"]
    assert report.ok and all(r.status == PASS for r in report.rows), [
        (r.check, r.detail) for r in report.rows
    ]
    assert "reg * sum(W^2), assignment 1's convention" in report.rows[-1].detail
    wrong = planted("cs231n_a1", "neural_net.py", "d /= N", "")  # a sum over the batch
    fails = [r for r in run_check(wrong).rows if r.status == FAIL]
    assert any(r.check == "W2 grad vs PyTorch" and "batch size 4" in r.detail for r in fails), fails
