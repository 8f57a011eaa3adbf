"""The one random crop and horizontal flip of the trainers, as a single gather, for NumPy arrays
(``train convnet-numpy``) and for torch tensors on any device (``train convnet``, ``train
speedrun``). Importing this module does not import torch.

Per image n, with offsets (dy_n, dx_n) ~ U{0..2p} and a flip f_n ~ Bernoulli(1/2) drawn from the
run's generator (one of each per image, dy before dx before the flips), output pixel (i, j) is the
padded image's pixel (dy_n + i, dx_n + j), or (dy_n + i, dx_n + W - 1 - j) when f_n: a crop of the
padded image at the offset, then the mirror image. :func:`crop_flip_gather` is that gather;
:func:`random_crop_flip_numpy` and :func:`random_crop_flip` pad with zeros (normalised inputs, so a
padded pixel is the mean colour under ``--preprocess standardize``; torchvision's RandomCrop pads
the raw image with black instead) and draw the offsets and flips.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from backproplab.errors import ShapeError

if TYPE_CHECKING:
    import torch

#: The zero padding of ``--augment`` in both ConvNet trainers.
AUGMENT_PADDING = 4


def crop_flip_gather(
    padded: Any,
    dy: Any,
    dx: Any,
    flipped: Any,
    size: tuple[int, int],
    arange: Callable[[int], Any],
    where: Callable[[Any, Any, Any], Any],
    source: Any = None,
) -> Any:
    """Crop windows of ``size`` (H, W) at (dy, dx) (N,) out of ``padded`` (M, C, H', W') and mirror
    those with ``flipped`` (N,) set, in one advanced-indexing gather; ``source`` (N,), when given,
    is the padded image each output comes from (a shuffle), else output n is image n. ``arange`` and
    ``where`` are the array library's (NumPy's, or torch's on the data's device). Returns (N, C, H, W)."""
    h, w = size
    c = padded.shape[1]
    rows = dy[:, None] + arange(h)  # (N, H)
    ar_w = arange(w)
    cols = dx[:, None] + where(flipped[:, None], w - 1 - ar_w, ar_w)  # (N, W)
    images = arange(len(dy)) if source is None else source  # (N,)
    return padded[
        images[:, None, None, None],
        arange(c)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]  # (N, C, H, W)


def _check_images(x: Any, padding: int) -> None:
    if x.ndim != 4:
        raise ShapeError(f"random_crop_flip expects images of shape (N, C, H, W), got {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")


def random_crop_flip_numpy(
    x: np.ndarray, rng: np.random.Generator, padding: int = AUGMENT_PADDING
) -> np.ndarray:
    """``x`` (N, C, H, W) padded with ``padding`` zeros, randomly cropped back to H x W and flipped
    with probability 1/2, every draw from ``rng`` (see the module docstring)."""
    _check_images(x, padding)
    n, _, h, w = x.shape
    dy = np.asarray(rng.integers(0, 2 * padding + 1, size=n))  # (N,)
    dx = np.asarray(rng.integers(0, 2 * padding + 1, size=n))  # (N,)
    flipped = np.asarray(rng.random(n) < 0.5)  # (N,)
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))  # (N, C, H+2p, W+2p)
    out: np.ndarray = crop_flip_gather(padded, dy, dx, flipped, (h, w), np.arange, np.where)
    return out


def random_crop_flip(
    x: torch.Tensor, generator: torch.Generator, padding: int = AUGMENT_PADDING, flip: bool = True
) -> torch.Tensor:
    """The torch twin of :func:`random_crop_flip_numpy`, on the generator's device (``x`` lies
    there): the same shape, dtype, device and memory format out; ``flip=False`` crops only."""
    import torch
    import torch.nn.functional as F

    _check_images(x, padding)
    n, _, h, w = x.shape
    dev = x.device
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)  # (N,)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)  # (N,)
    flipped = (
        torch.rand(n, generator=generator, device=dev) < 0.5
        if flip
        else torch.zeros(n, dtype=torch.bool, device=dev)
    )
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x  # (N, C, H+2p, W+2p)
    arange = functools.partial(torch.arange, device=dev)
    out: torch.Tensor = crop_flip_gather(padded, dy, dx, flipped, (h, w), arange, torch.where)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    return out
