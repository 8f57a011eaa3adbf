"""``backproplab train speedrun``: train a CNN on CIFAR-10 to a target accuracy as fast as possible.

Our own implementation of the public techniques of the fastest known CIFAR-10 recipes:

* the whole data set lives in device memory, normalised per channel and stored in the compute
  dtype; each epoch one gather on the device does the random translate (reflect-padded by
  ``translate`` pixels, then a random crop), the horizontal flip and the shuffle, from an explicit
  ``torch.Generator`` on the device;
* alternating flips: a random half of the images is flipped in even epochs and the other half in
  odd epochs, so every image is seen both ways every two epochs;
* :class:`~backproplab.torch_models.speedrun_net.SpeedrunNet`: a first 2x2 conv initialised from
  the whitening of training patches (frozen weights; its bias trains for ``whiten_bias_epochs``),
  three conv/pool blocks with scale-free BatchNorm, identity-initialised 3x3 convs;
* label-smoothed cross-entropy summed over the batch; Nesterov SGD whose learning rate warms up
  linearly from ``lr_start_frac * lr`` to ``lr`` over ``warmup_frac`` of the steps and then
  decays linearly to ``lr_end_frac * lr``; BatchNorm biases use a ``bias_lr_scale`` times larger
  learning rate (and the same per-step weight decay);
* weight averaging in the Lookahead style: every ``ema_every`` steps the averaged weights move
  towards the current ones, ``avg = d * avg + (1 - d) * w``, and the net is reset to them; ``d``
  grows as ``ema_decay ** ema_every * (step / total) ** 3``, and the final net is the average;
* test-time augmentation: logits averaged over the image and its mirror (``tta 1``), plus the
  mirrored pair of two 1-pixel translations (``tta 2``, weights 1/2, 1/4, 1/4);
* channels_last memory format, bf16 / fp16 autocast on CUDA (fp32 master weights; fp16 runs
  without a loss scaler: summing the loss over the batch already scales the gradients up by the
  batch size), optional ``torch.compile``.

``--learning_rate`` and ``--weight_decay`` are quoted at batch size 1024 and scale linearly with it:
the SGD step on the summed loss uses ``learning_rate / 1024`` whatever the batch size (see
:func:`make_optimizer`). The flags share the other trainers' names (``--max_steps``, ``--eval_freq``,
``--train_subset``, ``--amp``, ``--seed`` 42); the recipe's 9.9 epochs of the 50,000 training
images at batch 1024 are its default ``--max_steps`` 476.

Timing: the clock runs from the whitening initialisation to the end of the final evaluation,
including every intermediate evaluation (they are how ``--target_acc`` sees the target). On CUDA
it is measured with CUDA events, on the CPU with ``time.perf_counter``. Loading, normalising and
padding the data, drawing the initial weights and compiling are not timed; on CUDA one untimed
warm-up run (cuDNN autotuning, compilation, GPU clocks) precedes the timed runs
(``--warmup_run``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from backproplab.data import Dataset, load_dataset
from backproplab.errors import ConfigError, NonFiniteError
from backproplab.torch_models.speedrun_net import ACTIVATIONS, DEFAULT_WIDTHS, SpeedrunNet
from backproplab.training.augment import crop_flip_gather
from backproplab.training.config_checks import (
    check_fraction,
    check_non_negative,
    check_positive,
    check_seed,
    parse_positive_ints,
)
from backproplab.training.optimizers import OptimizerSpec
from backproplab.training.plots import plot_runs
from backproplab.training.run_dir import RunDir, default_run_dir
from backproplab.training.seeds import derive_seeds
from backproplab.training.torch_device import AMP_DTYPES, DEVICES, select_device
from backproplab.training.torch_device import autocast as autocast_context
from backproplab.utils.atomic import atomic_path

WHITEN_IMAGES = 5000  # training images whose 2x2 patches set the whitening filters
EVAL_CHUNK = 2000  # test images per evaluation forward (times 2 or 6 views with TTA)
REF_BATCH = 1024  # the batch size at which --learning_rate and --weight_decay are quoted
#: The recipe's length: 9.9 epochs of 50,000 images at batch 1024 (48 full batches an epoch).
RECIPE_STEPS = 476


def parse_widths(text: str) -> tuple[int, ...]:
    """Parse "64,256,256" -> (64, 256, 256); anything but positive integers is a ConfigError."""
    widths = tuple(parse_positive_ints(text, "widths", "64,256,256"))
    if not widths:
        raise ConfigError("--widths expects comma-separated positive integers like '64,256,256', got ''")
    return widths


@dataclass
class SpeedrunConfig:
    """Flags of ``train speedrun``; the defaults are the recipe for 32x32 CIFAR-10 on one GPU."""

    runs: int = field(default=1, metadata={"help": "independent training runs; mean +- std is reported"})
    target_acc: float | None = field(
        default=None,
        metadata={
            "help": "stop a run as soon as an evaluation reaches this test accuracy (evaluates every epoch)"
        },
    )
    max_steps: int = field(
        default=RECIPE_STEPS,
        metadata={"help": "number of training steps (mini-batches); the recipe: 9.9 epochs of CIFAR-10"},
    )
    batch_size: int = field(default=1024, metadata={"help": "mini-batch size"})
    learning_rate: float = field(
        default=1.5,
        metadata={
            "help": f"peak learning rate of the batch-mean loss at batch {REF_BATCH}; linear in the batch size"
        },
    )
    momentum: float = field(default=0.85, metadata={"help": "Nesterov momentum"})
    weight_decay: float = field(
        default=2e-3,
        metadata={
            "help": f"fraction of each weight decayed per step at the peak and batch {REF_BATCH}; linear in B"
        },
    )
    bias_lr_scale: float = field(
        default=64.0, metadata={"help": "learning-rate multiplier of BatchNorm biases"}
    )
    label_smoothing: float = field(default=0.2, metadata={"help": "label smoothing of the cross-entropy"})
    warmup_frac: float = field(
        default=0.23, metadata={"help": "fraction of the steps with a rising learning rate"}
    )
    lr_start_frac: float = field(
        default=0.2, metadata={"help": "learning rate at step 0, as a fraction of --learning_rate"}
    )
    lr_end_frac: float = field(
        default=0.07, metadata={"help": "learning rate at the last step, as a fraction of --learning_rate"}
    )
    ema: bool = field(
        default=True, metadata={"help": "Lookahead-style weight averaging (see ema_every, ema_decay)"}
    )
    ema_every: int = field(default=5, metadata={"help": "steps between two weight-averaging updates"})
    ema_decay: float = field(
        default=0.95, metadata={"help": "per-step decay of the weight average at the end"}
    )
    tta: int = field(
        default=2,
        metadata={
            "help": "test-time augmentation: 0 none, 1 mirror, 2 mirror + 1-pixel translations",
            "choices": (0, 1, 2),
        },
    )
    flip: str = field(
        default="alternating",
        metadata={"help": "horizontal flips in training", "choices": ("alternating", "random", "none")},
    )
    translate: int = field(
        default=2, metadata={"help": "random translation in pixels (reflect padding + crop)"}
    )
    whiten_bias_epochs: float = field(
        default=3.0, metadata={"help": "epochs during which the first layer's bias trains"}
    )
    widths: str = field(
        default=",".join(map(str, DEFAULT_WIDTHS)),
        metadata={"help": "output channels of the conv blocks (one pooling each)"},
    )
    activation: str = field(default="gelu", metadata={"help": "activation", "choices": tuple(ACTIVATIONS)})
    eval_freq: int = field(
        default=0,
        metadata={
            "help": "evaluate (timed) at the end of each epoch that passes a multiple of this many steps; "
            "0: at the end only (every epoch with --target_acc)"
        },
    )
    device: str = field(
        default="auto", metadata={"help": "device (auto: cuda if available)", "choices": DEVICES}
    )
    amp: str = field(
        default="auto",
        metadata={
            "help": "autocast dtype (auto: bf16 on cuda, none on cpu; fp16 needs cuda)",
            "choices": ("auto", *AMP_DTYPES),
        },
    )
    channels_last: bool = field(
        default=True, metadata={"help": "channels_last memory format for images and convs"}
    )
    compile: bool = field(
        default=False, metadata={"help": "torch.compile the net (compile time is not timed)"}
    )
    warmup_run: str = field(
        default="auto",
        metadata={
            "help": "an untimed warm-up run before the timed ones (auto: on cuda only)",
            "choices": ("auto", "yes", "no"),
        },
    )
    data_dir: str | None = field(
        default=None, metadata={"help": "data set location (directory or archive); default: the cache"}
    )
    dataset: str = field(default="cifar10", metadata={"help": "data set", "choices": ("cifar10",)})
    train_subset: int | None = field(
        default=None, metadata={"help": "train on this many random training images (default: all)"}
    )
    test_subset: int | None = field(
        default=None, metadata={"help": "evaluate on this many random test images (default: all)"}
    )
    seed: int = field(default=42, metadata={"help": "seed of every random choice in the run"})
    out: str | None = field(default=None, metadata={"help": "run directory (default: runs/speedrun-<time>)"})

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad flag."""
        parse_widths(self.widths)
        check_seed(self.seed)
        check_positive(self, "runs", "batch_size", "ema_every", "max_steps", "train_subset", "test_subset")
        check_positive(self, "learning_rate", "bias_lr_scale")
        check_non_negative(self, "weight_decay", "whiten_bias_epochs", "lr_start_frac", "lr_end_frac")
        check_non_negative(self, "translate", "eval_freq")
        check_fraction(self, "momentum", "label_smoothing", "warmup_frac", "ema_decay")
        if self.target_acc is not None and not 0 < self.target_acc <= 1:
            raise ConfigError(f"--target_acc must be in (0, 1], got {self.target_acc}")

    def resolve_amp(self, device: torch.device) -> str:
        """``--amp auto``: bf16 on CUDA, none on the CPU; fp16 needs CUDA (a ConfigError elsewhere)."""
        if self.amp == "auto":
            return "bf16" if device.type == "cuda" else "none"
        if self.amp == "fp16" and device.type != "cuda":
            raise ConfigError("--amp fp16 needs --device cuda; use bf16 or none on the CPU")
        return self.amp


# ---------------------------------------------------------------------------------------- schedules
def lr_factor(step: int, total: int, warmup_frac: float, start: float, end: float) -> float:
    """Piecewise-linear schedule, as a fraction of the peak lr, for step ``step`` of ``total``:
    ``start`` at 0, 1 at ``warmup_frac * total``, ``end`` at ``total``."""
    peak = warmup_frac * total
    if step < peak:
        return start + (1.0 - start) * step / peak
    return 1.0 + (end - 1.0) * (step - peak) / max(total - peak, 1e-12)


def eval_due(step: int, prev_step: int, eval_freq: int, every_epoch: bool) -> bool:
    """Whether the epoch that ran from ``prev_step`` to ``step`` ends with an evaluation: every
    epoch with ``every_epoch`` (``--target_acc``), else when it passed a multiple of ``eval_freq``
    (never for 0: the final evaluation is always made)."""
    if every_epoch:
        return True
    return eval_freq > 0 and step // eval_freq > prev_step // eval_freq


def averaging_decay(step: int, total: int, ema_decay: float, every: int) -> float:
    """Decay of one weight-averaging update at ``step``: ``ema_decay ** every * (step / total) ** 3``
    (0 early on, so the average first follows the weights, then averages ever longer)."""
    return float(ema_decay**every * (step / total) ** 3)


class Lookahead:
    """The running average of a net's float parameters and buffers, Lookahead style.

    :meth:`update` sets ``avg = decay * avg + (1 - decay) * w`` and then ``w = avg`` for every
    tensor; :meth:`finish` sets ``w = avg``.
    """

    def __init__(self, net: torch.nn.Module) -> None:
        tensors = [*net.parameters(), *net.buffers()]
        self.live = [t for t in tensors if t.is_floating_point()]
        self.avg = [t.detach().clone() for t in self.live]

    @torch.no_grad()
    def update(self, decay: float) -> None:
        torch._foreach_lerp_(self.avg, self.live, 1.0 - decay)
        self.finish()

    @torch.no_grad()
    def finish(self) -> None:
        torch._foreach_copy_(self.live, self.avg)


# ---------------------------------------------------------------------------------------- data
def to_layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``x`` (N, C, H, W) in channels_last or contiguous (NCHW) memory."""
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@dataclass
class SpeedrunData:
    """The normalised data set on the training device, in the compute dtype.

    ``x_train_pad`` (N, C, H + 2t, W + 2t) is reflect-padded by ``translate`` = t pixels,
    ``x_test`` (M, C, H, W); ``x_test_pad`` (M, C, H + 2, W + 2) is padded by one pixel for the
    translated test-time views. Labels are int64 (N,) and (M,).
    """

    x_train_pad: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    x_test_pad: torch.Tensor
    y_test: torch.Tensor
    translate: int
    channels_last: bool

    @property
    def n_train(self) -> int:
        return int(self.x_train_pad.shape[0])

    def whitening_images(self, n: int = WHITEN_IMAGES) -> torch.Tensor:
        """``n`` training images spread evenly over the split (every ``N // n``-th, so a split stored
        class by class still gives every class), un-augmented: (min(n, N), C, H, W)."""
        t = self.translate
        h, w = self.x_train_pad.shape[2] - 2 * t, self.x_train_pad.shape[3] - 2 * t
        stride = max(1, self.n_train // n)
        return self.x_train_pad[::stride][:n, :, t : t + h, t : t + w]


def speedrun_data(
    ds: Dataset, device: torch.device, dtype: torch.dtype, translate: int, channels_last: bool
) -> SpeedrunData:
    """Move ``ds`` to ``device``, standardise each channel with the training split's mean and std
    over all pixels, pad, and store in ``dtype``."""

    def to_device(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(device).permute(0, 3, 1, 2).float().div_(255.0)  # (N, C, H, W)

    x_train, x_test = to_device(ds.x_train), to_device(ds.x_test)
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)  # (1, C, 1, 1)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)  # (1, C, 1, 1)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    t = translate
    x_train_pad = F.pad(x_train, (t, t, t, t), mode="reflect") if t > 0 else x_train  # (N, C, H+2t, W+2t)
    x_test_pad = F.pad(x_test, (1, 1, 1, 1), mode="reflect")  # (M, C, H+2, W+2)
    return SpeedrunData(
        to_layout(x_train_pad.to(dtype), channels_last),
        torch.from_numpy(ds.y_train).to(device),
        to_layout(x_test.to(dtype), channels_last),
        to_layout(x_test_pad.to(dtype), channels_last),
        torch.from_numpy(ds.y_test).to(device),
        translate,
        channels_last,
    )


def augmented_epoch(
    x_pad: torch.Tensor, translate: int, flip: torch.Tensor, perm: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """One epoch of training images, shuffled, translated and flipped, in a single gather.

    ``x_pad`` (N, C, H + 2t, W + 2t), t = ``translate``; ``flip`` (N,) bool, per source image;
    ``perm`` (N,) the shuffle. Output image i is source image ``perm[i]`` cropped at a uniformly
    random offset (dy, dx) in ``[0, 2t]^2`` and mirrored if ``flip[perm[i]]``:
    ``out[i, c, r, s] = x_pad[perm[i], c, dy_i + r, dx_i + (W - 1 - s if flipped else s)]``: the
    trainers' crop-and-flip gather (:func:`~backproplab.training.augment.crop_flip_gather`) with a
    shuffle and this recipe's alternating flips. Returns (N, C, H, W), channels_last strides.
    """
    n, _, hp, wp = x_pad.shape
    dev = x_pad.device
    dy = torch.randint(0, 2 * translate + 1, (n,), device=dev, generator=generator)  # (N,)
    dx = torch.randint(0, 2 * translate + 1, (n,), device=dev, generator=generator)  # (N,)
    size = (hp - 2 * translate, wp - 2 * translate)
    arange = functools.partial(torch.arange, device=dev)
    out = crop_flip_gather(x_pad, dy, dx, flip[perm], size, arange, torch.where, source=perm)  # (N, C, H, W)
    return out.contiguous(memory_format=torch.channels_last)


def flip_mask(mode: str, epoch: int, base: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Which images (N,) are mirrored in ``epoch``: ``base`` in even epochs and its complement in odd
    ones (alternating), a fresh coin per image (random), or none."""
    if mode == "alternating":
        return base if epoch % 2 == 0 else ~base
    if mode == "random":
        return torch.rand(base.shape, device=base.device, generator=generator) < 0.5
    return torch.zeros_like(base)


# ---------------------------------------------------------------------------------------- timing
class SegmentTimer:
    """Sums the time of marked segments of device work.

    On CUDA each segment is a pair of CUDA events (no synchronisation until :meth:`cumulative` is
    read); on the CPU, ``time.perf_counter`` around the segment.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.segments: list[tuple[Any, Any]] = []
        self._start: Any = None

    def _now(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> int:
        """End the current segment; return its index."""
        self.segments.append((self._start, self._now()))
        return len(self.segments) - 1

    def seconds(self, index: int) -> float:
        a, b = self.segments[index]
        if self.cuda:
            b.synchronize()
            return float(a.elapsed_time(b)) / 1000.0
        return float(b - a)

    def cumulative(self) -> list[float]:
        """Seconds from the start of the first segment to the end of each, gaps excluded."""
        return list(np.cumsum([self.seconds(i) for i in range(len(self.segments))]))


# ---------------------------------------------------------------------------------------- evaluation
def _mirror_pair(x: torch.Tensor) -> list[torch.Tensor]:
    return [x, x.flip(3)]


@torch.no_grad()
def tta_logits(model: torch.nn.Module, x: torch.Tensor, x_pad: torch.Tensor, level: int) -> torch.Tensor:
    """Logits (N, classes) of images ``x`` (N, C, H, W), averaged over test-time views.

    level 0: ``f(x)``; level 1: ``(f(x) + f(mirror x)) / 2``; level 2: ``m(x) / 2 + (m(x_ul) + m(x_dr)) / 4``
    with ``m`` the level-1 average and ``x_ul``, ``x_dr`` the crops of ``x_pad`` (N, C, H+2, W+2)
    shifted one pixel up-left and down-right. All views go through the net as one batch.
    """
    h, w = x.shape[2], x.shape[3]
    views = [x] if level == 0 else _mirror_pair(x)
    if level >= 2:
        views += _mirror_pair(x_pad[:, :, :h, :w]) + _mirror_pair(x_pad[:, :, 2:, 2:])
    out = model(torch.cat(views)).float().view(len(views), len(x), -1)  # (views, N, classes)
    weights = {1: [1.0], 2: [0.5, 0.5], 6: [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]}[len(views)]
    return sum(wt * out[i] for i, wt in enumerate(weights))


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, data: SpeedrunData, level: int, autocast: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """(test loss, test accuracy) as 0-d device tensors: plain cross-entropy and accuracy of the
    TTA logits over the whole test split, BatchNorm in eval mode."""
    model.eval()
    loss = torch.zeros((), device=data.y_test.device)
    correct = torch.zeros((), device=data.y_test.device, dtype=torch.int64)
    for lo in range(0, len(data.y_test), EVAL_CHUNK):
        sl = slice(lo, lo + EVAL_CHUNK)
        with autocast():
            logits = tta_logits(model, data.x_test[sl], data.x_test_pad[sl], level)  # (chunk, classes)
        y = data.y_test[sl]  # (chunk,)
        loss += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(dim=1) == y).sum()
    model.train()
    n = len(data.y_test)
    return loss / n, correct.double() / n


# ---------------------------------------------------------------------------------------- one run
@dataclass
class RunResult:
    test_acc: float
    test_loss: float
    train_seconds: float
    steps: int
    epochs: int
    time_to_target: float | None
    records: list[dict[str, Any]]


def make_optimizer(net: SpeedrunNet, cfg: SpeedrunConfig) -> torch.optim.Optimizer:
    """Nesterov SGD for the batch-summed loss, with hyperparameters that scale linearly with the
    batch size B (both are quoted at B = REF_BATCH = 1024).

    The SGD lr is ``cfg.learning_rate / REF_BATCH`` at any B, which is a batch-mean lr of
    ``cfg.learning_rate * B / 1024``.
    Groups: whitening bias, BatchNorm biases (both with ``bias_lr_scale`` times the lr) and the
    other trainable weights. Each group's torch ``weight_decay`` is ``decay / group_lr`` with
    ``decay = cfg.weight_decay * B / 1024``, so at the peak lr every weight shrinks by ``decay``
    per step (before momentum), the same fraction per epoch at any batch size."""
    base = cfg.learning_rate / REF_BATCH
    decay = cfg.weight_decay * cfg.batch_size / REF_BATCH
    bn_biases = [m.bias for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    ids = {id(p) for p in [net.whiten.bias, *bn_biases]}
    others = [p for p in net.parameters() if p.requires_grad and id(p) not in ids]
    groups = []
    for params, lr in (
        ([net.whiten.bias], base * cfg.bias_lr_scale),
        (bn_biases, base * cfg.bias_lr_scale),
        (others, base),
    ):
        groups.append({"params": params, "lr": lr, "base_lr": lr, "weight_decay": decay / lr})
    return OptimizerSpec("sgd", lr=base, momentum=cfg.momentum, nesterov=cfg.momentum > 0).torch(groups)


def train_once(
    net: SpeedrunNet,
    model: torch.nn.Module,
    data: SpeedrunData,
    cfg: SpeedrunConfig,
    *,
    gen_init: torch.Generator,
    gen_aug: torch.Generator,
    autocast: Any,
    run_index: int,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Train ``net`` (through ``model``, the net or its compiled form) from fresh weights; return
    its final accuracy, timed training seconds and per-epoch records (also passed to ``log`` at
    the end of the run, or when the loss becomes non-finite, before the error is raised)."""
    bs = cfg.batch_size
    steps_per_epoch = data.n_train // bs
    total = cfg.max_steps
    n_epochs = math.ceil(total / steps_per_epoch)
    whiten_bias_steps = round(cfg.whiten_bias_epochs * steps_per_epoch)

    net.reset_parameters(gen_init)
    flip_base = torch.rand(data.n_train, device=data.y_train.device, generator=gen_aug) < 0.5  # (N,)
    timer = SegmentTimer(data.y_train.device)
    timer.start()
    net.init_whitening(data.whitening_images())
    optimizer = make_optimizer(net, cfg)
    averager = Lookahead(net) if cfg.ema else None

    records: list[dict[str, Any]] = []
    evals: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # epoch index -> (loss, acc)
    reached = False
    step = 0
    for epoch in range(n_epochs):
        if epoch > 0:
            timer.start()
        perm = torch.randperm(data.n_train, device=data.y_train.device, generator=gen_aug)  # (N,)
        flips = flip_mask(cfg.flip, epoch, flip_base, gen_aug)  # (N,)
        x_epoch = augmented_epoch(data.x_train_pad, data.translate, flips, perm, gen_aug)  # (N, C, H, W)
        if not data.channels_last:
            x_epoch = x_epoch.contiguous()
        y_epoch = data.y_train[perm]  # (N,)
        n_steps = min(steps_per_epoch, total - step)
        loss_sum = torch.zeros((), device=data.y_train.device)
        for b in range(n_steps):
            factor = lr_factor(step, total, cfg.warmup_frac, cfg.lr_start_frac, cfg.lr_end_frac)
            for i, group in enumerate(optimizer.param_groups):
                group["lr"] = 0.0 if i == 0 and step >= whiten_bias_steps else group["base_lr"] * factor
            xb, yb = x_epoch[b * bs : (b + 1) * bs], y_epoch[b * bs : (b + 1) * bs]  # (B, C, H, W), (B,)
            with autocast():
                logits = model(xb)  # (B, classes)
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing, reduction="sum")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if averager is not None and step % cfg.ema_every == 0:
                averager.update(averaging_decay(step, total, cfg.ema_decay, cfg.ema_every))
            loss_sum += loss.detach()
        last = epoch == n_epochs - 1
        if not last and eval_due(step, step - n_steps, cfg.eval_freq, cfg.target_acc is not None):
            evals[epoch] = evaluate(model, data, cfg.tta, autocast)
        timer.stop()
        train_loss = float(loss_sum) / (n_steps * bs)  # synchronises, outside the timed segment
        records.append({"run": run_index, "epoch": epoch + 1, "step": step, "train_loss": train_loss})
        if not math.isfinite(train_loss):
            for rec, seconds in zip(records, timer.cumulative(), strict=True):
                rec["elapsed_s"] = round(seconds, 6)
                if log is not None:
                    log(rec)
            fp16 = data.x_train_pad.dtype == torch.float16
            raise NonFiniteError(
                f"run {run_index}: training loss became {train_loss} in epoch {epoch + 1} (step {step}); "
                f"likely cause: --learning_rate {cfg.learning_rate:g} is too high"
                + ("; or fp16 overflowed (try --amp bf16)" if fp16 else "")
            )
        if epoch in evals:
            acc = float(evals[epoch][1])
            if cfg.target_acc is not None and acc >= cfg.target_acc:
                reached = True
                break
    if not reached:
        timer.start()
        if averager is not None:
            averager.finish()
        evals[len(records) - 1] = evaluate(model, data, cfg.tta, autocast)
        timer.stop()
    elapsed = [round(t, 6) for t in timer.cumulative()]
    # The final segment (averaging + last evaluation) belongs to the last epoch's record.
    for i, rec in enumerate(records):
        rec["elapsed_s"] = elapsed[i] if i < len(records) - 1 else elapsed[-1]
        if i in evals:
            rec["test_loss"], rec["test_acc"] = float(evals[i][0]), float(evals[i][1])
        if log is not None:
            log(rec)
    final = records[-1]
    hit = cfg.target_acc is not None and final["test_acc"] >= cfg.target_acc
    return RunResult(
        test_acc=final["test_acc"],
        test_loss=final["test_loss"],
        train_seconds=elapsed[-1],
        steps=step,
        epochs=len(records),
        time_to_target=elapsed[-1] if hit else None,
        records=records,
    )


# ---------------------------------------------------------------------------------------- entry point
def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def run(cfg: SpeedrunConfig, *, dataset: Dataset | None = None) -> dict[str, Any]:
    """Train ``cfg.runs`` speedrun nets; print each run and the mean +- std; return the summary.

    ``dataset``, when given, is trained on instead of loading ``cfg.dataset`` (from Python: a
    notebook, a test); the config is validated either way.
    """
    cfg.validate()
    device = select_device(cfg.device)
    amp = cfg.resolve_amp(device)
    dtype = AMP_DTYPES[amp]
    widths = parse_widths(cfg.widths)
    seed_init, seed_aug, seed_warm, seed_subset = derive_seeds(cfg.seed, 4)

    ds = load_dataset(cfg.dataset, cfg.data_dir) if dataset is None else dataset
    if cfg.train_subset is not None or cfg.test_subset is not None:
        ds = ds.subset(cfg.train_subset, cfg.test_subset, np.random.default_rng(seed_subset))
    if cfg.batch_size > ds.n_train:
        raise ConfigError(f"--batch_size {cfg.batch_size} is larger than the {ds.n_train} training images")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    data = speedrun_data(ds, device, dtype, cfg.translate, cfg.channels_last)
    net = SpeedrunNet(ds.input_shape[2], ds.num_classes, widths, activation=cfg.activation).to(device)
    net.check_input(data.x_test)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    model: torch.nn.Module = torch.compile(net) if cfg.compile else net  # type: ignore[assignment]

    def autocast() -> contextlib.AbstractContextManager[None]:
        return autocast_context(device, amp)

    run_dir = RunDir(cfg.out or default_run_dir("speedrun"))
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    run_dir.save_config(
        cfg,
        trainer="speedrun",
        data_source=ds.source,
        resolved_device=str(device),
        device_name=device_name,
        resolved_dtype=str(dtype).removeprefix("torch."),
        torch_version=torch.__version__,
    )
    timing = "CUDA events" if device.type == "cuda" else "time.perf_counter"
    do_warmup = cfg.warmup_run == "yes" or (cfg.warmup_run == "auto" and device.type == "cuda")
    print(
        f"speedrun: {ds.describe()}; {cfg.runs} run(s) on {device_name}, "
        f"{str(dtype).removeprefix('torch.')}, channels_last={cfg.channels_last}, compile={cfg.compile}"
    )

    summary: dict[str, Any] = {"status": "running", "run_dir": str(run_dir.path)}
    results: list[RunResult] = []
    try:
        if do_warmup:
            t0 = time.perf_counter()
            warm = [torch.Generator(device=device).manual_seed(seed_warm + k) for k in range(2)]
            train_once(
                net, model, data, cfg, gen_init=warm[0], gen_aug=warm[1], autocast=autocast, run_index=0
            )
            print(f"warm-up run (not timed, not logged): {time.perf_counter() - t0:.1f} s of wall time")
        gen_init = torch.Generator(device=device).manual_seed(seed_init)
        gen_aug = torch.Generator(device=device).manual_seed(seed_aug)
        for i in range(1, cfg.runs + 1):
            res = train_once(
                net, model, data, cfg, gen_init=gen_init, gen_aug=gen_aug, autocast=autocast, run_index=i,
                log=run_dir.log,
            )  # fmt: skip
            results.append(res)
            run_dir.flush()
            target = ""
            if cfg.target_acc is not None:
                target = (
                    f", target {cfg.target_acc:.4f} reached in {res.time_to_target:.3f} s"
                    if res.time_to_target is not None
                    else f", target {cfg.target_acc:.4f} not reached"
                )
            print(
                f"run {i}/{cfg.runs}: test acc {res.test_acc:.4f} after {res.train_seconds:.3f} s of "
                f"training ({res.epochs} epochs, {res.steps} steps{target})"
            )
        summary["status"] = "completed"
    except NonFiniteError as e:
        summary["status"] = "diverged"
        raise NonFiniteError(f"{e} (metrics so far kept in {run_dir.path})") from None
    except KeyboardInterrupt:
        summary["status"] = "interrupted"
        raise
    finally:
        _finish(run_dir, summary, results, cfg, net, device, dtype, timing, do_warmup)

    acc_m, acc_s = summary["test_acc_mean"], summary["test_acc_std"]
    sec_m, sec_s = summary["train_seconds_mean"], summary["train_seconds_std"]
    n = len(results)
    print(f"test accuracy: {acc_m:.4f} +- {acc_s:.4f} (mean +- std over {n} runs)")
    print(
        f"training time: {sec_m:.3f} +- {sec_s:.3f} s "
        f"(mean +- std over {n} runs; {timing}, {summary['timed']})"
    )
    if cfg.target_acc is not None:
        times = [r.time_to_target for r in results if r.time_to_target is not None]
        line = f"target {cfg.target_acc:.4f} reached in {len(times)}/{n} runs"
        if times:
            t_m, t_s = _mean_std(times)
            line += f"; time to target {t_m:.3f} +- {t_s:.3f} s"
        print(line)
    return summary


def _finish(
    run_dir: RunDir,
    summary: dict[str, Any],
    results: list[RunResult],
    cfg: SpeedrunConfig,
    net: SpeedrunNet,
    device: torch.device,
    dtype: torch.dtype,
    timing: str,
    warmup: bool,
) -> None:
    """Close the metrics log and write curves.png, model.pt (last run) and summary.json."""
    run_dir.close()
    summary.update(
        device=str(device),
        dtype=str(dtype).removeprefix("torch."),
        timing=timing,
        timed="from the whitening init to the end of the final evaluation; data loading, "
        + ("compilation and a warm-up run excluded" if warmup else "compilation excluded, no warm-up run"),
        warmup_run=warmup,
        runs=[
            {
                "run": i + 1,
                "test_acc": r.test_acc,
                "test_loss": r.test_loss,
                "train_seconds": r.train_seconds,
                "time_to_target": r.time_to_target,
                "epochs": r.epochs,
                "steps": r.steps,
            }
            for i, r in enumerate(results)
        ],
    )
    if results:
        acc_m, acc_s = _mean_std([r.test_acc for r in results])
        sec_m, sec_s = _mean_std([r.train_seconds for r in results])
        best = max(range(len(results)), key=lambda i: results[i].test_acc)
        summary.update(
            test_acc_mean=acc_m,
            test_acc_std=acc_s,
            train_seconds_mean=sec_m,
            train_seconds_std=sec_s,
            final_test_acc=acc_m,
            final_test_loss=statistics.fmean(r.test_loss for r in results),
            best_test_acc=results[best].test_acc,
            best_step=results[best].steps,
            best_run=best + 1,
        )
        if cfg.target_acc is not None:
            times = [r.time_to_target for r in results if r.time_to_target is not None]
            summary["target_reached_runs"] = len(times)
            if times:
                summary["time_to_target_mean"], summary["time_to_target_std"] = _mean_std(times)
        model_path = run_dir.path / "model.pt"
        with atomic_path(model_path, suffix=".pt") as tmp:
            torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, tmp)
        summary["model"] = str(model_path)
        plot_runs(
            [(f"run {i + 1}", r.records) for i, r in enumerate(results)],
            run_dir.curves_path,
            title=f"speedrun on {cfg.dataset}",
        )
    run_dir.write_summary(summary)


CONFIG = SpeedrunConfig
