"""The one crop-and-flip gather: NumPy and torch give the same images for the same draws, and each
output pixel is the one the formula names."""

from __future__ import annotations

import functools

import numpy as np
import torch

from backproplab.training.augment import crop_flip_gather


def test_numpy_and_torch_gather_the_same_pixels_and_follow_the_formula() -> None:
    rng = np.random.default_rng(0)
    n, c, h, w, p = 6, 2, 5, 7, 2
    padded = rng.standard_normal((n, c, h + 2 * p, w + 2 * p)).astype(np.float32)
    dy, dx = rng.integers(0, 2 * p + 1, n), rng.integers(0, 2 * p + 1, n)
    flipped = rng.random(n) < 0.5
    source = rng.permutation(n)
    got = crop_flip_gather(padded, dy, dx, flipped, (h, w), np.arange, np.where, source=source)
    want = np.empty((n, c, h, w), np.float32)
    for k in range(n):
        for i in range(h):
            for j in range(w):
                col = dx[k] + (w - 1 - j if flipped[k] else j)
                want[k, :, i, j] = padded[source[k], :, dy[k] + i, col]
    np.testing.assert_array_equal(got, want)
    t = [torch.from_numpy(a) for a in (padded, dy, dx, flipped, source)]
    arange = functools.partial(torch.arange, device="cpu")
    got_t = crop_flip_gather(t[0], t[1], t[2], t[3], (h, w), arange, torch.where, source=t[4])
    np.testing.assert_array_equal(got_t.numpy(), want)
