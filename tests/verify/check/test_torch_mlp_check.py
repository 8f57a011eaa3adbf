"""``backproplab check`` on the practical's PyTorch MLP (``mlp_pytorch.py``): a correct one passes,
each planted mistake is named on its row, and the template folder with both MLPs checks both."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from backproplab.verify.check import FAIL, PASS, WARN
from backproplab.verify.usercode import run_check

FIXTURES = Path(__file__).parent / "fixtures"

LOOP = "x = self.act(linear(x))"
BUGS = [
    ("self.linears = nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])",
     "self.linears = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]",
     "parameters", FAIL, "self.linears (list) are not registered"),
    ("return self.linears[-1](x)", "return F.softmax(self.linears[-1](x), dim=1)",
     "output", FAIL, "the output rows are probabilities"),
    ("return self.linears[-1](x)", "return nn.Softmax(dim=1)(self.linears[-1](x))",
     "output", FAIL, "softmax is applied twice"),
    (LOOP, "x = linear(x)", "output", FAIL, "the model is an affine map"),
    ("return self.linears[-1](x)", "return self.act(self.linears[-1](x))",
     "layers", FAIL, "the output is not the last Linear layer's (linears.2): something is applied after it (act)"),
    ("return self.linears[-1](x)", "return F.elu(self.linears[-1](x))",
     "layers", FAIL, "something is applied after it (a function in forward)"),
    ("        for linear in self.linears[:-1]:\n            x = self.act(linear(x))",
     "        x = F.elu(self.linears[0](x))\n        x = self.linears[1](x)",
     "layers", FAIL, "nothing between linears.1 and linears.2"),
    ("return self.linears[-1](x)", "return F.dropout(self.linears[-1](x), 0.5, self.training)",
     "layers", FAIL, "something is applied after it"),
    (LOOP, "x = self.act(linear(x)).detach()", "gradients", FAIL,
     "no gradient for linears.0.weight, linears.0.bias, linears.1.weight, linears.1.bias"),
    ("self.act = nn.ELU()", "self.act = nn.ELU()\n        for lin in self.linears:\n            nn.init.normal_(lin.weight, std=10.0)",
     "training: initial loss", WARN, "the scores start far too large"),
]  # fmt: skip


def test_a_correct_pytorch_mlp_passes() -> None:
    report = run_check(FIXTURES / "torch_mlp")
    assert report.found == ["MLP (PyTorch model)"]
    assert report.ok and all(r.status == PASS for r in report.rows), [
        (r.check, r.detail) for r in report.rows
    ]
    layers = next(r for r in report.rows if r.check == "layers")
    assert "act (ELU), linears.1 (Linear), act (ELU)" in layers.detail  # one ELU module, called twice


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (LOOP, "x = F.elu(linear(x))"),  # activations as functions
        ("return self.linears[-1](x)", "return F.log_softmax(self.linears[-1](x), dim=1)"),  # harmless for CE
        ("def forward(self, x):", "def forward(self, x):\n        x = x.float()"),  # a cast in forward
        (LOOP, "x = self.drop(self.act(linear(x)))"),  # dropout between the layers (self.drop added below)
    ],
)
def test_other_correct_styles_pass(planted: Callable[..., Path], old: str, new: str) -> None:
    folder = planted("torch_mlp", "mlp_pytorch.py", old, new)
    p = folder / "mlp_pytorch.py"
    p.write_text(
        p.read_text().replace(
            "self.act = nn.ELU()", "self.act = nn.ELU()\n        self.drop = nn.Dropout(0.3)"
        )
    )
    report = run_check(folder)
    assert report.ok and all(r.status == PASS for r in report.rows), [
        (r.check, r.detail) for r in report.rows if r.status != PASS
    ]


@pytest.mark.parametrize(("old", "new", "check", "status", "hint"), BUGS, ids=[b[4][:30] for b in BUGS])
def test_planted_pytorch_mlp_mistake_is_named(
    planted: Callable[..., Path], old: str, new: str, check: str, status: str, hint: str
) -> None:
    folder = planted("torch_mlp", "mlp_pytorch.py", old, new)
    rows = run_check(folder).rows
    hits = [r for r in rows if r.check == check]
    lines = (folder / "mlp_pytorch.py").read_text().splitlines()
    forward = next(i for i, line in enumerate(lines, 1) if "def forward" in line)
    assert hits and hits[0].status == status and hint in hits[0].detail, [
        (r.check, r.status, r.detail) for r in rows
    ]
    assert hits[0].where.endswith(
        f"mlp_pytorch.py:{8 if check == 'parameters' else forward}"
    )  # class or forward


def test_the_template_folder_checks_both_mlps(tmp_path: Path) -> None:
    """mlp_numpy.py and mlp_pytorch.py both define MLP: each is checked, labelled with its file."""
    folder = tmp_path / "assignment"
    shutil.copytree(FIXTURES / "template", folder)
    shutil.copy(FIXTURES / "torch_mlp" / "mlp_pytorch.py", folder)
    report = run_check(folder)
    assert (
        "MLP (mlp_numpy.py) (model)" in report.found
        and "MLP (mlp_pytorch.py) (PyTorch model)" in report.found
    )
    modules = {r.module for r in report.rows}
    assert {"MLP (mlp_numpy.py)", "MLP (mlp_pytorch.py)"} <= modules
    assert report.ok, [(r.module, r.check, r.detail) for r in report.rows if r.status != PASS]


def test_an_activation_module_after_the_output_layer_counts_even_where_it_changes_nothing(
    planted: Callable[..., Path],
) -> None:
    """A ReLU on scores that happen to be positive leaves this batch unchanged: the module names it."""
    folder = planted(
        "torch_mlp", "mlp_pytorch.py", "return self.linears[-1](x)", "return self.out(self.linears[-1](x))"
    )
    p = folder / "mlp_pytorch.py"
    p.write_text(
        p.read_text().replace("self.act = nn.ELU()", "self.act = nn.ELU()\n        self.out = nn.ReLU()")
    )
    for seed in (0, 1, 2, 3):  # whatever the draw of the weights
        layers = next(r for r in run_check(folder, seed=seed).rows if r.check == "layers")
        assert layers.status == FAIL and "something is applied after it (out)" in layers.detail, layers.detail
