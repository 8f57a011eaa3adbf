"""The suite's own asserts can fail: none of the forms that are always true (or never checked).

* ``assert a == b if c else d`` parses as ``assert (a == b) if c else d``: with c false it asserts d,
  a constant; parenthesise the conditional (``assert a == (b if c else d)``);
* ``assert (x, "message")``: a non-empty tuple is always true;
* ``assert <constant>`` or ``assert x or <truthy constant>``;
* ``assert x == x`` (the same expression on both sides of a comparison).
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
#: User code as students write it (read by ``backproplab check``), not the suite's own tests.
EXCLUDED = ("fixtures",)


def never_failing(test: ast.expr) -> str | None:
    """Why the assert with this test expression cannot fail, or None."""
    if isinstance(test, ast.IfExp):
        return "a conditional expression: `assert a == b if c else d` asserts d when c is false"
    if isinstance(test, ast.Tuple | ast.List | ast.Set | ast.Dict | ast.JoinedStr):
        return "a literal is always true"
    if isinstance(test, ast.Constant):
        return "a constant"
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or):
        if any(isinstance(v, ast.Constant) and v.value for v in test.values):
            return "`or` a true constant"
    if isinstance(test, ast.Compare):
        sides = [ast.dump(e) for e in (test.left, *test.comparators)]
        if len(set(sides)) < len(sides):
            return "compares an expression with itself"
    return None


def test_no_assert_in_the_suite_is_always_true() -> None:
    found = []
    files = [p for p in TESTS.rglob("*.py") if not set(EXCLUDED) & set(p.relative_to(TESTS).parts)]
    assert len(files) > 50, "the scan found too few test files"
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Assert) and (why := never_failing(node.test)):
                found.append(f"{path.relative_to(TESTS)}:{node.lineno}: {why}")
    assert not found, "\n".join(found)


def test_the_scan_recognises_each_form() -> None:
    for src in ("x == 1 if c else 2", "(x, 'msg')", "True", "x or 1", "a.b == a.b", "f'{x}'"):
        assert never_failing(ast.parse(src, mode="eval").body) is not None, src
    for src in ("x == (1 if c else 2)", "x", "x or y", "a.b == c.b", "0 < x < 1"):
        assert never_failing(ast.parse(src, mode="eval").body) is None, src
