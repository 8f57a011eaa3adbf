"""The first decode shows a progress bar (tqdm, which stays silent when stderr is not a terminal)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from backproplab.data import decode


def test_decode_reports_every_image_to_the_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    bars: list[dict[str, Any]] = []

    class Bar:
        def __init__(self, **kw: Any) -> None:
            self.kw, self.n = kw, 0
            bars.append({"kw": kw, "bar": self})

        def __enter__(self) -> Bar:
            return self

        def __exit__(self, *exc: Any) -> None:
            return None

        def update(self, k: int) -> None:
            self.n += k

    monkeypatch.setattr(decode, "tqdm", lambda **kw: Bar(**kw))
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), 7, np.uint8)).save(buf, format="PNG")
    n = 2 * decode.PROGRESS_CHUNK + 17
    x = decode.decode_images([f"{i}.png" for i in range(n)], [buf.getvalue()] * n)
    assert x.shape == (n, 4, 4, 3) and int(x[-1, 0, 0, 0]) == 7
    (only,) = bars
    assert only["kw"]["total"] == n and only["kw"]["disable"] is None  # on a terminal only
    assert only["bar"].n == n  # every image counted, the last partial chunk too
