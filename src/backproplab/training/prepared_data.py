"""Data sets turned into the float arrays a model trains on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backproplab.data import Dataset, Normalizer, check_finite, to_float
from backproplab.errors import ConfigError

#: The spawn key of the validation split's generator under ``--seed`` (``"val"`` in ASCII), apart
#: from every generator the trainers derive from the same seed.
VALIDATION_SPAWN_KEY = 0x76616C


@dataclass
class PreparedData:
    """Normalised float32 arrays. MLP inputs are flat (N, C*H*W) in C, H, W order, so a flattened
    NCHW image (what ``torch.nn.Flatten`` gives) has the same layout; ConvNet inputs are NCHW."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    normalizer: Normalizer
    #: The validation split carved from the training set (``--validation_size``), or None.
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    @property
    def n_features(self) -> int:
        return int(np.prod(self.x_train.shape[1:]))


def validation_indices(n_train: int, validation_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) indices, each sorted: ``validation_size`` of the ``n_train`` training
    examples drawn without replacement by a generator of ``seed`` alone (the same split for every
    trainer, model and other flag). A size outside ``[0, n_train)`` is a :class:`ConfigError`."""
    if not 0 <= validation_size < n_train:
        raise ConfigError(
            f"--validation_size must be at least 0 and smaller than the {n_train} training examples, "
            f"got {validation_size}"
        )
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(VALIDATION_SPAWN_KEY,)))
    perm = rng.permutation(n_train)  # (n_train,)
    return np.sort(perm[validation_size:]), np.sort(perm[:validation_size])


def prepare(
    ds: Dataset, mode: str, layout: str = "flat", *, validation_size: int = 0, seed: int = 0
) -> PreparedData:
    """Convert ``ds`` to float32 in ``layout`` ("flat" or "NCHW") and normalise with ``mode``
    (statistics from the training split only). With ``validation_size`` > 0 that many training
    examples (:func:`validation_indices` of ``seed``) become the validation split, held out of
    training and of the normalisation statistics like the test split."""
    if layout not in ("flat", "NCHW"):
        raise ValueError(f"layout must be 'flat' or 'NCHW', got {layout!r}")
    x_train, y_train = ds.x_train, ds.y_train
    x_val = y_val = None
    if validation_size:
        train_idx, val_idx = validation_indices(len(x_train), validation_size, seed)
        x_val, y_val = x_train[val_idx], y_train[val_idx]
        x_train, y_train = x_train[train_idx], y_train[train_idx]
    x_train_float = to_float(x_train, "NCHW")  # (N, C, H, W)
    norm = Normalizer(mode, "NCHW")  # type: ignore[arg-type]  # per-channel statistics of NCHW
    norm.fit(x_train_float)

    def convert(x_float: np.ndarray, what: str) -> np.ndarray:
        out = norm(x_float)  # (N, C, H, W)
        out = out.reshape(len(out), -1) if layout == "flat" else out  # (N, C*H*W) or NCHW
        check_finite(what, out)
        return out

    return PreparedData(
        convert(x_train_float, "training inputs"),
        y_train,
        convert(to_float(ds.x_test, "NCHW"), "test inputs"),
        ds.y_test,
        ds.num_classes,
        norm,
        None if x_val is None else convert(to_float(x_val, "NCHW"), "validation inputs"),
        y_val,
    )
