"""Trajectories (verify/trajectory.py): optimizers with their hyperparameters, named update-rule
mistakes, rounding-noise parameters, and the generic TrajectorySide interface."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from parity_planted_bugs import N_IN, WIDTH, batch, mlp_modules

from backproplab import nn
from backproplab.errors import ConfigError
from backproplab.verify.parity import compare_trajectories as from_parity
from backproplab.verify.trajectory import (
    ModuleSide,
    OptimizerSpec,
    TorchSide,
    compare_trajectories,
    run_trajectory,
    update_rule,
)
from backproplab.verify.twin import build_twin

SGD_SETTINGS = [
    OptimizerSpec("sgd", lr=0.05),
    OptimizerSpec("sgd", lr=0.05, momentum=0.9),
    OptimizerSpec("sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
    OptimizerSpec("sgd", lr=0.05, momentum=0.8, dampening=0.3, weight_decay=5e-3),
]
ADAM_SETTINGS = [
    OptimizerSpec("adam", lr=1e-2),
    OptimizerSpec("adam", lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2),
]


def mlp(rng: np.random.Generator, dtype: type = np.float32) -> nn.Sequential:
    return nn.Sequential(*mlp_modules(3, rng, dtype=dtype))


def test_optimizer_spec_describe_and_builders() -> None:
    assert OptimizerSpec("sgd", lr=0.01, momentum=0.9, nesterov=True).describe() == (
        "SGD(lr=0.01, momentum=0.9, nesterov=True)"
    )
    assert OptimizerSpec("adam").describe() == "Adam(lr=0.001)"
    assert OptimizerSpec("adam", betas=(0.8, 0.99), weight_decay=0.1).describe() == (
        "Adam(lr=0.001, betas=(0.8, 0.99), weight_decay=0.1)"
    )
    spec = OptimizerSpec("sgd", lr=0.1, momentum=0.5, dampening=0.1, weight_decay=0.2)
    sgd = spec.numpy([nn.Parameter(np.zeros(2))])
    assert isinstance(sgd, nn.optim.SGD) and (sgd.momentum, sgd.dampening, sgd.weight_decay) == (
        0.5,
        0.1,
        0.2,
    )
    t = spec.torch([torch.nn.Parameter(torch.zeros(2))])
    assert t.defaults["momentum"] == 0.5 and t.defaults["dampening"] == 0.1
    with pytest.raises(
        ConfigError, match=r"optimizer must be one of \('sgd', 'adam', 'adamw'\), got 'rmsprop'"
    ):
        OptimizerSpec("rmsprop")
    with pytest.raises(ConfigError, match="--nesterov needs a --momentum above 0"):
        OptimizerSpec("sgd", nesterov=True)
    with pytest.raises(ConfigError, match="the NumPy engine has no 'adamw' optimizer"):
        OptimizerSpec("adamw").numpy([])
    with pytest.raises(ValueError, match="no reference update rule for AdamW"):
        update_rule(OptimizerSpec("adamw"))


@pytest.mark.parametrize("spec", SGD_SETTINGS + ADAM_SETTINGS, ids=lambda s: s.describe())
def test_correct_engine_follows_torch_for_every_setting(spec: OptimizerSpec) -> None:
    rng = np.random.default_rng(0)
    model = mlp(rng)
    x, y = batch(64, rng)
    traj = compare_trajectories(model, x=x, y=y, rng=rng, optimizer=spec, batch_size=16, steps=15)
    assert traj.first_divergence is None and traj.hint is None, traj.steps
    assert traj.optimizer == spec.describe()
    assert max(s.param_rel_diff for s in traj.steps) < 1e-5


def test_parity_module_reexports_compare_trajectories() -> None:
    assert from_parity is compare_trajectories


# ---------------------------------------------------------------------------- planted optimizers
class AdamNoBiasCorrection(nn.optim.Adam):
    """Bug: p -= lr * m / (sqrt(v) + eps), without dividing m and v by 1 - beta^t."""

    def step(self) -> None:
        b1, b2 = self.betas
        for p, st in zip(self.params, self.state, strict=True):
            if p.grad is None:
                continue
            g = p.grad + self.weight_decay * p.data
            m = st.setdefault("m", np.zeros_like(p.data))
            v = st.setdefault("v", np.zeros_like(p.data))
            m[...] = b1 * m + (1 - b1) * g
            v[...] = b2 * v + (1 - b2) * g * g
            p.data -= self.lr * m / (np.sqrt(v) + self.eps)


class SGDWeightDecayAfterMomentum(nn.optim.SGD):
    """Bug: the weight decay is added to the update after the momentum buffer, not to the gradient."""

    def step(self) -> None:
        for p, st in zip(self.params, self.state, strict=True):
            if p.grad is None:
                continue
            b = st.get("b")
            b = st["b"] = p.grad.copy() if b is None else self.momentum * b + (1 - self.dampening) * p.grad
            p.data -= self.lr * (b + self.weight_decay * p.data)


class SGDVelocityForm(nn.optim.SGD):
    """Bug (with dampening): the CS231n form v = mu*v - lr*g, p += v, which ignores dampening."""

    def step(self) -> None:
        for p, st in zip(self.params, self.state, strict=True):
            if p.grad is None:
                continue
            v = st.setdefault("v", np.zeros_like(p.data))
            v[...] = self.momentum * v - self.lr * p.grad
            p.data += v


def planted_run(spec: OptimizerSpec, opt_class: type, steps: int = 6) -> Any:
    rng = np.random.default_rng(1)
    model = mlp(rng)
    x, y = batch(64, rng)
    twin = build_twin(model)
    kw = (
        {"betas": spec.betas, "eps": spec.eps}
        if spec.name == "adam"
        else {"momentum": spec.momentum, "dampening": spec.dampening}
    )
    numpy_side = ModuleSide(
        model,
        nn.SoftmaxCrossEntropy(),
        opt_class(list(model.parameters()), lr=spec.lr, weight_decay=spec.weight_decay, **kw),
    )
    torch_side = TorchSide(twin, torch.nn.functional.cross_entropy, spec.torch(list(twin.parameters())))
    return run_trajectory(
        numpy_side, torch_side, x=x, y=y, rng=rng, optimizer=spec, batch_size=16, steps=steps, dtype="float32"
    )


def test_adam_without_bias_correction_is_named() -> None:
    spec = OptimizerSpec("adam", lr=1e-3)
    traj = planted_run(spec, AdamNoBiasCorrection)
    assert traj.first_divergence == 1  # the correction matters most at t = 1
    assert traj.first_parameter == "0.weight"
    assert "Adam(lr=0.001)" in traj.hint and "Adam without bias correction" in traj.hint
    assert "first at parameter 0.weight" in traj.hint


def test_sgd_weight_decay_after_momentum_is_named() -> None:
    spec = OptimizerSpec("sgd", lr=0.05, momentum=0.9, weight_decay=0.05)
    traj = planted_run(spec, SGDWeightDecayAfterMomentum)
    assert traj.first_divergence == 2  # identical at step 1: the buffer starts at g + wd * p either way
    assert "SGD(lr=0.05, momentum=0.9, weight_decay=0.05)" in traj.hint
    assert "weight decay added after momentum" in traj.hint


def test_sgd_dampening_ignored_by_the_velocity_form_is_named() -> None:
    spec = OptimizerSpec("sgd", lr=0.05, momentum=0.9, dampening=0.5)
    traj = planted_run(spec, SGDVelocityForm)
    assert traj.first_divergence == 2
    assert "dampening ignored" in traj.hint and "dampening=0.5" in traj.hint


def test_velocity_form_without_dampening_is_torch_sgd_and_no_alarm() -> None:
    """v = mu*v - lr*g, p += v is torch's momentum exactly when dampening is 0: not a bug."""
    traj = planted_run(OptimizerSpec("sgd", lr=0.05, momentum=0.9), SGDVelocityForm)
    assert traj.first_divergence is None and traj.hint is None


def test_an_unexplained_update_says_so_and_lists_what_was_tried() -> None:
    class SignSGD(nn.optim.SGD):
        def step(self) -> None:
            for p in self.params:
                if p.grad is not None:
                    p.data -= self.lr * np.sign(p.grad)

    traj = planted_run(OptimizerSpec("sgd", lr=0.05), SignSGD)
    assert traj.first_divergence == 1
    assert "departs from torch.optim.SGD's from step 1" in traj.hint
    assert "not explained by a usual mistake" in traj.hint and "one constant factor" in traj.hint


def scaled_sgd(factor: Any) -> type:
    """SGD whose step is ``factor(lr) * g`` (torch's: lr * g)."""

    class ScaledSGD(nn.optim.SGD):
        def step(self) -> None:
            for p in self.params:
                if p.grad is not None:
                    p.data -= factor(self.lr) * p.grad

    return ScaledSGD


@pytest.mark.parametrize(
    ("factor", "named"),
    [
        (lambda lr: lr * lr, "the learning rate applied twice (lr^2 = 0.0025 instead of lr = 0.05)"),
        (
            lambda lr: 2 * lr,
            "2 x torch.optim.SGD's at every step and for every parameter: the update applied twice",
        ),
        (lambda lr: 0.5 * lr, "0.5 x torch.optim.SGD's at every step and for every parameter: half"),
        (lambda lr: 1.0, "the learning rate left out"),
        (lambda lr: 0.3 * lr, "an effective learning rate of 0.015 instead of 0.05"),
    ],
)
def test_a_constant_factor_on_the_update_is_named(factor: Any, named: str) -> None:
    traj = planted_run(OptimizerSpec("sgd", lr=0.05), scaled_sgd(factor))
    assert traj.first_divergence == 1
    assert named in traj.hint, traj.hint


class SGDWeightDecayOnWeightsOnly(nn.optim.SGD):
    """The common practice (no decay on biases) where the reference decays every parameter."""

    def step(self) -> None:
        for p in self.params:
            if p.grad is not None:
                g = p.grad + (self.weight_decay * p.data if p.data.ndim > 1 else 0.0)
                p.data -= self.lr * g


class SGDSignSlips(nn.optim.SGD):
    """b = g - mu*b, or g - wd*p: a sign slip in the momentum or the decay (``which``)."""

    which = "momentum"

    def step(self) -> None:
        for p, st in zip(self.params, self.state, strict=True):
            if p.grad is None:
                continue
            sign = -1.0 if self.which == "decay" else 1.0
            g = p.grad + sign * self.weight_decay * p.data
            b = st.get("b")
            mu = -self.momentum if self.which == "momentum" else self.momentum
            b = st["b"] = g.copy() if b is None else mu * b + g
            p.data -= self.lr * b


@pytest.mark.parametrize(
    ("which", "named"),
    [("momentum", "momentum with the wrong sign"), ("decay", "weight decay with the wrong sign")],
)
def test_a_sign_slip_in_momentum_or_weight_decay_is_named(which: str, named: str) -> None:
    cls = type("Slip", (SGDSignSlips,), {"which": which})
    traj = planted_run(OptimizerSpec("sgd", lr=0.05, momentum=0.9, weight_decay=0.05), cls)
    assert traj.first_divergence is not None and named in traj.hint, traj.hint


def test_weight_decay_skipped_for_the_biases_is_named() -> None:
    traj = planted_run(OptimizerSpec("sgd", lr=0.05, weight_decay=0.05), SGDWeightDecayOnWeightsOnly)
    assert traj.first_divergence is not None
    assert "weight decay ignored, for 0.bias, 2.bias, 4.bias only" in traj.hint, traj.hint
    assert "weight decay skipped for the biases" in traj.hint


class HandWrittenMomentumSide:
    """A user's own NumPy training loop (no nn.optim), wrapped as a TrajectorySide."""

    def __init__(self, model: nn.Module, lr: float, mu: float, wd: float, after: bool) -> None:
        self.model, self.lr, self.mu, self.wd, self.after = model, lr, mu, wd, after
        self.loss = nn.SoftmaxCrossEntropy()
        self.v: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def step(self, xb: np.ndarray, yb: np.ndarray) -> float:
        value = float(self.loss(self.model(xb), yb))
        self.model.backward(self.loss.backward(1.0))
        self.grads = {}
        for k, p in self.model.named_parameters():
            g = p.grad.copy()  # type: ignore[union-attr]
            self.grads[k] = g.copy()
            if not self.after:
                g += self.wd * p.data
            b = self.v[k] = g if k not in self.v else self.mu * self.v[k] + g
            p.data -= self.lr * (b + self.wd * p.data if self.after else b)
            p.grad = None
        return value

    def parameters(self) -> dict[str, np.ndarray]:
        return {k: p.data.copy() for k, p in self.model.named_parameters()}

    def gradients(self) -> dict[str, np.ndarray]:
        return dict(self.grads)


@pytest.mark.parametrize("after", [False, True])
def test_a_hand_written_update_rule_is_checked_through_the_protocol(after: bool) -> None:
    rng = np.random.default_rng(2)
    model = mlp(rng)
    x, y = batch(48, rng)
    spec = OptimizerSpec("sgd", lr=0.05, momentum=0.9, weight_decay=0.02)
    twin = build_twin(model)
    traj = run_trajectory(
        HandWrittenMomentumSide(model, 0.05, 0.9, 0.02, after),
        TorchSide(twin, torch.nn.functional.cross_entropy, spec.torch(list(twin.parameters()))),
        x=x, y=y, rng=rng, optimizer=spec, batch_size=16, steps=5, dtype="float32",
    )  # fmt: skip
    if after:
        assert traj.first_divergence is not None and "weight decay added after momentum" in traj.hint
    else:
        assert traj.first_divergence is None and traj.hint is None


def test_a_gradient_bug_is_not_blamed_on_the_optimizer() -> None:
    from parity_planted_bugs import OutputDerivativeELU

    rng = np.random.default_rng(6)
    model = nn.Sequential(*mlp_modules(3, rng, activation=OutputDerivativeELU))
    x, y = batch(32, rng)
    traj = compare_trajectories(model, x=x, y=y, rng=rng, optimizer=OptimizerSpec("adam", lr=1e-2), steps=2)
    assert traj.first_divergence == 1
    assert "the gradients already differ" in traj.hint and "not the optimizer" in traj.hint


# ---------------------------------------------------------------------------- rounding-noise params
def bn_mlp(rng: np.random.Generator, dtype: type = np.float32) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(N_IN, WIDTH, rng=rng, dtype=dtype),
        nn.BatchNorm1d(WIDTH, dtype=dtype),
        nn.ELU(),
        nn.Linear(WIDTH, 5, rng=rng, dtype=dtype),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_before_batchnorm_with_adam_is_no_false_alarm(dtype: type) -> None:
    """Its gradient is rounding noise, which Adam normalises to full-size steps on each side."""
    rng = np.random.default_rng(7)
    model = bn_mlp(rng, dtype)
    x, y = batch(64, rng, dtype=dtype)
    traj = compare_trajectories(
        model, x=x, y=y, rng=rng, optimizer="adam", learning_rate=1e-3, batch_size=16, steps=8
    )
    assert traj.first_divergence is None, traj.steps
    assert traj.excluded == ["0.bias"]
    assert any(n.startswith("0.bias: gradient zero up to rounding") for n in traj.notes)
    assert max(s.param_rel_diff for s in traj.steps) < (1e-5 if dtype == np.float32 else 1e-12)


def test_conv_bias_before_batchnorm2d_in_float64_with_adam_is_no_false_alarm() -> None:
    """The ConvNet's case in small: conv biases followed by BatchNorm2d, float64, Adam."""
    rng = np.random.default_rng(8)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, rng=rng, dtype=np.float64),
        nn.BatchNorm2d(4, dtype=np.float64),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 36, 5, rng=rng, dtype=np.float64),
    )
    x = rng.standard_normal((24, 3, 6, 6))
    y = rng.integers(0, 5, 24)
    traj = compare_trajectories(
        model, x=x, y=y, rng=rng, optimizer="adam", learning_rate=1e-3, batch_size=8, steps=10
    )
    assert traj.first_divergence is None and traj.excluded == ["0.bias"]
    assert max(s.param_rel_diff for s in traj.steps) < 1e-12


def test_a_real_adam_bug_is_still_caught_with_a_batchnorm_model() -> None:
    rng = np.random.default_rng(9)
    model = bn_mlp(rng)
    x, y = batch(64, rng)
    twin = build_twin(model)
    spec = OptimizerSpec("adam", lr=1e-3)
    traj = run_trajectory(
        ModuleSide(model, nn.SoftmaxCrossEntropy(), AdamNoBiasCorrection(list(model.parameters()), lr=1e-3)),
        TorchSide(twin, torch.nn.functional.cross_entropy, spec.torch(list(twin.parameters()))),
        x=x, y=y, rng=rng, optimizer=spec, batch_size=16, steps=3, dtype="float32",
    )  # fmt: skip
    assert traj.first_divergence == 1 and "Adam without bias correction" in traj.hint
    assert traj.first_parameter == "0.weight"


def test_dropout_model_trains_the_same_in_eval_mode_with_a_note() -> None:
    rng = np.random.default_rng(10)
    model = nn.Sequential(
        nn.Linear(N_IN, WIDTH, rng=rng), nn.ReLU(), nn.Dropout(0.5), nn.Linear(WIDTH, 5, rng=rng)
    )
    x, y = batch(64, rng)
    traj = compare_trajectories(
        model, x=x, y=y, rng=rng, optimizer="sgd", learning_rate=0.1, batch_size=16, steps=5
    )
    assert traj.first_divergence is None
    assert any("2: Dropout compared in evaluation mode" in n for n in traj.notes)
    assert list(model.children())[2].training  # the caller's model is unchanged


def test_trajectory_report_json_names_the_optimizer() -> None:
    traj = planted_run(OptimizerSpec("adam", lr=1e-3), AdamNoBiasCorrection, steps=2)
    data = traj.to_dict()
    assert data["optimizer"] == "Adam(lr=0.001)" and data["optimizer_spec"]["betas"] == (0.9, 0.999)
    assert data["first_parameter"] == "0.weight" and data["first_divergence"] == 1
    assert all(math.isfinite(s["param_rel_diff"]) for s in data["steps"])


# ---------------------------------------------------------------------------- CLI
def test_cli_parity_takes_momentum_nesterov_and_weight_decay(capsys: pytest.CaptureFixture[str]) -> None:
    from backproplab.cli.main import main

    args = [
        "parity",
        "--dnn_hidden_units",
        "8",
        "--batch_size",
        "16",
        "--steps",
        "4",
        "--learning_rate",
        "0.05",
    ]
    code = main([*args, "--momentum", "0.9", "--nesterov", "--weight_decay", "0.01"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "training trajectory (SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)" in out
    assert main([*args, "--optimizer", "adam", "--momentum", "0.9"]) == 2
    assert "--momentum and --nesterov apply to --optimizer sgd only" in capsys.readouterr().err
    assert main([*args, "--nesterov"]) == 2
