"""``Module`` and ``Sequential``: the contract every NumPy layer follows.

The contract mirrors ``torch.nn.Module`` where it can:

* parameters and sub-modules assigned as attributes are registered in order, so
  ``named_parameters()`` yields torch-style dotted names (``layers.0.weight``) and
  ``state_dict()`` has the keys ``torch.nn`` would give the same architecture;
* buffers (for example BatchNorm's running statistics) are saved in the state dict too;
* ``forward(x)`` computes the output and caches exactly what ``backward`` needs (nothing inside
  :func:`~backproplab.nn.no_grad`); ``backward(dout)`` accumulates into the parameters' ``grad``
  and returns the gradient with respect to the input. The cache is released by backward, like
  PyTorch's graph without ``retain_graph``, so a backward without a forward before it raises
  :class:`RuntimeError` naming the module. ``dout`` must have the shape of the output that forward
  returned; any other shape is a :class:`~backproplab.errors.ShapeError` naming the expected and the
  actual shape, as a wrong input to forward is (:func:`check_dout`, :func:`check_input`);
* layers with parameters have ``reset_parameters(rng)``, which (re)draws them from the explicit
  ``np.random.Generator`` with the layer's init (PyTorch's default unless told otherwise);
  ``__init__`` calls it, so each weight is drawn once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from backproplab.errors import ShapeError, StateDictKeyError
from backproplab.nn.grad_mode import is_grad_enabled
from backproplab.nn.parameter import Parameter


class Module:
    """Base class of the NumPy layers and models (see the module docstring for the contract)."""

    training: bool
    _parameters: OrderedDict[str, Parameter]
    _buffers: OrderedDict[str, np.ndarray]
    _modules: OrderedDict[str, Module]
    _cache: tuple[Any, ...] | None

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_cache", None)
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        for registry in (self._parameters, self._modules, self._buffers):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """Register a non-trainable array that belongs to the state dict (running statistics)."""
        object.__setattr__(self, name, value)
        self._buffers[name] = value

    def _set_buffer(self, name: str, value: np.ndarray) -> None:
        object.__setattr__(self, name, value)
        self._buffers[name] = value

    # ------------------------------------------------------------------ forward / backward
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dout: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def _save_for_backward(self, *values: Any) -> None:
        """Cache what backward needs; nothing is kept inside ``no_grad``."""
        object.__setattr__(self, "_cache", values if is_grad_enabled() else None)

    def _saved(self) -> tuple[Any, ...]:
        """Return and release the cache of the last forward; a clear error if there is none."""
        cache = self._cache
        if cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward called without a forward pass to go with it "
                "(forward first, outside no_grad; each forward supports one backward)"
            )
        object.__setattr__(self, "_cache", None)
        return cache

    # ------------------------------------------------------------------ traversal
    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for mod_name, mod in self.named_modules(prefix):
            for name, p in mod._parameters.items():
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for mod_name, mod in self.named_modules(prefix):
            for name, b in mod._buffers.items():
                yield (f"{mod_name}.{name}" if mod_name else name), b

    # ------------------------------------------------------------------ state
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of all parameters and buffers, in registration order, under torch's key names."""
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        for mod_name, mod in self.named_modules():
            for name, p in mod._parameters.items():
                out[f"{mod_name}.{name}" if mod_name else name] = p.data.copy()
            for name, b in mod._buffers.items():
                out[f"{mod_name}.{name}" if mod_name else name] = np.array(b, copy=True)
        return out

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None:
        """Copy arrays from ``state`` into this module's parameters and buffers.

        Values may be NumPy arrays or anything ``np.asarray`` takes (torch CPU tensors included).
        They are cast to each parameter's dtype. With ``strict`` (the default), missing and
        unexpected keys are a :class:`~backproplab.errors.StateDictKeyError` (a ``KeyError``); a shape
        mismatch is always a :class:`~backproplab.errors.ShapeError`. Nothing is changed unless
        every key checks out.
        """
        targets: dict[str, tuple[Module, str, bool]] = {}
        for mod_name, mod in self.named_modules():
            for name in mod._parameters:
                targets[f"{mod_name}.{name}" if mod_name else name] = (mod, name, True)
            for name in mod._buffers:
                targets[f"{mod_name}.{name}" if mod_name else name] = (mod, name, False)
        missing = [k for k in targets if k not in state]
        unexpected = [k for k in state if k not in targets]
        if strict and (missing or unexpected):
            raise StateDictKeyError(
                f"load_state_dict for {type(self).__name__}: missing keys {missing}, unexpected keys {unexpected}"
            )
        staged = []
        for key, (mod, name, is_param) in targets.items():
            if key not in state:
                continue
            value = state[key]
            if hasattr(value, "detach"):
                value = value.detach().cpu().numpy()
            arr = np.asarray(value)
            current = mod._parameters[name].data if is_param else mod._buffers[name]
            if arr.shape != current.shape:
                raise ShapeError(
                    f"load_state_dict: {key} expects shape {current.shape}, the state dict has {arr.shape}"
                )
            staged.append((mod, name, is_param, arr.astype(current.dtype, copy=True)))
        for mod, name, is_param, arr in staged:
            if is_param:
                mod._parameters[name].data = arr
            else:
                mod._set_buffer(name, arr)

    def zero_grad(self) -> None:
        """Reset every parameter's grad to None (PyTorch's default ``set_to_none=True``)."""
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def to(self, dtype: np.dtype | type) -> Module:
        """Cast parameters, their grads and floating buffers to ``dtype`` in place; returns self."""
        dt = np.dtype(dtype)
        for m in self.modules():
            for p in m._parameters.values():
                p.data = p.data.astype(dt)
                p.grad = None if p.grad is None else p.grad.astype(dt)
            for name, b in list(m._buffers.items()):
                if np.issubdtype(b.dtype, np.floating):
                    m._set_buffer(name, b.astype(dt))
        return self

    def double(self) -> Module:
        return self.to(np.float64)

    def float(self) -> Module:
        return self.to(np.float32)

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the first parameter (float32 for a module without parameters)."""
        for p in self.parameters():
            return p.data.dtype
        return np.dtype(np.float32)

    # ------------------------------------------------------------------ repr
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): " + repr(child).replace("\n", "\n  ") for name, child in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


class Sequential(Module):
    """Modules applied in order; children are named ``0``, ``1``, ... as in ``torch.nn.Sequential``.

    ``backward`` runs the children's backward passes in reverse order.
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential takes Modules, got {type(m).__name__} at position {i}")
            setattr(self, str(i), m)

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, m: Module) -> Sequential:
        setattr(self, str(len(self)), m)
        return self

    def forward(self, x: Any) -> Any:
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, dout: Any) -> Any:
        for m in reversed(self._modules.values()):
            dout = m.backward(dout)
        return dout


def check_dout(module: Module, dout: Any, expected: tuple[int, ...]) -> None:
    """Raise :class:`ShapeError` unless ``dout`` is an array of ``expected`` shape (that of the output the
    last forward returned), naming the module, the expected and the actual shape."""
    shape = getattr(dout, "shape", None)
    if not isinstance(dout, np.ndarray) or shape != tuple(expected):
        got = f"shape {shape}" if shape is not None else f"a {type(dout).__name__}"
        raise ShapeError(
            f"{type(module).__name__}.backward expects dout of shape {tuple(expected)} (the output's), got {got}"
        )


def check_input(module: Module, x: np.ndarray, ndim: int | Iterable[int], dim_sizes: dict[int, int]) -> None:
    """Raise :class:`ShapeError` unless ``x`` is an array of the module's dtype and expected shape.

    ``ndim`` is the accepted number(s) of dimensions; ``dim_sizes`` maps an axis to its required size.
    """
    name = type(module).__name__
    if not isinstance(x, np.ndarray):
        raise ShapeError(f"{name} expects a NumPy array, got {type(x).__name__}")
    ndims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if x.ndim not in ndims:
        want = " or ".join(str(n) for n in ndims)
        raise ShapeError(f"{name} expects a {want}-D input, got shape {x.shape}")
    for axis, size in dim_sizes.items():
        if x.shape[axis] != size:
            raise ShapeError(
                f"{name} expects size {size} in dimension {axis % x.ndim}, got input shape {x.shape}"
            )
    if not np.issubdtype(x.dtype, np.floating):
        raise ShapeError(f"{name} expects a floating-point input, got dtype {x.dtype}")
    params = list(module.parameters())
    dt = params[0].data.dtype if params else x.dtype
    if x.dtype != dt:
        raise ShapeError(
            f"{name} has {dt} parameters but got a {x.dtype} input (cast with .astype or module.to)"
        )
