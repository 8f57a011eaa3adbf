"""tests/nn: the files named ``*_vs_torch.py`` compare the engine with PyTorch and carry the ``torch``
marker; with ``-m "not torch"`` they are not even imported, so the engine's own tests run where torch
is not installed (the other files import torch only inside their ``torch``-marked tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

TORCH_FILES = "_vs_torch.py"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name.endswith(TORCH_FILES) and "not torch" in config.getoption("markexpr"):
        return True
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name.endswith(TORCH_FILES):
            item.add_marker(pytest.mark.torch)
