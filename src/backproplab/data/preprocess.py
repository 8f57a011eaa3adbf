"""Float conversion, layouts and input normalisation.

Layouts of a batch of N images of size H x W with C channels:

* ``"NHWC"``: (N, H, W, C), as stored in :class:`~backproplab.data.Dataset`;
* ``"NCHW"``: (N, C, H, W), what ``torch.nn.Conv2d`` takes;
* ``"flat"``: (N, C*H*W), in C, H, W order, i.e. ``NCHW.reshape(N, -1)``. This is the row format
  of the CIFAR-10 python batches and what ``torch.nn.Flatten`` makes of an NCHW batch, so an MLP
  sees the same feature order in NumPy and in PyTorch.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from backproplab.errors import ConfigError, DataError

Layout = Literal["NHWC", "NCHW", "flat"]
LAYOUTS: tuple[str, ...] = ("NHWC", "NCHW", "flat")
NormMode = Literal["mean_image", "standardize", "none"]
NORM_MODES: tuple[str, ...] = ("mean_image", "standardize", "none")


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def to_float(x: np.ndarray, layout: Layout = "NHWC") -> np.ndarray:
    """uint8 (N, H, W, C) images -> float32 in ``layout``, values unchanged (0..255).

    Returns a new C-contiguous array: (N, H, W, C), (N, C, H, W) or (N, C*H*W).
    """
    _check_layout(layout)
    arr = np.asarray(x)
    if arr.ndim != 4:
        raise DataError(f"to_float expects images of shape (N, H, W, C), got shape {arr.shape}")
    if layout == "NHWC":
        return arr.astype(np.float32)
    nchw = np.ascontiguousarray(arr.transpose(0, 3, 1, 2), dtype=np.float32)
    return nchw if layout == "NCHW" else nchw.reshape(len(nchw), -1)


def _channel_axes(layout: str, ndim: int) -> tuple[int, ...]:
    """The axes to reduce for per-channel statistics (all but the channel axis)."""
    if layout == "NHWC":
        return tuple(range(ndim - 1))
    return (0, *range(2, ndim))  # NCHW, or flat reshaped to (N, C, H*W)


class Normalizer:
    """Input normalisation fitted on the training set and applied to every split.

    Modes:

    * ``"mean_image"`` (the practical's default): subtract the per-pixel mean image of the training
      set; values stay on the 0..255 scale. Works with any layout.
    * ``"standardize"``: divide by 255, then subtract the per-channel mean and divide by the
      per-channel std (both over the training set), so each channel has mean 0 and std 1. For the
      ``"flat"`` layout pass ``channels`` (the C of (N, C*H*W)).
    * ``"none"``: only cast to float32.

    ``fit(x_train)`` takes float images in ``layout``; ``normalizer(x)`` returns float32 of the same
    shape. ``state_dict()`` / ``from_state_dict()`` save and restore the fitted statistics
    (``mean``, ``std`` in 0..1 units for standardize; ``mean`` on the 0..255 scale for mean_image).
    """

    def __init__(
        self, mode: NormMode = "mean_image", layout: Layout = "NHWC", channels: int | None = None
    ) -> None:
        if mode not in NORM_MODES:
            raise ConfigError(f"normalization mode must be one of {NORM_MODES}, got {mode!r}")
        _check_layout(layout)
        if mode == "standardize" and layout == "flat" and (channels is None or channels < 1):
            raise ConfigError("Normalizer('standardize', layout='flat') needs channels (the C of N x C*H*W)")
        self.mode: str = mode
        self.layout: str = layout
        self.channels = channels
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.fitted = mode == "none"

    # ------------------------------------------------------------------ fit / apply
    def fit(self, x_train: np.ndarray) -> Normalizer:
        """Compute the statistics on the training images ``x_train`` (float, in ``layout``); returns self."""
        x = np.asarray(x_train)
        if x.ndim < 2 or len(x) == 0:
            raise DataError(f"Normalizer.fit needs a non-empty batch of images, got shape {x.shape}")
        if self.mode == "mean_image":
            self.mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
        elif self.mode == "standardize":
            xc = self._channel_view(x) / 255.0
            axes = _channel_axes(self.layout, xc.ndim)
            self.mean = xc.mean(axis=axes, dtype=np.float64).astype(np.float32)
            std = xc.std(axis=axes, dtype=np.float64)
            self.std = np.where(std > 1e-8, std, 1.0).astype(np.float32)  # a constant channel stays 0
        self.fitted = True
        return self

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Normalise ``x`` (in ``layout``, the shape fitted on but any N) -> float32."""
        if not self.fitted:
            raise RuntimeError("Normalizer is not fitted: call fit(x_train) first")
        arr = np.asarray(x, dtype=np.float32)
        if self.mode == "none":
            return arr.copy() if arr is x else arr
        if self.mode == "mean_image":
            assert self.mean is not None
            if arr.shape[1:] != self.mean.shape:
                raise DataError(
                    f"Normalizer was fitted on images of shape {self.mean.shape}, got {arr.shape[1:]}"
                )
            return arr - self.mean
        assert self.mean is not None and self.std is not None
        xc = self._channel_view(arr)
        channels_last = self.layout == "NHWC"
        shape = (-1,) if channels_last else (-1,) + (1,) * (xc.ndim - 2)
        n_ch = xc.shape[-1] if channels_last else xc.shape[1]
        if n_ch != len(self.mean):
            raise DataError(f"Normalizer was fitted on {len(self.mean)} channels, got {n_ch}")
        scale = (1.0 / (255.0 * self.std)).astype(np.float32).reshape(shape)
        offset = (self.mean / self.std).astype(np.float32).reshape(shape)
        return (xc * scale - offset).reshape(arr.shape).astype(np.float32, copy=False)

    def _channel_view(self, x: np.ndarray) -> np.ndarray:
        if self.layout != "flat":
            if x.ndim != 4:
                raise DataError(
                    f"Normalizer({self.mode!r}, layout={self.layout!r}) expects 4-D images, "
                    f"got shape {x.shape}"
                )
            return x
        assert self.channels is not None
        if x.ndim != 2 or x.shape[1] % self.channels:
            raise DataError(f"flat images of shape {x.shape} cannot be split into {self.channels} channels")
        return x.reshape(len(x), self.channels, -1)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The configuration and fitted statistics, as plain values and float32 arrays."""
        state: dict[str, Any] = {"mode": self.mode, "layout": self.layout, "channels": self.channels}
        if self.mean is not None:
            state["mean"] = self.mean.copy()
        if self.std is not None:
            state["std"] = self.std.copy()
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Normalizer:
        """Rebuild a fitted normalizer from :meth:`state_dict`'s output."""
        try:
            norm = cls(state["mode"], state["layout"], state.get("channels"))
        except KeyError as exc:
            raise DataError(f"Normalizer state is missing {exc.args[0]!r}") from None
        needed = {"mean_image": ("mean",), "standardize": ("mean", "std"), "none": ()}[norm.mode]
        missing = [k for k in needed if k not in state]
        if missing:
            raise DataError(f"Normalizer state for mode {norm.mode!r} is missing {missing}")
        norm.mean = np.asarray(state["mean"], dtype=np.float32) if "mean" in state else None
        norm.std = np.asarray(state["std"], dtype=np.float32) if "std" in state else None
        norm.fitted = True
        return norm

    def __repr__(self) -> str:
        return f"Normalizer(mode={self.mode!r}, layout={self.layout!r}, fitted={self.fitted})"
