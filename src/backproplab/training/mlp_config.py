"""The practical's MLP flags, shared by ``train mlp-numpy`` and ``train mlp-torch``."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field

from backproplab.data.load import DATASETS
from backproplab.errors import ConfigError
from backproplab.nn.init import INIT_SCHEMES
from backproplab.nn.losses import REDUCTIONS
from backproplab.nn.mlp import ACTIVATIONS
from backproplab.training.config_checks import (
    check_float32,
    check_non_negative,
    check_positive,
    check_seed,
    parse_positive_ints,
)
from backproplab.training.optimizers import NUMPY_OPTIMIZERS

#: Input features (flattened image size) and classes of each data set, known before loading it.
INPUT_FEATURES = {"cifar10": 3 * 32 * 32, "fashion-mnist": 28 * 28, "digits": 8 * 8}
NUM_CLASSES = 10
#: The evaluation chunk of the MLP trainers (its activations count towards the memory estimate).
EVAL_ROWS = 2000
#: The help of ``--validation_size`` (every trainer that has it).
VALIDATION_SIZE_HELP = (
    "hold out this many training examples (a random draw of --seed) as a validation split, "
    "evaluated as val_loss and val_acc alongside the test split; 0: none"
)


def parse_hidden_units(text: str) -> list[int]:
    """ "100" -> [100], "200,100" -> [200, 100], "" -> [] (logistic regression).

    Empty items ("100,,10"), non-integers and widths below 1 are a ConfigError.
    """
    return parse_positive_ints(text, "dnn_hidden_units", "200,100")


def available_memory_bytes() -> int | None:
    """The memory a new allocation can get: MemAvailable of /proc/meminfo, else the physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``, ``3.1e12`` -> ``"2.82 TiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.3g} PiB"  # pragma: no cover


def mlp_parameter_count(n_features: int, hidden: list[int], n_classes: int) -> int:
    """Weights and biases of an MLP ``n_features -> hidden... -> n_classes``."""
    widths = [n_features, *hidden, n_classes]
    return sum((fan_in + 1) * fan_out for fan_in, fan_out in itertools.pairwise(widths))


def mlp_training_bytes(
    n_features: int, hidden: list[int], n_classes: int, batch_size: int, optimizer: str
) -> int:
    """A lower bound on the memory needed to train the MLP in float32: weights, gradients, the
    optimizer's state (Adam: 2 moments per parameter) and the activations of a batch (or of an
    evaluation chunk), kept for the backward pass."""
    params = mlp_parameter_count(n_features, hidden, n_classes)
    states = 2 if optimizer == "adam" else 0
    rows = max(batch_size, EVAL_ROWS)
    activations = rows * (n_features + 2 * sum(hidden) + 2 * n_classes)
    return 4 * (params * (2 + states) + activations)


class MLPFlagsMixin:
    """``hidden_units`` and the checks of the MLP flags, for every config that takes them."""

    dnn_hidden_units: str
    learning_rate: float

    @property
    def hidden_units(self) -> list[int]:
        return parse_hidden_units(self.dnn_hidden_units)

    def validate_mlp_flags(self) -> None:
        """Raise :class:`ConfigError` for bad hidden units or a learning rate that is not positive
        (or too large for float32)."""
        self.hidden_units  # noqa: B018  (raises on bad input)
        check_positive(self, "learning_rate")
        check_float32("learning_rate", self.learning_rate)

    def check_model_memory(self, n_features: int, n_classes: int, batch_size: int, optimizer: str) -> None:
        """Raise :class:`ConfigError` when training this MLP needs more memory than is available,
        before anything is allocated (a huge ``--dnn_hidden_units`` would otherwise die deep in
        NumPy or torch)."""
        hidden = self.hidden_units
        need = mlp_training_bytes(n_features, hidden, n_classes, batch_size, optimizer)
        have = available_memory_bytes()
        if have is not None and need > have:
            params = mlp_parameter_count(n_features, hidden, n_classes)
            raise ConfigError(
                f"--dnn_hidden_units {self.dnn_hidden_units}: the MLP ({n_features} inputs) has {params:,} "
                f"parameters and needs at least {format_bytes(need)} of memory to train, but only "
                f"{format_bytes(have)} is available; use smaller hidden layers"
            )


@dataclass
class MLPConfig(MLPFlagsMixin):
    """Flags and defaults of the practical's MLP (``train_mlp_numpy.py``)."""

    dnn_hidden_units: str = field(
        default="100", metadata={"help": "comma-separated hidden widths; empty for logistic regression"}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "learning rate"})
    max_steps: int = field(default=1400, metadata={"help": "number of training steps (mini-batches)"})
    batch_size: int = field(default=200, metadata={"help": "mini-batch size"})
    eval_freq: int = field(default=100, metadata={"help": "evaluate on the test split every this many steps"})
    validation_size: int = field(default=0, metadata={"help": VALIDATION_SIZE_HELP})
    data_dir: str | None = field(
        default=None, metadata={"help": "data set location (directory or archive); default: the cache"}
    )
    seed: int = field(default=42, metadata={"help": "seed of every random choice in the run"})
    dataset: str = field(default="cifar10", metadata={"help": "data set", "choices": DATASETS})
    loss_reduction: str = field(
        default="mean",
        metadata={"help": "cross-entropy reduction over the batch", "choices": REDUCTIONS},
    )
    optimizer: str = field(default="sgd", metadata={"help": "optimizer", "choices": NUMPY_OPTIMIZERS})
    init: str = field(
        default="practical",
        metadata={
            "help": "weight init: N(0,1e-4^2) (practical), torch default, kaiming",
            "choices": INIT_SCHEMES,
        },
    )
    activation: str = field(
        default="elu", metadata={"help": "hidden activation", "choices": tuple(ACTIVATIONS)}
    )
    preprocess: str = field(
        default="mean_image",
        metadata={
            "help": "input preprocessing: subtract the mean training image (practical), or standardise per channel",
            "choices": ("mean_image", "standardize"),
        },
    )
    out: str | None = field(default=None, metadata={"help": "run directory (default: runs/<trainer>-<time>)"})
    track_stats: bool = field(
        default=False, metadata={"help": "record per-layer statistics at every evaluation into metrics.jsonl"}
    )

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad flag (and a model too big for memory)."""
        self.validate_mlp_flags()
        check_positive(self, "max_steps", "batch_size", "eval_freq")
        check_non_negative(self, "validation_size")
        check_seed(self.seed)
        self.check_model_memory(INPUT_FEATURES[self.dataset], NUM_CLASSES, self.batch_size, self.optimizer)
