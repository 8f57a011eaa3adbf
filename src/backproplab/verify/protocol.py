"""One small view of a user's layer, whatever its format: what every verification tool talks to.

A :class:`LayerView` is a layer with ``forward(x)``, ``backward(dout) -> dx`` and named
parameters with their gradients (:class:`ParamRef`). Adapters turn the formats students write
into that view:

* this package's modules (:class:`backproplab.nn.Module`: ``named_parameters()`` of
  :class:`~backproplab.nn.Parameter`, ``.data`` / ``.grad``);
* the practical's template modules: ``params`` and ``grads`` dicts of plain arrays
  (``params["weight"]`` / ``grads["weight"]``), ``forward(x)`` / ``backward(dout)``;
* objects whose ``params`` is a dict or list of objects with ``.data`` and ``.grad``;
* CS231n-style functional layers: ``affine_forward(x, w, b) -> (out, cache)`` and
  ``affine_backward(dout, cache) -> (dx, dw, db)`` (:class:`FunctionalLayer`), with CS231n's
  ``(D, M)`` weight layout (the transpose of torch's ``(M, D)``);
* any object with ``forward`` / ``backward`` and a **parameter mapping**: ``{torch name: (value
  attribute, gradient attribute)}``, for example ``{"weight": ("W", "dW"), "bias": ("b", "db")}``
  (:data:`DEFAULT_PARAM_MAP` lists the attribute pairs tried when none is given).

A parameter is addressed as a (container, key) pair, never through a closure, so a deep copy of
a view copies the user's object and its parameter references together.

A :class:`LossView` is a loss with ``value_and_grad(scores, y) -> (loss, dscores)``, for the three
loss conventions: this package's losses (``loss(out, y)`` then ``backward(1.0)``), the template's
``CrossEntropyModule`` (``forward(x, y)`` / ``backward(x, y)`` on probabilities and one-hot
targets) and CS231n's ``softmax_loss(x, y) -> (loss, dx)`` on logits and index targets.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from backproplab.errors import ShapeError

#: (torch name, value attribute, gradient attribute) pairs tried on an object without a mapping.
DEFAULT_PARAM_MAP: tuple[tuple[str, str, str], ...] = (
    ("weight", "W", "dW"),
    ("weight", "w", "dw"),
    ("weight", "weight", "dweight"),
    ("weight", "weight", "grad_weight"),
    ("bias", "b", "db"),
    ("bias", "bias", "dbias"),
    ("bias", "bias", "grad_bias"),
    ("weight", "gamma", "dgamma"),
    ("bias", "beta", "dbeta"),
)

# Class-name fragments -> kind, checked in order (so "relu" wins over "elu", "layernorm" over "norm").
_NAME_KINDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("crossentropy", "cross_entropy", "softmaxloss", "softmax_loss", "nllloss", "withloss", "with_loss"),
        "loss",
    ),
    (("layernorm", "layer_norm"), "layernorm"),
    (("batchnorm", "batch_norm"), "batchnorm"),
    (("leakyrelu", "leaky"), "leaky_relu"),
    (("relu",), "relu"),
    (("selu", "gelu"), "other"),
    (("elu",), "elu"),
    (("softmax",), "softmax"),
    (("tanh",), "tanh"),
    (("sigmoid",), "sigmoid"),
    (("dropout",), "dropout"),
    (("maxpool", "max_pool"), "maxpool2d"),
    (("conv",), "conv2d"),
    (("linear", "affine", "dense", "fullyconnected", "fc"), "linear"),
    (("flatten",), "flatten"),
)


#: The kinds above that are element-wise non-linearities.
ACTIVATION_KINDS = ("elu", "relu", "leaky_relu", "tanh", "sigmoid")


def kind_from_name(name: str) -> str:
    """The layer kind a class or function name suggests ("other" when none does)."""
    low = name.lower().replace("module", "")
    for fragments, kind in _NAME_KINDS:
        if any(f in low for f in fragments):
            return kind
    return "other"


def source_of(obj: Any) -> str:
    """``file:line`` where ``obj`` (a function, method or class) is defined, or "" if unknown."""
    target = getattr(obj, "__func__", obj)
    try:
        file = inspect.getsourcefile(target) or ""
        line = inspect.getsourcelines(target)[1]
    except (TypeError, OSError):
        return ""
    return f"{file}:{line}"


# ---------------------------------------------------------------------------- parameters
@dataclass
class ParamRef:
    """One parameter of a user's layer: where its value and its gradient live.

    ``value_box[value_key]`` is the value array and ``grad_box[grad_key]`` the gradient (boxes are
    dicts or objects: the key is then an attribute name). ``torch_name`` is the name of the torch
    twin's parameter ("weight", "bias"); ``transposed`` says the user's layout is the transpose
    of torch's (CS231n's ``(D, M)`` affine weight).
    """

    name: str
    torch_name: str
    value_box: Any
    value_key: Any
    grad_box: Any
    grad_key: Any
    transposed: bool = False

    @staticmethod
    def _get(box: Any, key: Any) -> Any:
        if isinstance(box, (Mapping, list)):
            try:
                return box[key]
            except (KeyError, IndexError):
                return None
        return getattr(box, key, None)

    @staticmethod
    def _set(box: Any, key: Any, value: Any) -> None:
        if isinstance(box, (dict, list)):
            box[key] = value
        else:
            setattr(box, key, value)

    @property
    def value(self) -> np.ndarray:
        """The live value array (gradient checks perturb it in place)."""
        v = self._get(self.value_box, self.value_key)
        if not isinstance(v, np.ndarray):
            raise ShapeError(f"parameter {self.name} is {type(v).__name__}, expected a NumPy array")
        return v

    @property
    def data(self) -> np.ndarray:
        """The value, under the name of ``Parameter.data``."""
        return self.value

    @property
    def grad(self) -> np.ndarray | None:
        """The gradient the last backward wrote (None when it wrote none)."""
        g = self._get(self.grad_box, self.grad_key)
        return None if g is None else np.asarray(g)

    def assign(self, value: np.ndarray) -> None:
        """Set the value: in place when shape and dtype allow (other references see it), else rebind."""
        cur = self._get(self.value_box, self.value_key)
        if isinstance(cur, np.ndarray) and cur.shape == value.shape and cur.dtype == value.dtype:
            cur[...] = value
        else:
            self._set(self.value_box, self.value_key, np.array(value))

    def clear_grad(self) -> None:
        """Reset the gradient: zeros for an array gradient (the template's), None otherwise."""
        g = self._get(self.grad_box, self.grad_key)
        if isinstance(g, np.ndarray):
            self._set(self.grad_box, self.grad_key, np.zeros_like(self.value))
        elif g is not None or self.grad_box is not self.value_box:
            self._set(self.grad_box, self.grad_key, None)

    def torch_value(self) -> np.ndarray:
        """The value in torch's layout."""
        return self.value.T if self.transposed else self.value

    def torch_grad(self) -> np.ndarray | None:
        """The gradient in torch's layout."""
        g = self.grad
        return None if g is None else (g.T if self.transposed else g)


def params_of(
    obj: Any, param_map: Mapping[str, tuple[str, str]] | None = None, *, partial: bool = False
) -> list[ParamRef]:
    """The parameters of a user's layer object, by the conventions in the module docstring.

    With ``partial``, a mapped attribute the object lacks means it has no such parameter (a model's
    ReLU, a Linear without bias, under one mapping for the whole model); else it is an error.
    """
    if param_map is not None:
        refs = []
        for tname, (vattr, gattr) in param_map.items():
            value = getattr(obj, vattr, None)
            if value is None and partial:
                continue
            if not isinstance(value, np.ndarray):
                raise ShapeError(
                    f"{type(obj).__name__} has no array attribute {vattr!r} (mapped to {tname!r}), "
                    f"got {type(value).__name__}"
                )
            refs.append(ParamRef(vattr, tname, obj, vattr, obj, gattr))
        return refs
    named = getattr(obj, "named_parameters", None)
    if callable(named):
        return [ParamRef(n, n, p, "data", p, "grad") for n, p in named()]
    params = getattr(obj, "params", None)
    if isinstance(params, Mapping):
        grads = getattr(obj, "grads", None)
        refs = []
        for k, v in params.items():
            if isinstance(v, np.ndarray):
                box = grads if isinstance(grads, Mapping) else obj
                refs.append(ParamRef(f"params[{k!r}]", str(k), params, k, box, k))
            elif hasattr(v, "data") and hasattr(v, "grad"):
                refs.append(ParamRef(str(k), str(k), v, "data", v, "grad"))
        return refs
    if isinstance(params, (list, tuple)):
        return [
            ParamRef(f"params[{i}]", f"params[{i}]", p, "data", p, "grad")
            for i, p in enumerate(params)
            if hasattr(p, "data") and hasattr(p, "grad")
        ]
    refs = []
    seen: set[str] = set()
    # an entry whose gradient attribute exists wins (weight/grad_weight over weight/dweight), then any
    for need_grad in (True, False):
        for tname, vattr, gattr in DEFAULT_PARAM_MAP:
            if tname in seen or not isinstance(getattr(obj, vattr, None), np.ndarray):
                continue
            if need_grad and not hasattr(obj, gattr):
                continue
            refs.append(ParamRef(vattr, tname, obj, vattr, obj, gattr))
            seen.add(tname)
    return refs


# ---------------------------------------------------------------------------- layers
@dataclass
class LayerView:
    """A user's layer as the tools see it: forward, backward, parameters, kind and settings.

    ``config`` holds the settings a reference needs (``alpha`` of an ELU, ``eps`` of a norm,
    ``stride`` / ``pad`` of a convolution, ``p`` of a dropout). ``where`` is the user's
    ``file:line`` of the layer's definition.
    """

    name: str
    kind: str
    obj: Any
    params: list[ParamRef] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    where: str = ""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.obj.forward(x))

    def backward(self, dout: np.ndarray) -> Any:
        return self.obj.backward(dout)

    def zero_grad(self) -> None:
        for p in self.params:
            p.clear_grad()

    def method_where(self, method: str) -> str:
        """``file:line`` of one of the layer's methods ("forward", "backward"), else of the layer."""
        target = getattr(self.obj, f"{method}_fn", None) or getattr(
            self.obj, method, None
        )  # a functional layer's own
        return source_of(target) or self.where

    def param(self, torch_name: str) -> ParamRef | None:
        return next((p for p in self.params if p.torch_name == torch_name), None)


class _FunctionalState:
    """The arrays and last cache of a functional layer (the box its parameters live in)."""

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        self.params = params
        self.grads: dict[str, np.ndarray | None] = {k: None for k in params}
        self.cache: Any = None
        self.called = False


class FunctionalLayer:
    """A CS231n-style pair of functions as a layer object with ``forward`` / ``backward``.

    ``forward_fn(x, *params.values(), *extra) -> (out, cache)`` and ``backward_fn(dout, cache)
    -> dx`` or ``(dx, dparam1, dparam2, ...)`` in the order of ``params``.
    """

    def __init__(
        self,
        forward_fn: Callable[..., Any],
        backward_fn: Callable[..., Any],
        params: dict[str, np.ndarray] | None = None,
        extra: tuple[Any, ...] = (),
    ) -> None:
        self.forward_fn, self.backward_fn = forward_fn, backward_fn
        self.state = _FunctionalState(dict(params or {}))
        self.extra = extra

    @property
    def params(self) -> dict[str, np.ndarray]:
        return self.state.params

    @property
    def grads(self) -> dict[str, np.ndarray | None]:
        return self.state.grads

    def forward(self, x: np.ndarray) -> np.ndarray:
        result = self.forward_fn(x, *self.state.params.values(), *self.extra)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise ShapeError(
                f"{self.forward_fn.__name__} returned {type(result).__name__}, expected (out, cache)"
            )
        out, self.state.cache = result
        self.state.called = True
        return np.asarray(out)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if not self.state.called:
            raise RuntimeError(f"{self.backward_fn.__name__} called before {self.forward_fn.__name__}")
        result = self.backward_fn(dout, self.state.cache)
        names = list(self.state.params)
        if not isinstance(result, tuple):
            result = (result,)
        if len(result) != 1 + len(names):
            raise ShapeError(
                f"{self.backward_fn.__name__} returned {len(result)} values, expected {1 + len(names)} "
                f"(dx{''.join(', d' + n for n in names)})"
            )
        for n, g in zip(names, result[1:], strict=True):
            self.state.grads[n] = None if g is None else np.asarray(g)
        return np.asarray(result[0])


def functional_view(
    name: str,
    kind: str,
    forward_fn: Callable[..., Any],
    backward_fn: Callable[..., Any],
    params: dict[str, tuple[str, np.ndarray, bool]],
    extra: tuple[Any, ...] = (),
    config: dict[str, Any] | None = None,
) -> LayerView:
    """A :class:`LayerView` of a functional layer. ``params``: user name -> (torch name, value,
    transposed)."""
    layer = FunctionalLayer(forward_fn, backward_fn, {k: v for k, (_, v, _) in params.items()}, extra)
    refs = [
        ParamRef(k, tname, layer.state.params, k, layer.state.grads, k, transposed=tr)
        for k, (tname, _, tr) in params.items()
    ]
    return LayerView(name, kind, layer, refs, dict(config or {}), source_of(forward_fn))


def view_of(
    obj: Any,
    name: str | None = None,
    *,
    kind: str | None = None,
    param_map: Mapping[str, tuple[str, str]] | None = None,
    config: dict[str, Any] | None = None,
    partial_map: bool = False,
) -> LayerView:
    """The :class:`LayerView` of a layer object (any of the formats in the module docstring);
    ``partial_map`` as ``partial`` of :func:`params_of`."""
    if isinstance(obj, LayerView):
        return obj
    for attr in ("forward", "backward"):
        if not callable(getattr(obj, attr, None)):
            raise ShapeError(f"{type(obj).__name__} has no {attr}() method: it is not a layer")
    cls = type(obj)
    cfg = dict(config or {})
    for key in ("alpha", "eps", "p", "dim", "negative_slope", "momentum"):
        value = getattr(obj, key, None)
        if key not in cfg and isinstance(value, (int, float)) and not isinstance(value, bool):
            cfg[key] = value
    return LayerView(
        name or cls.__name__,
        kind or kind_from_name(cls.__name__),
        obj,
        params_of(obj, param_map, partial=partial_map),
        cfg,
        source_of(cls),
    )


def layers_of(model: Any) -> list[Any]:
    """The layer objects of a user's model, in forward order.

    The first list or tuple attribute whose items all have ``forward`` and ``backward`` (``layers``,
    ``modules``, ``net``, ...), or dict whose values all do (an ``OrderedDict`` of named layers, in
    insertion order); else the attributes that are layers, in assignment order. A loss
    (a ``backward`` that takes two arguments besides self, or a name that says so) is left out.
    """

    def is_layer(v: Any) -> bool:
        return callable(getattr(v, "forward", None)) and callable(getattr(v, "backward", None))

    def is_loss(v: Any) -> bool:
        if kind_from_name(type(v).__name__) == "loss":
            return True
        try:
            return len(inspect.signature(v.backward).parameters) >= 2
        except (TypeError, ValueError):
            return False

    attrs = vars(model) if hasattr(model, "__dict__") else {}
    for value in attrs.values():
        items = list(value.values()) if isinstance(value, Mapping) else value
        if isinstance(items, (list, tuple)) and items and all(is_layer(v) for v in items):
            return [v for v in items if not is_loss(v)]
    return [v for v in attrs.values() if is_layer(v) and not is_loss(v)]


# ---------------------------------------------------------------------------- losses
@dataclass
class LossView:
    """A user's loss: ``value_and_grad(scores, y) -> (loss, dscores)``.

    ``on`` is "logits" or "probabilities" (what the loss takes), ``targets`` "index" or "onehot".
    """

    name: str
    fn: Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]
    on: str
    targets: str
    where: str = ""
    obj: Any = None

    def method_where(self, method: str) -> str:
        """``file:line`` of the loss's ``forward`` or ``backward`` (a function's own line)."""
        target = getattr(self.obj, method, None) if not inspect.isfunction(self.obj) else self.obj
        return source_of(target) or self.where

    def value_and_grad(self, scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad = self.fn(scores, self.prepare_targets(y, scores.shape[-1]))
        return float(np.asarray(loss)), np.asarray(grad)

    def prepare_targets(self, y: np.ndarray, num_classes: int) -> np.ndarray:
        """Index targets as this loss wants them (one-hot float64 for ``targets == "onehot"``)."""
        y = np.asarray(y)
        if self.targets == "onehot" and y.ndim == 1:
            out = np.zeros((len(y), num_classes))
            out[np.arange(len(y)), y] = 1.0
            return out
        return y


def template_loss_view(obj: Any, name: str | None = None) -> LossView:
    """The template's ``CrossEntropyModule``: ``forward(x, y)`` / ``backward(x, y)``, probabilities
    and one-hot targets."""

    def fn(p: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
        return obj.forward(p, t), obj.backward(p, t)

    return LossView(name or type(obj).__name__, fn, "probabilities", "onehot", source_of(type(obj)), obj)


#: Names of a loss's ``backward`` argument that is the upstream gradient (called with 1.0).
UPSTREAM_ARG_NAMES = ("dout", "grad", "dloss", "upstream", "g", "grad_output", "dy", "dl")


def required_args(fn: Callable[..., Any]) -> list[inspect.Parameter] | None:
    """The positional parameters of ``fn`` without a default (None when they cannot be told)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [q for q in params if q.default is inspect.Parameter.empty and q.kind in positional]


def stateful_loss_view(obj: Any, on: str = "logits", targets: str = "index") -> LossView:
    """A loss object with ``forward(scores, y) -> loss`` and a ``backward`` that uses what forward
    cached: ``backward()``, ``backward(dout)`` (called with 1.0) or ``backward(y)``."""
    required = required_args(obj.backward) or []

    def fn(x: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
        value = obj.forward(x, t)
        if not required:
            return value, obj.backward()
        return value, obj.backward(1.0 if required[0].name.lower() in UPSTREAM_ARG_NAMES else t)

    return LossView(type(obj).__name__, fn, on, targets, source_of(type(obj)), obj)


def loss_view_of(obj: Any, on: str | None = None) -> LossView:
    """The :class:`LossView` of a loss object with ``forward`` and ``backward``: the template's
    convention when ``backward`` takes two arguments (``backward(x, y)``, probabilities and one-hot
    targets), else a loss whose ``backward`` uses what ``forward(scores, y)`` cached (logits and
    index targets). ``on`` overrides what the scores are."""
    required = required_args(obj.backward)
    view = template_loss_view(obj) if required is not None and len(required) >= 2 else stateful_loss_view(obj)
    return view if on is None else replace(view, on=on)


def functional_loss_view(fn: Callable[..., Any], on: str = "logits", targets: str = "index") -> LossView:
    """CS231n's ``softmax_loss(x, y) -> (loss, dx)``."""

    def call(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        result = fn(x, y)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise ShapeError(f"{fn.__name__} returned {type(result).__name__}, expected (loss, dx)")
        return result[0], result[1]

    return LossView(fn.__name__, call, on, targets, source_of(fn), fn)


def module_loss_view(loss: Any, on: str = "logits") -> LossView:
    """This package's losses: ``loss(out, y)`` then ``loss.backward(1.0)``."""

    def fn(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        value = loss(x, y)
        return float(value), loss.backward(1.0)

    return LossView(type(loss).__name__, fn, on, "index", source_of(type(loss)), loss)


# ---------------------------------------------------------------------------- models
@dataclass
class LayerRecord:
    """What one layer saw in one forward and backward pass of a model (copies, first call)."""

    input: np.ndarray | None = None
    output: np.ndarray | None = None
    grad_output: np.ndarray | None = None
    grad_input: np.ndarray | None = None


@dataclass
class ModelView:
    """A user's model as its layers in forward order.

    ``forward`` / ``backward`` call the model's own methods when it has them (its own chaining is
    part of what is checked), else chain the layers.
    """

    name: str
    obj: Any
    layers: list[LayerView]

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.obj is not None and callable(getattr(self.obj, "forward", None)):
            return np.asarray(self.obj.forward(x))
        for layer in self.layers:
            x = layer.forward(x)
        return np.asarray(x)

    def backward(self, dout: np.ndarray) -> Any:
        if self.obj is not None and callable(getattr(self.obj, "backward", None)):
            return self.obj.backward(dout)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def zero_grad(self) -> None:
        for layer in self.layers:
            layer.zero_grad()

    def named_params(self) -> list[tuple[str, ParamRef]]:
        """(``<layer index>.<torch name>``, parameter): the keys of a ``Sequential`` twin."""
        return [(f"{i}.{p.torch_name}", p) for i, layer in enumerate(self.layers) for p in layer.params]

    def record(self) -> _Recording:
        """A context manager recording every layer's arrays (see :class:`LayerRecord`)."""
        return _Recording(self)


class _Recording:
    """Wraps each layer object's forward/backward on the instance while the block runs."""

    def __init__(self, model: ModelView) -> None:
        self.model = model
        self.records = [LayerRecord() for _ in model.layers]
        self._saved: list[tuple[Any, dict[str, Any]]] = []

    def __enter__(self) -> list[LayerRecord]:
        for layer, rec in zip(self.model.layers, self.records, strict=True):
            obj = layer.obj
            own = {k: obj.__dict__[k] for k in ("forward", "backward") if k in vars(obj)}
            self._saved.append((obj, own))
            fwd, bwd = obj.forward, obj.backward

            def forward(x: Any, *a: Any, _f: Any = fwd, _r: LayerRecord = rec, **k: Any) -> Any:
                first = _r.input is None
                # copied before a forward that writes into x
                x_in = np.array(x, dtype=np.float64) if first else None
                out = _f(x, *a, **k)
                if first:
                    _r.input, _r.output = x_in, np.array(out, dtype=np.float64)
                return out

            def backward(g: Any, *a: Any, _b: Any = bwd, _r: LayerRecord = rec, **k: Any) -> Any:
                first = _r.grad_output is None
                # copied before a backward that writes into g
                g_in = np.array(g, dtype=np.float64) if first else None
                dx = _b(g, *a, **k)
                if first:
                    _r.grad_output = g_in
                    _r.grad_input = None if dx is None else np.array(dx, dtype=np.float64)
                return dx

            obj.forward, obj.backward = forward, backward
        return self.records

    def __exit__(self, *exc: Any) -> None:
        for obj, own in self._saved:
            for k in ("forward", "backward"):
                if k in own:
                    setattr(obj, k, own[k])
                else:
                    vars(obj).pop(k, None)


def model_view(model: Any, layers: list[Any] | None = None, name: str | None = None, **kw: Any) -> ModelView:
    """The :class:`ModelView` of a user's model: its layers from ``layers`` or :func:`layers_of`;
    ``kw`` (``param_map``) goes to :func:`view_of` for each layer, as a mapping for the whole
    model (a layer without the mapped attributes has no such parameter)."""
    objs = layers if layers is not None else layers_of(model)
    views = [
        view_of(o, f"layers[{i}] ({type(o).__name__})", partial_map=True, **kw) for i, o in enumerate(objs)
    ]
    return ModelView(name or type(model).__name__, model, views)
