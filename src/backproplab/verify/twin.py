"""The PyTorch twin of a NumPy module tree, built from a registry of one entry per layer type.

``build_twin(model)`` walks the NumPy model (a :class:`~backproplab.nn.Module` tree) and builds
the ``torch.nn`` module of the same architecture, with the same attribute names, so the two
state dicts have the same keys (``layers.0.weight``, ...). It then copies the NumPy weights and
buffers into the twin through ``load_state_dict`` (no transposes: the NumPy engine keeps
torch's layouts, e.g. a Linear weight is (out_features, in_features)) and casts the twin to the
NumPy model's dtype (float32 -> torch.float32, float64 -> torch.float64).

The registry (:data:`TWINS`) maps a NumPy class, by its import path
(``"backproplab.nn.linear.Linear"``), to a builder ``(numpy_module, build_child) -> torch
module``. Lookup walks the class's MRO, so a subclass (a student's layer, or a test's layer with
a planted bug) gets its base class's twin: the twin is the *reference* implementation. Entries
are keyed by import path so that a layer whose module does not exist yet costs nothing; adding
a layer type is one :func:`register_twin` call. Built-in entries:

=====================  =============================================
NumPy                  torch
=====================  =============================================
Linear                 nn.Linear(in_features, out_features, bias)
ELU(alpha)             nn.ELU(alpha)
ReLU, Tanh             nn.ReLU(), nn.Tanh()
Softmax(dim)           nn.Softmax(dim)
Flatten(start, end)    nn.Flatten(start, end)
LayerNorm(shape, eps)  nn.LayerNorm(shape, eps)
Sequential             nn.Sequential (children twinned in order)
MLP                    TorchMLP whose ``layers`` is the twin of ``layers``
Conv2d                 nn.Conv2d(in, out, kernel_size, stride, padding, bias)
BatchNorm1d/2d         nn.BatchNorm1d/2d(num_features, eps, momentum, affine, ...)
MaxPool2d              nn.MaxPool2d(kernel_size, stride, padding)
AdaptiveAvgPool2d      nn.AdaptiveAvgPool2d(output_size)
Dropout(p)             nn.Dropout(p) (its random masks differ: compare in eval mode)
Residual(inner)        TorchResidual(twin of inner): x + inner(x)
PreActBlock, ConvNet   torch_models' PreActBlock and ConvNet (same attribute names)
=====================  =============================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
import torch
from torch import nn as tnn

from backproplab.errors import BackproplabError
from backproplab.nn.module import Module

#: ``(numpy_module, build_child) -> torch module``; ``build_child`` twins a sub-module.
TwinBuilder = Callable[[Module, Callable[[Module], tnn.Module]], tnn.Module]

#: NumPy class import path -> builder of its torch twin.
TWINS: dict[str, TwinBuilder] = {}

#: Buffers torch keeps that the NumPy engine need not (filled by torch itself).
TORCH_ONLY_BUFFERS = ("num_batches_tracked",)

_TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


class TwinError(BackproplabError, TypeError):
    """The NumPy model has a layer without a registered twin, or the weights do not fit the twin."""


def class_path(cls: type) -> str:
    """``"package.module.QualName"``: the registry key of a class."""
    return f"{cls.__module__}.{cls.__qualname__}"


def register_twin(numpy_class: type | str, builder: TwinBuilder) -> None:
    """Register ``builder`` as the twin of ``numpy_class`` (a class or its import path)."""
    TWINS[numpy_class if isinstance(numpy_class, str) else class_path(numpy_class)] = builder


def find_builder(module: Module) -> TwinBuilder | None:
    """The builder registered for the module's class or its nearest registered base class."""
    for cls in type(module).__mro__:
        builder = TWINS.get(class_path(cls))
        if builder is not None:
            return builder
    return None


def torch_dtype(dtype: np.dtype) -> torch.dtype:
    """torch.float32 or torch.float64 for the NumPy dtype of the same name."""
    try:
        return _TORCH_DTYPES[np.dtype(dtype)]
    except KeyError:
        raise TwinError(f"a twin needs float32 or float64 parameters, the NumPy model has {dtype}") from None


def _build(module: Module, path: str = "") -> tnn.Module:
    builder = find_builder(module)
    if builder is None:
        where = f" at '{path}'" if path else ""
        raise TwinError(
            f"no PyTorch twin registered for {type(module).__name__}{where}; register one with "
            f"backproplab.verify.twin.register_twin({type(module).__name__}, builder), or pass torch_model"
        )
    names = {id(c): n for n, c in vars(module)["_modules"].items()}

    def build_child(child: Module) -> tnn.Module:
        name = names.get(id(child), "?")
        return _build(child, f"{path}.{name}" if path else name)

    return builder(module, build_child)


def copy_weights(numpy_model: Module, twin: tnn.Module) -> None:
    """Load the NumPy model's parameters and buffers into ``twin`` (keys must match exactly).

    Keys torch keeps for itself (:data:`TORCH_ONLY_BUFFERS`) may be missing on the NumPy side;
    any other missing or unexpected key, or a shape mismatch, is a :class:`TwinError`.
    """
    state = numpy_model.state_dict()
    target = twin.state_dict()
    missing = [k for k in target if k not in state and k.rsplit(".", 1)[-1] not in TORCH_ONLY_BUFFERS]
    unexpected = [k for k in state if k not in target]
    if missing or unexpected:
        raise TwinError(f"twin state dict does not match: missing {missing}, unexpected {unexpected}")
    loaded = {}
    for key, value in state.items():
        if tuple(target[key].shape) != value.shape:
            raise TwinError(
                f"twin parameter {key} has shape {tuple(target[key].shape)}, the NumPy model has "
                f"{value.shape}"
            )
        loaded[key] = torch.from_numpy(np.array(value, copy=True)).to(target[key].dtype)
    twin.load_state_dict(loaded, strict=False)


def build_twin(numpy_model: Module, *, load_weights: bool = True) -> tnn.Module:
    """The torch twin of ``numpy_model`` with its weights (see the module docstring).

    The twin is in the NumPy model's dtype and in the same train/eval mode.
    """
    twin = _build(numpy_model)
    twin.to(torch_dtype(numpy_model.dtype))
    if load_weights:
        copy_weights(numpy_model, twin)
    twin.train(numpy_model.training)
    return twin


# ---------------------------------------------------------------------------- built-in entries
def _linear(m: Module, _: Callable[[Module], tnn.Module]) -> tnn.Module:
    return tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None)  # type: ignore[attr-defined]


def _sequential(m: Module, build: Callable[[Module], tnn.Module]) -> tnn.Module:
    return tnn.Sequential(*(build(child) for child in m.children()))


def _mlp(m: Module, build: Callable[[Module], tnn.Module]) -> tnn.Module:
    from backproplab.torch_models.mlp import TorchMLP

    twin = TorchMLP(m.n_inputs, [], m.n_classes)  # type: ignore[attr-defined]
    twin.layers = cast(tnn.Sequential, build(m.layers))  # type: ignore[attr-defined]
    return twin


def _conv2d(m: Module, _: Callable[[Module], tnn.Module]) -> tnn.Module:
    return tnn.Conv2d(
        m.in_channels,  # type: ignore[attr-defined]
        m.out_channels,  # type: ignore[attr-defined]
        m.kernel_size,  # type: ignore[attr-defined]
        stride=getattr(m, "stride", 1),
        padding=getattr(m, "padding", 0),
        bias=getattr(m, "bias", None) is not None,
    )


def _batchnorm(cls: type[tnn.Module]) -> TwinBuilder:
    def build(m: Module, _: Callable[[Module], tnn.Module]) -> tnn.Module:
        return cls(
            m.num_features,  # type: ignore[attr-defined]
            eps=m.eps,  # type: ignore[attr-defined]
            momentum=m.momentum,  # type: ignore[attr-defined]
            affine=m.affine,  # type: ignore[attr-defined]
            track_running_stats=m.track_running_stats,  # type: ignore[attr-defined]
        )

    return build


class TorchResidual(tnn.Module):
    """Y = X + inner(X): the twin of :class:`backproplab.nn.residual.Residual`."""

    def __init__(self, inner: tnn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner(x)


def _residual(m: Module, build: Callable[[Module], tnn.Module]) -> tnn.Module:
    if "inner" not in vars(m)["_modules"]:  # a subclass with its own branch needs its own entry
        raise TwinError(
            f"no PyTorch twin registered for {type(m).__name__} (a Residual with a custom branch)"
        )
    return TorchResidual(build(m.inner))  # type: ignore[attr-defined]


def _convnet(m: Module, _: Callable[[Module], tnn.Module]) -> tnn.Module:
    from backproplab.torch_models.convnet import ConvNet

    return ConvNet(m.n_channels, m.n_classes)  # type: ignore[attr-defined]


def _preact_block(m: Module, _: Callable[[Module], tnn.Module]) -> tnn.Module:
    from backproplab.torch_models.convnet import PreActBlock

    return PreActBlock(m.bn.num_features)  # type: ignore[attr-defined]


def _maxpool2d(m: Module, _: Callable[[Module], tnn.Module]) -> tnn.Module:
    return tnn.MaxPool2d(m.kernel_size, stride=getattr(m, "stride", None), padding=getattr(m, "padding", 0))  # type: ignore[attr-defined]


register_twin("backproplab.nn.linear.Linear", _linear)
register_twin("backproplab.nn.activations.ELU", lambda m, _: tnn.ELU(alpha=m.alpha))  # type: ignore[attr-defined]
register_twin("backproplab.nn.activations.ReLU", lambda m, _: tnn.ReLU())
register_twin("backproplab.nn.activations.Tanh", lambda m, _: tnn.Tanh())
register_twin("backproplab.nn.softmax.Softmax", lambda m, _: tnn.Softmax(dim=m.dim))  # type: ignore[attr-defined]
register_twin("backproplab.nn.flatten.Flatten", lambda m, _: tnn.Flatten(m.start_dim, m.end_dim))  # type: ignore[attr-defined]
register_twin(
    "backproplab.nn.layernorm.LayerNorm",
    lambda m, _: tnn.LayerNorm(m.normalized_shape, eps=m.eps),  # type: ignore[attr-defined]
)
register_twin("backproplab.nn.module.Sequential", _sequential)
register_twin("backproplab.nn.mlp.MLP", _mlp)
register_twin("backproplab.nn.conv.Conv2d", _conv2d)
register_twin("backproplab.nn.batchnorm.BatchNorm1d", _batchnorm(tnn.BatchNorm1d))
register_twin("backproplab.nn.batchnorm.BatchNorm2d", _batchnorm(tnn.BatchNorm2d))
register_twin("backproplab.nn.pooling.MaxPool2d", _maxpool2d)
register_twin("backproplab.nn.pooling.AdaptiveAvgPool2d", lambda m, _: tnn.AdaptiveAvgPool2d(m.output_size))  # type: ignore[attr-defined]
register_twin("backproplab.nn.dropout.Dropout", lambda m, _: tnn.Dropout(m.p))  # type: ignore[attr-defined]
register_twin("backproplab.nn.residual.Residual", _residual)
register_twin("backproplab.nn.convnet.PreActBlock", _preact_block)
register_twin("backproplab.nn.convnet.ConvNet", _convnet)


# ---------------------------------------------------------------------------- shared dropout masks
class FixedMaskDropout(tnn.Module):
    """Y = X * keep / (1 - p) with a given 0/1 ``keep`` mask: torch's Dropout with the NumPy layer's
    own mask, so both sides drop the same elements (their random streams differ)."""

    keep: torch.Tensor

    def __init__(self, keep: np.ndarray, p: float) -> None:
        super().__init__()
        self.p = float(p)
        self.register_buffer("keep", torch.from_numpy(np.ascontiguousarray(keep, dtype=np.float64)))

    def set_keep(self, keep: np.ndarray) -> None:
        """Use another mask from now on (the NumPy layer's mask of the next pass)."""
        self.keep = torch.from_numpy(np.ascontiguousarray(keep, dtype=np.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape) != tuple(self.keep.shape):
            raise TwinError(
                f"FixedMaskDropout: mask of shape {tuple(self.keep.shape)}, input {tuple(x.shape)}"
            )
        scale = 0.0 if self.p >= 1.0 else 1.0 / (1.0 - self.p)
        return x * (self.keep.to(x.dtype) * scale)


def is_random_dropout(module: tnn.Module) -> bool:
    """A torch dropout layer that draws a random mask (training mode, 0 < p)."""
    return isinstance(module, tnn.modules.dropout._DropoutNd) and module.training and module.p > 0


def replace_module(root: tnn.Module, name: str, new: tnn.Module) -> None:
    """Put ``new`` at the dotted path ``name`` of ``root`` (a sub-module, not the root itself)."""
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, new)
