"""The doctor raises no false alarm on healthy models (ReLU at init, Dropout), still catches the real
problems, and its fixes name only flags that exist."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backproplab import nn
from backproplab.cli.doctor import DoctorConfig
from backproplab.verify import doctor as D
from backproplab.verify import doctor_checks

N_IN, WIDTH, N_CLASSES = 24, 64, 5


def data(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, N_IN)).astype(np.float32), rng.integers(0, N_CLASSES, n)


def run(backend: D.Backend) -> D.DoctorReport:
    x, y = data()
    return D.diagnose(backend, x, y, num_classes=N_CLASSES, batch_size=32, overfit_steps=5, overfit_batch=16)


def sgd(params: list[Any]) -> Any:
    return nn.optim.SGD(params, lr=0.05)


def test_fresh_relu_mlp_is_not_called_saturated() -> None:
    """Half the ReLU outputs are 0 at init by symmetry: inactive, not saturated."""
    model = nn.MLP(
        N_IN,
        [WIDTH, WIDTH],
        N_CLASSES,
        activation="relu",
        init_scheme="kaiming",
        rng=np.random.default_rng(1),
    )
    report = run(D.NumpyBackend(model, nn.SoftmaxCrossEntropy(), sgd))
    relu = [s for s in report.stats if s.kind == "ReLU"]
    assert relu and all(0.3 < (s.saturated_fraction or 0.0) < 0.7 for s in relu)  # about half inactive
    act = report.check("activations")
    assert act.status == "PASS" and "saturated" not in act.reason.split(",")[1].replace(
        "saturated at most 0%", ""
    ), act


def test_saturated_tanh_still_warns() -> None:
    model = nn.MLP(
        N_IN, [WIDTH], N_CLASSES, activation="tanh", init_scheme="torch", rng=np.random.default_rng(2)
    )
    model.layers[0].weight.data *= 12  # type: ignore[attr-defined]
    act = run(D.NumpyBackend(model, nn.SoftmaxCrossEntropy(), sgd)).check("activations")
    assert act.status == "WARN" and act.values["layers.1"]["saturated"] > D.SATURATED_WARN
    assert "saturated" in act.reason and "(Tanh)" in act.reason


def dropout_mlp(seed: int = 3) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Linear(N_IN, WIDTH, rng=rng),
        nn.ReLU(),
        nn.Dropout(0.5, rng=rng),
        nn.Linear(WIDTH, N_CLASSES, rng=rng),
    )


def test_dropout_model_passes_the_batch_scaling_check() -> None:
    model = dropout_mlp()
    scaling = run(D.NumpyBackend(model, nn.SoftmaxCrossEntropy(), sgd)).check("batch-size scaling")
    assert scaling.status == "PASS" and abs(scaling.values["exponent"]) < 1e-6, scaling
    assert list(model.children())[2].training  # back in training mode afterwards


def test_dropout_model_with_sum_reduction_still_fails() -> None:
    scaling = run(D.NumpyBackend(dropout_mlp(), nn.SoftmaxCrossEntropy("sum"), sgd)).check(
        "batch-size scaling"
    )
    assert scaling.status == "FAIL" and abs(scaling.values["exponent"] - 1) < 1e-6


def test_torch_dropout_model_passes_the_batch_scaling_check() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(N_IN, WIDTH),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.5),
        torch.nn.Linear(WIDTH, N_CLASSES),
    )
    backend = D.TorchBackend(model, torch.nn.CrossEntropyLoss(), lambda p: torch.optim.SGD(p, lr=0.05))
    scaling = run(backend).check("batch-size scaling")
    assert scaling.status == "PASS" and abs(scaling.values["exponent"]) < 1e-5
    assert model[2].training


def test_every_flag_a_fix_names_exists_with_that_value() -> None:
    """``--flag value`` in a fix must be a doctor flag, and value one of its choices when it has some."""
    source = Path(doctor_checks.__file__).read_text()  # the checks, whose fixes name the flags
    fields = {f.name: f for f in dataclasses.fields(DoctorConfig)}
    named = re.findall(r"--([a-z_]+)(?: ([a-z][a-z0-9_]*))?", source)
    assert named, "the fixes name flags"
    for flag, value in named:
        assert flag in fields, f"--{flag} is not a doctor flag"
        choices = fields[flag].metadata.get("choices")
        if choices and value and value not in ("or", "instead"):
            assert value in choices, f"--{flag} {value}: not one of {choices}"
