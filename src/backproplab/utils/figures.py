"""The one way every picture of the project is made and saved: matplotlib's Agg backend (no display
needed), the format from the file's extension, written atomically (a reader never sees half a
picture, and an error leaves the previous one in place)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from backproplab.errors import ConfigError
from backproplab.utils.atomic import atomic_path

#: Image formats chosen by the output file's extension.
FORMATS = ("png", "svg", "pdf")


def image_format(path: str | os.PathLike[str]) -> str:
    """The format of ``path`` from its extension (png, svg, pdf); ConfigError for any other."""
    ext = Path(path).suffix.lower().lstrip(".")
    if ext not in FORMATS:
        raise ConfigError(f"cannot write a picture to {path}: use a .png, .svg or .pdf file name")
    return ext


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (imported on first use: commands that draw nothing
    never import matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` atomically, in the format of its extension, and close it."""
    fmt = image_format(path)
    try:
        with atomic_path(path, suffix=f".{fmt}") as tmp:
            fig.savefig(tmp, dpi=dpi, format=fmt)
    finally:
        pyplot().close(fig)
    return Path(path)
