"""The doctor's model back ends: one interface (loss, gradient norms, layer statistics, a training
step, a copy) over a NumPy :class:`~backproplab.nn.Module` or a ``torch.nn.Module``; torch is
imported only by the latter."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from backproplab.instrument.layer_stats import LayerStats, numpy_layer_stats, torch_layer_stats
from backproplab.nn.dropout import Dropout
from backproplab.nn.grad_mode import no_grad
from backproplab.nn.module import Module


def grad_norm_in_eval_mode(
    params: list[Any],
    dropouts: list[Any],
    backward: Callable[[], None],
    squared_norm: Callable[[Any], float],
) -> float:
    """||dL/dparams|| of one ``backward()`` with the ``dropouts`` in evaluation mode, leaving the
    parameters' gradients and the dropouts' mode as they were (NumPy and torch alike)."""
    saved = [p.grad for p in params]
    try:
        for m in dropouts:
            m.eval()
        for p in params:
            p.grad = None
        backward()
        return math.sqrt(sum(squared_norm(p.grad) for p in params if p.grad is not None))
    finally:
        for m in dropouts:
            m.train()
        for p, g in zip(params, saved, strict=True):
            p.grad = g


class Backend:
    """What the checks need from a model: loss, gradient norm, statistics, a training step."""

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    def grad_norm(self, x: np.ndarray, y: np.ndarray) -> float:
        """||dL/dparams|| on (x, y), with Dropout layers in evaluation mode (deterministic)."""
        raise NotImplementedError

    def stats(self, x: np.ndarray, y: np.ndarray) -> list[LayerStats]:
        raise NotImplementedError

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    def copy(self) -> Backend:
        raise NotImplementedError


class NumpyBackend(Backend):
    """A NumPy model, its loss module and ``make_optimizer(params) -> Optimizer``."""

    def __init__(self, model: Module, loss: Module, make_optimizer: Callable[[list[Any]], Any]) -> None:
        self.model, self.loss_fn, self.make_optimizer = model, loss, make_optimizer
        self.optimizer = make_optimizer(list(model.parameters()))

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        with no_grad():
            return float(self.loss_fn(self.model(x), y))

    def grad_norm(self, x: np.ndarray, y: np.ndarray) -> float:
        def backward() -> None:
            self.loss_fn(self.model(x), y)
            self.model.backward(self.loss_fn.backward(1.0))

        return grad_norm_in_eval_mode(
            list(self.model.parameters()),
            [m for m in self.model.modules() if isinstance(m, Dropout) and m.training],
            backward,
            lambda g: float(np.sum(np.square(g, dtype=np.float64))),
        )

    def stats(self, x: np.ndarray, y: np.ndarray) -> list[LayerStats]:
        return numpy_layer_stats(self.model, x, y, self.loss_fn, optimizer=self.optimizer)

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        loss = self.loss_fn(self.model(x), y)
        self.model.backward(self.loss_fn.backward(1.0))
        self.optimizer.step()
        self.optimizer.zero_grad()
        return float(loss)

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        with no_grad():
            return float((self.model(x).argmax(axis=1) == y).mean())

    def copy(self) -> NumpyBackend:
        return NumpyBackend(copy.deepcopy(self.model), copy.deepcopy(self.loss_fn), self.make_optimizer)


class TorchBackend(Backend):
    """A torch model, ``loss_fn(output, target)`` and ``make_optimizer(params) -> torch optimizer``."""

    def __init__(
        self, model: Any, loss_fn: Callable[[Any, Any], Any], make_optimizer: Callable[[list[Any]], Any]
    ) -> None:
        self.model, self.loss_fn, self.make_optimizer = model, loss_fn, make_optimizer
        self.optimizer = make_optimizer(list(model.parameters()))

    @staticmethod
    def _t(a: np.ndarray) -> Any:
        import torch

        return torch.as_tensor(np.ascontiguousarray(a))

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        import torch

        with torch.no_grad():
            return float(self.loss_fn(self.model(self._t(x)), self._t(y)))

    def grad_norm(self, x: np.ndarray, y: np.ndarray) -> float:
        import torch

        return grad_norm_in_eval_mode(
            list(self.model.parameters()),
            [
                m
                for m in self.model.modules()
                if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.training
            ],
            lambda: self.loss_fn(self.model(self._t(x)), self._t(y)).backward(),
            lambda g: float(g.double().pow(2).sum()),
        )

    def stats(self, x: np.ndarray, y: np.ndarray) -> list[LayerStats]:
        return torch_layer_stats(self.model, x, y, self.loss_fn, optimizer=self.optimizer)

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(self._t(x)), self._t(y))
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        import torch

        with torch.no_grad():
            return float((self.model(self._t(x)).argmax(dim=1).numpy() == y).mean())

    def copy(self) -> TorchBackend:
        return TorchBackend(copy.deepcopy(self.model), self.loss_fn, self.make_optimizer)
