"""The flags that ``train convnet`` (PyTorch) and ``train convnet-numpy`` share, with the practical's
defaults: Adam, lr 1e-4, batch 32, 5000 steps, evaluation every 500, per-channel standardisation."""

from __future__ import annotations

from dataclasses import dataclass, field

from backproplab.errors import ConfigError
from backproplab.training.mlp_config import DATASETS


@dataclass
class ConvNetBaseConfig:
    """Flags common to both ConvNet trainers; each trainer's dataclass adds its own."""

    learning_rate: float = field(default=1e-4, metadata={"help": "(peak) learning rate"})
    batch_size: int = field(default=32, metadata={"help": "mini-batch size"})
    max_steps: int = field(default=5000, metadata={"help": "number of training steps (mini-batches)"})
    eval_freq: int = field(default=500, metadata={"help": "evaluate on the test split every this many steps"})
    momentum: float = field(default=0.9, metadata={"help": "Nesterov momentum of --optimizer sgd"})
    weight_decay: float = field(default=0.0, metadata={"help": "L2 weight decay"})
    lr_schedule: str = field(
        default="constant",
        metadata={
            "help": "learning-rate schedule over --schedule_steps",
            "choices": ("constant", "cosine", "onecycle"),
        },
    )
    schedule_steps: int | None = field(
        default=None, metadata={"help": "length of the cosine/onecycle schedule (default: --max_steps)"}
    )
    label_smoothing: float = field(default=0.0, metadata={"help": "label smoothing of the training loss"})
    augment: bool = field(default=False, metadata={"help": "random crop (padding 4) and horizontal flip"})
    eval_batch_size: int = field(default=1000, metadata={"help": "batch size of the evaluation"})
    dataset: str = field(default="cifar10", metadata={"help": "data set", "choices": DATASETS})
    data_dir: str | None = field(
        default=None, metadata={"help": "data set location (directory or archive); default: the cache"}
    )
    train_subset: int | None = field(
        default=None, metadata={"help": "train on this many random training images (default: all)"}
    )
    test_subset: int | None = field(
        default=None, metadata={"help": "evaluate on this many random test images (default: all)"}
    )
    preprocess: str = field(
        default="standardize",
        metadata={
            "help": "standardise per channel, or subtract the mean training image (the practical's way)",
            "choices": ("standardize", "mean_image"),
        },
    )
    seed: int = field(default=42, metadata={"help": "seed of every random choice in the run"})
    track_stats: bool = field(
        default=False,
        metadata={"help": "record per-layer statistics (doctor) at every evaluation into metrics.jsonl"},
    )
    out: str | None = field(default=None, metadata={"help": "run directory (default: runs/<trainer>-<time>)"})

    def validate(self) -> None:
        if not self.learning_rate > 0:
            raise ConfigError(f"--learning_rate must be positive, got {self.learning_rate}")
        for name in ("batch_size", "max_steps", "eval_freq", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("schedule_steps", "train_subset", "test_subset"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name} must be a positive integer, got {value}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"--momentum must be in [0, 1), got {self.momentum}")
        if not self.weight_decay >= 0:
            raise ConfigError(f"--weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"--label_smoothing must be in [0, 1), got {self.label_smoothing}")
