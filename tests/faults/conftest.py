"""The fault-injection suite: signals at chosen steps, a full file system, concurrent runs, corrupt
inputs. Every test here is marked ``faults`` (``pytest tests/faults`` or ``pytest -m faults``) and
takes a few seconds on the 8x8 digits. Helpers live in :mod:`faultkit`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


#: The fault tests that train in subprocesses for more than ~5 s (measured single-process on a loaded
#: 2-core machine): also marked ``slow``, so ``make test-fast`` leaves them out.
SLOW = {
    "test_sigkill_before_the_first_checkpoint_leaves_a_directory_that_can_be_reused",
    "test_sigkill_in_the_middle_of_a_checkpoint_save_keeps_the_last_one_and_resume_cleans_up",
    "test_ctrl_c_at_a_chosen_step_saves_and_resumes_to_the_same_metrics",
    "test_sigkill_mid_run_of_a_numpy_trainer_is_refused_with_a_way_forward",
    "test_two_trainings_with_the_same_out_never_share_it",
    "test_simultaneous_claims_of_one_directory_have_exactly_one_winner",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.faults)
            if getattr(item, "originalname", item.name) in SLOW:
                item.add_marker(pytest.mark.slow)


@pytest.fixture
def torch_one_thread() -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
