"""3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, 2016), in
channels-last (NHWC) memory, with the exact adjoint for backward.

One dimension first. Two outputs of a 3-tap correlation, y_k = sum_i d_{k+i} g_i (k = 0, 1), read
four inputs d_0..d_3 and cost 6 multiplications directly; F(2, 3) computes them with 4:

    y = A^T [(G g) * (B^T d)]      (* element-wise, 4 products)

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]     (4, 4)
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]         (4, 3)
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]                                    (2, 4)

Nested in two dimensions, a 2x2 output tile of a 3x3 correlation reads a 4x4 input tile d:
Y = A^T [(G g G^T) * (B^T d B)] A, 16 products instead of 36 (2.25x fewer). With the 16 entries of
a tile as a vector (row-major), the three transforms are Kronecker products: V = (B^T (x) B^T) d,
U = (G (x) G) g, Y = (A^T (x) A^T) M. Summed over the input channels, the products become 16
matrix products, one per tile entry k:

    M_k = V_k U_k,   V_k (T, C_in): entry k of every tile's transformed input,
                     U_k (C_in, C_out): entry k of the transformed kernels,

with T = N * ceil(Ho/2) * ceil(Wo/2) tiles; output tiles overlapping the right or bottom edge of an
odd-sized output are computed over zero padding and cropped. All transforms are small matrix
products over the tile entries ((16, 16), (16, 9), (4, 16) matrices), so everything but the tile
gathering and scattering runs in BLAS.

Backward is the adjoint of each forward stage, in reverse order. For G = dL/dY: dYt = G cut into
2x2 tiles (zero where a tile overhangs the output), dM = (A^T (x) A^T)^T dYt, and then

    dL/dU_k = V_k^T dM_k  ->  dL/dW = (G (x) G)^T dL/dU,
    dL/dV_k = dM_k U_k^T  ->  dL/dd = (B^T (x) B^T)^T dL/dV  ->  dL/dX = the overlapping 4x4 tiles
                                                             summed back into place (the adjoint of
                                                             the gather), minus the padding.

This is the exact gradient of the Winograd forward, which equals the convolution in exact
arithmetic, so both gradients equal the convolution's gradients up to float32 rounding (the
transforms only add, subtract and halve; the tests bound the difference to the im2col reference).

Scratch arrays live in reused per-thread buffers, one per role (padded input, tiles, transformed
tiles, products, output tiles; :func:`scratch`), freed by :func:`release_workspace`.
The tile gathering and scattering is split over the batch across threads
(:func:`~backproplab.nn.parallel.parallel_rows`).
"""

from __future__ import annotations

import threading

import numpy as np

from backproplab.nn.parallel import parallel_rows

B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)  # (4, 4)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)  # (4, 3)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)  # (2, 4)

#: The 2-D transforms on row-major vectorised tiles: input (16, 16), kernel (16, 9), output (4, 16).
KRON_B = np.kron(B_T, B_T)
KRON_G = np.kron(G, G)
KRON_A = np.kron(A_T, A_T)

#: Tiles per batch chunk: about this many bytes of float32 tiles (see :func:`batch_chunks`) ...
CHUNK_BYTES = 2 << 20
#: ... but at least this many tiles.
MIN_CHUNK_TILES = 256

#: Largest padding handled: with p <= 2 every output tile reads inside the padded input.
MAX_PADDING = 2

#: Scratch roles (one reused buffer each per thread).
_PAD, _TILES, _TRANSFORMED, _PRODUCTS, _OUT_TILES = "pad", "tiles", "transformed", "products", "out_tiles"


class _Scratch(threading.local):
    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}


_SCRATCH = _Scratch()


def scratch(role: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A C-contiguous array of ``shape`` backed by this thread's buffer for ``role`` (contents
    undefined; valid until the next request for the same role). As :class:`~backproplab.nn.conv.Workspace`:
    a buffer grows to the largest request and is kept, so large scratch arrays are not fresh pages
    (which the kernel zeroes) at every call."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buf = _SCRATCH.buffers.get(role)
    if buf is None or buf.nbytes < nbytes:
        _SCRATCH.buffers.pop(role, None)  # free the old buffer before allocating the larger one
        _SCRATCH.buffers[role] = buf = np.empty(nbytes, dtype=np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


def release_workspace() -> None:
    """Free this thread's Winograd scratch buffers (they keep the size of the largest call)."""
    _SCRATCH.buffers.clear()


def supports(kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]) -> bool:
    """Whether a convolution with this geometry can run by F(2x2, 3x3): 3x3, stride 1, padding <= 2."""
    return kernel == (3, 3) and stride == (1, 1) and max(padding) <= MAX_PADDING and min(padding) >= 0


def _tiles(size_out: int) -> int:
    return (size_out + 1) // 2  # ceil(size_out / 2) tiles of 2 outputs


class Geometry:
    """Sizes of one Winograd convolution of NHWC (N, H, W, C) by padding (pH, pW): outputs
    Ho = H + 2 pH - 2 (likewise Wo), th x tw tiles per image, T = N th tw tiles in all."""

    def __init__(self, x_shape: tuple[int, ...], padding: tuple[int, int]) -> None:
        self.n, self.h, self.w, self.c = x_shape
        self.ph, self.pw = padding
        self.ho, self.wo = self.h + 2 * self.ph - 2, self.w + 2 * self.pw - 2
        self.th, self.tw = _tiles(self.ho), _tiles(self.wo)
        self.t = self.n * self.th * self.tw
        self.padded = (self.n, 2 * self.th + 2, 2 * self.tw + 2, self.c)  # rows every tile reads


def batch_chunks(geo: Geometry, c_out: int) -> list[slice]:
    """Slices of the batch processed one after the other, so that each chunk's tiles (the gathered,
    transformed and multiplied 16 x T_chunk x C arrays) stay in the cache between the stages instead
    of streaming through memory several times. Chunks hold about CHUNK_BYTES of tiles, but at least
    MIN_CHUNK_TILES and 2 max(C_in, C_out) tiles, so the 16 products keep enough rows for BLAS and
    the per-chunk accumulation of dL/dU (16 C_in C_out values) stays small beside the chunk."""
    per_image = geo.th * geo.tw
    want_tiles = max(MIN_CHUNK_TILES, 2 * max(geo.c, c_out), CHUNK_BYTES // (16 * 4 * max(geo.c, c_out)))
    n_chunk = max(1, min(geo.n, want_tiles // per_image))
    return [slice(a, min(a + n_chunk, geo.n)) for a in range(0, geo.n, n_chunk)]


def _kron(k: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return k.astype(dtype, copy=False)


def transform_weight(weight: np.ndarray) -> np.ndarray:
    """U^T (16, C_out, C_in): U_k^T[o, c] = ((G (x) G) g)[k] for every kernel g = weight[o, c]
    (weight (C_out, C_in, 3, 3); the kernel taps (i, j) row-major)."""
    co, ci = weight.shape[:2]
    g9 = weight.reshape(co * ci, 9)  # (C_out*C_in, 9), a view
    return (_kron(KRON_G, weight.dtype) @ g9.T).reshape(16, co, ci)  # (16, 9) @ (9, C_out*C_in)


def _rows(a: np.ndarray, i: int, count: int) -> np.ndarray:
    """Rows i, i + 2, ..., i + 2 (count - 1) of NHWC-like ``a`` (axis 1): row i of every tile."""
    return a[:, i : i + 2 * count - 1 : 2]


def _cols(a: np.ndarray, j: int, count: int) -> np.ndarray:
    """Columns j, j + 2, ..., of ``a`` (axis 2): column j of every tile."""
    return a[:, :, j : j + 2 * count - 1 : 2]


def _apply_bt(d: list[np.ndarray], out: list[np.ndarray]) -> None:
    """out[xi] = sum_i B^T[xi, i] d[i] for the four (equally shaped) arrays d[0..3]: B^T's rows."""
    np.subtract(d[0], d[2], out=out[0])  # d0 - d2
    np.add(d[1], d[2], out=out[1])  # d1 + d2
    np.subtract(d[2], d[1], out=out[2])  # d2 - d1
    np.subtract(d[1], d[3], out=out[3])  # d1 - d3


def transform_input(xh: np.ndarray, geo: Geometry) -> np.ndarray:
    """V (16, T, C) = (B^T (x) B^T) d for every 4x4 input tile d of NHWC ``xh`` (a scratch array).

    Tile (n, a, b) covers rows 2a..2a+3 and columns 2b..2b+3 of the input zero-padded by (pH, pW)
    at the top and left (and as needed at the bottom and right): d[i, j] = Xp[n, 2a + i, 2b + j, :].
    V = B^T d B is taken separably and without gathering the overlapping tiles: first along the
    rows of the padded image, R[xi] = sum_i B^T[xi, i] Xp[:, 2a + i] (N, th, Wp, C), then along
    the columns, V[xi * 4 + nu] = sum_j B^T[nu, j] R[xi][:, :, 2b + j] (N, th, tw, C); B^T's rows
    have two entries +-1 each, so both are four subtractions or additions of strided views.
    """
    xp = scratch(_PAD, geo.padded, xh.dtype)  # (N, 2th+2, 2tw+2, C)
    r = scratch(_TILES, (4, *geo.padded[:1], geo.th, geo.padded[2], geo.c), xh.dtype)  # (4, N, th, Wp, C)
    v = scratch(_TRANSFORMED, (16, geo.t, geo.c), xh.dtype)
    v6 = v.reshape(4, 4, geo.n, geo.th, geo.tw, geo.c)  # (xi, nu, N, th, tw, C)
    ph, pw, h, w, th, tw = geo.ph, geo.pw, geo.h, geo.w, geo.th, geo.tw

    def transform(s: slice) -> None:
        part = xp[s]
        part[:, :ph] = 0  # zero only the border, copy the interior once
        part[:, ph + h :] = 0
        part[:, ph : ph + h, :pw] = 0
        part[:, ph : ph + h, pw + w :] = 0
        part[:, ph : ph + h, pw : pw + w] = xh[s]
        rs = [r[xi, s] for xi in range(4)]
        _apply_bt([_rows(part, i, th) for i in range(4)], rs)  # (n, th, Wp, C) each
        for xi in range(4):
            _apply_bt([_cols(rs[xi], j, tw) for j in range(4)], [v6[xi, nu, s] for nu in range(4)])

    parallel_rows(geo.n, transform, 16 * th * tw * geo.c)
    return v


def forward(xh: np.ndarray, weight: np.ndarray, padding: tuple[int, int]) -> np.ndarray:
    """The 3x3 stride-1 cross-correlation of NHWC ``xh`` (N, H, W, C_in) with ``weight``
    (C_out, C_in, 3, 3), zero padding ``padding``: a new C-contiguous NHWC (N, Ho, Wo, C_out) array
    (no bias). Y[n, y, x, o] = sum_{c,i,j} W[o, c, i, j] Xp[n, y + i, x + j, c]."""
    geo = Geometry(xh.shape, padding)
    co = weight.shape[0]
    ut = transform_weight(weight)  # (16, C_out, C_in)
    y = np.empty((geo.n, geo.ho, geo.wo, co), dtype=xh.dtype)
    for chunk in batch_chunks(geo, co):
        cg = Geometry(xh[chunk].shape, padding)
        v = transform_input(xh[chunk], cg)  # (16, T, C_in)
        m = scratch(_PRODUCTS, (16, cg.t, co), xh.dtype)
        np.matmul(v, ut.transpose(0, 2, 1), out=m)  # 16 x (T, C_in) @ (C_in, C_out) -> (16, T, C_out)
        yt = scratch(
            _OUT_TILES, (4, cg.n, cg.th, cg.tw, co), xh.dtype
        )  # yt[i*2+j, n, a, b] = Y[n, 2a+i, 2b+j]
        np.matmul(_kron(KRON_A, xh.dtype), m.reshape(16, -1), out=yt.reshape(4, -1))  # (4,16) @ (16, T*C_out)
        yc = y[chunk]

        def scatter(s: slice, yc: np.ndarray = yc, yt: np.ndarray = yt) -> None:
            for i in range(2):  # the 2x2 output tiles into place, cropping odd edges
                for j in range(2):
                    dst = yc[s, i::2, j::2]  # (n, ceil((Ho-i)/2), ceil((Wo-j)/2), C_out)
                    dst[...] = yt[i * 2 + j, s, : dst.shape[1], : dst.shape[2]]

        parallel_rows(cg.n, scatter, geo.ho * geo.wo * co)
    return y


def backward(
    xh: np.ndarray, weight: np.ndarray, padding: tuple[int, int], gh: np.ndarray, needs_input_grad: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """(dL/dW (C_out, C_in, 3, 3), dL/dX as NHWC (N, H, W, C_in) or None) of :func:`forward`, for
    G = dL/dY ``gh`` in NHWC (N, Ho, Wo, C_out); ``xh`` and ``weight`` as given to forward.

    The adjoint of each forward stage (see the module docstring), chunk by chunk of the batch:
    dYt = tiles of G, dM = K_A^T dYt, dL/dU_k += V_k^T dM_k (summed over the chunks), then
    dL/dW = K_G^T dL/dU; dL/dV_k = dM_k U_k^T, dL/dd = K_B^T dL/dV, and dL/dX sums the overlapping
    4x4 tiles back into the padded input.
    """
    geo = Geometry(xh.shape, padding)
    co, ci = weight.shape[:2]
    dt = xh.dtype
    ut = transform_weight(weight) if needs_input_grad else None  # (16, C_out, C_in)
    dut = np.empty((16, co, ci), dtype=dt)  # dL/dU^T, summed over the chunks
    dut_chunk: np.ndarray | None = None  # a chunk's share, from the second chunk on
    dx = np.empty((geo.n, geo.h, geo.w, ci), dtype=dt) if needs_input_grad else None
    odd = geo.ho % 2 == 1 or geo.wo % 2 == 1
    for k, chunk in enumerate(batch_chunks(geo, co)):
        cg = Geometry(xh[chunk].shape, padding)
        gc = gh[chunk]
        # dYt[i*2 + j, n, a, b] = G[n, 2a + i, 2b + j], zero where the tile overhangs an odd output
        dyt = scratch(_OUT_TILES, (4, cg.n, cg.th, cg.tw, co), dt)

        def tile_grad(s: slice, dyt: np.ndarray = dyt, gc: np.ndarray = gc) -> None:
            if odd:
                dyt[:, s] = 0
            for i in range(2):
                for j in range(2):
                    src = gc[s, i::2, j::2]  # (n, ceil((Ho-i)/2), ceil((Wo-j)/2), C_out)
                    dyt[i * 2 + j, s, : src.shape[1], : src.shape[2]] = src

        parallel_rows(cg.n, tile_grad, 4 * cg.th * cg.tw * co)
        dm = scratch(_PRODUCTS, (16, cg.t, co), dt)
        np.matmul(_kron(KRON_A, dt).T, dyt.reshape(4, -1), out=dm.reshape(16, -1))  # (16,4) @ (4, T*C_out)
        v = transform_input(xh[chunk], cg)  # (16, T, C_in), recomputed: cheaper than caching 4x the input
        if k == 0:  # 16 x (C_out, T) @ (T, C_in)
            np.matmul(dm.transpose(0, 2, 1), v, out=dut)
        else:
            dut_chunk = np.matmul(dm.transpose(0, 2, 1), v, out=dut_chunk)
            dut += dut_chunk
        if ut is None or dx is None:
            continue
        dv = v  # V is no longer needed: dL/dV takes its buffer
        np.matmul(dm, ut, out=dv)  # 16 x (T, C_out) @ (C_out, C_in) -> (16, T, C_in)
        # the adjoint of transform_input: dL/dd = K_B^T dL/dV (a GEMM measured faster here than the
        # separable adjoint), then the overlapping tiles summed back into the padded input
        dd = scratch(_TILES, (16, cg.n, cg.th, cg.tw, ci), dt)  # dL/d(tile entry k) at dd[k]
        np.matmul(_kron(KRON_B, dt).T, dv.reshape(16, -1), out=dd.reshape(16, -1))  # (16,16) @ (16, T*C_in)
        # tile entry (i, j) = (2p + i', 2q + j') of tile (a, b) sits at Xp[2(a+p) + i', 2(b+q) + j']:
        # for each (p, q) the entries with i', j' in {0, 1} of all tiles cover a (2th, 2tw) block once
        dd8 = dd.reshape(2, 2, 2, 2, cg.n, cg.th, cg.tw, ci)  # (p, i', q, j', n, th, tw, C_in)
        dxp = scratch(_PAD, cg.padded, dt)  # (n, 2th+2, 2tw+2, C_in)
        dxc = dx[chunk]

        def overlap_add(
            s: slice, dd8: np.ndarray = dd8, dxp: np.ndarray = dxp, dxc: np.ndarray = dxc
        ) -> None:
            dxp[s] = 0
            ns = len(range(*s.indices(dxp.shape[0])))
            for p in range(2):
                for q in range(2):
                    block = dxp[
                        s, 2 * p : 2 * p + 2 * geo.th, 2 * q : 2 * q + 2 * geo.tw
                    ]  # (n, 2th, 2tw, C_in)
                    block6 = block.reshape(ns, geo.th, 2, geo.tw, 2, ci)  # (n, a, i', b, j', C_in), a view
                    block6 += dd8[p, :, q, :, s].transpose(2, 3, 0, 4, 1, 5)  # (n, a, i', b, j', C_in)
            dxc[s] = dxp[s, geo.ph : geo.ph + geo.h, geo.pw : geo.pw + geo.w]  # drop the padding

        parallel_rows(cg.n, overlap_add, geo.padded[1] * geo.padded[2] * ci)
    # dL/dW[o, c] = K_G^T dL/dU^T[:, o, c]: (C_out*C_in, 16) @ (16, 9) is already (C_out, C_in, 3, 3)
    dw = (dut.reshape(16, -1).T @ _kron(KRON_G, dt)).reshape(co, ci, 3, 3)
    return dw, dx
