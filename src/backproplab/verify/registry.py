"""The gradient-check cases of the built-in modules: a module factory and an input factory each.

Covering a new module is one entry in :data:`CASES` (or a call to :func:`register`)::

    GradcheckCase("Conv2d(k=3)", "Conv2d",
                  lambda rng: randomized(nn.Conv2d(3, 4, 3, rng=rng), rng),
                  lambda rng: rng.normal(size=(2, 3, 5, 5)))

Conventions every case follows, so that a "good" verdict means something:

* every parameter is random (:func:`randomized`), never gamma = 1 or a zero bias, which would
  hide a backward that forgets a factor or a term;
* inputs stay away from kinks by :data:`KINK_MARGIN` (much more than the check's eps): ReLU and
  ELU inputs avoid |x| < KINK_MARGIN (:func:`away_from_zero`), max-pooling inputs have no ties
  (:func:`without_ties`);
* a forward pass must be a deterministic function of input and parameters; a module that draws
  random numbers (dropout) reseeds its generator in ``before_forward``.

Each case gets its own generator from (seed, case name) (:func:`case_rng`), so ``--module X
--seed S`` reproduces exactly what the full run printed for X.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from backproplab import nn
from backproplab.errors import ConfigError
from backproplab.nn.conv import TRANSPOSED_MIN_CHANNELS
from backproplab.nn.softmax import softmax
from backproplab.verify.gradcheck import DEFAULT_EPS, GradcheckReport, gradcheck

#: Distance kept between an input and a kink (ReLU/ELU at 0, ties of a max): >> eps = 1e-6.
KINK_MARGIN = 1e-3
#: Standard deviation of the random parameters: O(1) values exercise every term of a backward.
PARAM_STD = 0.5
#: Input scale of the many-channel Conv2d case (see there).
SMALL_INPUT_STD = 0.1
#: Seed of the dropout mask, redrawn identically before every forward of a Dropout case.
DROPOUT_MASK_SEED = 12345


@dataclass(frozen=True)
class GradcheckCase:
    """One module configuration to check.

    ``name`` is unique (it is printed, and seeds the case's generator); ``module`` is the class
    name that ``backproplab gradcheck --module`` selects. ``make_target`` is given for losses
    (forward(scores, target) -> scalar). ``before_forward(module)`` runs before every forward.
    ``only_params`` limits the parameters checked (a large model); a ``slow`` case runs only when
    its module is selected by name.
    """

    name: str
    module: str
    make_module: Callable[[np.random.Generator], Any]
    make_input: Callable[[np.random.Generator], np.ndarray]
    make_target: Callable[[np.random.Generator], np.ndarray] | None = None
    before_forward: Callable[[Any], None] | None = None
    only_params: tuple[str, ...] | None = None
    slow: bool = False


# ----------------------------------------------------------------------------- helpers for factories
def randomized(module: nn.Module, rng: np.random.Generator, std: float = PARAM_STD) -> nn.Module:
    """Fill every parameter of ``module`` with N(0, std^2) draws from ``rng``; returns the module."""
    for p in module.parameters():
        p.data[...] = rng.normal(0.0, std, size=p.shape)
    return module


def randomized_constants(module: nn.Module, rng: np.random.Generator, std: float = PARAM_STD) -> nn.Module:
    """Replace every constant-initialised parameter (a BatchNorm gamma of ones, a zero bias) with
    N(c, std^2) draws around its constant c; random ones (conv weights) are kept. Returns the module."""
    for p in module.parameters():
        if p.data.size and np.all(p.data == p.data.flat[0]):
            p.data[...] = rng.normal(float(p.data.flat[0]), std, size=p.shape)
    return module


def with_running_stats(module: nn.Module, rng: np.random.Generator) -> nn.Module:
    """Random running statistics (mean N(0, 1), variance U(0.5, 2)) for every BatchNorm inside
    ``module``, which is put in eval mode (the statistics are then constants of the forward)."""
    for name, buf in module.named_buffers():  # the registered arrays themselves: filled in place
        if name.endswith("running_mean"):
            buf[...] = rng.normal(size=buf.shape)
        elif name.endswith("running_var"):
            buf[...] = rng.uniform(0.5, 2.0, size=buf.shape)
    return module.eval()


def reseed_dropout(module: Any) -> None:
    """``before_forward`` of a Dropout case: every forward draws the same mask."""
    module.rng = np.random.default_rng(DROPOUT_MASK_SEED)


def away_from_zero(
    rng: np.random.Generator, shape: tuple[int, ...], margin: float = KINK_MARGIN
) -> np.ndarray:
    """N(0, 1) draws pushed out of (-margin, margin): x -> sign(x) (|x| + margin).

    With two or more elements the first is made positive and the second negative, so both sides
    of the kink at 0 are always exercised.
    """
    x = rng.normal(size=shape)
    x = np.where(x < 0, -1.0, 1.0) * (np.abs(x) + margin)  # |x| >= margin everywhere
    if x.size >= 2:
        x.flat[0], x.flat[1] = abs(x.flat[0]), -abs(x.flat[1])
    return x


def without_ties(
    rng: np.random.Generator, shape: tuple[int, ...], gap: float = 10 * KINK_MARGIN
) -> np.ndarray:
    """Distinct values at least ``gap`` apart, in random order (inputs of a max with no ties)."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n / 2) * gap).reshape(shape)  # a shuffled arithmetic sequence


def probabilities(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    """(n, c) rows of softmax(N(0, 1)): probabilities well away from 0, the input of CrossEntropy."""
    return softmax(rng.normal(size=(n, c)), 1)


def index_targets(n: int, c: int) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: rng.integers(0, c, size=n)


def onehot_targets(n: int, c: int) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: np.eye(c)[rng.integers(0, c, size=n)]


def soft_targets(n: int, c: int) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: rng.dirichlet(np.ones(c), size=n)


def _normal(*shape: int) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: rng.normal(size=shape)


def _convnet_eval(rng: np.random.Generator) -> nn.Module:
    # eval mode: in training, the last BatchNorms see N values per channel (1x1 maps), and with a
    # batch small enough to check in seconds their output is nearly constant (+-1), so central
    # differences are ill-conditioned; BatchNorm's training mode is checked by its own cases.
    return with_running_stats(randomized_constants(nn.ConvNet(3, 10, rng=rng), rng), rng)


def _mlp(n_hidden: list[int], activation: str) -> Callable[[np.random.Generator], Any]:
    return lambda rng: randomized(
        nn.MLP(4, n_hidden, 3, activation=activation, rng=rng, dtype=np.float64), rng
    )


# ------------------------------------------------------------------------------------ the registry
CASES: list[GradcheckCase] = [
    GradcheckCase("Linear", "Linear", lambda rng: randomized(nn.Linear(5, 4, rng=rng), rng), _normal(3, 5)),
    GradcheckCase(
        "Linear(bias=False)",
        "Linear",
        lambda rng: randomized(nn.Linear(4, 3, bias=False, rng=rng), rng),
        _normal(2, 4),
    ),
    GradcheckCase("ELU", "ELU", lambda rng: nn.ELU(), lambda rng: away_from_zero(rng, (3, 5))),
    GradcheckCase(
        "ELU(alpha=0.3)", "ELU", lambda rng: nn.ELU(0.3), lambda rng: away_from_zero(rng, (2, 3, 4))
    ),
    GradcheckCase("ELU(alpha=2.5)", "ELU", lambda rng: nn.ELU(2.5), lambda rng: away_from_zero(rng, (4, 3))),
    GradcheckCase("ReLU", "ReLU", lambda rng: nn.ReLU(), lambda rng: away_from_zero(rng, (3, 5))),
    GradcheckCase("Tanh", "Tanh", lambda rng: nn.Tanh(), _normal(3, 5)),
    GradcheckCase("Softmax(dim=1)", "Softmax", lambda rng: nn.Softmax(1), _normal(3, 5)),
    GradcheckCase("Softmax(dim=0)", "Softmax", lambda rng: nn.Softmax(0), _normal(4, 3)),
    GradcheckCase("Softmax(dim=1) on 3-D", "Softmax", lambda rng: nn.Softmax(1), _normal(2, 3, 4)),
    GradcheckCase("Softmax(dim=-1) on 3-D", "Softmax", lambda rng: nn.Softmax(-1), _normal(2, 3, 4)),
    GradcheckCase("Flatten", "Flatten", lambda rng: nn.Flatten(), _normal(2, 3, 2, 2)),
    GradcheckCase("Flatten(1, 2)", "Flatten", lambda rng: nn.Flatten(1, 2), _normal(2, 3, 2, 2)),
    GradcheckCase(
        "CrossEntropy(mean, index)",
        "CrossEntropy",
        lambda rng: nn.CrossEntropy("mean"),
        lambda rng: probabilities(rng, 4, 5),
        index_targets(4, 5),
    ),
    GradcheckCase(
        "CrossEntropy(sum, index)",
        "CrossEntropy",
        lambda rng: nn.CrossEntropy("sum"),
        lambda rng: probabilities(rng, 4, 5),
        index_targets(4, 5),
    ),
    GradcheckCase(
        "CrossEntropy(mean, one-hot)",
        "CrossEntropy",
        lambda rng: nn.CrossEntropy("mean"),
        lambda rng: probabilities(rng, 3, 4),
        onehot_targets(3, 4),
    ),
    GradcheckCase(
        "CrossEntropy(sum, soft)",
        "CrossEntropy",
        lambda rng: nn.CrossEntropy("sum"),
        lambda rng: probabilities(rng, 3, 4),
        soft_targets(3, 4),
    ),
    GradcheckCase(
        "SoftmaxCrossEntropy(mean, index)",
        "SoftmaxCrossEntropy",
        lambda rng: nn.SoftmaxCrossEntropy("mean"),
        _normal(4, 5),
        index_targets(4, 5),
    ),
    GradcheckCase(
        "SoftmaxCrossEntropy(sum, soft)",
        "SoftmaxCrossEntropy",
        lambda rng: nn.SoftmaxCrossEntropy("sum"),
        _normal(3, 4),
        soft_targets(3, 4),
    ),
    GradcheckCase("MLP(depth=0)", "MLP", _mlp([], "elu"), _normal(3, 4)),
    GradcheckCase("MLP(elu, depth=1)", "MLP", _mlp([6], "elu"), _normal(3, 4)),
    GradcheckCase("MLP(relu, depth=2)", "MLP", _mlp([5, 4], "relu"), _normal(3, 4)),
    GradcheckCase("MLP(tanh, depth=3)", "MLP", _mlp([4, 3, 5], "tanh"), _normal(3, 4)),
    GradcheckCase(
        "Sequential(Linear, Tanh, Linear)",
        "Sequential",
        lambda rng: randomized(
            nn.Sequential(nn.Linear(4, 5, rng=rng), nn.Tanh(), nn.Linear(5, 2, rng=rng)), rng
        ),
        _normal(3, 4),
    ),
    GradcheckCase(
        "Residual(Linear, Tanh)",
        "Residual",
        lambda rng: randomized(nn.Residual(nn.Sequential(nn.Linear(4, 4, rng=rng), nn.Tanh())), rng),
        _normal(3, 4),
    ),
    GradcheckCase(
        "Dropout(p=0.3) train",
        "Dropout",
        lambda rng: nn.Dropout(0.3),
        _normal(4, 5),
        before_forward=reseed_dropout,
    ),
    GradcheckCase("Dropout(p=0.3) eval", "Dropout", lambda rng: nn.Dropout(0.3).eval(), _normal(3, 4)),
    GradcheckCase(
        "BatchNorm1d train", "BatchNorm1d", lambda rng: randomized(nn.BatchNorm1d(3), rng), _normal(5, 3)
    ),
    GradcheckCase(
        "BatchNorm1d eval",
        "BatchNorm1d",
        lambda rng: with_running_stats(randomized(nn.BatchNorm1d(3), rng), rng),
        _normal(4, 3),
    ),
    GradcheckCase(
        "BatchNorm2d train",
        "BatchNorm2d",
        lambda rng: randomized(nn.BatchNorm2d(3), rng),
        _normal(2, 3, 3, 2),
    ),
    GradcheckCase(
        "BatchNorm2d eval",
        "BatchNorm2d",
        lambda rng: with_running_stats(randomized(nn.BatchNorm2d(2), rng), rng),
        _normal(2, 2, 2, 3),
    ),
    GradcheckCase("LayerNorm(4)", "LayerNorm", lambda rng: randomized(nn.LayerNorm(4), rng), _normal(3, 4)),
    GradcheckCase(
        "LayerNorm((3, 4))", "LayerNorm", lambda rng: randomized(nn.LayerNorm((3, 4)), rng), _normal(2, 3, 4)
    ),
    GradcheckCase(
        "Conv2d(3x3, padding=1)",
        "Conv2d",
        lambda rng: randomized(nn.Conv2d(2, 3, 3, padding=1, rng=rng), rng),
        _normal(2, 2, 4, 4),
    ),
    GradcheckCase(
        "Conv2d(2x3, stride=2, padding=(1, 0))",
        "Conv2d",
        lambda rng: randomized(nn.Conv2d(2, 3, (2, 3), stride=2, padding=(1, 0), rng=rng), rng),
        _normal(2, 2, 5, 6),
    ),
    GradcheckCase(
        # in_channels >= TRANSPOSED_MIN_CHANNELS at stride 1: dL/dX takes the transposed-convolution
        # path of every 3x3 conv of the practical's ConvNet, not col2im (input gradient only: cheap)
        f"Conv2d(3x3, padding=1, {TRANSPOSED_MIN_CHANNELS} channels: transposed-conv dX)",
        "Conv2d",
        lambda rng: randomized(nn.Conv2d(TRANSPOSED_MIN_CHANNELS, 3, 3, padding=1, rng=rng), rng),
        # small inputs keep the outputs, and so the central differences' rounding, small next to
        # dL/dX (which does not depend on X); the weight gradient's path is the other cases'
        lambda rng: SMALL_INPUT_STD * rng.normal(size=(2, TRANSPOSED_MIN_CHANNELS, 4, 4)),
        only_params=(),
    ),
    GradcheckCase(
        "Conv2d(1x1, bias=False)",
        "Conv2d",
        lambda rng: randomized(nn.Conv2d(3, 2, 1, bias=False, rng=rng), rng),
        _normal(2, 3, 2, 3),
    ),
    GradcheckCase(
        "MaxPool2d(2)", "MaxPool2d", lambda rng: nn.MaxPool2d(2), lambda rng: without_ties(rng, (2, 2, 4, 4))
    ),
    GradcheckCase(
        "MaxPool2d(3, stride=2, padding=1)",
        "MaxPool2d",
        lambda rng: nn.MaxPool2d(3, stride=2, padding=1),
        lambda rng: without_ties(rng, (2, 2, 5, 5)),
    ),
    GradcheckCase(
        "AdaptiveAvgPool2d((2, 3))",
        "AdaptiveAvgPool2d",
        lambda rng: nn.AdaptiveAvgPool2d((2, 3)),
        _normal(2, 2, 5, 7),
    ),
    GradcheckCase(
        "GlobalAvgPool2d", "GlobalAvgPool2d", lambda rng: nn.GlobalAvgPool2d(), _normal(2, 3, 3, 3)
    ),
    GradcheckCase(
        "PreActBlock(3)",
        "PreActBlock",
        lambda rng: randomized(nn.PreActBlock(3, rng=rng), rng),
        _normal(2, 3, 4, 4),
    ),
    GradcheckCase(
        "ConvNet eval (input, linear.bias)",
        "ConvNet",
        _convnet_eval,
        _normal(1, 3, 2, 2),
        only_params=("linear.bias",),
        slow=True,
    ),
]


def register(case: GradcheckCase) -> GradcheckCase:
    """Add ``case`` to :data:`CASES`; its name must be new."""
    if any(c.name == case.name for c in CASES):
        raise ValueError(f"a gradcheck case named {case.name!r} is already registered")
    CASES.append(case)
    return case


def module_names() -> list[str]:
    """The class names the registry covers, sorted (the valid values of ``--module``)."""
    return sorted({c.module for c in CASES})


def select_cases(module: str | None = None) -> list[GradcheckCase]:
    """The cases of one module class, or all but the slow ones; an unknown name is a ConfigError
    listing the valid ones."""
    if module is None:
        return [c for c in CASES if not c.slow]
    chosen = [c for c in CASES if c.module == module]
    if not chosen:
        raise ConfigError(f"unknown module {module!r}; expected one of: {', '.join(module_names())}")
    return chosen


def case_rng(seed: int, case_name: str) -> np.random.Generator:
    """The generator of one case: from ``seed`` and a stable hash of the case's name."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(zlib.crc32(case_name.encode()),)))


def run_case(case: GradcheckCase, seed: int, eps: float = DEFAULT_EPS) -> GradcheckReport:
    """Build the case's module, input (and target) from its generator and run :func:`gradcheck`."""
    rng = case_rng(seed, case.name)
    module = case.make_module(rng)
    x = case.make_input(rng)
    target = case.make_target(rng) if case.make_target is not None else None
    return gradcheck(
        module, x, target=target, rng=rng, eps=eps, only_params=case.only_params,
        before_forward=case.before_forward, name=case.name,
    )  # fmt: skip
