"""`backproplab parity`'s library (verify.parity.compare_models) on the NumPy ConvNet: its torch twin
is found, every layer and every gradient agrees, and a planted bug is caught at the right layer."""

from __future__ import annotations

import numpy as np
import pytest

from backproplab import nn
from backproplab.nn.batchnorm import BatchNorm2d
from backproplab.verify import parity


def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.normal(size=(2, 3, 8, 8)).astype(np.float32), rng.integers(0, 10, 2)


def test_parity_holds_for_the_numpy_convnet() -> None:
    x, y = batch()
    report = parity.compare_models(nn.ConvNet(3, 10, rng=np.random.default_rng(0)), x=x, y=y)
    assert report.ok, parity.format_table(report)
    assert report.first_divergence is None


class WrongBatchNorm2d(BatchNorm2d):
    """A planted backward bug: a spurious 0.1 * dL/dY added to dL/dX."""

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return super().backward(dout) + 0.1 * dout


def test_parity_points_at_a_broken_layer() -> None:
    x, y = batch()
    model = nn.ConvNet(3, 10, rng=np.random.default_rng(0))
    broken = WrongBatchNorm2d(256)
    broken.load_state_dict(model.preact3_a.bn.state_dict())
    model.preact3_a.bn = broken
    report = parity.compare_models(model, x=x, y=y)
    assert not report.ok
    assert "preact3_a.bn" in report.first_divergence.label


@pytest.mark.slow  # two float64 ConvNet parity runs through the CLI: ~17 s
def test_cli_parity_on_the_convnet(capsys: pytest.CaptureFixture[str]) -> None:
    from backproplab.cli.main import main

    assert main(["parity", "--model", "convnet-numpy", "--batch_size", "4", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "NumPy PreAct ConvNet" in out and "float64" in out and "PARITY HOLDS" in out
    assert (
        main(
            [
                "parity",
                "--model",
                "convnet-numpy",
                "--batch_size",
                "4",
                "--steps",
                "1",
                "--loss_reduction",
                "sum",
            ]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "batch size 4: sum instead of mean reduction" in out and "PARITY BROKEN" in out
