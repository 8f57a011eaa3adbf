"""Fixtures of ``backproplab check``: correct user files, and copies with one planted bug."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def planted(tmp_path: Path) -> Callable[[str, str, str, str], Path]:
    """``planted(folder, file, old, new)``: a copy of fixtures/<folder> with ``old`` replaced by ``new``
    in ``file`` (the text must occur exactly once, so a fixture edit cannot silently void a test)."""

    def make(folder: str, file: str, old: str, new: str) -> Path:
        dst = tmp_path / folder
        shutil.copytree(FIXTURES / folder, dst)
        p = dst / file
        text = p.read_text()
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {file}"
        p.write_text(text.replace(old, new))
        return dst

    return make
