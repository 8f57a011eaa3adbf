"""The twin registry, the compare_models / compare_trajectories API, the report and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from parity_planted_bugs import N_IN, WIDTH, OutputDerivativeELU, batch, mlp_modules

from backproplab import nn
from backproplab.cli.main import main
from backproplab.torch_models import TorchMLP
from backproplab.verify.parity import compare_models, compare_trajectories, format_table
from backproplab.verify.twin import TwinError, build_twin, register_twin

#: Output of a float32 twin against the NumPy forward, relative to the output's scale.
TWIN_FORWARD_RTOL = 1e-5


# ---------------------------------------------------------------------------- twin
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_twin_of_the_mlp_has_the_same_weights_and_output(dtype: type) -> None:
    rng = np.random.default_rng(0)
    model = nn.MLP(N_IN, [WIDTH, WIDTH], 5, activation="tanh", init_scheme="torch", rng=rng, dtype=dtype)
    twin = build_twin(model)
    assert isinstance(twin, TorchMLP)
    assert list(twin.state_dict()) == list(model.state_dict())
    for (k, v), t in zip(model.state_dict().items(), twin.state_dict().values(), strict=True):
        np.testing.assert_array_equal(v, t.numpy(), err_msg=k)
    assert next(twin.parameters()).dtype == (torch.float32 if dtype == np.float32 else torch.float64)
    x = rng.standard_normal((7, N_IN)).astype(dtype)
    with nn.no_grad():
        ref = model(x)
    out = twin(torch.from_numpy(x)).detach().numpy()
    assert np.abs(out - ref).max() <= TWIN_FORWARD_RTOL * np.abs(ref).max()


def test_twin_maps_subclasses_to_the_reference_and_keeps_attributes() -> None:
    seq = nn.Sequential(
        nn.Linear(3, 4, bias=False),
        OutputDerivativeELU(alpha=0.7),
        nn.Softmax(dim=0),
        nn.Flatten(),
        nn.LayerNorm(4, eps=1e-3),
    )
    twin = build_twin(seq)
    assert isinstance(twin, torch.nn.Sequential)
    assert twin[0].bias is None
    assert type(twin[1]) is torch.nn.ELU and twin[1].alpha == 0.7
    assert twin[2].dim == 0
    assert isinstance(twin[4], torch.nn.LayerNorm) and twin[4].eps == 1e-3


def test_unknown_layer_is_a_clear_error_and_register_twin_adds_one() -> None:
    class Doubler(nn.Module):
        def forward(self, x: np.ndarray) -> np.ndarray:
            return 2 * x

    seq = nn.Sequential(nn.Linear(3, 3), Doubler())
    with pytest.raises(TwinError, match=r"no PyTorch twin registered for Doubler at '1'.*register_twin"):
        build_twin(seq)

    class TorchDoubler(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * x

    register_twin(Doubler, lambda m, _: TorchDoubler())
    assert isinstance(build_twin(seq)[1], TorchDoubler)


def test_a_given_torch_model_gets_the_numpy_weights_and_a_wrong_one_is_refused() -> None:
    rng = np.random.default_rng(1)
    model = nn.MLP(N_IN, [WIDTH], 5, init_scheme="torch", rng=rng)
    x, y = batch(16, rng)
    given = TorchMLP(N_IN, [WIDTH], 5, init_scheme="torch")
    before = given.layers[0].weight.detach().clone()
    report = compare_models(model, given, x=x, y=y)
    assert (
        report.ok and len(report.rows) == 3 + 1 + 1 + 7
    )  # 3 outputs, loss, loss grad, 3 input + 4 param grads
    assert torch.equal(given.layers[0].weight, before)  # the caller's model is not changed
    with pytest.raises(TwinError, match="missing"):
        compare_models(model, TorchMLP(N_IN, [WIDTH, WIDTH], 5), x=x, y=y)


# ---------------------------------------------------------------------------- compare_models
def test_compare_models_leaves_the_model_as_it_was() -> None:
    rng = np.random.default_rng(2)
    model = nn.MLP(N_IN, [WIDTH], 5, init_scheme="torch", rng=rng, input_grad=False)
    state = model.state_dict()
    x, y = batch(8, rng)
    report = compare_models(model, x=x, y=y)
    assert report.ok
    assert any(r.label == "layers.0 input grad" for r in report.rows)  # computed for the comparison
    assert model.layers[0].needs_input_grad is False  # type: ignore[attr-defined]
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, state[k])


def test_bad_batch_is_a_clear_error() -> None:
    model = nn.MLP(N_IN, [], 5)
    with pytest.raises(ValueError, match="x has 3 samples but y has 2 labels"):
        compare_models(model, x=np.zeros((3, N_IN), np.float32), y=np.zeros(2, np.int64))


def test_report_text_and_json() -> None:
    rng = np.random.default_rng(3)
    model = nn.MLP(N_IN, [WIDTH], 5, rng=rng)
    x, y = batch(10, rng)
    report = compare_models(model, x=x, y=y, loss=nn.SoftmaxCrossEntropy("sum"))
    text = format_table(report)
    assert "first divergence: loss (forward order): loss = 10x reference = batch size 10" in text
    assert text.rstrip().endswith("PARITY BROKEN")
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["ok"] is False and data["first_divergence"]["layer"] == "loss"
    assert data["rows"][0]["layer"] == "layers.0" and data["rows"][0]["quantity"] == "output"
    assert {"max_abs_err", "max_rel_err", "cosine", "norm_ratio", "status", "hint"} <= set(data["rows"][0])


# ---------------------------------------------------------------------------- trajectories
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_correct_model_trains_the_same_in_both(optimizer: str) -> None:
    rng = np.random.default_rng(4)
    model = nn.MLP(N_IN, [WIDTH, WIDTH], 5, init_scheme="kaiming", rng=rng)
    state = model.state_dict()
    x, y = batch(64, rng)
    traj = compare_trajectories(
        model, x=x, y=y, rng=rng, optimizer=optimizer, learning_rate=0.05, batch_size=16, steps=20
    )
    assert traj.first_divergence is None and traj.hint is None
    assert len(traj.steps) == 20
    assert traj.steps[-1].loss_numpy < traj.steps[0].loss_numpy  # it did train
    assert max(s.param_rel_diff for s in traj.steps) < 1e-5
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, state[k])  # trained a copy


def test_sum_reduction_diverges_from_the_first_step() -> None:
    rng = np.random.default_rng(5)
    model = nn.MLP(N_IN, [WIDTH], 5, rng=rng)
    x, y = batch(32, rng)
    traj = compare_trajectories(
        model, x=x, y=y, rng=rng, loss=nn.SoftmaxCrossEntropy("sum"), batch_size=8, steps=3
    )
    assert traj.first_divergence == 1
    assert traj.steps[0].loss_numpy == pytest.approx(8 * traj.steps[0].loss_torch, rel=1e-5)
    assert "batch size 8" in traj.hint  # type: ignore[operator]


def test_backward_bug_shows_in_the_parameters_after_one_step() -> None:
    rng = np.random.default_rng(6)
    model = nn.Sequential(*mlp_modules(3, rng, activation=OutputDerivativeELU))
    x, y = batch(32, rng)
    traj = compare_trajectories(model, x=x, y=y, rng=rng, learning_rate=0.5, steps=3)
    assert traj.first_divergence == 1
    assert traj.steps[0].loss_rel_diff < 1e-5 and traj.steps[0].param_rel_diff > 1e-3


# ---------------------------------------------------------------------------- CLI
def test_cli_sum_reduction_reports_the_batch_size_ratio_at_the_loss(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        ["parity", "--loss_reduction", "sum", "--dnn_hidden_units", "8", "--batch_size", "16", "--steps", "3"]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert (
        "first divergence: loss (forward order): loss = 16x reference = batch size 16: sum instead of mean "
        "reduction? (loss)" in out
    )
    assert "trajectories diverge from step 1" in out and "PARITY BROKEN" in out


def test_cli_default_holds_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["parity", "--dnn_hidden_units", "8,8", "--batch_size", "16", "--steps", "2", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["ok"] is True and data["first_divergence"] is None
    assert data["config"]["dnn_hidden_units"] == "8,8" and data["config"]["steps"] == 2
    assert data["data"].startswith("synthetic data") and len(data["trajectory"]["steps"]) == 2


def test_cli_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parity", "--dnn_hidden_units", "8,x"]) == 2
    assert "--dnn_hidden_units expects" in capsys.readouterr().err
    assert main(["parity", "--steps", "-1"]) == 2
    assert main(["parity", "--no_such_flag", "1"]) == 2


def test_cli_on_real_digits(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sklearn")
    code = main(["parity", "--dataset", "digits", "--batch_size", "32", "--steps", "2"])
    out = capsys.readouterr().out
    assert code == 0 and "data: digits" in out and "PARITY HOLDS" in out


def test_bias_gradient_that_cancels_before_batchnorm_is_no_false_alarm() -> None:
    """A bias before BatchNorm has a gradient of zero up to rounding: relative errors mean nothing there."""
    rng = np.random.default_rng(7)
    model = nn.Sequential(
        nn.Linear(N_IN, WIDTH, rng=rng), nn.BatchNorm1d(WIDTH), nn.ELU(), nn.Linear(WIDTH, 5, rng=rng)
    )
    x, y = batch(64, rng)
    report = compare_models(model, x=x, y=y)
    assert report.ok and report.first_divergence is None
    bias = next(r for r in report.rows if r.label == "0 bias grad")
    assert bias.rounding_noise is not None and bias.diff.max_abs_err < 1e-6
    if bias.diff.max_rel_err > report.rtol:  # the usual case: the rounding noise is all there is
        assert any(n.startswith("0 bias grad: zero up to rounding") for n in report.notes)


def test_conv_batchnorm_pool_twins_agree_layer_by_layer() -> None:
    rng = np.random.default_rng(8)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, rng=rng),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 5, rng=rng),
    )
    x = rng.standard_normal((6, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 5, 6)
    report = compare_models(model, x=x, y=y)
    assert report.ok, format_table(report)
    assert [r.label for r in report.rows if r.order == "forward"] == [
        "0 output",
        "1 output",
        "1 running_mean",  # BatchNorm's running statistics after the forward, against torch's
        "1 running_var",
        *(f"{i} output" for i in range(2, 6)),
        "loss",
    ]
