"""``backproplab check`` on a PyTorch ``ConvNet`` (``convnet_pytorch.py``) against the practical's
PreAct ConvNet: a correct one written differently passes, planted mistakes are located."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from backproplab.verify.check import FAIL, PASS
from backproplab.verify.usercode import run_check

FIXTURES = Path(__file__).parent / "fixtures"
BLOCK = "z = self.conv(self.relu(self.bn(x)))"
POOL = "return nn.MaxPool2d(kernel_size=3, stride=2, padding=1)"
BUGS = [
    ("return x + z", "return z", "vs the reference",
     "the input of features.2 (Conv2d) differs from the reference's (conv1) although the output of features.1.conv agrees"),
    (BLOCK, "z = self.conv(self.bn(self.relu(x)))", "vs the reference",
     "the input of features.1.bn (BatchNorm2d) differs from the reference's (preact1.bn) although the output of features.0"),
    (BLOCK, "z = self.conv(self.bn(self.relu(x)))", "vs the reference",
     "between them this model calls features.1.relu (ReLU), the practical's ConvNet calls only functions"),
    (POOL, "return nn.MaxPool2d(kernel_size=2, stride=2)", "layers",
     "structural call 5 (modules with parameters and poolings, in forward order) is features.3: MaxPool2d(kernel_size=2"),
    ("self.bn = nn.BatchNorm2d(c)", "self.bn = nn.BatchNorm2d(c, eps=1e-3)", "vs the reference",
     "features.1.bn gives another output than the reference's preact1.bn on the same input: BatchNorm2d(64, eps=0.001"),
    ("            nn.BatchNorm2d(512),\n", "", "layers", "is classifier: Linear(10x512, 10) where the practical's ConvNet calls norm: BatchNorm(512, 512)"),
    ("self.conv = nn.Conv2d(c, c, kernel_size=3, stride=1, padding=1)",
     "self.conv = nn.Conv2d(c, c, kernel_size=3, stride=1, padding=1, bias=False)", "parameters", "parameters, the practical's ConvNet has 11138122"),
    ("self.conv = nn.Conv2d(c, c, kernel_size=3, stride=1, padding=1)",
     "self.conv = nn.Conv2d(c, c, kernel_size=3, stride=1, padding=1, bias=False)", "layers", "it has no bias, bias=False"),
    ("self.conv = nn.Conv2d(c, c, kernel_size=3, stride=1, padding=1)",
     "self.conv = nn.Conv2d(c, c, kernel_size=3, stride=1, padding=0)", "forward", "in `return x + z`: x 4x64x32x32, z 4x64x30x30"),
]  # fmt: skip


def test_a_correct_convnet_written_differently_passes() -> None:
    report = run_check(FIXTURES / "torch_convnet")
    assert report.found == ["ConvNet (PyTorch model)"]
    assert report.ok and [r.check for r in report.rows] == [
        "parameters",
        "layers",
        "vs the reference",
        "gradients",
    ]
    assert all(r.status == PASS for r in report.rows)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("def forward(self, x):\n        h = self.features(x)", "def forward(self, x):\n        h = self.features(x.float())"),
        ("h.reshape(h.shape[0], -1)", "h.flatten(1)"),
    ],
)  # fmt: skip
def test_other_correct_styles_pass(planted: Callable[..., Path], old: str, new: str) -> None:
    report = run_check(planted("torch_convnet", "convnet_pytorch.py", old, new))
    assert report.ok and all(r.status == PASS for r in report.rows), [
        (r.check, r.detail) for r in report.rows
    ]


def test_functional_pooling_passes(tmp_path: Path) -> None:
    """Poolings called as F.max_pool2d are no modules: the modules with parameters are lined up."""
    folder = tmp_path / "functional"
    folder.mkdir()
    text = (FIXTURES / "torch_convnet" / "convnet_pytorch.py").read_text()
    text = text.replace("import torch.nn as nn", "import torch.nn as nn\nimport torch.nn.functional as F")
    text = text.replace("return nn.MaxPool2d(kernel_size=3, stride=2, padding=1)", "return Pool()")
    text += "\n\nclass Pool:\n    def __call__(self, x):\n        return F.max_pool2d(x, 3, 2, 1)\n"
    text = text.replace("nn.Sequential(", "Chain(", 1) + (
        "\n\nclass Chain(nn.Module):\n    def __init__(self, *steps):\n        super().__init__()\n"
        "        self.steps = steps\n        self.mods = nn.ModuleList([s for s in steps if isinstance(s, nn.Module)])\n\n"
        "    def forward(self, x):\n        for s in self.steps:\n            x = s(x)\n        return x\n"
    )
    (folder / "convnet_pytorch.py").write_text(text)
    report = run_check(folder)
    assert report.ok and all(r.status == PASS for r in report.rows), [
        (r.check, r.detail) for r in report.rows
    ]
    layers = next(r.detail for r in report.rows if r.check == "layers")
    assert layers.startswith("24 structural calls")  # the 29 less the 5 poolings


@pytest.mark.parametrize(("old", "new", "check", "hint"), BUGS, ids=[b[2] + ":" + b[1][:20] for b in BUGS])
def test_planted_convnet_mistake_is_located(
    planted: Callable[..., Path], old: str, new: str, check: str, hint: str
) -> None:
    rows = run_check(planted("torch_convnet", "convnet_pytorch.py", old, new)).rows
    hits = [r for r in rows if r.check == check and r.status == FAIL]
    assert hits and hint in hits[0].detail, [(r.check, r.status, r.detail) for r in rows]
