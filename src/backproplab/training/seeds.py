"""The one derivation of a run's random streams from its ``--seed`` (torch-free)."""

from __future__ import annotations

import numpy as np


def derive_seeds(seed: int, n: int) -> list[int]:
    """``n`` independent 63-bit seeds derived from the run's ``--seed`` by NumPy's SeedSequence.

    Each seeds one generator (``np.random.default_rng(s)`` or ``torch.Generator().manual_seed(s)``);
    the order of the list is part of a trainer's reproducibility contract (append, never reorder).
    63 bits, because ``torch.Generator.manual_seed`` takes a signed 64-bit integer.
    """
    state = np.random.SeedSequence(seed).generate_state(n, dtype=np.uint64)  # (n,)
    return [int(s) for s in state >> np.uint64(1)]
