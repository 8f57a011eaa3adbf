"""The flags that ``train convnet`` (PyTorch) and ``train convnet-numpy`` share, with the practical's
defaults: Adam, lr 1e-4, batch 32, 5000 steps, evaluation every 500, per-channel standardisation."""

from __future__ import annotations

from dataclasses import dataclass, field

from backproplab.training.config_checks import check_fraction, check_non_negative, check_positive, check_seed
from backproplab.training.mlp_config import DATASETS, VALIDATION_SIZE_HELP
from backproplab.training.optim_flags import OptimFlags


@dataclass
class ConvNetBaseConfig(OptimFlags):
    """Flags common to both ConvNet trainers (and the optimizer and schedule flags of every trainer,
    :class:`OptimFlags`); each trainer's dataclass adds its own."""

    learning_rate: float = field(default=1e-4, metadata={"help": "(peak) learning rate"})
    batch_size: int = field(default=32, metadata={"help": "mini-batch size"})
    max_steps: int = field(default=5000, metadata={"help": "number of training steps (mini-batches)"})
    eval_freq: int = field(default=500, metadata={"help": "evaluate on the test split every this many steps"})
    validation_size: int = field(default=0, metadata={"help": VALIDATION_SIZE_HELP})
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
        """Raise :class:`ConfigError` naming the first bad flag."""
        check_positive(self, "learning_rate", "batch_size", "max_steps", "eval_freq", "eval_batch_size")
        check_positive(self, "train_subset", "test_subset")
        check_non_negative(self, "validation_size")
        check_fraction(self, "label_smoothing")
        check_seed(self.seed)
        self.validate_optim_flags()
