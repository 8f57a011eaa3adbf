"""The checks every trainer's config runs in ``validate()``: one clear ConfigError naming the flag,
the expected and the actual value, before any data is loaded (so ``run(cfg)`` from Python is checked
the same way as the command line)."""

from __future__ import annotations

import math

from backproplab.errors import ConfigError

#: The largest finite float32: parameters are float32, so a larger step size overflows them.
FLOAT32_MAX = 3.4028234663852886e38


def parse_positive_ints(text: str, flag: str, example: str) -> list[int]:
    """ "200,100" -> [200, 100], "" -> []; empty items ("100,,10"), non-integers and values below 1
    are a ConfigError naming ``--flag`` and showing ``example``."""
    if text.strip() == "":
        return []
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) < 1:
            raise ConfigError(
                f"--{flag} expects comma-separated positive integers like '{example}', got {text!r}"
            )
        out.append(int(item))
    return out


def check_positive(cfg: object, *names: str) -> None:
    """Each flag in ``names`` is > 0 (an optional flag may be None)."""
    for name in names:
        value = getattr(cfg, name)
        if value is not None and not value > 0:
            kind = "a positive integer" if isinstance(value, int) else "positive"
            raise ConfigError(f"--{name} must be {kind}, got {value}")


def check_non_negative(cfg: object, *names: str) -> None:
    """Each flag in ``names`` is >= 0."""
    for name in names:
        value = getattr(cfg, name)
        if not value >= 0:
            raise ConfigError(f"--{name} must be >= 0, got {value}")


def check_fraction(cfg: object, *names: str) -> None:
    """Each flag in ``names`` is in [0, 1) (momentum, label smoothing, decay rates)."""
    for name in names:
        value = getattr(cfg, name)
        if not 0 <= value < 1:
            raise ConfigError(f"--{name} must be in [0, 1), got {value}")


def check_float32(name: str, value: float) -> None:
    """Raise :class:`ConfigError` unless ``value`` is finite and fits in float32 (the parameters' type)."""
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise ConfigError(
            f"--{name} must be a finite number of at most {FLOAT32_MAX:.3g} in size (float32, the "
            f"parameters' type), got {value:g}"
        )


def check_seed(value: int) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a non-negative integer (NumPy's SeedSequence)."""
    if value < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {value}")
