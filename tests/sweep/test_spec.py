"""The sweep file: its format, and one clear error (file, section, flag, expected and actual value)
for every mistake, before Ray is imported."""

from __future__ import annotations

from pathlib import Path

import pytest

from backproplab.errors import ConfigError
from backproplab.sweep.spec import Dimension, EarlyStopping, load_spec, parse_spec

GOOD = """
trainer = "mlp-numpy"
metric = "val_loss"
num_samples = 3
seed = 7

[fixed]
dataset = "digits"
validation_size = 300
max_steps = 100
track_stats = false

[space]
learning_rate = { loguniform = [1e-4, 1e-2] }
dnn_hidden_units = { grid = ["100", "200,100"] }
batch_size = { uniform = [32, 64] }
optimizer = { choice = ["sgd", "adam"] }

[early_stopping]
grace_period = 20
"""

BASE = """
trainer = "mlp-numpy"
[fixed]
dataset = "digits"
validation_size = 300
"""


def test_a_good_file_is_typed_by_the_trainers_flags() -> None:
    spec = parse_spec(GOOD, "good.toml")
    assert (spec.trainer, spec.metric, spec.mode, spec.num_samples, spec.seed) == (
        "mlp-numpy", "val_loss", "min", 3, 7,
    )  # fmt: skip
    assert spec.fixed == {"dataset": "digits", "validation_size": 300, "max_steps": 100, "track_stats": False}
    assert spec.space["learning_rate"] == Dimension("learning_rate", "loguniform", (1e-4, 1e-2))
    assert spec.space["batch_size"] == Dimension("batch_size", "uniform", (32, 64), integer=True)
    assert spec.space["dnn_hidden_units"].values == ("100", "200,100")
    assert spec.early_stopping == EarlyStopping(grace_period=20, reduction_factor=3.0)
    assert spec.n_trials == 2 * 3  # the grid, num_samples times
    assert spec.name == "good"


def test_set_overrides_fixed_flags_as_the_command_line_would() -> None:
    spec = parse_spec(GOOD, "good.toml", ["max_steps=50", "--seed=3", "track_stats=true"])
    assert spec.fixed["max_steps"] == 50 and spec.fixed["seed"] == 3 and spec.fixed["track_stats"] is True


def error(text: str, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(ConfigError) as info:
        parse_spec(text, "s.toml", overrides)
    return str(info.value)


SPACE_LR = "\n[space]\nlearning_rate = { grid = [0.1] }\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + "lr = 0.1\n" + SPACE_LR, "s.toml [fixed]: unknown flag --lr; did you mean --learning_rate?"),
        (BASE + "\n[space]\nlearn = { grid = [0.1] }\n", "s.toml [space]: unknown flag --learn; did you mean --learning_rate?"),
        (BASE + 'learning_rate = "fast"\n[space]\nmax_steps = { grid = [10] }\n',
         "s.toml [fixed] learning_rate: expects a float, got 'fast'"),
        (BASE + 'optimizer = "rmsprop"\n' + SPACE_LR, "s.toml [fixed] optimizer: expects one of sgd, adam, got 'rmsprop'"),
        (BASE + "max_steps = 1.5\n" + SPACE_LR, "s.toml [fixed] max_steps: expects an int, got '1.5'"),
        (BASE + 'track_stats = "yes"\n' + SPACE_LR, "s.toml [fixed] track_stats: expects true or false, got 'yes'"),
        (BASE + 'out = "x"\n' + SPACE_LR, "--out cannot be set in a sweep"),
        (BASE + "max_steps = [1, 2]\n" + SPACE_LR, "expects one value, got list [1, 2] (a search of several values goes in [space])"),
        (BASE + "\n[space]\nlearning_rate = [0.1, 0.2]\n", "expects a table with one of grid, choice, uniform, loguniform"),
        (BASE + "\n[space]\nlearning_rate = { range = [0.1, 0.2] }\n", "expects a table with one of grid, choice"),
        (BASE + "\n[space]\nlearning_rate = { grid = [] }\n", "grid expects a non-empty list of values, got []"),
        (BASE + '\n[space]\noptimizer = { grid = ["sgd", "sgd"] }\n', "grid lists 'sgd' twice"),
        (BASE + '\n[space]\noptimizer = { choice = ["sgd", "lbfgs"] }\n', "s.toml [space] optimizer: expects one of sgd, adam, got 'lbfgs'"),
        (BASE + '\n[space]\noptimizer = { uniform = [0, 1] }\n', "uniform expects a number flag, but --optimizer takes str values"),
        (BASE + "\n[space]\nlearning_rate = { loguniform = [0, 0.1] }\n", "loguniform expects 0 < low < high, got [0, 0.1]"),
        (BASE + "\n[space]\nlearning_rate = { uniform = [0.2, 0.1] }\n", "uniform expects low < high, got [0.2, 0.1]"),
        (BASE + "\n[space]\nmax_steps = { uniform = [10, 20.5] }\n", "uniform expects [low, high], two integers, got [10, 20.5]"),
        (BASE + "\n[space]\n", "[space] is empty"),
        (BASE + "learning_rate = 0.1\n" + SPACE_LR, "--learning_rate is both in [fixed] and in [space]"),
        ('trainer = "mlp-numpy"\n[fixed]\ndataset = "digits"\n' + SPACE_LR, "set validation_size = N in [fixed]"),
        ('trainer = "mlp-numpy"\n[space]\nvalidation_size = { grid = [100, 200] }\n', "validation_size cannot be searched"),
        ('metric = "test_acc"\n' + BASE + SPACE_LR, "never on the test split"),
        ('metrc = "val_acc"\n' + BASE + SPACE_LR, "unknown key 'metrc'; did you mean 'metric'?"),
        ("num_samples = 0\n" + BASE + SPACE_LR, "num_samples must be an integer >= 1, got 0"),
        (BASE.replace("mlp-numpy", "mlp-jax") + SPACE_LR, "unknown trainer 'mlp-jax'; expected one of mlp-numpy"),
        ('trainer = "speedrun"\n' + SPACE_LR, "has no --validation_size"),
        (BASE + SPACE_LR + "[early_stopping]\nreduction_factor = 2\n", "needs grace_period"),
        (BASE + SPACE_LR + "[early_stopping]\ngrace = 2\n", "unknown key 'grace'; did you mean 'grace_period'?"),
        (BASE + SPACE_LR + "[early_stopping]\ngrace_period = 5\nreduction_factor = 1\n", "reduction_factor must be a number > 1, got 1"),
        ("trainer = \n", "not a valid TOML file"),
        (BASE + "\n[space]\nlearning_rate = { grid = [0.1, 0.2, 0.3] }\nmax_steps = { grid = "
         + str(list(range(1, 4000))) + " }\n", "more than 10000"),
    ],
)  # fmt: skip
def test_every_mistake_is_one_clear_line(text: str, message: str) -> None:
    line = error(text)
    assert message in line, line
    assert "\n" not in line


def test_set_errors_name_the_flag() -> None:
    assert "--set: unknown flag --lr; did you mean --learning_rate?" in error(BASE + SPACE_LR, ("lr=1",))
    space_steps = "\n[space]\nmax_steps = { grid = [10, 20] }\n"
    assert "--set learning_rate: expects a float, got 'x'" in error(BASE + space_steps, ("learning_rate=x",))
    assert "searches --learning_rate in [space]" in error(BASE + SPACE_LR, ("learning_rate=0.1",))
    assert "--set expects FLAG=VALUE" in error(BASE + SPACE_LR, ("max_steps",))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sweep file .*nope\.toml does not exist"):
        load_spec(tmp_path / "nope.toml")


def test_the_shipped_report_sweep_is_valid() -> None:
    spec = load_spec(Path(__file__).resolve().parents[2] / "sweeps" / "report-mlp.toml")
    assert spec.trainer == "mlp-torch" and spec.metric == "val_acc"
    assert {"init", "optimizer", "dnn_hidden_units", "learning_rate", "max_steps"} <= set(spec.space)
    assert 16 <= spec.n_trials <= 24
    assert spec.early_stopping is not None
