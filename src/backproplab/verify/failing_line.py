"""The line of a user's code that raised, with the shapes of the arrays it names.

A shape error from deep inside NumPy ("matmul: Input operand 1 has a mismatch in its core
dimension 0 ...") says what went wrong but not with which arrays. :func:`failing_line` finds the
innermost frame of the user's code in the traceback, reads its source line and evaluates, in that
frame, the names, attributes and constant subscripts the line mentions (``dout``, ``self.W``,
``self.params["weight"].T``); the arrays (NumPy or torch) among them are listed with their shapes:

    in `dx = dout @ self.params["weight"].T`: dout 4x3, self.params["weight"] 3x5, self.params["weight"].T 5x3

Only plain expressions are evaluated: names, attribute access and subscripts by a constant (no
calls, no arithmetic; a property's getter is the one user code that may run).
"""

from __future__ import annotations

import ast
import linecache
from types import FrameType, TracebackType
from typing import Any

import numpy as np

#: At most this many arrays are listed (the line's first ones, in source order).
MAX_LISTED = 6


def innermost_user_frame(exc: BaseException, files: set[str] | None = None) -> tuple[FrameType, int] | None:
    """(frame, line number) of the innermost traceback entry in the user's code: in one of
    ``files``, or else in no installed package and not in backproplab."""
    found = None
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        file = tb.tb_frame.f_code.co_filename
        if (files and file in files) or (
            not files and "site-packages" not in file and "backproplab" not in file
        ):
            found = (tb.tb_frame, tb.tb_lineno)
        tb = tb.tb_next
    return found


def user_frame(exc: BaseException, files: set[str] | None = None) -> str:
    """``file:line`` of :func:`innermost_user_frame`, or "" when the traceback has none."""
    found = innermost_user_frame(exc, files)
    return "" if found is None else f"{found[0].f_code.co_filename}:{found[1]}"


def _plain(node: ast.AST) -> bool:
    """A name, or attributes / constant subscripts of one (nothing that calls or computes)."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        if isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Constant):
            return False
        node = node.value
    return isinstance(node, ast.Name)


def _is_tensor(value: object) -> bool:
    """A torch tensor (without importing torch: its class says so)."""
    return type(value).__module__.startswith("torch") and hasattr(value, "shape") and hasattr(value, "ndim")


def _shape(a: Any) -> str:
    return "x".join(map(str, tuple(a.shape))) if a.ndim else "scalar"


def failing_line(exc: BaseException) -> str:
    """``in `<line>`: name 4x3, ...`` for the user's line that raised ``exc``, or "" when the line
    or its arrays cannot be told."""
    found = innermost_user_frame(exc)
    if found is None:
        return ""
    frame, lineno = found
    line = linecache.getline(frame.f_code.co_filename, lineno).strip()
    try:
        tree = ast.parse(line)
    except SyntaxError:  # one line of a statement that spans several
        return ""
    listed: list[str] = []
    seen: set[str] = set()
    nodes = sorted(
        (n for n in ast.walk(tree) if isinstance(n, (ast.Name, ast.Attribute, ast.Subscript)) and _plain(n)),
        key=lambda n: (n.col_offset, -(n.end_col_offset or 0)),
    )
    for node in nodes:
        text = ast.get_source_segment(line, node) or ast.unparse(node)  # as the user wrote it
        if text in seen or isinstance(getattr(node, "ctx", None), ast.Store):
            continue  # an assignment's target holds its old value, not one the line used
        seen.add(text)
        try:
            value = eval(text, frame.f_globals, frame.f_locals)  # a plain name, attribute or subscript
        except Exception:  # an attribute not set yet, a key not there
            continue
        if isinstance(value, np.ndarray) or _is_tensor(value):
            listed.append(f"{text} {_shape(value)}")
    if not listed:
        return ""
    return f"in `{line}`: " + ", ".join(listed[:MAX_LISTED])
