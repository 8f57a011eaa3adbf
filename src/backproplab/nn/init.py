"""Weight initialisers, each with an explicit ``np.random.Generator``.

They mirror ``torch.nn.init`` (same names with the trailing underscore, same fan and gain
conventions) and fill a :class:`Parameter` or array in place. The distributions are the same as
PyTorch's; the random streams are not (NumPy and torch generators differ), so a twin copies
weights through ``load_state_dict`` rather than re-initialising.
"""

from __future__ import annotations

import math

import numpy as np

from backproplab.nn.parameter import Parameter

#: The practical's weight init: N(0, PRACTICAL_STD^2), bias zero.
PRACTICAL_STD = 1e-4


def _array(t: Parameter | np.ndarray) -> np.ndarray:
    return t.data if isinstance(t, Parameter) else t


def calculate_fan_in_and_fan_out(t: Parameter | np.ndarray) -> tuple[int, int]:
    """Fans as torch computes them: (in, out) times the receptive field (kH*kW) for conv weights."""
    a = _array(t)
    if a.ndim < 2:
        raise ValueError(f"fan in and fan out need at least 2 dimensions, got shape {a.shape}")
    receptive = int(np.prod(a.shape[2:])) if a.ndim > 2 else 1
    return a.shape[1] * receptive, a.shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity, as ``torch.nn.init.calculate_gain``."""
    if nonlinearity in ("linear", "conv1d", "conv2d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def normal_(t: Parameter | np.ndarray, rng: np.random.Generator, mean: float = 0.0, std: float = 1.0) -> None:
    """Fill with samples of N(mean, std^2)."""
    a = _array(t)
    a[...] = rng.normal(mean, std, size=a.shape)


def uniform_(
    t: Parameter | np.ndarray, rng: np.random.Generator, low: float = 0.0, high: float = 1.0
) -> None:
    """Fill with samples of U(low, high)."""
    a = _array(t)
    a[...] = rng.uniform(low, high, size=a.shape)


def zeros_(t: Parameter | np.ndarray) -> None:
    _array(t)[...] = 0


def ones_(t: Parameter | np.ndarray) -> None:
    _array(t)[...] = 1


def kaiming_uniform_(
    t: Parameter | np.ndarray,
    rng: np.random.Generator,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
) -> None:
    """U(-bound, bound) with bound = gain * sqrt(3 / fan), as ``torch.nn.init.kaiming_uniform_``."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(t)
    fan = fan_in if mode == "fan_in" else fan_out
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    uniform_(t, rng, -bound, bound)


def kaiming_normal_(
    t: Parameter | np.ndarray,
    rng: np.random.Generator,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
) -> None:
    """N(0, std^2) with std = gain / sqrt(fan), as ``torch.nn.init.kaiming_normal_``."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(t)
    fan = fan_in if mode == "fan_in" else fan_out
    normal_(t, rng, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan))


def torch_default_(weight: Parameter, bias: Parameter | None, rng: np.random.Generator) -> None:
    """PyTorch's default init of Linear and Conv layers.

    Weight: kaiming_uniform_ with a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in));
    bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """
    kaiming_uniform_(weight, rng, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        uniform_(bias, rng, -bound, bound)


INIT_SCHEMES = ("practical", "torch", "kaiming")


def init_layer_(
    weight: Parameter,
    bias: Parameter | None,
    scheme: str,
    rng: np.random.Generator,
    nonlinearity: str = "relu",
) -> None:
    """Initialise one layer by scheme name.

    * ``practical``: weight ~ N(0, 1e-4^2), bias = 0 (the practical's NumPy MLP);
    * ``torch``: PyTorch's default (:func:`torch_default_`);
    * ``kaiming``: weight ~ kaiming_normal_(fan_in, ``nonlinearity``), bias = 0.
    """
    if scheme == "practical":
        normal_(weight, rng, 0.0, PRACTICAL_STD)
        if bias is not None:
            zeros_(bias)
    elif scheme == "torch":
        torch_default_(weight, bias, rng)
    elif scheme == "kaiming":
        kaiming_normal_(weight, rng, nonlinearity=nonlinearity)
        if bias is not None:
            zeros_(bias)
    else:
        raise ValueError(f"unknown init scheme {scheme!r}; expected one of {INIT_SCHEMES}")
