"""Device selection, seeded generators and mixed precision for the PyTorch trainers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from backproplab.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
AMP_MODES = ("none", "bf16")


def select_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; ``"cpu"``; ``"cuda"`` (a ConfigError without one)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device cuda was asked for but no CUDA device is available (torch {torch.__version__}); "
                "use --device cpu or auto"
            )
        return torch.device("cuda")
    raise ConfigError(f"--device must be one of {DEVICES}, got {name!r}")


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (the run's only source of randomness)."""
    return torch.Generator(device=device).manual_seed(seed)


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager[None]:
    """``torch.autocast`` to bfloat16 on ``device`` for ``amp="bf16"``; a no-op for ``"none"``."""
    if amp == "none":
        return contextlib.nullcontext()
    if amp == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise ConfigError(f"--amp must be one of {AMP_MODES}, got {amp!r}")


@contextlib.contextmanager
def fast_cuda_matmul(device: torch.device) -> Iterator[None]:
    """Allow TF32 matmuls and cuDNN autotuning on CUDA for the block; nothing changes on the CPU."""
    if device.type != "cuda":
        yield
        return
    prev = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
    )
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        (
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.benchmark,
        ) = prev
