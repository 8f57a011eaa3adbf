"""The trials: drawn by Ray Tune's variant generator from the file's seed (the same file gives the
same trials), every one checked by the trainer's own config, and the data, before any trial starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backproplab.errors import ConfigError
from backproplab.sweep.plan import SweepPlan, check_data, load_plan, make_plan, save_plan, trial_names
from backproplab.sweep.space import tune_space
from backproplab.sweep.spec import parse_spec

SPEC = """
trainer = "mlp-numpy"
num_samples = 2
seed = {seed}

[fixed]
dataset = "digits"
validation_size = 300
max_steps = 100
data_dir = "relative/dir"

[space]
optimizer = {{ grid = ["sgd", "adam"] }}
learning_rate = {{ loguniform = [1e-4, 1e-2] }}
batch_size = {{ uniform = [30, 32] }}
"""


def plan_of(seed: int = 0) -> SweepPlan:
    return make_plan(parse_spec(SPEC.format(seed=seed), "s.toml"))


def test_tune_search_spaces() -> None:
    from ray import tune

    space = tune_space(parse_spec(SPEC.format(seed=0), "s.toml"))
    assert space["optimizer"] == tune.grid_search(["sgd", "adam"])
    assert type(space["learning_rate"]).__name__ == "Float"
    assert (space["batch_size"].lower, space["batch_size"].upper) == (30, 33)  # both ends included


def test_the_same_file_gives_the_same_trials() -> None:
    a, b, other = plan_of(0), plan_of(0), plan_of(1)
    assert [t.flags for t in a.trials] == [t.flags for t in b.trials]
    assert [t.flags for t in a.trials] != [t.flags for t in other.trials]
    assert [t.name for t in a.trials] == ["trial-00", "trial-01", "trial-02", "trial-03"]
    assert [t.flags["optimizer"] for t in a.trials] == ["sgd", "adam", "sgd", "adam"]  # the grid, twice
    for t in a.trials:
        lr = t.flags["learning_rate"]
        assert 1e-4 <= lr <= 1e-2 and isinstance(lr, float)
        assert float(f"{lr:.4g}") == lr  # 4 significant digits: flags that can be typed back
        assert t.flags["batch_size"] in (30, 31, 32) and isinstance(t.flags["batch_size"], int)
    assert {"optimizer", "learning_rate"} <= set(a.varied) <= set(a.searched)
    assert a.log_scale == ["learning_rate"]


def test_paths_become_absolute() -> None:
    assert Path(plan_of().fixed["data_dir"]).is_absolute()


def test_an_impossible_combination_is_an_error_before_any_trial_starts() -> None:
    text = SPEC.format(seed=0).replace("data_dir", "# data_dir") + "lr_step_size = { grid = [10, 20] }\n"
    text = text.replace('trainer = "mlp-numpy"', 'trainer = "convnet-numpy"').replace(
        '"sgd", "adam"', '"adam"'
    )
    with pytest.raises(ConfigError) as info:
        make_plan(parse_spec(text, "s.toml"))
    line = str(info.value)
    assert line.startswith("s.toml: trial 1 of 4 (")
    assert "lr_step_size=10" in line and "--lr_step_size applies to --lr_schedule step" in line


def test_a_grace_period_past_every_trial_is_an_error() -> None:
    text = SPEC.format(seed=0) + "[early_stopping]\ngrace_period = 100\n"
    with pytest.raises(
        ConfigError, match="grace_period must be smaller than the longest trial's --max_steps 100"
    ):
        make_plan(parse_spec(text, "s.toml"))


def test_the_data_is_checked_once_before_the_trials() -> None:
    text = SPEC.format(seed=0).replace('data_dir = "relative/dir"\n', "")
    plan = make_plan(parse_spec(text.replace("validation_size = 300", "validation_size = 1437"), "s.toml"))
    with pytest.raises(
        ConfigError, match=r"--validation_size must be smaller than the 1437 training examples"
    ):
        check_data(plan)
    plan = make_plan(parse_spec(text.replace("validation_size = 300", "validation_size = 1420"), "s.toml"))
    with pytest.raises(ConfigError, match=r"--batch_size must be at most the 17 training examples left"):
        check_data(plan)
    check_data(make_plan(parse_spec(text, "s.toml")))


def test_the_plan_file_round_trips(tmp_path: Path) -> None:
    plan = plan_of()
    save_plan(plan, tmp_path / "sweep.json")
    again = load_plan(tmp_path / "sweep.json")
    assert again.to_json() == plan.to_json()
    assert again.max_steps(again.trials[0]) == 100
    data = json.loads((tmp_path / "sweep.json").read_text())
    data["version"] = 99
    (tmp_path / "sweep.json").write_text(json.dumps(data))
    with pytest.raises(Exception, match="is not a sweep plan of this backproplab"):
        load_plan(tmp_path / "sweep.json")


def test_trial_names_sort() -> None:
    assert trial_names(3) == ["trial-00", "trial-01", "trial-02"]
    names = trial_names(101)
    assert names[-1] == "trial-100" and names == sorted(names) and len(set(names)) == 101
