"""Data augmentation on the training device: random crop with zero padding and horizontal flip."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from backproplab.errors import ShapeError


def random_crop_flip(
    x: torch.Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True
) -> torch.Tensor:
    """Per image: pad by ``padding`` zeros on each side, crop a random HxW window, flip with p = 1/2.

    ``x`` (N, C, H, W) lies on the generator's device; the result has the same shape, dtype,
    device and memory format. The offsets (dy, dx) ~ U{0..2*padding} and the flips ~ Bernoulli(1/2)
    are drawn from ``generator``, one of each per image, so the augmentation is reproducible from
    the seed. Zero padding applies to normalised inputs, so a padded pixel is the mean colour for
    ``--preprocess standardize`` (torchvision's RandomCrop pads the raw image with black instead).
    Crop and flip are one gather: output pixel (i, j) of image n is padded pixel
    (dy_n + i, dx_n + j), or (dy_n + i, dx_n + W - 1 - j) when image n is flipped.
    """
    if x.dim() != 4:
        raise ShapeError(f"random_crop_flip expects images of shape (N, C, H, W), got {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    n, c, h, w = x.shape
    dev = x.device
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)  # (N,)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)  # (N,)
    flipped = (
        torch.rand(n, generator=generator, device=dev) < 0.5
        if flip
        else torch.zeros(n, dtype=torch.bool, device=dev)
    )
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x  # (N, C, H+2p, W+2p)
    ar_h = torch.arange(h, device=dev)
    ar_w = torch.arange(w, device=dev)
    rows = dy[:, None] + ar_h  # (N, H)
    cols = dx[:, None] + torch.where(flipped[:, None], w - 1 - ar_w, ar_w)  # (N, W)
    out = padded[
        torch.arange(n, device=dev)[:, None, None, None],
        torch.arange(c, device=dev)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]  # (N, C, H, W)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    return out
