"""Optimizers and schedules against torch.optim: 10-step trajectories on the same parameters and gradients,
and one full MLP training step (forward, fused loss, backward, SGD) against the torch MLP."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nn_checks import TOLERANCES

from backproplab import nn
from backproplab.nn.optim import SGD, Adam, StepLR
from backproplab.torch_models import TorchMLP

STEPS = 10
SHAPES = [(3, 4), (4,), (2, 3, 2)]


def _run(
    np_opt_cls: type,
    torch_opt_cls: type,
    kwargs: dict[str, Any],
    dtype: type = np.float64,
    sched: dict[str, Any] | None = None,
    seed: int = 0,
) -> list[tuple[list[np.ndarray], list[np.ndarray], float, float]]:
    """Run both optimizers for STEPS steps; per step (numpy params, torch params, numpy lr, torch lr)."""
    rng = np.random.default_rng(seed)
    init = [rng.normal(size=s).astype(dtype) for s in SHAPES]
    grads = [[rng.normal(size=s).astype(dtype) for s in SHAPES] for _ in range(STEPS)]  # fed identically
    params = [nn.Parameter(a.copy()) for a in init]
    tparams = [torch.nn.Parameter(torch.tensor(a.copy())) for a in init]
    opt, topt = np_opt_cls(params, **kwargs), torch_opt_cls(tparams, **kwargs)
    s = StepLR(opt, **sched) if sched else None
    ts = torch.optim.lr_scheduler.StepLR(topt, **sched) if sched else None
    out = []
    for step in range(STEPS):
        for p, tp, g in zip(params, tparams, grads[step], strict=True):
            p.grad = g.copy()
            tp.grad = torch.tensor(g.copy())
        opt.step()
        topt.step()
        if s is not None and ts is not None:
            s.step()
            ts.step()
        opt.zero_grad()
        topt.zero_grad()
        out.append(
            (
                [p.data.copy() for p in params],
                [tp.detach().numpy().copy() for tp in tparams],
                opt.lr,
                topt.param_groups[0]["lr"],
            )
        )
    return out


def _assert_trajectories_equal(traj: list[Any], tolerance: str = "float64_trajectory") -> None:
    for step, (ours, theirs, lr, tlr) in enumerate(traj, start=1):
        assert lr == pytest.approx(tlr, rel=1e-15), f"lr at step {step}"
        for k, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            TOLERANCES[tolerance].assert_close(a, b, f"param {k} after step {step}")


SGD_CONFIGS = {
    "plain": {"lr": 0.1},
    "momentum": {"lr": 0.05, "momentum": 0.9},
    "nesterov": {"lr": 0.05, "momentum": 0.9, "nesterov": True},
    "weight_decay": {"lr": 0.1, "weight_decay": 0.01},
    "dampening": {"lr": 0.05, "momentum": 0.8, "dampening": 0.3},
    "everything": {"lr": 0.03, "momentum": 0.7, "weight_decay": 0.05, "nesterov": True},
}


@pytest.mark.parametrize("name", sorted(SGD_CONFIGS))
def test_sgd_trajectory_equals_torch_float64(name: str) -> None:
    _assert_trajectories_equal(_run(SGD, torch.optim.SGD, SGD_CONFIGS[name]))


ADAM_CONFIGS = {
    "default": {"lr": 0.01},
    "weight_decay": {"lr": 0.01, "weight_decay": 0.1},
    "betas_eps": {"lr": 0.003, "betas": (0.8, 0.99), "eps": 1e-6},
}


@pytest.mark.parametrize("name", sorted(ADAM_CONFIGS))
def test_adam_trajectory_equals_torch_float64(name: str) -> None:
    _assert_trajectories_equal(_run(Adam, torch.optim.Adam, ADAM_CONFIGS[name]))


@pytest.mark.parametrize(
    ("cls", "tcls", "kwargs"),
    [
        (SGD, torch.optim.SGD, SGD_CONFIGS["everything"]),
        (Adam, torch.optim.Adam, ADAM_CONFIGS["weight_decay"]),
    ],
)
def test_float32_trajectories_within_tolerance(cls: type, tcls: type, kwargs: dict[str, Any]) -> None:
    traj = _run(cls, tcls, kwargs, dtype=np.float32)
    assert traj[-1][0][0].dtype == np.float32
    _assert_trajectories_equal(traj, "float32_trajectory")


@pytest.mark.parametrize(
    ("cls", "tcls", "kwargs"),
    [(SGD, torch.optim.SGD, {"lr": 0.2, "momentum": 0.9}), (Adam, torch.optim.Adam, {"lr": 0.05})],
)
def test_step_lr_schedule_and_trajectory_equal_torch(cls: type, tcls: type, kwargs: dict[str, Any]) -> None:
    traj = _run(cls, tcls, kwargs, sched={"step_size": 3, "gamma": 0.5})
    lrs = [lr for _, _, lr, _ in traj]
    assert lrs == pytest.approx([kwargs["lr"] * 0.5 ** ((k + 1) // 3) for k in range(STEPS)], rel=1e-15)
    _assert_trajectories_equal(traj)


def test_parameters_without_grad_are_left_alone_as_in_torch() -> None:
    a, b = nn.Parameter(np.ones(3)), nn.Parameter(np.ones(2))
    ta, tb = (
        torch.nn.Parameter(torch.ones(3, dtype=torch.float64)),
        torch.nn.Parameter(torch.ones(2, dtype=torch.float64)),
    )
    opt, topt = Adam([a, b], lr=0.1), torch.optim.Adam([ta, tb], lr=0.1)
    for g in (np.array([1.0, -2.0, 3.0]), np.array([0.5, 0.5, -1.0])):
        a.grad, ta.grad = g.copy(), torch.tensor(g)
        opt.step()
        topt.step()
    TOLERANCES["float64_trajectory"].assert_close(a.data, ta.detach().numpy(), "a")
    np.testing.assert_array_equal(b.data, np.ones(2))
    assert not opt.state[1]  # no state was created for the parameter that never had a grad


@pytest.mark.parametrize("kind", ["cosine", "onecycle"])
def test_lambda_lr_with_schedule_factor_equals_torch(kind: str) -> None:
    from backproplab.nn.optim import LambdaLR, ScheduleFactor

    p = nn.Parameter(np.zeros(3))
    opt, topt = SGD([p], lr=0.5), torch.optim.SGD([torch.zeros(3, requires_grad=True)], lr=0.5)
    sched, tsched = (
        LambdaLR(opt, ScheduleFactor(kind, 7)),
        torch.optim.lr_scheduler.LambdaLR(topt, ScheduleFactor(kind, 7)),
    )
    lrs, tlrs = [opt.lr], [topt.param_groups[0]["lr"]]
    for _ in range(9):
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
        lrs.append(opt.lr)
        tlrs.append(topt.param_groups[0]["lr"])
    assert lrs == pytest.approx(tlrs, rel=1e-15)
    assert lrs[-1] == 0.0 and len(set(lrs)) > 5


def test_mlp_training_step_with_sgd_matches_torch() -> None:
    """One full step (forward, fused loss, backward, SGD) leaves the same weights on both sides."""
    rng = np.random.default_rng(0)
    model = nn.MLP(5, [7, 6], 3, rng=rng, init_scheme="torch")
    ref = TorchMLP(5, [7, 6], 3)
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    x, y = rng.normal(size=(8, 5)).astype(np.float32), rng.integers(0, 3, size=8)
    loss_fn, opt = nn.SoftmaxCrossEntropy(), nn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()
        opt.zero_grad()
        tloss = F.cross_entropy(ref(torch.from_numpy(x)), torch.tensor(y))
        topt.zero_grad()
        tloss.backward()
        topt.step()
        TOLERANCES["float32"].assert_close(loss, tloss.detach().numpy(), "loss")
    for k, v in ref.state_dict().items():
        TOLERANCES["float32"].assert_close(model.state_dict()[k], v.numpy(), k)
