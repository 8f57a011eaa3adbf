"""The one way non-finite numbers are written to JSON by every file and report of the project."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def json_safe(obj: Any) -> Any:
    """``obj`` ready for ``json.dumps(..., allow_nan=False)``: every non-finite float (also a NumPy
    scalar, and inside dicts, lists and tuples) becomes the string ``"nan"``, ``"inf"`` or
    ``"-inf"``, so the file stays strict JSON and still says which of the three the value was (a
    diverged loss is ``"nan"``, not a missing value); NumPy scalars become Python numbers."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
