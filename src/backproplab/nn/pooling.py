"""Pooling: ``MaxPool2d``, ``AdaptiveAvgPool2d`` and ``GlobalAvgPool2d``, as ``torch.nn``'s.

Like :class:`~backproplab.nn.Conv2d`, they take NCHW-shaped arrays, work in channels-last (NHWC)
memory and return NCHW-shaped views of channels-last memory (see :mod:`backproplab.nn.conv`).
"""

from __future__ import annotations

import numpy as np

from backproplab.errors import ShapeError
from backproplab.nn.conv import conv_output_size, nchw, nhwc, offset_span, pair
from backproplab.nn.grad_mode import is_grad_enabled
from backproplab.nn.module import Module, check_dout, check_input
from backproplab.nn.parallel import parallel_rows, row_chunks


class MaxPool2d(Module):
    """Y[n, c, y, x] = max over the window (i, j) of Xp[n, c, y * sH + i, x * sW + j], as
    ``torch.nn.MaxPool2d``.

    Xp is X padded with -inf by ``padding`` (which must be at most half the kernel, as torch
    requires); ``stride`` defaults to ``kernel_size``; floor mode, no dilation. The practical's
    pooling is ``MaxPool2d(3, stride=2, padding=1)``.

    Shapes: (N, C, H, W) -> (N, C, Ho, Wo), Ho = floor((H + 2 pH - kH) / sH) + 1 (same for W).
    Forward takes the running maximum over the kH * kW window offsets, one strided ``np.maximum``
    per offset, and records which offset won (uint8, the first maximum in row-major window order
    on ties, as torch). Backward: dL/dX receives each G = dL/dY value at its window's winning
    position (summed where windows overlap): one strided add of G * (winner == offset) per offset.
    Both run over the batch in chunks of about :data:`~backproplab.nn.parallel.CHUNK_BYTES` of input,
    so that a chunk stays in the cache across the kH * kW passes, split across threads
    (:func:`~backproplab.nn.parallel.parallel_rows`); every value is computed by the same operations
    whatever the chunking. Caches only the winning offsets (1 byte per output value) and the input shape.
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self.padding = pair(padding, "padding")
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0:
            raise ValueError(
                "MaxPool2d needs kernel_size >= 1, stride >= 1, padding >= 0; "
                f"got {kh, kw}, {sh, sw}, {ph, pw}"
            )
        if 2 * ph > kh or 2 * pw > kw:
            raise ValueError(
                f"MaxPool2d: padding {self.padding} must be at most half the kernel size {self.kernel_size}"
            )
        if kh * kw > 255:
            raise ValueError(f"MaxPool2d supports windows of at most 255 values, got {kh}x{kw}")

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        ho, wo = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
        if ho < 1 or wo < 1:
            raise ShapeError(
                f"MaxPool2d: input of spatial size {h}x{w} is smaller than the window {kh}x{kw} "
                f"(padding {self.padding})"
            )
        return ho, wo

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, 4, {})
        n, c, h, w = x.shape
        ho, wo = self.output_hw(h, w)
        xh = nhwc(x)  # (N, H, W, C) view
        out = np.empty((n, ho, wo, c), dtype=x.dtype)
        # the winning offsets only when a backward can follow (not inside no_grad)
        winner = np.empty((n, ho, wo, c), dtype=np.uint8) if is_grad_enabled() else None

        def pool_rows(rows: slice) -> None:
            for r in row_chunks(rows, h * w * c * x.itemsize):
                self._max_over_window(xh[r], out[r], None if winner is None else winner[r])

        parallel_rows(n, pool_rows, h * w * c)
        self._save_for_backward(winner, (n, h, w, c))
        return nchw(out)

    def _max_over_window(self, xh: np.ndarray, out: np.ndarray, winner: np.ndarray | None) -> None:
        """out = the window maxima of the images ``xh`` (n, H, W, C), winner (unless None) = the
        winning offsets."""
        h, w = xh.shape[1:3]
        ho, wo = out.shape[1:3]
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        out.fill(-np.inf)
        if winner is not None:
            winner.fill(0)
        for i in range(kh):
            oh_lo, oh_hi, hs = offset_span(h, ho, i, sh, ph)
            for j in range(kw):
                ow_lo, ow_hi, ws = offset_span(w, wo, j, sw, pw)
                o = out[:, oh_lo:oh_hi, ow_lo:ow_hi]  # (n, a, b, C) view
                v = xh[:, hs, ws]  # (n, a, b, C) the values at this window offset
                k = np.uint8(i * kw + j)
                # offsets increase, so the winner is the largest offset that improved the maximum
                better = v > o if winner is not None and k else None  # strictly: the first maximum wins ties
                np.maximum(o, v, out=o)
                if better is not None and winner is not None:
                    wv = winner[:, oh_lo:oh_hi, ow_lo:ow_hi]
                    np.maximum(wv, better * k, out=wv)  # measured faster than np.copyto(where=)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        winner, (n, h, w, c) = self._saved()
        expected = (n, c, winner.shape[1], winner.shape[2])
        check_dout(self, dout, expected)
        g = nhwc(dout)  # (N, Ho, Wo, C) view
        dx = np.empty((n, h, w, c), dtype=dout.dtype)

        def scatter_rows(rows: slice) -> None:
            for r in row_chunks(rows, h * w * c * dout.itemsize):
                self._scatter_to_winners(g[r], winner[r], dx[r])

        parallel_rows(n, scatter_rows, h * w * c)
        return nchw(dx)

    def _scatter_to_winners(self, g: np.ndarray, winner: np.ndarray, dx: np.ndarray) -> None:
        """dx (n, H, W, C) = each value of g (n, Ho, Wo, C) added at its window's winning position."""
        h, w = dx.shape[1:3]
        ho, wo = g.shape[1:3]
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        dx.fill(0)
        for i in range(kh):
            oh_lo, oh_hi, hs = offset_span(h, ho, i, sh, ph)
            for j in range(kw):
                ow_lo, ow_hi, ws = offset_span(w, wo, j, sw, pw)
                sel = winner[:, oh_lo:oh_hi, ow_lo:ow_hi] == i * kw + j  # (n, a, b, C) bool
                d = dx[:, hs, ws]  # (n, a, b, C) strided view
                d += g[:, oh_lo:oh_hi, ow_lo:ow_hi] * sel  # the mask as 0/1: faster than np.add(where=)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def adaptive_bins(size_in: int, size_out: int) -> list[tuple[int, int]]:
    """torch's adaptive pooling bins: [floor(o * in / out), ceil((o + 1) * in / out)) for o < out."""
    return [((o * size_in) // size_out, -(-((o + 1) * size_in) // size_out)) for o in range(size_out)]


class AdaptiveAvgPool2d(Module):
    """Average over adaptive bins to a fixed (Ho, Wo) output, as ``torch.nn.AdaptiveAvgPool2d``.

    Y[n, c, p, q] = mean of X[n, c, h, w] over the bin rows [floor(p H / Ho), ceil((p + 1) H / Ho)) and
    columns likewise. Shapes: (N, C, H, W) -> (N, C, Ho, Wo). Backward spreads each G = dL/dY value
    evenly over its bin (divided by the bin's size), summing where bins overlap. Caches the input shape.
    ``output_size=1`` is global average pooling (:class:`GlobalAvgPool2d`).
    """

    def __init__(self, output_size: int | tuple[int, int]) -> None:
        super().__init__()
        self.output_size = pair(output_size, "output_size")
        if min(self.output_size) < 1:
            raise ValueError(f"AdaptiveAvgPool2d needs output_size >= 1, got {self.output_size}")

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, 4, {})
        n, c, h, w = x.shape
        ho, wo = self.output_size
        xh = nhwc(x)  # (N, H, W, C)
        if (ho, wo) == (1, 1):
            out = xh.mean(axis=(1, 2), keepdims=True, dtype=x.dtype)  # (N, 1, 1, C)
        else:
            out = np.empty((n, ho, wo, c), dtype=x.dtype)
            for p, (h0, h1) in enumerate(adaptive_bins(h, ho)):
                for q, (w0, w1) in enumerate(adaptive_bins(w, wo)):
                    out[:, p, q] = xh[:, h0:h1, w0:w1].mean(axis=(1, 2))  # (N, C)
        self._save_for_backward(x.shape)
        return nchw(out)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (shape,) = self._saved()
        n, c, h, w = shape
        ho, wo = self.output_size
        check_dout(self, dout, (n, c, ho, wo))
        g = nhwc(dout)  # (N, Ho, Wo, C)
        dx = np.zeros((n, h, w, c), dtype=dout.dtype)
        for p, (h0, h1) in enumerate(adaptive_bins(h, ho)):
            for q, (w0, w1) in enumerate(adaptive_bins(w, wo)):
                area = (h1 - h0) * (w1 - w0)
                dx[:, h0:h1, w0:w1] += g[:, p : p + 1, q : q + 1] / area  # broadcast over the bin
        return nchw(dx)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class GlobalAvgPool2d(AdaptiveAvgPool2d):
    """Global average pooling: (N, C, H, W) -> (N, C, 1, 1), Y[n, c] = mean over h, w of X[n, c, h, w].

    ``torch.nn.AdaptiveAvgPool2d(1)``; dL/dX = G / (H W) broadcast over the spatial positions.
    """

    def __init__(self) -> None:
        super().__init__(1)

    def extra_repr(self) -> str:
        return ""
