"""tests/training: the tests that train for more than ~5 s (measured single-process on a loaded 2-core
machine) are marked ``slow`` here, by test name or by the module-scoped fixture that trains for them,
so ``make test-fast`` (``-m "not realdata and not slow"``) leaves them out."""

from __future__ import annotations

import pytest

#: Module-scoped fixtures that train a model (~20 s): every test using one is slow.
SLOW_FIXTURES = {"trained", "two_runs"}
#: Tests that train (or train and resume) for more than ~5 s themselves.
SLOW_TESTS = {
    "test_ctrl_c_and_resume_give_the_uninterrupted_metrics",
    "test_extending_a_scheduled_run_keeps_its_schedule",
    "test_stats_are_logged_and_training_is_unchanged",
    "test_convnet_resume_gives_the_same_metrics_bit_for_bit",
    "test_extending_a_convnet_run_keeps_its_schedule",
    "test_numpy_trainers_do_not_import_torch",
    "test_cli_run_learns_and_writes_the_run_directory",
    "test_schedule_and_label_smoothing_follow_the_torch_trainer",
    "test_same_seed_same_run",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/training/" not in item.path.as_posix():
            continue
        fixtures = set(getattr(item, "fixturenames", ()))
        if getattr(item, "originalname", item.name) in SLOW_TESTS or fixtures & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)
