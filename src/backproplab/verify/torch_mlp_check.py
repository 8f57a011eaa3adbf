"""The practical's PyTorch MLP (``mlp_pytorch.py``: ``MLP(n_inputs, n_hidden, n_classes)``, an
``nn.Module``) checked as a model, for the mistakes that PyTorch does not report:

* **parameters**: ``model.parameters()`` holds every weight of MLP(n_inputs, n_hidden, n_classes),
  sum over the Linear layers of (in + 1) * out. Layers kept in a plain Python list or dict are
  not registered: the optimizer never sees them (``nn.ModuleList`` / ``nn.Sequential`` are);
* **layers**: the leaf modules in the order forward calls them (a module called twice counted
  twice): the Linear layers' count and widths against the architecture
  (:func:`~backproplab.verify.mlp_structure.mlp_structure_problems`); between two Linear calls the
  tensor must change (an activation, a module or a function such as ``F.elu``: the recorded
  output of one and input of the next are compared); the model's output must be the last Linear
  layer's (or its log-softmax), since ``nn.CrossEntropyLoss`` takes the scores and applies
  log-softmax itself: a Softmax layer, an activation or a dropout after it is named;
* **output**: ``(N, n_classes)`` scores that are not probabilities (a softmax in forward, as a
  module or a function, is softmax applied twice with ``nn.CrossEntropyLoss``), and a model that
  is not an affine map when it has hidden layers: f(x) - f(0) != (f(2x) - f(0)) / 2;
* **gradients**: after ``nn.CrossEntropyLoss`` and ``backward()`` every parameter has a gradient
  (none means forward does not use it, or cuts the graph: ``.detach()``, ``.data``,
  ``torch.no_grad()``, a NumPy round trip);
* **training**: the initial loss is about ln(C) (:data:`INITIAL_LOSS_FACTOR`), and full-batch Adam
  on scikit-learn's digits lowers the loss to at most :data:`TRAINED_LOSS_FRACTION` of it.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn as tnn

from backproplab.verify import check as C
from backproplab.verify.hints import is_probability_rows
from backproplab.verify.mlp_structure import mlp_structure_problems
from backproplab.verify.protocol import ACTIVATION_KINDS, LayerView, ParamRef, kind_from_name, source_of
from backproplab.verify.torch_calls import forward_calls

#: The MLP the structure rows build: MLP(N_INPUTS, HIDDEN, N_CLASSES), on a batch of BATCH.
N_INPUTS, HIDDEN, N_CLASSES, BATCH = 6, [5, 4], 3, 8
#: An initial loss above this times ln(C) is a WARN (weights initialised far too large).
INITIAL_LOSS_FACTOR = 3.0
#: Training: TRAIN_STEPS full-batch Adam steps (lr TRAIN_LR) on TRAIN_SAMPLES digits must bring the
#: loss to at most this fraction of the initial loss.
TRAINED_LOSS_FRACTION = 0.5
TRAIN_STEPS, TRAIN_LR, TRAIN_SAMPLES, TRAIN_HIDDEN = 100, 1e-2, 512, [32, 16]
#: f(x) - f(0) and (f(2x) - f(0)) / 2 closer than this (relative) make the model an affine map
#: (float32 rounding is about 1e-7; an ELU between the layers makes them differ by order 1).
AFFINE_RTOL = 1e-5


def _leaf_views(leaves: list[tuple[str, tnn.Module]]) -> list[LayerView]:
    views = []
    for name, m in leaves:
        w = getattr(m, "weight", None)
        params = []
        if isinstance(w, torch.Tensor):
            box = {"weight": w.detach().numpy()}
            params.append(ParamRef("weight", "weight", box, "weight", {}, "weight"))
        views.append(LayerView(f"{name} ({type(m).__name__})", kind_from_name(type(m).__name__), m, params))
    return views


def _unregistered(model: tnn.Module) -> list[str]:
    """Attributes that hold modules in a plain list, tuple or dict (invisible to parameters())."""
    out = []
    for attr, value in vars(model).items():
        if attr.startswith("_"):
            continue  # torch's own registries (_modules, _parameters)
        items = (
            value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
        )
        if any(isinstance(v, tnn.Module) for v in items):
            out.append(f"self.{attr} ({type(value).__name__})")
    return out


def _expected_parameters(sizes: list[int]) -> int:
    return sum((a + 1) * b for a, b in itertools.pairwise(sizes))


def rows(cls: type, rng: np.random.Generator, label: str | None = None) -> list[C.CheckRow]:
    """Every row of the module docstring for the user's PyTorch MLP class ``cls``."""
    name, where = label or cls.__name__, source_of(cls)
    at_forward = source_of(getattr(cls, "forward", None)) or where
    torch.manual_seed(int(rng.integers(2**31)))
    call = f"{cls.__name__}({N_INPUTS}, {HIDDEN}, {N_CLASSES})"
    try:
        with C.calling(call):
            model = cls(N_INPUTS, list(HIDDEN), N_CLASSES)  # its own dtype: forward may cast x.float()
    except C.UserCodeError as e:
        return [C.CheckRow(name, "construct", C.FAIL, str(e), e.where or where)]
    out: list[C.CheckRow] = []
    sizes = [N_INPUTS, *HIDDEN, N_CLASSES]
    want, got = _expected_parameters(sizes), sum(p.numel() for p in model.parameters())
    if got < want:
        hidden = _unregistered(model)
        why = (
            f": the layers in {', '.join(hidden)} are not registered (a plain Python container); use "
            "nn.ModuleList or nn.Sequential so that parameters() and the optimizer see them"
            if hidden
            else ""
        )
        out.append(
            C.CheckRow(
                name,
                "parameters",
                C.FAIL,
                f"{call} registers {got} parameters where it needs {want}{why}",
                where,
            )
        )
    else:
        out.append(
            C.CheckRow(
                name, "parameters", C.PASS, f"{got} parameters registered ({want} in its Linear layers)"
            )
        )

    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    x = torch.tensor(rng.normal(size=(BATCH, N_INPUTS)), dtype=dtype)
    y = torch.tensor(rng.integers(0, N_CLASSES, size=BATCH))
    out += C.guarded(name, "layers", lambda: _layer_rows(name, model, x, call, at_forward), at_forward)
    out += C.guarded(name, "output", lambda: _output_rows(name, model, x, call, at_forward), at_forward)
    out += C.guarded(name, "gradients", lambda: _gradient_rows(name, model, x, y, at_forward), at_forward)
    out += C.guarded(name, "training", lambda: _training_rows(name, cls, rng, at_forward), at_forward)
    return out


def _layer_rows(name: str, model: tnn.Module, x: torch.Tensor, call: str, where: str) -> list[C.CheckRow]:
    with C.calling(f"{name}.forward"):
        calls, final = forward_calls(model, x, record=True)
    views = _leaf_views([(c.name, c.module) for c in calls])
    # the Linear count and widths from the modules; what lies between them from the recorded tensors
    # (an activation called as a function, F.elu, is no module but does change the tensor)
    problems = [
        p
        for p in mlp_structure_problems(views, N_INPUTS, HIDDEN, N_CLASSES)
        if not p.startswith(("no activation between", "an activation (", "softmax as"))
    ]
    linear = [c for c in calls if isinstance(c.module, tnn.Linear)]
    for a, b in itertools.pairwise(linear):
        if (
            a.output is not None
            and b.input is not None
            and a.output.shape == b.input.shape
            and torch.equal(a.output, b.input)
        ):
            problems.append(
                f"nothing between {a.name} and {b.name}: the second Linear gets the first one's output unchanged "
                "(no activation), and two linear maps in a row are one linear map"
            )
    softmax = [
        v.name
        for v, c in zip(views, calls, strict=True)
        if v.kind == "softmax" and not isinstance(c.module, tnn.LogSoftmax)
    ]
    if softmax:
        problems.append(
            f"softmax as {', '.join(softmax)}: nn.CrossEntropyLoss takes the scores (logits) and applies "
            "log-softmax itself, so a Softmax layer applies it twice"
        )
    if linear and linear[-1].output is not None and isinstance(final, torch.Tensor):
        k = max(i for i, c in enumerate(calls) if isinstance(c.module, tnn.Linear))  # the last Linear call
        after = [v for v in views[k + 1 :] if v.kind != "softmax"]  # a Softmax has its own problem above
        last, final = linear[-1].output, final.detach()
        # an activation or dropout module after it counts even where it changes nothing on this batch
        # (a ReLU on scores that happen to be positive); a function shows in the output; a final
        # LogSoftmax changes nothing for nn.CrossEntropyLoss
        changed = (
            final.shape == last.shape
            and not torch.allclose(final, last)
            and not torch.allclose(final, torch.log_softmax(last, 1), atol=1e-6)
        )
        if changed or any(v.kind in (*ACTIVATION_KINDS, "dropout") for v in after):
            names = list(dict.fromkeys(v.name.split(" (")[0] for v in after))
            problems.append(
                f"the output is not the last Linear layer's ({linear[-1].name}): something is applied after it"
                + (f" ({', '.join(names)})" if names else " (a function in forward)")
                + "; the class scores go straight to nn.CrossEntropyLoss"
            )
    listed = ", ".join(v.name for v in views) or "none"
    if problems:
        return [
            C.CheckRow(
                name, "layers", C.FAIL, f"{call}: " + "; ".join(problems) + f" (layers: {listed})", where
            )
        ]
    return [C.CheckRow(name, "layers", C.PASS, f"{len(views)} modules in forward order: {listed}")]


def _forward(model: tnn.Module, x: torch.Tensor, name: str) -> torch.Tensor:
    with C.calling(f"{name}.forward"):
        result = model(x)
    if not isinstance(result, torch.Tensor):
        raise C.UserCodeError(
            f"{name}.forward", TypeError(f"returned {type(result).__name__}, expected a tensor")
        )
    return result


def _output_rows(name: str, model: tnn.Module, x: torch.Tensor, call: str, where: str) -> list[C.CheckRow]:
    with torch.no_grad():
        f = _forward(model, x, name)
        if tuple(f.shape) != (len(x), N_CLASSES):
            return [
                C.CheckRow(
                    name,
                    "output",
                    C.FAIL,
                    f"{call} maps a batch {tuple(x.shape)} to {tuple(f.shape)}, expected {(len(x), N_CLASSES)}",
                    where,
                )
            ]
        if is_probability_rows(f.numpy()):
            return [C.CheckRow(name, "output", C.FAIL,
                               "the output rows are probabilities (a softmax in forward): nn.CrossEntropyLoss "
                               "takes the scores (logits) and applies log-softmax itself, so softmax is applied "
                               "twice and the loss barely moves; return the last Linear layer's output", where)]  # fmt: skip
        f0 = _forward(model, torch.zeros_like(x), name)
        f2 = _forward(model, 2 * x, name)
    a, b = (f - f0).numpy(), ((f2 - f0) / 2).numpy()
    if np.abs(a - b).max() <= AFFINE_RTOL * max(float(np.abs(a).max()), 1e-12):
        return [C.CheckRow(name, "output", C.FAIL,
                           f"the model is an affine map (f(x) - f(0) = (f(2x) - f(0)) / 2): no non-linearity "
                           f"between its Linear layers, so its {len(HIDDEN)} hidden layers collapse into one", where)]  # fmt: skip
    return [C.CheckRow(name, "output", C.PASS, f"scores {tuple(f.shape)}, not probabilities, non-linear")]


def _gradient_rows(
    name: str, model: tnn.Module, x: torch.Tensor, y: torch.Tensor, where: str
) -> list[C.CheckRow]:
    model.zero_grad(set_to_none=True)
    with C.calling(f"{name}.forward/backward"):
        F.cross_entropy(_forward(model, x, name), y).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    if not any(True for _ in model.parameters()):
        return [
            C.CheckRow(
                name, "gradients", C.FAIL, "no parameters to get a gradient (see the parameters row)", where
            )
        ]
    if missing:
        return [C.CheckRow(name, "gradients", C.FAIL,
                           f"no gradient for {', '.join(missing)}: forward does not use them, or cuts the graph "
                           "(.detach(), .data, torch.no_grad(), a NumPy round trip)", where)]  # fmt: skip
    n = sum(1 for _ in model.parameters())
    return [C.CheckRow(name, "gradients", C.PASS, f"all {n} parameter tensors get a gradient")]


def _training_rows(name: str, cls: type, rng: np.random.Generator, where: str) -> list[C.CheckRow]:
    from backproplab.data import load_dataset

    ds = load_dataset("digits")
    order = rng.permutation(len(ds.x_train))[:TRAIN_SAMPLES]
    xd = ds.x_train[order].reshape(len(order), -1).astype(np.float64) / 255.0  # (S, 64)
    xd = (xd - xd.mean(axis=0)) / (xd.std(axis=0) + 1e-8)  # standardised per pixel
    x, y = torch.tensor(xd), torch.tensor(ds.y_train[order].astype(np.int64))
    classes = len(ds.classes)
    with C.calling(f"{cls.__name__}({x.shape[1]}, {TRAIN_HIDDEN}, {classes})"):
        model: Any = cls(x.shape[1], list(TRAIN_HIDDEN), classes)
    params = list(model.parameters())
    x = x.to(params[0].dtype) if params else x
    if not params:
        return [
            C.CheckRow(name, "training", C.FAIL, "no parameters to train (see the parameters row)", where)
        ]
    opt = torch.optim.Adam(params, lr=TRAIN_LR)
    losses = []
    for _ in range(TRAIN_STEPS):
        opt.zero_grad(set_to_none=True)
        with C.calling(f"{name}.forward/backward"):
            loss = F.cross_entropy(_forward(model, x, name), y)
            loss.backward()
        losses.append(loss.item())
        opt.step()
    first, last, ln_c = losses[0], losses[-1], math.log(classes)
    rows = []
    if not math.isfinite(first) or first > INITIAL_LOSS_FACTOR * ln_c:
        rows.append(C.CheckRow(name, "training: initial loss", C.WARN,
                               f"initial loss {first:.4g}, where ln({classes}) = {ln_c:.3f} is expected of small "
                               "initial weights: the scores start far too large", where))  # fmt: skip
    else:
        rows.append(
            C.CheckRow(name, "training: initial loss", C.PASS, f"{first:.4f}, ln({classes}) = {ln_c:.3f}")
        )
    if not (math.isfinite(last) and last <= TRAINED_LOSS_FRACTION * first):
        rows.append(C.CheckRow(name, "training: loss decreases", C.FAIL,
                               f"{TRAIN_STEPS} full-batch Adam steps (lr {TRAIN_LR:g}) on {len(x)} digits: loss "
                               f"{first:.4g} -> {last:.4g}, not below {TRAINED_LOSS_FRACTION:g} x the start", where))  # fmt: skip
    else:
        rows.append(C.CheckRow(name, "training: loss decreases", C.PASS,
                               f"{TRAIN_STEPS} Adam steps on {len(x)} digits: {first:.4f} -> {last:.4f}"))  # fmt: skip
    return rows
