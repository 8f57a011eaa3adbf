"""Fixtures of the sweep tests (helpers in ``sweep_helpers``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sweep_helpers import RayEnv

from backproplab.sweep.sweep_dir import SweepDir


@pytest.fixture
def ray_env() -> Iterator[RayEnv]:
    """A Ray environment of this test; every Ray process it started is stopped at the end."""
    env = RayEnv()
    try:
        yield env
    finally:
        env.close()


@pytest.fixture
def sweep_dir(tmp_path: Path) -> SweepDir:
    sweep = SweepDir(tmp_path / "sweep")
    sweep.path.mkdir()
    return sweep
