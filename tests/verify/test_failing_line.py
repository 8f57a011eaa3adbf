"""``failing_line``: the user's line that raised, with the shapes of the arrays it names."""

from __future__ import annotations

import numpy as np
import pytest

from backproplab.verify.failing_line import failing_line


class Layer:
    def __init__(self) -> None:
        self.W = np.zeros((3, 5))
        self.calls = 0

    @property
    def counted(self) -> np.ndarray:
        self.calls += 1
        return self.W

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = np.ones((2, 2))
        dx = dout @ self.W.T + dx[0]
        return dx


def raised(fn: object, *args: object) -> BaseException:
    with pytest.raises(Exception) as info:
        fn(*args)  # type: ignore[operator]
    return info.value


def test_the_line_and_the_shapes_of_its_arrays() -> None:
    text = failing_line(raised(Layer().backward, np.zeros((4, 3))))
    # dx is the assignment's target (its old value is not what the line used); dx[0] is read
    assert text == "in `dx = dout @ self.W.T + dx[0]`: dout 4x3, self.W.T 5x3, self.W 3x5, dx[0] 2, dx 2x2"


def test_no_calls_are_evaluated_and_plain_errors_say_nothing() -> None:
    layer = Layer()

    def calls_property(dout: np.ndarray) -> np.ndarray:
        return dout @ layer.counted.sum(axis=0, keepdims=True)

    text = failing_line(raised(calls_property, np.zeros((4, 3))))
    assert "dout 4x3" in text and "layer.counted" in text  # an attribute is read ...
    assert "sum(" not in text.split(":", 1)[1]  # ... a call is not evaluated
    assert failing_line(ValueError("no traceback")) == ""

    def no_arrays() -> None:
        raise ValueError("not done yet")

    assert failing_line(raised(no_arrays)) == ""
