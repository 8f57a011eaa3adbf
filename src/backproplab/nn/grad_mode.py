"""``no_grad``: forward passes that will not be followed by a backward pass cache nothing."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_state = threading.local()


def is_grad_enabled() -> bool:
    """True unless inside a :func:`no_grad` block (the default)."""
    return getattr(_state, "enabled", True)


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Run forward passes without caching what backward needs, as ``torch.no_grad``.

    A module's ``backward`` after a forward inside this block raises a clear error.
    """
    prev = is_grad_enabled()
    _state.enabled = False
    try:
        yield
    finally:
        _state.enabled = prev
