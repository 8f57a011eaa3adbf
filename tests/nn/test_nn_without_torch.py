"""``backproplab.nn`` (and the gradient checker over its table) imports and runs where torch is not
installed: a subprocess in which ``import torch`` raises ImportError (torch_blocker)."""

from __future__ import annotations

from torch_blocker import run_without_torch


def test_the_blocker_blocks() -> None:
    run_without_torch(
        """
        try:
            import torch  # noqa: F401
        except ImportError as e:
            assert "blocked" in str(e)
        else:
            raise AssertionError("torch imported")
        """
    )


def test_engine_trains_and_gradchecks_without_torch() -> None:
    run_without_torch(
        """
        import numpy as np

        from backproplab import nn
        from backproplab.verify import gradcheck, run_case, select_cases

        rng = np.random.default_rng(0)
        for model, x in [
            (nn.MLP(4, [5], 3, rng=rng), rng.normal(size=(6, 4)).astype(np.float32)),
            (nn.ConvNet(1, 3, rng=rng), rng.normal(size=(2, 1, 8, 8)).astype(np.float32)),
        ]:
            loss_fn, opt = nn.SoftmaxCrossEntropy(), nn.optim.SGD(model.parameters(), lr=0.1)
            y = np.array([0, 1, 2, 0, 1, 2][: len(x)])
            before = model.state_dict()
            for _ in range(3):
                loss = loss_fn(model(x), y)
                model.backward(loss_fn.backward())
                opt.step()
                opt.zero_grad()
                assert np.isfinite(loss)
            after = model.state_dict()
            assert all(not np.array_equal(before[k], after[k]) for k, _ in model.named_parameters())
        for case in select_cases("Linear") + select_cases("Conv2d"):
            assert run_case(case, 0).ok, case.name
        assert gradcheck(nn.Tanh(), rng.normal(size=(2, 3)), rng=rng).ok
        """
    )
