"""A sweep file's ``[space]`` as Ray Tune search spaces, and the trials they give.

``grid`` is ``tune.grid_search``, ``choice`` is ``tune.choice``, ``uniform`` and ``loguniform`` are
``tune.uniform`` / ``tune.loguniform`` (``tune.randint`` / ``tune.lograndint`` with both ends
included for an integer flag). The trials are drawn once, when the sweep starts, by Tune's own
variant generator with a generator of the file's ``seed``: every grid point, ``num_samples`` times,
each with its own draw of the random dimensions (Tune's semantics), in Tune's order. The same file
gives the same trials, and every drawn value is checked before any trial starts; drawn floats are
rounded to :data:`SIGNIFICANT_DIGITS` significant digits so that a trial's flags can be typed back.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from backproplab.sweep.spec import Dimension, SweepSpec

#: Drawn floats keep this many significant digits.
SIGNIFICANT_DIGITS = 4


def tune_domain(dim: Dimension) -> Any:
    """The Ray Tune search space of one dimension."""
    from ray import tune

    if dim.kind == "grid":
        return tune.grid_search(list(dim.values))
    if dim.kind == "choice":
        return tune.choice(list(dim.values))
    low, high = dim.values
    if dim.kind == "uniform":
        return tune.randint(low, high + 1) if dim.integer else tune.uniform(low, high)
    return tune.lograndint(low, high + 1) if dim.integer else tune.loguniform(low, high)


def tune_space(spec: SweepSpec) -> dict[str, Any]:
    """The sweep's search space as a Ray Tune ``param_space`` (flag -> Tune domain)."""
    return {flag: tune_domain(dim) for flag, dim in spec.space.items()}


def _round(value: float, low: float, high: float) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    digits = SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(value)))
    return min(max(round(value, digits), low), high)


def _native(value: Any, dim: Dimension) -> Any:
    """A drawn value as the plain Python value of the flag (NumPy scalars become int / float)."""
    if dim.kind in ("grid", "choice"):
        return value
    if dim.integer:
        return int(value)
    return _round(float(value), *dim.values)


def sample_trials(spec: SweepSpec) -> list[dict[str, Any]]:
    """The searched flags of every trial, in order (see the module docstring)."""
    from ray.tune.search.variant_generator import generate_variants

    rng = np.random.default_rng(spec.seed)
    space = tune_space(spec)
    trials = []
    for _ in range(spec.num_samples):
        for _vars, resolved in generate_variants(space, random_state=rng):
            trials.append({flag: _native(resolved[flag], dim) for flag, dim in spec.space.items()})
    return trials
