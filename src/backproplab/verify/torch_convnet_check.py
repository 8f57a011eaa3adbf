"""A user's PyTorch ``ConvNet(n_channels, n_classes)`` (``convnet_pytorch.py``) against the practical's
PreAct ConvNet (:class:`backproplab.torch_models.convnet.ConvNet`), layer by layer.

The two models are lined up by their *structural* leaf calls in forward order: the modules with
parameters (Conv2d, BatchNorm2d, Linear) and the poolings; activations, flattening and dropout
are not compared as modules (the reference calls ``torch.relu`` as a function, a user may use
``nn.ReLU``), but what they do is, through the inputs of the next module. Rows:

* **parameters**: the same number of weights (the reference has one per parameter of the
  practical's table);
* **layers**: the structural calls, one by one: the first one whose type or parameter shapes differ
  from the reference's is named with both;
* **vs the reference**: the reference's weights copied into the user's model (matched by call
  order, so names may differ), the same batch through both in training mode (batch statistics), and
  each structural call's input and output compared. The first difference is located: a module
  whose output differs *on the same input* has other settings (both ``repr`` are shown: stride,
  padding, eps, ...); an input that differs although the previous module's output agrees means the
  code *between* them differs (a residual addition left out, an activation in another place);
* **gradients**: after ``F.cross_entropy`` and backward, every parameter's gradient against the
  reference's, the first that differs named.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn as tnn

from backproplab.torch_models.convnet import ConvNet as Reference
from backproplab.verify import check as C
from backproplab.verify.diff import tensor_diff
from backproplab.verify.hints import is_probability_rows
from backproplab.verify.protocol import source_of
from backproplab.verify.torch_calls import LeafCall, leaf_calls

#: The batch of the comparison: BATCH images of N_CHANNELS x SIDE x SIDE, N_CLASSES classes.
BATCH, N_CHANNELS, SIDE, N_CLASSES = 4, 3, 32, 10
#: A structural call's tensors agree with the reference's within this (relative to the reference's
#: largest magnitude; float64 on both sides, so only real differences exceed it) ...
PARITY_RTOL = 1e-8
#: ... or within this when the user's forward casts to float32 (``x.float()``): 19 BatchNorms
#: amplify float32 rounding.
PARITY_RTOL_FLOAT32 = 1e-3
#: Leaf types compared as structure (the rest: activations, Flatten, Dropout, Identity).
STRUCTURAL = (tnn.Conv2d, tnn.BatchNorm2d, tnn.BatchNorm1d, tnn.Linear, tnn.MaxPool2d, tnn.AvgPool2d,
              tnn.AdaptiveAvgPool2d, tnn.AdaptiveMaxPool2d)  # fmt: skip


POOLS = (tnn.MaxPool2d, tnn.AvgPool2d, tnn.AdaptiveAvgPool2d, tnn.AdaptiveMaxPool2d)


def _structural(calls: list[LeafCall], pools: bool = True) -> list[LeafCall]:
    return [
        c for c in calls if isinstance(c.module, STRUCTURAL) and (pools or not isinstance(c.module, POOLS))
    ]


def _signature(m: tnn.Module) -> str:
    """What must match the reference: the type (BatchNorm1d and 2d alike: on a 1x1 map they are the
    same) with the parameter shapes, or a parameterless module's settings."""
    shapes = ", ".join("x".join(map(str, p.shape)) for p in m.parameters(recurse=False))
    kind = "BatchNorm" if isinstance(m, tnn.modules.batchnorm._BatchNorm) else type(m).__name__
    return f"{kind}({shapes})" if shapes else repr(m)


def _difference(mine: tnn.Module, theirs: tnn.Module) -> str:
    """What differs between two modules of one structural call, in words when it is a missing bias."""
    if (
        type(mine) is type(theirs)
        and getattr(mine, "bias", 0) is None
        and getattr(theirs, "bias", None) is not None
    ):
        return " (it has no bias, bias=False; the practical's layer has one)"
    return ""


def _agree(a: torch.Tensor | None, b: torch.Tensor | None, rtol: float) -> bool:
    """Equal within ``rtol`` of the reference's scale; the same values in another shape count (a
    flatten before or after a layer on a 1x1 map)."""
    if a is None or b is None:
        return a is None and b is None
    if a.shape != b.shape:
        if a.numel() != b.numel():
            return False
        a = a.reshape(b.shape)
    d = tensor_diff(a.double().numpy(), b.double().numpy())
    return d.finite and d.max_rel_err <= rtol


def rows(cls: type, rng: np.random.Generator, label: str | None = None) -> list[C.CheckRow]:
    """Every row of the module docstring for the user's ConvNet class ``cls``."""
    name, where = label or cls.__name__, source_of(cls)
    seed = int(rng.integers(2**31))
    call = f"{cls.__name__}({N_CHANNELS}, {N_CLASSES})"
    at_forward = source_of(getattr(cls, "forward", None)) or where
    try:
        with C.calling(call):
            torch.manual_seed(seed)
            user = cls(N_CHANNELS, N_CLASSES).train()
    except C.UserCodeError as e:
        return [C.CheckRow(name, "construct", C.FAIL, str(e)[:600], e.where or where)]
    ref = Reference(N_CHANNELS, N_CLASSES, generator=torch.Generator().manual_seed(seed)).train()
    out: list[C.CheckRow] = []
    want, got = sum(p.numel() for p in ref.parameters()), sum(p.numel() for p in user.parameters())
    status = C.PASS if got == want else C.FAIL
    out.append(
        C.CheckRow(
            name,
            "parameters",
            status,
            f"{got} parameters, the practical's ConvNet has {want}",
            "" if got == want else where,
        )
    )
    x = torch.tensor(rng.normal(size=(BATCH, N_CHANNELS, SIDE, SIDE)))
    y = torch.tensor(rng.integers(0, N_CLASSES, size=BATCH))
    rtol = PARITY_RTOL
    user.double()
    ref.double()
    try:
        with C.calling(f"{name}.forward"):
            try:
                calls = leaf_calls(user, x)
            except RuntimeError:  # a forward that casts (x.float()) runs in float32 only
                user.float()
                ref.float()
                x, rtol = x.float(), PARITY_RTOL_FLOAT32
                calls = leaf_calls(user, x)
    except C.UserCodeError as e:
        return [*out, C.CheckRow(name, "forward", C.FAIL, str(e)[:600], e.where or at_forward)]
    # poolings called as functions (F.max_pool2d) are no modules: then none are compared as modules
    pools = any(isinstance(c.module, POOLS) for c in calls)
    mine = _structural(calls, pools)
    theirs = _structural(leaf_calls(ref, x), pools)
    mismatch = next(
        (
            i
            for i, (a, b) in enumerate(zip(mine, theirs, strict=False))
            if _signature(a.module) != _signature(b.module)
        ),
        None if len(mine) == len(theirs) else min(len(mine), len(theirs)),
    )
    if mismatch is not None:
        got_s = (
            f"{mine[mismatch].name}: {_signature(mine[mismatch].module)}"
            if mismatch < len(mine)
            else "nothing more"
        )
        want_s = (
            f"{theirs[mismatch].name}: {_signature(theirs[mismatch].module)}"
            if mismatch < len(theirs)
            else "nothing more"
        )
        bias = (
            _difference(mine[mismatch].module, theirs[mismatch].module)
            if mismatch < min(len(mine), len(theirs))
            else ""
        )
        what = "modules with parameters and poolings" if pools else "modules with parameters"
        detail = (f"structural call {mismatch + 1} ({what}, in forward order) is "
                  f"{got_s} where the practical's ConvNet calls {want_s}{bias}")  # fmt: skip
        return [*out, C.CheckRow(name, "layers", C.FAIL, detail, at_forward)]
    out.append(
        C.CheckRow(name, "layers", C.PASS, f"{len(mine)} structural calls, as the practical's ConvNet")
    )
    out += C.guarded(
        name, "vs the reference",
        lambda: _parity_rows(name, user, ref, (mine, theirs), x, y, at_forward, (pools, rtol)), at_forward,
    )  # fmt: skip
    return out


def _copy_weights(mine: list[LeafCall], theirs: list[LeafCall]) -> list[tuple[str, str]]:
    """The reference's parameters and buffers into the user's modules, call by call; returns the
    (user name, reference name) pairs of the parameters."""
    pairs, done = [], set()
    with torch.no_grad():
        for a, b in zip(mine, theirs, strict=True):
            if a.name in done:
                continue
            done.add(a.name)
            for (na, pa), (nb, pb) in zip(
                a.module.named_parameters(recurse=False),
                b.module.named_parameters(recurse=False),
                strict=True,
            ):
                pa.copy_(pb)
                pairs.append((f"{a.name}.{na}", f"{b.name}.{nb}"))
            for (_, ba), (_, bb) in zip(
                a.module.named_buffers(recurse=False), b.module.named_buffers(recurse=False), strict=False
            ):
                if ba.shape == bb.shape:
                    ba.copy_(bb)
    return pairs


def _between(calls: list[LeafCall], start: LeafCall | None, end: LeafCall) -> str:
    """The modules called after ``start`` (or from the beginning) and before ``end``: "drop (Dropout), ..."."""
    i = next(k for k, c in enumerate(calls) if c is start) + 1 if start is not None else 0
    j = next(k for k, c in enumerate(calls) if c is end)
    return ", ".join(f"{c.name} ({type(c.module).__name__})" for c in calls[i:j])


def _parity_rows(
    name: str, user: tnn.Module, ref: tnn.Module, calls: tuple[list[LeafCall], list[LeafCall]],
    x: torch.Tensor, y: torch.Tensor, where: str, settings: tuple[bool, float],
) -> list[C.CheckRow]:  # fmt: skip
    pools, rtol = settings
    pairs = _copy_weights(*calls)
    with C.calling(f"{name}.forward"):
        all_mine = leaf_calls(user, x, record=True)
    all_theirs = leaf_calls(ref, x, record=True)
    mine, theirs = _structural(all_mine, pools), _structural(all_theirs, pools)
    for i, (a, b) in enumerate(zip(mine, theirs, strict=True)):
        if not _agree(a.input, b.input, rtol):
            before = f"the output of {mine[i - 1].name} agrees" if i else "the model's input is the same"
            between = _between(all_mine, mine[i - 1] if i else None, a)
            detail = (f"the input of {a.name} ({type(a.module).__name__}) differs from the reference's "
                      f"({b.name}) although {before}: the code between them differs (a residual addition "
                      "left out or added, an activation or a normalisation in another place)"
                      + (f"; between them this model calls {between}, the practical's ConvNet "
                         + (f"calls {ref_between}" if (ref_between := _between(all_theirs, theirs[i - 1] if i else None, b))
                            else "calls only functions (x + ..., torch.relu)")
                         if between else ""))  # fmt: skip
            return [C.CheckRow(name, "vs the reference", C.FAIL, detail, where)]
        if not _agree(a.output, b.output, rtol):
            detail = (f"{a.name} gives another output than the reference's {b.name} on the same input: "
                      f"{a.module!r} where the practical's ConvNet has {b.module!r}")  # fmt: skip
            return [C.CheckRow(name, "vs the reference", C.FAIL, detail, where)]
    with C.calling(f"{name}.forward"):
        scores = user(x)
    expected = ref(x)
    if is_probability_rows(scores.detach().numpy()):
        return [C.CheckRow(name, "vs the reference", C.FAIL, "the output rows are probabilities (a softmax in "
                           "forward): F.cross_entropy takes the scores (logits) and applies log-softmax itself", where)]  # fmt: skip
    if not _agree(scores.detach(), expected.detach(), rtol):
        return [C.CheckRow(name, "vs the reference", C.FAIL, "the scores differ from the reference's although every "
                           "module's input and output agree: the code after the last module differs", where)]  # fmt: skip
    rows = [
        C.CheckRow(
            name,
            "vs the reference",
            C.PASS,
            f"{len(mine)} structural calls and the scores agree (training mode)",
        )
    ]
    user.zero_grad(set_to_none=True)
    ref.zero_grad(set_to_none=True)
    with C.calling(f"{name}.forward/backward"):
        F.cross_entropy(user(x), y).backward()
    F.cross_entropy(ref(x), y).backward()
    mine_p, ref_p = dict(user.named_parameters()), dict(ref.named_parameters())
    for ua, rb in pairs:
        ga, gb = mine_p[ua].grad, ref_p[rb].grad
        if ga is None:
            return [*rows, C.CheckRow(name, "gradients", C.FAIL, f"no gradient for {ua}: the graph is cut before it (.detach(), .data, torch.no_grad())", where)]  # fmt: skip
        assert gb is not None  # the reference uses every parameter
        if not _agree(ga, gb, rtol):
            d = tensor_diff(ga.double().numpy(), gb.double().numpy().reshape(ga.shape))
            return [*rows, C.CheckRow(name, "gradients", C.FAIL, f"{ua} gradient differs from the reference's {rb} (max rel error {d.max_rel_err:.3g})", where)]  # fmt: skip
    return [*rows, C.CheckRow(name, "gradients", C.PASS, f"all {len(pairs)} parameter gradients agree")]
