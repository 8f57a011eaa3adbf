"""The fault-injection suite: signals at chosen steps, a full file system, concurrent runs, corrupt
inputs. Every test here is marked ``faults`` (``pytest tests/faults`` or ``pytest -m faults``) and
takes a few seconds on the 8x8 digits. Helpers live in :mod:`faultkit`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def torch_one_thread() -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
