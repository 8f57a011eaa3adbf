"""Find the layers, losses and models in a user's own files, by the conventions of the common
assignments, and run :mod:`backproplab.verify.check` on each: ``backproplab check PATH``.

Found by name (a file, or every ``*.py`` of a folder except ``test_*.py``, imported with the folder
first on ``sys.path``, so ``from modules import *`` works as in the assignment):

* the practical's template (``modules.py``, ``mlp_numpy.py``): ``LinearModule(in_features,
  out_features)`` (later editions' ``input_layer`` argument left at its default),
  ``ELUModule()`` or ``ELUModule(alpha)``, ``RELUModule``, ``SoftMaxModule``, with ``params`` /
  ``grads`` dicts; ``CrossEntropyModule`` (``forward(x, y)`` / ``backward(x, y)`` on probabilities
  and one-hot targets); ``MLP(n_inputs, n_hidden, n_classes)`` (its layers from a list
  attribute);
* the three LayerNorm classes of ``custom_layernorm.py`` (``CustomLayerNormAutograd``,
  ``CustomLayerNormManualFunction``, ``CustomLayerNormManualModule``), checked against
  ``F.layer_norm`` with torch's autograd;
* CS231n's functional layers (``layers.py``): ``affine_*``, ``relu_*``, ``batchnorm_*``,
  ``spatial_batchnorm_*``, ``layernorm_*``, ``dropout_*``, ``conv_*_naive``,
  ``max_pool_*_naive`` (a ``<name>_forward`` with its ``<name>_backward``, and with a
  ``<name>_backward_alt`` when there is one; more settings in :data:`CS231N_VARIANTS`; batchnorm's
  running statistics and test mode), ``softmax_loss``;
* the practical's PyTorch ``ConvNet(n_channels, n_classes)`` (``convnet_pytorch.py``), layer by
  layer against the practical's PreAct ConvNet: :mod:`backproplab.verify.torch_convnet_check`;
* CS231n's model classes (``fc_net.py``: a ``params`` dict and ``loss(X, y)``):
  :mod:`backproplab.verify.cs231n_model_check`;
* the training scripts' ``accuracy(predictions, targets)``: :mod:`backproplab.verify.accuracy_check`;
* the practical's PyTorch ``MLP(n_inputs, n_hidden, n_classes)`` (an ``nn.Module``, in
  ``mlp_pytorch.py``): :mod:`backproplab.verify.torch_mlp_check`;
* any other class defined in the files with ``forward`` and ``backward`` whose name says its kind
  (``Linear``, ``ReLU``, ``Softmax``, ...: see :func:`~backproplab.verify.protocol.kind_from_name`),
  constructed with no arguments or, for a Linear / norm, with its sizes, for a convolution or
  pooling by its arguments' names (in / out channels, kernel size; stride and padding kept as
  the reference's settings).

A name defined in several files (``MLP`` in ``mlp_numpy.py`` and ``mlp_pytorch.py``) is checked in
each, labelled with its file.
"""

from __future__ import annotations

import collections
import functools
import importlib
import inspect
import random
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from backproplab.errors import DataError
from backproplab.verify import check as C
from backproplab.verify import cs231n_model_check
from backproplab.verify.mlp_structure import mlp_structure_problems
from backproplab.verify.protocol import (
    LayerView,
    LossView,
    ModelView,
    functional_loss_view,
    functional_view,
    kind_from_name,
    loss_view_of,
    model_view,
    source_of,
    view_of,
)

#: Sizes of the layers the checks construct: (batch, input features, output features).
BATCH, IN_FEATURES, OUT_FEATURES = 4, 5, 3
#: The ELU alpha handed to an ``ELUModule(alpha)`` (not 1, so that an ignored alpha shows).
ELU_ALPHA = 0.8
#: The template MLP of the parity rows: MLP(PARITY_INPUTS, PARITY_HIDDEN, PARITY_CLASSES).
PARITY_INPUTS, PARITY_HIDDEN, PARITY_CLASSES = 6, [5, 4], 3
#: Template class names -> kind.
TEMPLATE_LAYERS = {
    "LinearModule": "linear",
    "ELUModule": "elu",
    "RELUModule": "relu",
    "ReLUModule": "relu",
    "SoftMaxModule": "softmax",
    "SoftmaxModule": "softmax",
}
TEMPLATE_LOSSES = ("CrossEntropyModule",)
LAYERNORM_CLASSES = ("CustomLayerNormAutograd", "CustomLayerNormManualModule")
LAYERNORM_FUNCTION = "CustomLayerNormManualFunction"


@dataclass
class Found:
    """One thing to check: a label, what it is, and the rows-making function."""

    label: str
    what: str
    run: Callable[[np.random.Generator], list[C.CheckRow]]


# ---------------------------------------------------------------------------- importing
def import_user_files(path: str | Path) -> tuple[list[types.ModuleType], list[C.CheckRow]]:
    """Import the user's file or every ``*.py`` in the folder; an import error is a FAIL row."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"check: {p} does not exist")
    if p.is_file() and p.suffix != ".py":
        raise DataError(f"check: {p} is not a Python file (.py)")
    folder = p.parent if p.is_file() else p
    files = [p] if p.is_file() else sorted(f for f in p.glob("*.py") if not f.name.startswith("test_"))
    if not files:
        raise DataError(f"check: {p} is a folder without Python files")
    stems = {f.stem for f in folder.glob("*.py")}
    for stem in stems:  # a module of the same name imported earlier (another user's "layers")
        sys.modules.pop(stem, None)
    sys.path.insert(0, str(folder.resolve()))
    modules, rows = [], []
    try:
        for f in files:
            try:
                with np.errstate(all="ignore"):
                    modules.append(importlib.import_module(f.stem))
            except Exception as e:  # the user's file may raise anything at import
                where = C.user_frame(e, {str(f.resolve())}) or f"{f.resolve()}:1"
                rows.append(
                    C.CheckRow(
                        f.name, "import", C.FAIL, f"importing {f.name} raised {type(e).__name__}: {e}", where
                    )
                )
    finally:
        sys.path.remove(str(folder.resolve()))
    return modules, rows


def _own(mod: types.ModuleType) -> dict[str, Any]:
    """The classes and functions defined in ``mod`` itself (not imported into it)."""
    return {
        n: v
        for n, v in vars(mod).items()
        if (inspect.isclass(v) or inspect.isfunction(v)) and getattr(v, "__module__", None) == mod.__name__
    }


# ---------------------------------------------------------------------------- inputs
def _input(kind: str, rng: np.random.Generator, shape: tuple[int, ...] | None = None) -> np.ndarray:
    shape = shape or {"conv2d": (2, 3, 5, 5), "maxpool2d": (2, 3, 4, 4), "batchnorm": (6, IN_FEATURES)}.get(
        kind, (BATCH, IN_FEATURES)
    )
    x = rng.normal(size=shape)
    if kind in ("relu", "leaky_relu", "elu", "maxpool2d"):
        x = np.where(np.abs(x) < C.KINK_MARGIN * 10, np.sign(x + 1e-12) * C.KINK_MARGIN * 10, x)
    if kind == "maxpool2d":
        x = x + np.arange(x.size).reshape(shape) * 1e-3  # no ties inside a window
    return x


#: A convolution or pooling class's constructor arguments, by name fragment (checked in order):
#: the input (2, 3, 5, 5) has 3 channels; 4 filters of 3x3; pooling windows of 2 with stride 2.
_SPATIAL_ARGS: dict[str, tuple[tuple[tuple[str, ...], int], ...]] = {
    "conv2d": (
        (("in_channel", "in_chan", "c_in", "n_in", "input_channel", "in"), 3),
        (("out_channel", "out_chan", "c_out", "filters", "n_out", "out"), 4),
        (("kernel", "filter_size", "size", "k"), 3),
        (("stride",), 1),
        (("pad",), 1),
    ),
    "maxpool2d": ((("kernel", "pool", "size", "k"), 2), (("stride",), 2), (("pad",), 0)),
}


def _spatial_value(kind: str, name: str) -> int | None:
    low = name.lower()
    for fragments, value in _SPATIAL_ARGS[kind]:
        if any(low == f or low.startswith(f) for f in fragments):
            return value
    return None


def _parameter_arguments(kind: str, n_in: int, n_out: int) -> dict[str, np.ndarray]:
    """Arrays for constructor arguments named as parameters: a Linear's weight (in, out), the usual
    layout of classes built from their arrays (the layout is resolved from the forward later), its
    bias; a norm's gamma and beta. Random values: the checks draw their own before each run."""
    rng = np.random.default_rng(0)
    if kind == "linear":
        w, b = rng.normal(0.0, 0.5, size=(n_in, n_out)), np.zeros(n_out)
        return {"w": w, "weight": w, "weights": w, "b": b, "bias": b}
    if kind in ("batchnorm", "layernorm"):
        return {
            "gamma": np.ones(n_in),
            "weight": np.ones(n_in),
            "beta": np.zeros(n_in),
            "bias": np.zeros(n_in),
        }
    return {}


def _construct(cls: type, kind: str, n_in: int, n_out: int) -> tuple[Any, dict[str, Any]]:
    """An instance of a user's layer class, its sizes passed by the usual argument names, and the
    settings it was built with that a reference needs (a convolution's stride and padding, a
    pooling window)."""
    sig = inspect.signature(cls)
    required = [
        p for p in sig.parameters.values()
        if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]  # fmt: skip
    kwargs: dict[str, Any] = {}
    if "alpha" in sig.parameters and kind == "elu":
        kwargs["alpha"] = ELU_ALPHA
    args: list[Any] = []
    sizes = [n_in, n_out] if kind == "linear" else [n_in]
    arrays = _parameter_arguments(kind, n_in, n_out)
    for p in required:
        if p.name == "alpha":
            continue
        if p.name.lower() in arrays:  # a layer built from its arrays: Affine(W, b), BatchNorm(gamma, beta)
            args.append(arrays[p.name.lower()])
            continue
        if kind in _SPATIAL_ARGS:
            value = _spatial_value(kind, p.name)
            if value is None:
                raise TypeError(f"{cls.__name__}{sig}: cannot guess the argument {p.name!r}")
            args.append(value)
            continue
        if not sizes:
            raise TypeError(f"{cls.__name__}{sig}: cannot guess the argument {p.name!r}")
        args.append(sizes.pop(0))
    obj = cls(*args, **kwargs)
    config: dict[str, Any] = {}
    if kind in _SPATIAL_ARGS:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        for name, value in bound.arguments.items():
            low = name.lower()
            if not isinstance(value, (int, type(None))) or isinstance(value, bool):
                continue
            if low.startswith("stride"):
                config["stride"] = value
            elif low.startswith("pad"):
                config["pad"] = value or 0
            elif kind == "maxpool2d" and _spatial_value(kind, name) == 2 and value is not None:
                config["pool_height"] = config["pool_width"] = value
        if kind == "maxpool2d" and config.get("stride") is None:
            config["stride"] = config.get("pool_height", 2)  # torch's default: the window
    return obj, config


def _layer_found(label: str, cls: type, kind: str) -> Found:
    where = source_of(cls)

    def factory() -> LayerView:
        obj, config = _construct(cls, kind, IN_FEATURES, OUT_FEATURES)
        view = view_of(obj, cls.__name__, kind=kind, config=config)
        if kind == "elu" and "alpha" in inspect.signature(cls).parameters:
            view.config["alpha"] = ELU_ALPHA
        return view

    def run(rng: np.random.Generator) -> list[C.CheckRow]:
        try:
            factory()
        except Exception as e:
            return [
                C.CheckRow(
                    cls.__name__,
                    "construct",
                    C.FAIL,
                    f"{cls.__name__}(...) raised {type(e).__name__}: {e}",
                    C.user_frame(e) or where,
                )
            ]
        return C.layer_rows(factory, lambda r: _input(kind, r), rng)

    return Found(label, kind, run)


# ---------------------------------------------------------------------------- CS231n
#: CS231n layer name -> (kind, parameters [(argument, torch name, shape, transposed)], extra
#: arguments maker, input shape, config).
_F = tuple[
    str,
    list[tuple[str, str, tuple[int, ...], bool]],
    Callable[[], tuple[Any, ...]],
    tuple[int, ...],
    dict[str, Any],
]
CS231N_LAYERS: dict[str, _F] = {
    "affine": (
        "linear",
        [("w", "weight", (6, OUT_FEATURES), True), ("b", "bias", (OUT_FEATURES,), False)],
        lambda: (),
        (BATCH, 2, 3),
        {},
    ),
    "relu": ("relu", [], lambda: (), (BATCH, IN_FEATURES), {}),
    "batchnorm": (
        "batchnorm",
        [("gamma", "weight", (IN_FEATURES,), False), ("beta", "bias", (IN_FEATURES,), False)],
        lambda: ({"mode": "train", "eps": 1e-5, "momentum": 0.9},),
        (6, IN_FEATURES),
        {"eps": 1e-5},
    ),
    "spatial_batchnorm": (
        "batchnorm",
        [("gamma", "weight", (3,), False), ("beta", "bias", (3,), False)],
        lambda: ({"mode": "train", "eps": 1e-5, "momentum": 0.9},),
        (2, 3, 4, 4),
        {"eps": 1e-5},
    ),
    "layernorm": (
        "layernorm",
        [("gamma", "weight", (IN_FEATURES,), False), ("beta", "bias", (IN_FEATURES,), False)],
        lambda: ({"eps": 1e-5},),
        (BATCH, IN_FEATURES),
        {"eps": 1e-5},
    ),
    "conv": (
        "conv2d",
        [("w", "weight", (4, 3, 3, 3), False), ("b", "bias", (4,), False)],
        lambda: ({"stride": 1, "pad": 1},),
        (2, 3, 5, 5),
        {"stride": 1, "pad": 1},
    ),
    "max_pool": (
        "maxpool2d",
        [],
        lambda: ({"pool_height": 2, "pool_width": 2, "stride": 2},),
        (2, 3, 4, 4),
        {"pool_height": 2, "pool_width": 2, "stride": 2},
    ),
    "dropout": ("dropout", [], lambda: ({"p": DROPOUT_KEEP, "mode": "train", "seed": 123},), (50, 40), {}),
}
#: Keep probability handed to a CS231n dropout (``dropout_param["p"]``).
DROPOUT_KEEP = 0.7
#: The kept fraction of the 50 x 40 units is the keep probability within this (a binomial draw's
#: standard deviation is 0.01 there).
DROPOUT_FRACTION_TOL = 0.05


#: More settings a CS231n layer is checked with: (label, its param dict, input shape). A stride
#: of 1 and square, non-overlapping windows hide strides and windows taken from the wrong variable.
CS231N_VARIANTS: dict[str, list[tuple[str, dict[str, Any], tuple[int, ...]]]] = {
    "conv": [("stride 2, pad 0", {"stride": 2, "pad": 0}, (2, 3, 7, 7))],
    "max_pool": [("3x2 windows, stride 1", {"pool_height": 3, "pool_width": 2, "stride": 1}, (2, 3, 5, 6))],
}


def _cs231n_found(name: str, fwd: Callable[..., Any], bwd: Callable[..., Any], alt: bool = False) -> Found:
    """A CS231n forward/backward pair; ``alt``: the pair of the forward with ``<name>_backward_alt``
    (checked on its own, its rows named after both functions)."""
    kind, params, extra, shape, config = CS231N_LAYERS[name]
    base_label = f"{fwd.__name__} with {bwd.__name__}" if alt else fwd.__name__

    def factory_for(label: str, args: tuple[Any, ...], cfg: dict[str, Any]) -> Callable[..., LayerView]:
        def factory(rng: np.random.Generator | None = None) -> LayerView:
            r = rng or np.random.default_rng(0)
            p = {arg: (tname, r.normal(size=s), tr) for arg, tname, s, tr in params}
            return functional_view(label, kind, fwd, bwd, p, args, cfg)

        return factory

    def run(rng: np.random.Generator) -> list[C.CheckRow]:
        factory = factory_for(base_label, extra(), config)
        if kind == "dropout":
            return _dropout_rows(factory, shape, rng)
        rows = C.layer_rows(factory, lambda r: _input(kind, r, shape), rng)
        if kind == "batchnorm" and not alt:
            rows += C.guarded(
                fwd.__name__, "running statistics", lambda: _bn_stats_rows(fwd, shape, rng), source_of(fwd)
            )
        for label, cfg, variant_shape in CS231N_VARIANTS.get(name, []):
            variant = factory_for(f"{base_label} ({label})", (dict(cfg),), dict(cfg))
            rows += C.layer_rows(variant, functools.partial(_input, kind, shape=variant_shape), rng)
        return rows

    return Found(f"{fwd.__name__}/{bwd.__name__}", kind, run)


#: CS231n's batchnorm momentum handed to the running-statistics check (not 0.5: swapped must show).
BN_MOMENTUM = 0.9


def _bn_stats_rows(
    fwd: Callable[..., Any], shape: tuple[int, ...], rng: np.random.Generator
) -> list[C.CheckRow]:
    """CS231n's batchnorm running statistics: one training-mode call updates
    running = momentum * running + (1 - momentum) * batch statistic (the variance biased, or
    unbiased as torch keeps it); a test-mode call normalises with them."""
    name, where = fwd.__name__, source_of(fwd)
    x = rng.normal(1.0, 2.0, size=shape)
    c = shape[1]
    axes = (0, *range(2, len(shape)))  # per feature (N, D) or per channel (N, C, H, W)
    gamma, beta = rng.normal(1.0, 0.3, size=c), rng.normal(0.0, 0.3, size=c)
    r0, v0 = rng.normal(size=c), rng.uniform(0.5, 2.0, size=c)
    param: dict[str, Any] = {"mode": "train", "eps": 1e-5, "momentum": BN_MOMENTUM,
                             "running_mean": r0.copy(), "running_var": v0.copy()}  # fmt: skip
    with C.calling(f"{name}(x, gamma, beta, bn_param) in train mode"):
        fwd(x.copy(), gamma, beta, param)
    m, mean = BN_MOMENTUM, x.mean(axis=axes)
    big_m = x.size // c
    rm, rv = param.get("running_mean"), param.get("running_var")
    if not isinstance(rm, np.ndarray) or not isinstance(rv, np.ndarray):
        return [C.CheckRow(name, "running statistics", C.FAIL,
                           "train mode does not store bn_param['running_mean'] and ['running_var'] (test mode needs them)", where)]  # fmt: skip
    rm, rv = rm.reshape(-1), rv.reshape(-1)
    var_b = x.var(axis=axes)
    if not np.allclose(rm, m * r0 + (1 - m) * mean, rtol=1e-9, atol=1e-12):
        why = ""
        if np.allclose(rm, (1 - m) * r0 + m * mean, rtol=1e-9, atol=1e-12):
            why = ": momentum and 1 - momentum swapped"
        elif np.allclose(rm, mean, rtol=1e-9, atol=1e-12):
            why = ": replaced by the batch mean (no average)"
        return [C.CheckRow(name, "running statistics", C.FAIL,
                           f"running_mean is not momentum * running_mean + (1 - momentum) * batch mean (momentum {m:g}){why}", where)]  # fmt: skip
    biased, unbiased = m * v0 + (1 - m) * var_b, m * v0 + (1 - m) * var_b * big_m / (big_m - 1)
    if not (np.allclose(rv, biased, rtol=1e-9) or np.allclose(rv, unbiased, rtol=1e-9)):
        why = (
            ": momentum and 1 - momentum swapped"
            if np.allclose(rv, (1 - m) * v0 + m * var_b, rtol=1e-9)
            else ""
        )
        return [C.CheckRow(name, "running statistics", C.FAIL,
                           f"running_var is not momentum * running_var + (1 - momentum) * batch variance{why}", where)]  # fmt: skip
    param["mode"] = "test"
    with C.calling(f"{name}(x, gamma, beta, bn_param) in test mode"):
        out = np.asarray(fwd(x.copy(), gamma, beta, param)[0])
    shape_c = (1, c) + (1,) * (len(shape) - 2)
    want = gamma.reshape(shape_c) * (x - rm.reshape(shape_c)) / np.sqrt(
        rv.reshape(shape_c) + 1e-5
    ) + beta.reshape(shape_c)
    if out.shape != want.shape or not np.allclose(out, want, rtol=1e-7, atol=1e-9):
        return [C.CheckRow(name, "running statistics", C.FAIL,
                           "test mode does not normalise with the running statistics: gamma * (x - running_mean) / "
                           "sqrt(running_var + eps) + beta", where)]  # fmt: skip
    kind = "biased" if np.allclose(rv, biased, rtol=1e-9) else "unbiased"
    return [C.CheckRow(name, "running statistics", C.PASS,
                       f"running averages with momentum {m:g} ({kind} variance); test mode uses them")]  # fmt: skip


def _dropout_rows(
    factory: Callable[[], LayerView], shape: tuple[int, ...], rng: np.random.Generator
) -> list[C.CheckRow]:
    """Dropout has no deterministic torch twin: check inverted dropout's defining properties with the
    seeded mask (the same mask for the gradient check), and the test mode."""
    view = factory()
    name = view.name
    x = rng.normal(size=shape) + 3.0  # away from 0, so a zero output means a dropped unit
    rows = C.guarded(
        name,
        "gradient check",
        lambda: C.gradcheck_rows(factory(), x, rng.normal(size=shape), rng),
        view.where,
    )

    def properties() -> list[C.CheckRow]:
        v = factory()
        out = C.forward_backward(v, x.copy(), None)["output"]
        kept = out != 0
        frac = float(kept.mean())
        scale = out[kept] / x[kept]
        g = rng.normal(size=shape)
        dx = C.forward_backward(v, x.copy(), g).get("input grad")
        problems = []
        if not np.allclose(scale, scale.mean(), rtol=1e-9):
            problems.append("kept units are not all scaled by one factor")
        elif abs(frac - (1 - DROPOUT_KEEP)) < DROPOUT_FRACTION_TOL < abs(frac - DROPOUT_KEEP):
            problems.append(
                f"{frac:.3f} of the units are kept where p = {DROPOUT_KEEP:g} is the probability of keeping one "
                f"(CS231n's convention): the keep test is inverted (rand > p keeps 1 - p = {1 - DROPOUT_KEEP:g}; "
                "mask = rand < p)"
            )
        elif abs(scale.mean() * frac - 1) > DROPOUT_FRACTION_TOL:
            problems.append(
                f"kept units are scaled by {scale.mean():.4g} but {frac:.3f} of them are kept: inverted dropout scales by 1/keep probability = {1 / frac:.4g} (expectation preserved)"
            )
        if dx is None or not np.allclose(dx, g * out / x, rtol=1e-9, atol=1e-12):
            problems.append("backward does not use the forward's mask and scale (dx = dout * mask / p)")
        where = v.method_where("forward")
        if problems:
            return [C.CheckRow(name, "mask and scale", C.FAIL, "; ".join(problems), where)]
        return [
            C.CheckRow(
                name,
                "mask and scale",
                C.PASS,
                f"{frac:.2f} of units kept, scaled by {scale.mean():.4g}; backward uses the same mask",
            )
        ]

    rows += C.guarded(name, "mask and scale", properties, view.where)

    def test_mode() -> list[C.CheckRow]:
        v = factory()
        v.obj.extra = ({"p": DROPOUT_KEEP, "mode": "test", "seed": 123},)
        out = C.forward_backward(v, x.copy(), None)["output"]
        if not np.allclose(out, x):
            return [
                C.CheckRow(
                    name,
                    "test mode",
                    C.FAIL,
                    "in test mode the output must equal the input (inverted dropout scales at training time)",
                    v.method_where("forward"),
                )
            ]
        return [C.CheckRow(name, "test mode", C.PASS, "identity in test mode")]

    rows += C.guarded(name, "test mode", test_mode, view.where)
    return rows


# ---------------------------------------------------------------------------- models
def _output_kind(model: ModelView) -> str:
    return "probabilities" if model.layers and model.layers[-1].kind == "softmax" else "logits"


def _mlp_found(cls: type, loss_cls: type | None, label: str | None = None) -> Found:
    from backproplab.data import load_dataset

    def make(n_in: int, hidden: list[int], n_out: int) -> ModelView:
        return model_view(cls(n_in, hidden, n_out), name=label or cls.__name__)

    def loss_for(model: ModelView) -> LossView:
        if loss_cls is not None:
            return C.loss_convention(
                loss_view_of(loss_cls(), on=_output_kind(model)), np.random.default_rng(0)
            )
        from backproplab import nn
        from backproplab.verify.protocol import module_loss_view

        probs = bool(model.layers) and model.layers[-1].kind == "softmax"
        return module_loss_view(
            nn.CrossEntropy() if probs else nn.SoftmaxCrossEntropy(), "probabilities" if probs else "logits"
        )

    def run(rng: np.random.Generator) -> list[C.CheckRow]:
        name = label or cls.__name__
        try:
            model = make(PARITY_INPUTS, PARITY_HIDDEN, PARITY_CLASSES)
        except Exception as e:
            return [
                C.CheckRow(
                    name,
                    "construct",
                    C.FAIL,
                    f"{name}({PARITY_INPUTS}, {PARITY_HIDDEN}, {PARITY_CLASSES}) raised {type(e).__name__}: {e}",
                    C.user_frame(e) or source_of(cls),
                )
            ]
        if not model.layers:
            return [
                C.CheckRow(
                    name,
                    "layers",
                    C.FAIL,
                    "no layers found: keep them in a list attribute (self.layers = [...]) so that they can be checked",
                    source_of(cls),
                )
            ]
        kinds = ", ".join(f"{v.obj.__class__.__name__}" for v in model.layers)
        problems = mlp_structure_problems(model.layers, PARITY_INPUTS, PARITY_HIDDEN, PARITY_CLASSES)
        if problems:
            detail = f"{name}({PARITY_INPUTS}, {PARITY_HIDDEN}, {PARITY_CLASSES}): " + "; ".join(problems)
            rows = [C.CheckRow(name, "layers", C.FAIL, f"{detail} (layers: {kinds})", source_of(cls))]
        else:
            rows = [C.CheckRow(name, "layers", C.PASS, f"{len(model.layers)} layers: {kinds}")]
        rows += _initialisation_rows(name, model, source_of(cls))
        loss = loss_for(model)
        for v in model.layers:
            C.randomize(v, rng)
        x = rng.normal(size=(BATCH, PARITY_INPUTS))
        y = rng.integers(0, PARITY_CLASSES, size=BATCH)
        rows += C.guarded(name, "parity", lambda: C.model_parity_rows(model, loss, x, y), source_of(cls))
        rows += C.guarded(
            name, "no hidden layers", lambda: _no_hidden_rows(name, make, loss, rng), source_of(cls)
        )
        ds = load_dataset("digits")
        xd = ds.x_train.reshape(len(ds.x_train), -1).astype(np.float64) / 255.0
        xd = (xd - xd.mean(axis=0)) / (xd.std(axis=0) + 1e-8)  # (N, 64) standardised per pixel
        order = rng.permutation(len(xd))
        xd, yd = xd[order], ds.y_train[order]
        hidden = [32, 16]
        training = C.guarded(
            name,
            "training",
            lambda: C.doctor_rows(
                lambda: make(xd.shape[1], hidden, len(ds.classes)), loss, xd, yd, len(ds.classes)
            ),
            source_of(cls),
        )
        if any(r.status == C.FAIL for r in rows):  # the advice assumes the gradients are right
            for r in training:
                if r.status != C.PASS:
                    r.detail += " (rows above fail: fix those first; this advice assumes correct gradients)"
        return rows + training

    return Found(label or cls.__name__, "model", run)


def _initialisation_rows(name: str, model: ModelView, where: str) -> list[C.CheckRow]:
    """The weights as the user's MLP initialises them: not one constant per Linear layer (all units
    of a layer would compute the same and get the same gradient: the symmetry is never broken)."""
    constant = []
    for v in model.layers:
        w = v.param("weight")
        if v.kind == "linear" and w is not None and w.value.size > 1 and np.ptp(w.value) == 0:
            constant.append(f"{v.name} (all {float(w.value.flat[0]):g})")
    if constant:
        return [C.CheckRow(name, "initialisation", C.FAIL,
                           f"constant weights in {', '.join(constant)}: every unit of the layer computes the same "
                           "and gets the same gradient, so they stay identical; draw them at random "
                           "(e.g. normal with a small std, or Kaiming)", where)]  # fmt: skip
    return [C.CheckRow(name, "initialisation", C.PASS, "random weights (no Linear layer starts constant)")]


def _no_hidden_rows(
    name: str, make: Callable[[int, list[int], int], ModelView], loss: LossView, rng: np.random.Generator
) -> list[C.CheckRow]:
    """MLP(n, [], c): the template's multinomial logistic regression, one Linear layer, must build
    and run forward and backward, writing its parameters' gradients."""
    call = f"{name}({PARITY_INPUTS}, [], {PARITY_CLASSES})"
    with C.calling(call):
        model = make(PARITY_INPUTS, [], PARITY_CLASSES)
    problems = mlp_structure_problems(model.layers, PARITY_INPUTS, [], PARITY_CLASSES)
    x = rng.normal(size=(BATCH, PARITY_INPUTS))
    C.loss_and_backward(model, loss, x, rng.integers(0, PARITY_CLASSES, size=BATCH))
    for v in model.layers:  # the template's MLP.backward returns nothing: its gradients must be there
        for p in v.params:
            if p.grad is None or np.shape(p.grad) != p.value.shape:
                got = "none" if p.grad is None else f"shape {np.shape(p.grad)}"
                problems.append(
                    f"after backward {v.name} has {got} for the gradient of its {p.value.shape} {p.name}"
                )
    if problems:
        return [
            C.CheckRow(
                name,
                "no hidden layers",
                C.FAIL,
                f"{call}: " + "; ".join(problems),
                source_of(type(model.obj)),
            )
        ]
    return [
        C.CheckRow(name, "no hidden layers", C.PASS, f"{call}: one Linear layer (logistic regression) runs")
    ]


# ---------------------------------------------------------------------------- discovery
def _loss_class_found(name: str, cls: type) -> Found:
    """A loss class, called its way (:func:`~backproplab.verify.protocol.loss_view_of`) on the
    scores and targets its code takes (:func:`~backproplab.verify.check.loss_convention`)."""

    def run(rng: np.random.Generator) -> list[C.CheckRow]:
        try:
            with C.calling(f"{cls.__name__}()"):
                probe = C.loss_convention(loss_view_of(cls()), rng)
        except C.UserCodeError as e:
            return [C.CheckRow(name, "construct", C.FAIL, str(e)[:600], e.where or source_of(cls))]
        return C.loss_rows(lambda: replace(loss_view_of(cls()), on=probe.on, targets=probe.targets), rng)

    return Found(name, "loss", run)


def _is_torch_module(cls: type) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and issubclass(cls, torch.nn.Module)


#: The user's PyTorch model classes checked, by name -> the verify module whose ``rows`` checks them.
TORCH_MODEL_CHECKS = {"MLP": "torch_mlp_check", "ConvNet": "torch_convnet_check"}


def _rows_found(label: str, what: str, module: str, obj: Any) -> Found:
    """``backproplab.verify.<module>.rows(obj, rng, label)`` as a Found (imported when it runs: the
    PyTorch checks import torch)."""

    def run(rng: np.random.Generator) -> list[C.CheckRow]:
        rows = importlib.import_module(f"backproplab.verify.{module}").rows
        return rows(obj, rng, label)

    return Found(label, what, run)


def discover(modules: list[types.ModuleType]) -> list[Found]:
    """Everything checkable in the user's modules, in file order. A name defined in several files
    (the practical's ``MLP`` in ``mlp_numpy.py`` and in ``mlp_pytorch.py``) is checked in each,
    labelled with its file."""
    found: list[Found] = []
    owns = [(mod, _own(mod)) for mod in modules]
    files_of = collections.Counter(n for _, own in owns for n in own)
    loss_cls = next((own[n] for _, own in owns for n in TEMPLATE_LOSSES if n in own), None)
    for mod, own in owns:
        for name, obj in own.items():
            label = name if files_of[name] == 1 else f"{name} ({Path(mod.__file__ or name).name})"
            if inspect.isclass(obj):
                found += _class_found(label, name, obj, loss_cls)
            elif inspect.isfunction(obj):
                found += _function_found(label, name, obj, own)
    return found


def _class_found(label: str, name: str, obj: type, loss_cls: type | None) -> list[Found]:
    if name in LAYERNORM_CLASSES or name == LAYERNORM_FUNCTION:
        from backproplab.verify import layernorm_check

        return [Found(label, "layernorm", functools.partial(layernorm_check.rows, obj))]
    if _is_torch_module(obj):
        check = TORCH_MODEL_CHECKS.get(name)
        return [] if check is None else [_rows_found(label, "PyTorch model", check, obj)]
    if cs231n_model_check.is_model_class(obj):
        return [_rows_found(label, "model", "cs231n_model_check", obj)]
    if name in TEMPLATE_LAYERS:
        return [_layer_found(label, obj, TEMPLATE_LAYERS[name])]
    if name in TEMPLATE_LOSSES:
        return [_loss_class_found(label, obj)]
    if name == "MLP":
        return [_mlp_found(obj, loss_cls, label)]
    if callable(getattr(obj, "forward", None)) and callable(getattr(obj, "backward", None)):
        kind = kind_from_name(name)
        if kind == "loss":
            return [_loss_class_found(label, obj)]
        if kind not in ("other", "dropout"):
            return [_layer_found(label, obj, kind)]
    return []


def _function_found(label: str, name: str, obj: Callable[..., Any], own: dict[str, Any]) -> list[Found]:
    if name == "accuracy":
        return [_rows_found(label, "metric", "accuracy_check", obj)]
    if name == "softmax_loss":
        return [
            Found(name, "loss", functools.partial(C.loss_rows, functools.partial(functional_loss_view, obj)))
        ]
    return [
        _cs231n_found(base, obj, own[f"{base}_backward{back}"], alt=back == "_alt")
        for base in CS231N_LAYERS
        for fwd, back in (("", ""), ("_naive", "_naive"), ("", "_alt"))
        if name == f"{base}_forward{fwd}" and f"{base}_backward{back}" in own
    ]


def run_check(path: str | Path, seed: int = 0, only: str | None = None) -> C.CheckReport:
    """Import the user's code at ``path``, check everything found (or the names containing
    ``only``) and return the report."""
    modules, rows = import_user_files(path)
    report = C.CheckReport(str(path), rows)
    found = discover(modules)
    if only:
        found = [f for f in found if only.lower() in f.label.lower()]
    report.found = [f"{f.label} ({f.what})" for f in found]
    if not found and not rows:
        raise DataError(
            f"check: found nothing to check in {path}: no template modules (LinearModule, ...), CS231n "
            "layers (affine_forward, ...) or classes with forward/backward named by their kind"
        )
    root = np.random.SeedSequence(seed)
    for f, seq in zip(found, root.spawn(len(found)), strict=True):
        # the user's code draws from the global generators (np.random.randn in an __init__): seed them
        # too, from the same seed, so that a report is reproducible
        state = seq.generate_state(1)[0]
        np.random.seed(int(state))  # noqa: NPY002
        random.seed(int(state))
        report.rows += f.run(np.random.default_rng(seq))
    return report
