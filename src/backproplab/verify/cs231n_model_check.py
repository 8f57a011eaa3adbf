"""CS231n's model classes (``fc_net.py``: ``TwoLayerNet``, ``FullyConnectedNet``; assignment 1's
``neural_net.py``: ``TwoLayerNet(input_size, hidden_size, output_size)`` with ``loss(X, y, reg)``): a
``params`` dict of arrays (``W1``, ``b1``, ... with ``W`` of shape (in, out)) and ``loss(X, y=None)``
returning the scores without ``y`` and ``(loss, grads)`` with it. Rows:

* **scores**: ``loss(X)`` gives (N, C) scores;
* **vs PyTorch** (``reg = 0``): the loss and every gradient against PyTorch's autograd on the
  same parameters, an affine - ReLU - ... - affine network with mean softmax cross-entropy (what
  a gradient check cannot see: a loss that sums over the batch is self-consistent);
* **gradient check** (``reg`` > 0): every gradient against float64 central differences of
  ``loss``, on sampled elements;
* **regularisation**: the loss with ``reg`` minus the loss without is 0.5 * reg * sum(W^2) over the
  weights (CS231n's assignment 2) or reg * sum(W^2) (assignment 1); biases are not regularised.

Models with normalisation or dropout parameters (``gamma1``, ``dropout_keep_ratio`` < 1) get the
gradient check only.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Any

import numpy as np

from backproplab.verify import check as C
from backproplab.verify import hints as H
from backproplab.verify.diff import tensor_diff
from backproplab.verify.gradcheck import DEFAULT_EPS, rel_error
from backproplab.verify.protocol import source_of

#: The model the rows build: input_dim, hidden sizes, num_classes; a batch of BATCH.
INPUT_DIM, HIDDEN, NUM_CLASSES, BATCH = 6, [5, 4], 3, 4
#: The regularisation strength of the gradient-check and regularisation rows.
REG = 0.7
#: Elements per parameter in the gradient check.
CHECKED_ELEMENTS = 20


def is_model_class(cls: type) -> bool:
    """A class with ``loss`` and a constructor taking ``num_classes`` (assignment 2) or
    ``output_size`` (assignment 1's ``TwoLayerNet(input_size, hidden_size, output_size)``)."""
    try:
        names = set(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        return False
    return callable(getattr(cls, "loss", None)) and bool({"num_classes", "output_size"} & names)


def _build(cls: type) -> Any:
    names = inspect.signature(cls).parameters
    kw: dict[str, Any] = {}
    for key, value in (
        ("num_classes", NUM_CLASSES), ("output_size", NUM_CLASSES), ("input_dim", INPUT_DIM),
        ("input_size", INPUT_DIM), ("hidden_dims", list(HIDDEN)), ("hidden_dim", HIDDEN[0]),
        ("hidden_size", HIDDEN[0]), ("reg", 0.0), ("weight_scale", 0.5), ("std", 0.5), ("dtype", np.float64),
        ("seed", 0),
    ):  # fmt: skip
        if key in names:
            kw[key] = value
    return cls(**kw)


def _weights(params: dict[str, np.ndarray]) -> list[tuple[str, str]]:
    """(W name, b name) of the affine layers, W1, b1, W2, b2, ... in order."""
    out: list[tuple[str, str]] = []
    for i in itertools.count(1):
        if f"W{i}" not in params:
            return out
        out.append((f"W{i}", f"b{i}"))
    return out


def rows(cls: type, rng: np.random.Generator, label: str | None = None) -> list[C.CheckRow]:
    """Every row of the module docstring for the user's model class ``cls``."""
    name, where = label or cls.__name__, source_of(cls)
    at_loss = source_of(getattr(cls, "loss", None)) or where
    try:
        with C.calling(f"{cls.__name__}(...)"):
            model = _build(cls)
    except C.UserCodeError as e:
        return [C.CheckRow(name, "construct", C.FAIL, str(e)[:600], e.where or where)]
    params = getattr(model, "params", None)
    if not isinstance(params, dict) or not _weights(params):
        return [
            C.CheckRow(
                name, "construct", C.FAIL, "no params dict with W1, b1, ... (CS231n's convention)", where
            )
        ]
    for k, v in params.items():  # random float64 values, biases included
        params[k] = rng.normal(0.0, 0.5, size=np.shape(v))
    x = rng.normal(size=(BATCH, int(params["W1"].shape[0])))
    y = rng.integers(0, NUM_CLASSES, size=BATCH)
    out = C.guarded(name, "scores", lambda: _scores_rows(name, model, x, at_loss), at_loss)
    plain = (
        set(params) == {k for pair in _weights(params) for k in pair}
        and getattr(model, "use_dropout", False) is False
    )
    if plain:
        out += C.guarded(name, "vs PyTorch", lambda: _torch_rows(name, model, x, y, at_loss), at_loss)
    else:
        out.append(
            C.CheckRow(name, "vs PyTorch", C.WARN, "normalisation or dropout parameters: gradient check only")
        )
    out += C.guarded(
        name, "gradient check", lambda: _gradcheck_rows(name, model, x, y, rng, at_loss), at_loss
    )
    out += C.guarded(name, "regularisation", lambda: _reg_rows(name, model, x, y, at_loss), at_loss)
    return out


def _set_reg(model: Any, reg: float) -> None:
    """The regularisation strength: the ``reg`` attribute (assignment 2), or the ``reg`` argument of
    ``loss`` (assignment 1), which :func:`_loss` passes."""
    model.reg = reg


def _loss(model: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    takes_reg = "reg" in inspect.signature(model.loss).parameters
    with C.calling(f"{type(model).__name__}.loss(X, y)"):
        result = model.loss(x.copy(), y, reg=model.reg) if takes_reg else model.loss(x.copy(), y)
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
        raise C.UserCodeError(f"{type(model).__name__}.loss(X, y)", TypeError("expected (loss, grads dict)"))
    return float(result[0]), {k: np.asarray(v, dtype=np.float64) for k, v in result[1].items()}


def _scores_rows(name: str, model: Any, x: np.ndarray, where: str) -> list[C.CheckRow]:
    with C.calling(f"{type(model).__name__}.loss(X)"):
        scores = np.asarray(model.loss(x.copy()))
    if scores.shape != (len(x), NUM_CLASSES):
        return [C.CheckRow(name, "scores", C.FAIL, f"loss(X) without y returns shape {scores.shape}, expected the scores {(len(x), NUM_CLASSES)}", where)]  # fmt: skip
    return [C.CheckRow(name, "scores", C.PASS, f"loss(X) returns scores {scores.shape}")]


def _torch_rows(name: str, model: Any, x: np.ndarray, y: np.ndarray, where: str) -> list[C.CheckRow]:
    import torch
    import torch.nn.functional as F

    _set_reg(model, 0.0)
    value, grads = _loss(model, x, y)
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    h = torch.tensor(x)
    layers = _weights(model.params)
    for i, (w, b) in enumerate(layers):
        h = h @ tparams[w] + tparams[b]
        if i < len(layers) - 1:
            h = torch.relu(h)
    ref = F.cross_entropy(h, torch.tensor(y))
    ref.backward()
    rows = []
    d = tensor_diff(np.asarray(value), ref.detach().numpy())
    if not C.agrees(d):
        ctx = H.RowContext("loss", "loss", np.asarray(value), ref.detach().numpy(), d, C.REFERENCE_RTOL,
                           output=h.detach().numpy(), target=y, batch_size=len(x))  # fmt: skip
        rows.append(C.CheckRow(name, "loss vs PyTorch", C.FAIL, H.diagnose(ctx)[0], where))
    for k, t in tparams.items():
        g = grads.get(k)
        assert t.grad is not None
        if g is None:
            rows.append(C.CheckRow(name, f"{k} grad vs PyTorch", C.FAIL, f"grads has no {k!r}", where))
            continue
        dg = tensor_diff(g, t.grad.numpy())
        if not C.agrees(dg):
            ctx = H.RowContext(k, f"{k} grad", g, t.grad.numpy(), dg, C.REFERENCE_RTOL, batch_size=len(x))
            rows.append(C.CheckRow(name, f"{k} grad vs PyTorch", C.FAIL, H.describe(ctx), where))
    if rows:
        return rows
    return [C.CheckRow(name, "vs PyTorch", C.PASS, f"loss and {len(tparams)} gradients agree (reg = 0)")]


def _gradcheck_rows(
    name: str, model: Any, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, where: str
) -> list[C.CheckRow]:
    _set_reg(model, REG)
    _, grads = _loss(model, x, y)
    worst, worst_key = 0.0, ""
    for k, p in model.params.items():
        g = grads.get(k)
        if g is None or g.shape != p.shape:
            got = "none" if g is None else f"shape {g.shape}"
            return [
                C.CheckRow(
                    name, "gradient check", C.FAIL, f"grads[{k!r}] is {got}, the parameter {p.shape}", where
                )
            ]
        idx = rng.choice(p.size, size=min(p.size, CHECKED_ELEMENTS), replace=False)
        flat = p.reshape(-1)
        num = np.empty(len(idx))
        for j, i in enumerate(idx):
            old = flat[i]
            flat[i] = old + DEFAULT_EPS
            plus = _loss(model, x, y)[0]
            flat[i] = old - DEFAULT_EPS
            minus = _loss(model, x, y)[0]
            flat[i] = old
            num[j] = (plus - minus) / (2 * DEFAULT_EPS)
        err = float(np.max(rel_error(g.reshape(-1)[idx], num)))
        if err > worst:
            worst, worst_key = err, k
    status = C.gradient_status(worst)
    detail = f"max rel error {worst:.2e} (reg = {REG:g})" + (
        f", worst in {worst_key}" if status != C.PASS else ""
    )
    return [C.CheckRow(name, "gradient check", status, detail, "" if status == C.PASS else where)]


def _reg_rows(name: str, model: Any, x: np.ndarray, y: np.ndarray, where: str) -> list[C.CheckRow]:
    _set_reg(model, 0.0)
    base = _loss(model, x, y)[0]
    _set_reg(model, REG)
    with_reg = _loss(model, x, y)[0]
    layers = _weights(model.params)
    w2 = sum(float((model.params[w] ** 2).sum()) for w, _ in layers)
    b2 = sum(float((model.params[b] ** 2).sum()) for _, b in layers)
    extra = with_reg - base
    for factor, convention in (
        (0.5, "0.5 * reg * sum(W^2), assignment 2's"),
        (1.0, "reg * sum(W^2), assignment 1's"),
    ):
        if abs(extra - factor * REG * w2) <= 1e-8 * max(1.0, abs(extra)):
            return [
                C.CheckRow(name, "regularisation", C.PASS, f"{convention} convention, biases not regularised")
            ]
        if abs(extra - factor * REG * (w2 + b2)) <= 1e-8 * max(1.0, abs(extra)):
            return [C.CheckRow(name, "regularisation", C.FAIL, f"the biases are regularised too ({convention} over W and b): only the weights are", where)]  # fmt: skip
    return [C.CheckRow(name, "regularisation", C.FAIL,
                       f"the loss grows by {extra:.6g} with reg = {REG:g}, where 0.5 * reg * sum(W^2) = {0.5 * REG * w2:.6g} "
                       f"(or reg * sum(W^2) = {REG * w2:.6g})", where)]  # fmt: skip
