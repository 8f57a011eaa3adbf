"""Device selection, seeded generators and mixed precision for the PyTorch trainers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from backproplab.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
#: ``--amp`` values and the dtype each computes in (``none``: float32, no autocast).
AMP_DTYPES = {"none": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: The ``--amp`` values of ``train convnet`` (fp16 would need a gradient scaler there).
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
    """``torch.autocast`` on ``device`` to the dtype of ``amp`` (bf16, fp16); a no-op for ``"none"``."""
    if amp not in AMP_DTYPES:
        raise ConfigError(f"--amp must be one of {tuple(AMP_DTYPES)}, got {amp!r}")
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


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
