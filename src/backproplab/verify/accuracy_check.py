"""The practical's ``accuracy(predictions, targets)`` (``train_mlp_numpy.py``, ``train_mlp_pytorch.py``)
against the fraction of rows whose arg-max is the target's class.

Targets are tried one-hot first (the template's convention: ``targets`` is ``(N, C)``), then as class
indices ``(N,)`` when the one-hot call raises. Predictions are scores ``(N, C)`` (NumPy arrays, or
tensors when the function only runs on tensors). The batches are chosen so that the accuracy is
neither 0 nor 1 and differs from what the usual mistakes give: a count instead of a fraction, a
percentage, the arg-max over the batch axis, or predictions compared with the one-hot rows
element by element.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from backproplab.verify import check as C
from backproplab.verify.protocol import source_of

#: The returned accuracy must equal the reference to this (absolute; it is a fraction).
ACCURACY_ATOL = 1e-6
#: Batches tried: (samples, classes).
BATCHES = ((8, 5), (20, 10))


def _call(fn: Callable[..., Any], scores: np.ndarray, targets: np.ndarray, want: float) -> float:
    """``fn`` on NumPy arrays, and on tensors when it raises on arrays or gives a wrong value there
    (``predictions.max(1)[1]`` is the arg-max of a tensor, the maximum of an array); the tensor
    value when that one is right, else the NumPy value (or the NumPy call's error)."""
    try:
        value = _scalar(fn(scores, targets))
    except Exception as numpy_error:
        try:
            return _scalar(fn(*_tensors(scores, targets)))
        except Exception:
            raise numpy_error from None
    if abs(value - want) <= ACCURACY_ATOL:
        return value
    try:
        on_tensors = _scalar(fn(*_tensors(scores, targets)))
    except Exception:  # it ran on arrays: its array value is the one to judge
        return value
    return on_tensors if abs(on_tensors - want) <= ACCURACY_ATOL else value


def _source(fn: Callable[..., Any]) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return ""


def _tensors(*arrays: np.ndarray) -> list[Any]:
    import torch

    return [torch.tensor(a) for a in arrays]


def _scalar(result: Any) -> float:
    return float(np.asarray(getattr(result, "item", lambda: result)()))


def _mistake(
    value: float, scores: np.ndarray, labels: np.ndarray, onehot: np.ndarray, integer_division: bool
) -> str | None:
    n = len(labels)
    correct = float((scores.argmax(axis=1) == labels).sum())
    candidates = {
        f"the number of correct predictions ({correct:g} of {n}), not the fraction": correct,
        "a percentage (x 100), not a fraction": 100 * correct / n,
        "the arg-max over the batch axis (axis 0) instead of the class axis": float(
            np.mean(scores.argmax(axis=0)[: onehot.shape[1]] == onehot.argmax(axis=0))
        ),
        "the predictions compared with the one-hot targets element by element, not their arg-max": float(
            np.mean(scores.argmax(axis=1)[:, None] == onehot)
        ),
    }
    if integer_division:  # only then: 0 is what many mistakes give
        candidates[f"an integer division (correct // N = {int(correct) // n}): use /"] = float(
            int(correct) // n
        )
    return next((what for what, v in candidates.items() if abs(value - v) <= ACCURACY_ATOL), None)


def rows(fn: Callable[..., Any], rng: np.random.Generator, label: str = "accuracy") -> list[C.CheckRow]:
    """One row: the user's ``accuracy`` against the reference on the batches of :data:`BATCHES`."""
    where = source_of(fn)
    form = "one-hot"
    for n, c in BATCHES:
        labels = rng.integers(0, c, size=n)
        scores = rng.normal(size=(n, c))
        hits = rng.permutation(n)[: (3 * n) // 8]  # a known fraction right: 3/8
        scores[hits, labels[hits]] = scores[hits].max(axis=1) + 1.0
        wrong = np.setdiff1d(np.arange(n), hits)
        scores[wrong, labels[wrong]] = scores[wrong].min(axis=1) - 1.0
        onehot = np.eye(c)[labels]
        want = float(np.mean(scores.argmax(axis=1) == labels))  # 3/8
        try:
            with C.calling(f"{label}(predictions, targets)"):
                try:
                    value = _call(fn, scores, onehot if form == "one-hot" else labels, want)
                except Exception:
                    if form != "one-hot":
                        raise
                    form = "index"
                    value = _call(fn, scores, labels, want)
        except C.UserCodeError as e:
            return [C.CheckRow(label, "accuracy", C.FAIL, str(e)[:600], e.where or where)]
        if not abs(value - want) <= ACCURACY_ATOL:
            why = _mistake(value, scores, labels, onehot, "//" in _source(fn))
            detail = f"{value:.6g} where {want:g} of the {n} rows have the target's class as their arg-max"
            return [C.CheckRow(label, "accuracy", C.FAIL, detail + (f": {why}" if why else ""), where)]
    return [
        C.CheckRow(label, "accuracy", C.PASS, f"the fraction of correct arg-max predictions ({form} targets)")
    ]
