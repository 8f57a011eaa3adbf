"""``backproplab check`` on the training script's ``accuracy(predictions, targets)``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from backproplab.verify.check import FAIL, PASS
from backproplab.verify.usercode import run_check

FIXTURES = Path(__file__).parent / "fixtures"
CORRECT = "return np.mean(np.argmax(predictions, axis=1) == np.argmax(targets, axis=1))"


def test_a_correct_accuracy_passes() -> None:
    report = run_check(FIXTURES / "train_script")
    assert report.found == ["accuracy (metric)"]
    assert [(r.check, r.status) for r in report.rows] == [("accuracy", PASS)]
    assert "one-hot targets" in report.rows[0].detail


def test_a_tensor_only_accuracy_passes(planted: Callable[..., Path]) -> None:
    tensor = "return (predictions.argmax(1) == targets.argmax(1)).float().mean()"  # .float(): tensors only
    row = run_check(planted("train_script", "train_mlp_numpy.py", CORRECT, tensor)).rows[0]
    assert row.status == PASS, row.detail


def test_a_tensor_accuracy_that_runs_wrong_on_arrays_passes(planted: Callable[..., Path]) -> None:
    """predictions.max(1)[1] is the arg-max of a tensor but a row's maximum of an array."""
    tensor = "return (predictions.max(1)[1] == targets.argmax(1)).sum().item() / len(targets)"
    row = run_check(planted("train_script", "train_mlp_numpy.py", CORRECT, tensor)).rows[0]
    assert row.status == PASS, row.detail


def test_index_targets_are_the_other_convention(planted: Callable[..., Path]) -> None:
    index = "return np.mean(np.argmax(predictions, axis=1) == targets)"
    row = run_check(planted("train_script", "train_mlp_numpy.py", CORRECT, index)).rows[0]
    assert row.status == PASS and "index targets" in row.detail


@pytest.mark.parametrize(
    ("new", "hint"),
    [
        ("return np.sum(np.argmax(predictions, axis=1) == np.argmax(targets, axis=1))", "the number of correct predictions"),
        ("return 100 * np.mean(np.argmax(predictions, axis=1) == np.argmax(targets, axis=1))", "a percentage"),
        ("return np.mean(np.argmax(predictions, axis=0) == np.argmax(targets, axis=0))", "over the batch axis"),
        ("return np.mean(np.argmin(predictions, axis=1) == np.argmax(targets, axis=1))", "where 0.375 of the 8 rows"),
        ("return np.sum(np.argmax(predictions, axis=1) == np.argmax(targets, axis=1)) // len(targets)", "an integer division"),
    ],
)  # fmt: skip
def test_accuracy_mistakes_are_named(planted: Callable[..., Path], new: str, hint: str) -> None:
    row = run_check(planted("train_script", "train_mlp_numpy.py", CORRECT, new)).rows[0]
    assert row.status == FAIL and hint in row.detail, row.detail
    assert row.where.endswith("train_mlp_numpy.py:9")
