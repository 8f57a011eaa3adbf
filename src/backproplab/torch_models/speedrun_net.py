"""The speedrun CNN: a small VGG-style net whose first layer is a frozen patch-whitening filter bank.

Layout (for 32x32 inputs and the default widths (64, 256, 256))::

    x (N, C, 32, 32)
    -> whiten: Conv2d(C, 2*C*k*k, k=2, padding 0, frozen weights, learned bias) -> act   (N, 24, 31, 31)
    -> block(64):  conv3x3 -> maxpool2 -> BN -> act -> conv3x3 -> BN -> act               (N, 64, 15, 15)
    -> block(256): same                                                                   (N, 256, 7, 7)
    -> block(256): same                                                                   (N, 256, 3, 3)
    -> global max pool -> flatten -> Linear(256, classes, no bias) -> * scale (1/9)      (N, classes)

Conventions:

* BatchNorm has no learned scale (gamma fixed at 1, not trained) and a learned shift (beta, the
  "BN bias"); running statistics use ``momentum`` in PyTorch's convention
  (``running = (1 - momentum) * running + momentum * batch``), 0.4 by default, so that the
  evaluation statistics follow the last few batches of a short run.
* Every 3x3 conv has no bias (the following BatchNorm has one). Weights are drawn with PyTorch's
  default conv init (kaiming-uniform, ``a = sqrt(5)``, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)))
  from an explicit ``torch.Generator``, and then the first ``in_channels`` filters are set to the
  identity ("partial dirac" init), so that every block starts close to passing its input through.
* The whitening conv's weights come from :func:`whitening_weights` on training patches and are
  never trained; its bias starts at 0 and is trained for the first epochs only (the trainer
  decides). The head is ``Linear`` without bias, PyTorch's default init, and its output is
  multiplied by a fixed ``scale`` (a temperature; 1/9 by default).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from backproplab.errors import ShapeError
from backproplab.torch_models.init import torch_default_weight_

BN_MOMENTUM = 0.4
BN_EPS = 1e-12
WHITEN_KERNEL = 2
WHITEN_EPS = 5e-4
HEAD_SCALE = 1 / 9
DEFAULT_WIDTHS = (64, 256, 256)
ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU}


class BatchNormNoScale(nn.BatchNorm2d):
    """BatchNorm2d with gamma frozen at 1 (``weight.requires_grad`` is False) and a learned beta:
    ``y = (x - mean) / sqrt(var + eps) + beta`` per channel; x, y: (N, C, H, W)."""

    def __init__(self, channels: int, momentum: float = BN_MOMENTUM, eps: float = BN_EPS) -> None:
        super().__init__(channels, eps=eps, momentum=momentum)
        self.weight.requires_grad_(False)

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        with torch.no_grad():
            self.weight.fill_(1.0)
            self.bias.zero_()


class ConvBlock(nn.Module):
    """conv3x3 (c_in -> c_out) -> maxpool 2x2 -> BN -> act -> conv3x3 (c_out -> c_out) -> BN -> act.

    (N, c_in, H, W) -> (N, c_out, H // 2, W // 2); both convs use padding 1 and no bias.
    """

    def __init__(self, c_in: int, c_out: int, activation: str = "gelu") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = BatchNormNoScale(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = BatchNormNoScale(c_out)
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))  # (N, c_out, H/2, W/2)
        return self.act(self.norm2(self.conv2(x)))


class SpeedrunNet(nn.Module):
    """The speedrun CNN (see the module docstring); ``forward`` maps (N, C, H, W) to logits (N, classes).

    Call :meth:`reset_parameters` with a generator, then :meth:`init_whitening` with training
    images, before training; the constructor leaves PyTorch's global-RNG init in place.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        widths: Sequence[int] = DEFAULT_WIDTHS,
        *,
        activation: str = "gelu",
        scale: float = HEAD_SCALE,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if len(widths) < 1 or any(w < 1 for w in widths):
            raise ValueError(f"widths must be one or more positive integers, got {list(widths)}")
        self.in_channels = in_channels
        n_whiten = 2 * in_channels * WHITEN_KERNEL**2
        self.whiten = nn.Conv2d(in_channels, n_whiten, WHITEN_KERNEL, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.act = ACTIVATIONS[activation]()
        chans = [n_whiten, *widths]
        self.blocks = nn.Sequential(*(ConvBlock(a, b, activation) for a, b in itertools.pairwise(chans)))
        self.head = nn.Linear(chans[-1], num_classes, bias=False)
        self.scale = scale
        self.min_size = WHITEN_KERNEL - 1 + 2 ** len(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.whiten(x))  # (N, 2*C*4, H-1, W-1)
        x = self.blocks(x)  # (N, widths[-1], h, w)
        x = torch.amax(x, dim=(2, 3))  # (N, widths[-1]): global max pool
        return self.head(x) * self.scale

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw every weight from ``generator`` (so one net object can serve several runs).

        Convs and the head: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's default); 3x3 convs then
        get identity filters in their first ``in_channels`` outputs. BN: gamma 1, beta 0, fresh
        running statistics. Whitening conv: weights 0 until :meth:`init_whitening`, bias 0.
        """
        self.whiten.weight.zero_()
        assert self.whiten.bias is not None
        self.whiten.bias.zero_()
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m is not self.whiten:
                torch_default_weight_(m.weight, generator)
                w = m.weight  # (c_out, c_in, 3, 3)
                nn.init.dirac_(w[: w.shape[1]])
            elif isinstance(m, nn.Linear):
                torch_default_weight_(m.weight, generator)
            elif isinstance(m, BatchNormNoScale):
                m.reset_parameters()

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = WHITEN_EPS) -> None:
        """Set the whitening conv's weights from ``images`` (N, C, H, W), normalised training images.

        Filters ``[W; -W]`` with ``W = whitening_weights(patches(images), eps)``, so the first half
        of the outputs are the patches' principal components scaled to (about) unit variance and
        the second half their negatives (an activation then keeps both signs of each component).
        """
        self.check_input(images)
        w = whitening_weights(images, WHITEN_KERNEL, eps)  # (C*k*k, C, k, k)
        self.whiten.weight.copy_(torch.cat([w, -w]).to(self.whiten.weight.dtype))

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`ShapeError` unless ``x`` is (N, in_channels, H, W) with H, W >= ``min_size``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(
                f"SpeedrunNet expects images of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if min(x.shape[2], x.shape[3]) < self.min_size:
            raise ShapeError(
                f"SpeedrunNet with {len(self.blocks)} pooling blocks needs images of at least "
                f"{self.min_size}x{self.min_size}, got {x.shape[2]}x{x.shape[3]}"
            )


def image_patches(images: torch.Tensor, kernel: int) -> torch.Tensor:
    """All ``kernel x kernel`` patches (stride 1, no padding) of ``images`` (N, C, H, W), as rows
    (N * (H-k+1) * (W-k+1), C*k*k) flattened in (C, kh, kw) order, the order of a conv weight."""
    cols = F.unfold(images.float(), kernel_size=kernel)  # (N, C*k*k, L)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])  # (N*L, C*k*k)


def whitening_weights(
    images: torch.Tensor, kernel: int = WHITEN_KERNEL, eps: float = WHITEN_EPS
) -> torch.Tensor:
    """Conv filters that whiten the ``kernel x kernel`` patches of ``images`` (N, C, H, W).

    With the patch covariance ``S = cov(p) = V diag(lam) V^T`` (p: (D,) patch, D = C*k*k), the
    filters are the rows of ``W = diag(1 / sqrt(lam + eps)) V^T`` (D, D), returned as (D, C, k, k).
    Then ``cov(W p) = diag(lam / (lam + eps))``: identity for components with ``lam >> eps``;
    ``eps`` keeps the near-zero-variance components from being blown up. The eigendecomposition is
    done in float64; the result is float32, on ``images``' device.
    """
    patches = image_patches(images, kernel).double()  # (P, D)
    centred = patches - patches.mean(dim=0)  # (P, D)
    cov = centred.T @ centred / max(len(patches) - 1, 1)  # (D, D)
    lam, vecs = torch.linalg.eigh(cov)  # (D,), (D, D): columns are eigenvectors
    w = vecs.T / torch.sqrt(lam.clamp_min(0.0) + eps)[:, None]  # (D, D): row i = v_i / sqrt(lam_i + eps)
    c = images.shape[1]
    return w.reshape(-1, c, kernel, kernel).float()  # (D, C, k, k)
