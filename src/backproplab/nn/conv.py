"""2-D convolution (``Conv2d``) by im2col and one matrix product, plus the window geometry it shares
with the pooling layers.

Layout. The public interface is NCHW, as ``torch.nn.Conv2d``. Internally every layer of this
package's ConvNet works on channels-last (NHWC) memory: an NCHW-shaped array whose memory is NHWC
is just ``nhwc_array.transpose(0, 3, 1, 2)``, a view with other strides (PyTorch's
``channels_last`` memory format). Such an array *is* an NCHW array for every NumPy operation, so
results do not depend on the memory layout; only speed does. In channels-last memory the im2col
matrix has contiguous rows and a convolution is one (N*Ho*Wo, kH*kW*C_in) x (kH*kW*C_in, C_out)
product whose result is already the NHWC output, with no transposes of activations. A plain
C-contiguous NCHW input works too (it costs one gather inside im2col).
"""

from __future__ import annotations

import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

from backproplab.errors import ShapeError
from backproplab.nn import init, winograd
from backproplab.nn.module import Module, check_dout, check_input
from backproplab.nn.parameter import Parameter

#: The convolution algorithms of :class:`Conv2d` (see its docstring).
ALGORITHMS = ("auto", "im2col", "winograd")
#: ``algorithm="auto"`` takes Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions with at least this
#: many input channels (with fewer, its 16 products are too small for BLAS to run fast and the
#: transforms' memory traffic dominates). Measured at batch 32, 2 threads: forward + backward of the
#: ConvNet's 64-channel 32x32 layer alone, im2col 115-141 ms against Winograd 159-169 ms; the whole
#: training step with that layer by im2col 2% faster on average over three interleaved comparisons
#: (-2% to +5.5%); 128 channels at 16x16 and more favour Winograd ...
WINOGRAD_MIN_CHANNELS = 128
#: ... and at least this many 2x2 output tiles in the batch (the kernel transforms, 16 C_in C_out
#: values, must be amortised over the tiles: at batch 32 a 2x2 output, 32 tiles, is faster by im2col).
WINOGRAD_MIN_TILES = 64

#: Below this many input channels, dL/dX goes through col2im: the transposed-convolution matmul
#: would have only C_in output columns, which BLAS runs slowly.
TRANSPOSED_MIN_CHANNELS = 8


class Workspace:
    """One reusable scratch buffer per thread for the im2col matrices, which live only inside one
    forward or backward call.

    Arrays above glibc's 32 MiB mmap threshold are fresh pages at every allocation, which the
    kernel zeroes page by page: for the ConvNet's first block at batch 32 (75 MiB of cols) that
    costs about as much as the unfold itself. The buffer grows to the largest request and is kept
    until :func:`release_workspace`.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A C-contiguous array of ``shape`` and ``dtype`` backed by the buffer (contents undefined;
        valid until the next ``get`` on this thread)."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.nbytes < nbytes:
            self._local.buf = buf = None  # free the old buffer before allocating the larger one
            self._local.buf = buf = np.empty(nbytes, dtype=np.uint8)
        return buf[:nbytes].view(dtype).reshape(shape)

    def release(self) -> None:
        self._local.buf = None


WORKSPACE = Workspace()


def release_workspace() -> None:
    """Free this thread's im2col and Winograd scratch buffers (they keep the size of the largest batch seen)."""
    WORKSPACE.release()
    winograd.release_workspace()


def pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    """``3`` -> (3, 3); ``(3, 2)`` -> (3, 2); anything else is a ValueError naming ``name``."""
    if isinstance(value, int | np.integer):
        return int(value), int(value)
    if isinstance(value, tuple | list) and len(value) == 2:
        if all(isinstance(v, int | np.integer) for v in value):
            return int(value[0]), int(value[1])
    raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """floor((size + 2 * padding - kernel) / stride) + 1, as torch (no dilation, floor mode)."""
    return (size + 2 * padding - kernel) // stride + 1


def offset_span(
    size_in: int, size_out: int, offset: int, stride: int, padding: int
) -> tuple[int, int, slice]:
    """Where kernel offset ``offset`` (0..k-1) reads the unpadded input along one axis.

    Output position o reads input position o * stride + offset - padding. Returns (o_lo, o_hi,
    in_slice): outputs o_lo <= o < o_hi read inside the input (the others read padding), and
    ``in_slice`` selects, in order, the input positions they read.
    """
    shift = offset - padding
    o_lo = max(0, -(shift // stride))  # smallest o with o * stride + shift >= 0
    o_hi = min(size_out, (size_in - 1 - shift) // stride + 1)  # one past the largest o inside
    o_hi = max(o_hi, o_lo)
    start = o_lo * stride + shift
    stop = start + (o_hi - o_lo - 1) * stride + 1 if o_hi > o_lo else start
    return o_lo, o_hi, slice(start, stop, stride)


def pad_nhwc(xh: np.ndarray, padding: tuple[int, int]) -> np.ndarray:
    """Zero-pad NHWC ``xh`` (N, H, W, C) to (N, H + 2 pH, W + 2 pW, C), C-contiguous (a copy unless
    there is no padding and ``xh`` is contiguous already)."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return np.ascontiguousarray(xh)
    n, h, w, c = xh.shape
    xp = np.empty((n, h + 2 * ph, w + 2 * pw, c), dtype=xh.dtype)
    xp[:, :ph] = 0  # only the border is zeroed; the interior is copied once
    xp[:, ph + h :] = 0
    xp[:, ph : ph + h, :pw] = 0
    xp[:, ph : ph + h, pw + w :] = 0
    xp[:, ph : ph + h, pw : pw + w] = xh
    return xp


def im2col(
    xh: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Unfold NHWC ``xh`` (N, H, W, C) into cols (N, Ho, Wo, kH, kW, C), zero where a window hangs over
    the padding.

    cols[n, oh, ow, i, j, c] = Xp[n, oh * sH + i, ow * sW + j, c] with Xp the zero-padded input. In a
    C-contiguous padded NHWC array the kW * C values of one window row are contiguous, so the whole
    unfold is one copy from a strided view (N, Ho, Wo, kH, kW * C) of Xp with rows of kW * C values.
    ``out`` (same shape and dtype, C-contiguous) is filled instead of a new array when given.
    """
    n, h, w, c = xh.shape
    (kh, kw), (sh, sw) = kernel, stride
    ho, wo = conv_output_size(h, kh, sh, padding[0]), conv_output_size(w, kw, sw, padding[1])
    xp = pad_nhwc(xh, padding)  # (N, Hp, Wp, C)
    # strides from the shape, not xp.strides: NumPy may give a size-1 axis any stride
    s_c = xp.itemsize
    s_w, s_h = c * s_c, xp.shape[2] * c * s_c
    s_n = xp.shape[1] * s_h
    windows = as_strided(xp, (n, ho, wo, kh, kw * c), (s_n, s_h * sh, s_w * sw, s_h, s_c), writeable=False)
    cols = np.empty((n, ho, wo, kh, kw, c), dtype=xh.dtype) if out is None else out
    np.copyto(cols.reshape(n, ho, wo, kh, kw * c), windows)
    return cols


def col2im(
    cols: np.ndarray, input_hw: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> np.ndarray:
    """The adjoint of :func:`im2col`: sum cols (N, Ho, Wo, kH, kW, C) back into an NHWC (N, H, W, C) array.

    dx[n, oh * sH + i - pH, ow * sW + j - pW, c] += cols[n, oh, ow, i, j, c] over all (oh, ow, i, j)
    that land inside the input. One strided add per kernel offset (no ``np.add.at``).
    """
    n, ho, wo, kh, kw, c = cols.shape
    h, w = input_hw
    (sh, sw), (ph, pw) = stride, padding
    dx = np.zeros((n, h, w, c), dtype=cols.dtype)
    for i in range(kh):
        oh_lo, oh_hi, hs = offset_span(h, ho, i, sh, ph)
        for j in range(kw):
            ow_lo, ow_hi, ws = offset_span(w, wo, j, sw, pw)
            dx[:, hs, ws] += cols[:, oh_lo:oh_hi, ow_lo:ow_hi, i, j]  # (N, |hs|, |ws|, C)
    return dx


def nhwc(x: np.ndarray) -> np.ndarray:
    """The NHWC view (N, H, W, C) of an NCHW-shaped array; contiguous when its memory is channels-last."""
    return x.transpose(0, 2, 3, 1)


def nchw(xh: np.ndarray) -> np.ndarray:
    """The NCHW-shaped view (N, C, H, W) of an NHWC array (no copy: channels-last memory)."""
    return xh.transpose(0, 3, 1, 2)


class Conv2d(Module):
    """2-D cross-correlation, as ``torch.nn.Conv2d`` (groups = 1, dilation = 1, zero padding).

    Y[n, o, y, x] = b[o] + sum_{c, i, j} W[o, c, i, j] * Xp[n, c, y * sH + i, x * sW + j], where Xp is X
    zero-padded by ``padding`` on each side.

    Shapes: X (N, C_in, H, W) -> Y (N, C_out, Ho, Wo), Ho = floor((H + 2 pH - kH) / sH) + 1 (same for W).
    Parameters: ``weight`` (C_out, C_in, kH, kW) and ``bias`` (C_out,), initialised as PyTorch does
    (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = C_in * kH * kW, for both) from ``rng``.

    Computation (channels-last, see the module docstring): cols = im2col(X) (N*Ho*Wo, kH*kW*C_in);
    Y = cols @ Wm^T + b with Wm = W permuted to (C_out, kH, kW, C_in). A 1x1 convolution with stride 1
    and no padding skips im2col: cols is X itself. Backward, for G = dL/dY as (N*Ho*Wo, C_out):
    dL/dWm = G^T cols, dL/db = sum of G's rows, dL/dX = col2im(G Wm); with stride 1 (and at least
    TRANSPOSED_MIN_CHANNELS input channels) dL/dX is computed instead as the convolution of G,
    padded by k - 1 - p, with the flipped kernel: one im2col and one matmul, no scatter-add.
    Caches only the input (im2col is recomputed in backward, so the 9x larger cols never outlives a
    call; it lives in a reused scratch buffer, :class:`Workspace`). ``needs_input_grad = False``
    (for a first layer, whose input is data) skips dL/dX; backward then returns None. The output is
    an NCHW-shaped view of channels-last memory.

    ``algorithm`` picks how a convolution is computed (also settable as the attribute later; the
    results agree up to float32 rounding): ``"im2col"`` is the computation above, the readable
    reference; ``"winograd"`` computes 3x3 stride-1 convolutions (padding <= 2) by Winograd's
    F(2x2, 3x3), 2.25x fewer multiplications, forward and both gradients
    (:mod:`backproplab.nn.winograd`; other shapes fall back to im2col); ``"auto"`` (the default)
    takes Winograd where it applies, the layer has at least WINOGRAD_MIN_CHANNELS input channels and
    the batch has at least WINOGRAD_MIN_TILES output tiles (chosen by measurement).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        *,
        rng: np.random.Generator | None = None,
        dtype: np.dtype | type = np.float32,
        algorithm: str = "auto",
    ) -> None:
        super().__init__()
        if algorithm not in ALGORITHMS:
            raise ValueError(f"Conv2d algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
        self.algorithm = algorithm
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(
                f"Conv2d needs in_channels >= 1 and out_channels >= 1, got {in_channels}, {out_channels}"
            )
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(
                f"Conv2d needs kernel_size >= 1, stride >= 1 and padding >= 0, got {self.kernel_size}, "
                f"{self.stride}, {self.padding}"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.needs_input_grad = True
        kh, kw = self.kernel_size
        self.weight = Parameter(np.empty((out_channels, in_channels, kh, kw), dtype=dtype))
        self.bias: Parameter | None = Parameter(np.empty(out_channels, dtype=dtype)) if bias else None
        self.reset_parameters(rng if rng is not None else np.random.default_rng())

    def reset_parameters(self, rng: np.random.Generator) -> None:
        """Draw ``weight`` and ``bias`` from ``rng`` as PyTorch does (:func:`~backproplab.nn.init.torch_default_`)."""
        init.torch_default_(self.weight, self.bias, rng)

    @property
    def _pointwise(self) -> bool:
        return self.kernel_size == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0)

    def uses_winograd(self, x_shape: tuple[int, ...]) -> bool:
        """Whether forward on an input of ``x_shape`` runs by Winograd F(2x2, 3x3), given ``algorithm``
        and the layer's geometry (see the class docstring)."""
        if self.algorithm == "im2col" or not winograd.supports(self.kernel_size, self.stride, self.padding):
            return False
        if self.algorithm == "winograd":
            return True
        n, _, ho, wo = self.output_shape(x_shape)
        tiles = n * ((ho + 1) // 2) * ((wo + 1) // 2)
        return self.in_channels >= WINOGRAD_MIN_CHANNELS and tiles >= WINOGRAD_MIN_TILES

    def _weight_matrix(self) -> np.ndarray:
        """Wm (C_out, kH*kW*C_in): the weight in im2col's column order."""
        return self.weight.data.transpose(0, 2, 3, 1).reshape(self.out_channels, -1)

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """(N, C_out, Ho, Wo) for an input of shape ``x_shape``; a ShapeError if the kernel does not fit."""
        n, _, h, w = x_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        ho, wo = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
        if ho < 1 or wo < 1:
            raise ShapeError(
                f"Conv2d: input of spatial size {h}x{w} is smaller than the kernel {kh}x{kw} "
                f"(padding {self.padding}); got input shape {tuple(x_shape)}"
            )
        return n, self.out_channels, ho, wo

    def _unfold(
        self, xh: np.ndarray, stride: tuple[int, int], padding: tuple[int, int], out_hw: tuple[int, int]
    ) -> np.ndarray:
        """im2col of NHWC ``xh`` into the scratch buffer, as an (N*Ho*Wo, kH*kW*C) matrix."""
        n, c = xh.shape[0], xh.shape[3]
        kh, kw = self.kernel_size
        buf = WORKSPACE.get((n, out_hw[0], out_hw[1], kh, kw, c), xh.dtype)
        return im2col(xh, self.kernel_size, stride, padding, out=buf).reshape(n * out_hw[0] * out_hw[1], -1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, 4, {1: self.in_channels})
        n, co, ho, wo = self.output_shape(x.shape)
        xh = nhwc(x)  # (N, H, W, C_in), a view
        if self.uses_winograd(x.shape):
            yh = winograd.forward(xh, self.weight.data, self.padding)  # (N, Ho, Wo, C_out), a new array
            if self.bias is not None:
                yh += self.bias.data
            self._save_for_backward(xh, x.shape, True)
            return nchw(yh)
        if self._pointwise:
            a = xh.reshape(-1, self.in_channels)  # (N*H*W, C_in); copies only if x is not channels-last
        else:
            a = self._unfold(xh, self.stride, self.padding, (ho, wo))  # (M, K), scratch
        y = a @ self._weight_matrix().T  # (M, K) @ (K, C_out) -> (M, C_out)
        if self.bias is not None:
            y += self.bias.data
        self._save_for_backward(a if self._pointwise else xh, x.shape, False)
        return nchw(y.reshape(n, ho, wo, co))

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        saved, x_shape, by_winograd = self._saved()
        expected = self.output_shape(x_shape)
        check_dout(self, dout, expected)
        n, _, h, w = x_shape
        g = np.ascontiguousarray(nhwc(dout)).reshape(-1, self.out_channels)  # (M, C_out); free if NHWC
        wm = self._weight_matrix()  # (C_out, K)
        if self.bias is not None:
            self.bias.accumulate(g.sum(axis=0))
        if by_winograd:  # saved is the NHWC input
            gh = g.reshape(n, expected[2], expected[3], self.out_channels)  # (N, Ho, Wo, C_out)
            dw, dxh = winograd.backward(saved, self.weight.data, self.padding, gh, self.needs_input_grad)
            self.weight.accumulate(dw)
            return None if dxh is None else nchw(dxh)
        if self._pointwise:
            self.weight.accumulate((g.T @ saved).reshape(self.weight.shape))  # (C_out, M) @ (M, C_in)
            if not self.needs_input_grad:
                return None
            return nchw((g @ wm).reshape(n, h, w, self.in_channels))  # (M, C_out) @ (C_out, C_in) -> NHWC
        kh, kw = self.kernel_size
        (ph, pw), (sh, sw) = self.padding, self.stride
        dx = None
        if self.needs_input_grad:
            if (sh, sw) == (1, 1) and ph < kh and pw < kw and self.in_channels >= TRANSPOSED_MIN_CHANNELS:
                # dL/dX = G, padded by k - 1 - p, convolved with the flipped kernel
                # Wf[(i, j, o), c] = W[o, c, kH-1-i, kW-1-j]
                gcols = self._unfold(nhwc(dout), (1, 1), (kh - 1 - ph, kw - 1 - pw), (h, w))  # (N*H*W, K')
                wf = self.weight.data[:, :, ::-1, ::-1].transpose(2, 3, 0, 1).reshape(-1, self.in_channels)
                dx = nchw((gcols @ wf).reshape(n, h, w, self.in_channels))  # (N*H*W, C_in) as NHWC
            else:
                dcols = g @ wm  # (M, C_out) @ (C_out, K) -> (M, K)
                dcols6 = dcols.reshape(n, expected[2], expected[3], kh, kw, self.in_channels)
                dx = nchw(col2im(dcols6, (h, w), self.stride, self.padding))
                del dcols, dcols6
        cols = self._unfold(saved, self.stride, self.padding, (expected[2], expected[3]))  # (M, K), scratch
        dwm = g.T @ cols  # (C_out, M) @ (M, K) -> (C_out, K)
        dw = dwm.reshape(self.out_channels, kh, kw, self.in_channels).transpose(0, 3, 1, 2)
        self.weight.accumulate(np.ascontiguousarray(dw))  # (C_out, C_in, kH, kW)
        return dx

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, bias={self.bias is not None}"
            + ("" if self.algorithm == "auto" else f", algorithm={self.algorithm!r}")
        )


def set_conv_algorithm(module: Module, algorithm: str) -> None:
    """Set ``algorithm`` (one of ALGORITHMS) on every :class:`Conv2d` inside ``module`` (itself included)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"Conv2d algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    for m in module.modules():
        if isinstance(m, Conv2d):
            m.algorithm = algorithm
