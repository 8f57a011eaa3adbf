"""Optimizers: state round trips and argument errors (the trajectories against torch.optim are in
test_nn_optim_vs_torch.py)."""

from __future__ import annotations

import numpy as np
import pytest

from backproplab import nn
from backproplab.nn.optim import SGD, Adam, StepLR


def test_optimizer_state_round_trip_continues_the_same_trajectory() -> None:
    rng = np.random.default_rng(1)
    grads = [rng.normal(size=4) for _ in range(6)]

    def run(split: bool) -> np.ndarray:
        p = nn.Parameter(np.linspace(-1.0, 1.0, 4))
        opt = Adam([p], lr=0.05, weight_decay=0.01)
        for k, g in enumerate(grads):
            if split and k == 3:
                state = opt.state_dict()
                p = nn.Parameter(p.data.copy())
                opt = Adam([p], lr=0.0)
                opt.load_state_dict(state)
                opt.weight_decay = 0.01
            p.grad = g.copy()
            opt.step()
        return p.data

    np.testing.assert_array_equal(run(split=True), run(split=False))


def test_optimizer_argument_errors() -> None:
    p = [nn.Parameter(np.zeros(2))]
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="learning rate must be >= 0"):
        SGD(p, lr=-1.0)
    with pytest.raises(ValueError, match="Nesterov momentum requires"):
        SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas must lie in"):
        Adam(p, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="step_size must be positive"):
        StepLR(SGD(p, lr=0.1), step_size=0)
