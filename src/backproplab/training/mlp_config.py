"""The practical's MLP flags, shared by ``train mlp-numpy`` and ``train mlp-torch``."""

from __future__ import annotations

from dataclasses import dataclass, field

from backproplab.errors import ConfigError

DATASETS = ("cifar10", "fashion-mnist", "digits")


def parse_hidden_units(text: str) -> list[int]:
    """ "100" -> [100], "200,100" -> [200, 100], "" -> [] (logistic regression).

    Empty items ("100,,10"), non-integers and widths below 1 are a ConfigError.
    """
    if text.strip() == "":
        return []
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) < 1:
            raise ConfigError(
                f"--dnn_hidden_units expects comma-separated positive integers like '200,100', got {text!r}"
            )
        out.append(int(item))
    return out


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"--{name} must be positive, got {value}")


class MLPFlagsMixin:
    """``hidden_units`` and the checks of the MLP flags, for every config that takes them."""

    dnn_hidden_units: str
    learning_rate: float

    @property
    def hidden_units(self) -> list[int]:
        return parse_hidden_units(self.dnn_hidden_units)

    def validate_mlp_flags(self) -> None:
        """Raise :class:`ConfigError` for bad hidden units or a learning rate that is not positive."""
        self.hidden_units  # noqa: B018  (raises on bad input)
        _positive("learning_rate", self.learning_rate)


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
    data_dir: str | None = field(
        default=None, metadata={"help": "data set location (directory or archive); default: the cache"}
    )
    seed: int = field(default=42, metadata={"help": "seed of every random choice in the run"})
    dataset: str = field(default="cifar10", metadata={"help": "data set", "choices": DATASETS})
    loss_reduction: str = field(
        default="mean",
        metadata={"help": "cross-entropy reduction over the batch", "choices": ("mean", "sum")},
    )
    optimizer: str = field(default="sgd", metadata={"help": "optimizer", "choices": ("sgd", "adam")})
    init: str = field(
        default="practical",
        metadata={
            "help": "weight init: N(0,1e-4^2) (practical), torch default, kaiming",
            "choices": ("practical", "torch", "kaiming"),
        },
    )
    activation: str = field(
        default="elu", metadata={"help": "hidden activation", "choices": ("elu", "relu", "tanh")}
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
        self.validate_mlp_flags()
        for name in ("max_steps", "batch_size", "eval_freq"):
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"--{name} must be a positive integer, got {value}")
