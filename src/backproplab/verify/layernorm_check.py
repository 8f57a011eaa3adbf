"""Checks of the practical's PyTorch LayerNorm classes (``custom_layernorm.py``) against
``F.layer_norm``: forward value and, through torch's autograd, the input, gamma and beta gradients
(float64, random gamma and beta, random upstream gradient); for the ``autograd.Function`` also
``torch.autograd.gradcheck``. The reference normalises each row over its features with the biased
variance and ``eps`` inside the square root.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from backproplab.verify import check as C
from backproplab.verify import hints as H
from backproplab.verify.diff import tensor_diff
from backproplab.verify.protocol import source_of

#: Batch and features of the checks (features large enough that n/(n-1) shows).
N, D = 6, 8
EPS = 1e-5


def _affine(module: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(gamma, beta) of a LayerNorm module: its two 1-D parameters of D elements, in order."""
    params = [p for p in module.parameters() if p.ndim == 1 and p.numel() == D]
    return (params[0], params[1]) if len(params) == 2 else None


def rows(cls: type, rng: np.random.Generator) -> list[C.CheckRow]:
    """The rows of one class: an ``nn.Module`` (n_neurons, eps) or the ``autograd.Function``."""
    name, where = cls.__name__, source_of(cls)
    # rows of very different spread (std 1e-3 to 3), so that eps's place shows next to the variance
    spread = np.logspace(-3, 0.5, N)[:, None]
    x = torch.tensor(3.0 + spread * rng.normal(size=(N, D)), dtype=torch.float64, requires_grad=True)
    gamma = torch.tensor(1 + 0.5 * rng.normal(size=D), dtype=torch.float64, requires_grad=True)
    beta = torch.tensor(0.5 * rng.normal(size=D), dtype=torch.float64, requires_grad=True)
    g = torch.tensor(rng.normal(size=(N, D)), dtype=torch.float64)
    is_function = isinstance(cls, type) and issubclass(cls, torch.autograd.Function)
    function: Any = cls

    def run(x_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if is_function:
            with C.calling(f"{name}.apply"):
                return function.apply(x_in, gamma, beta, EPS), gamma, beta
        with C.calling(f"{name}({D}, eps={EPS})"):
            module = cls(D, EPS).double()
        pair = _affine(module)
        if pair is None:
            raise C.UserCodeError(
                f"{name}.__init__", ValueError(f"expected two parameters of {D} elements (gamma, beta)")
            )
        with torch.no_grad():
            pair[0].copy_(gamma)
            pair[1].copy_(beta)
        with C.calling(f"{name}.forward"):
            return module(x_in), pair[0], pair[1]

    def against_torch() -> list[C.CheckRow]:
        out, gm, bt = run(x)
        ref = F.layer_norm(x, (D,), gamma, beta, EPS)
        value = {"output": out.detach().numpy()}
        reference = {"output": ref.detach().numpy()}
        with C.calling(f"{name}.backward"):
            grads = torch.autograd.grad(out, (x, gm, bt), g, allow_unused=True)
        ref_grads = torch.autograd.grad(ref, (x, gamma, beta), g)
        for q, a, b in zip(("input grad", "weight grad", "bias grad"), grads, ref_grads, strict=True):
            if a is not None:
                value[q] = a.detach().numpy()
            reference[q] = b.detach().numpy()
        result = []
        for q, ref_value in reference.items():
            if q not in value:
                result.append(
                    C.CheckRow(name, f"{q} vs PyTorch", C.FAIL, "no gradient reached this tensor", where)
                )
                continue
            d = tensor_diff(value[q], ref_value)
            if C.agrees(d):
                result.append(
                    C.CheckRow(name, f"{q} vs PyTorch", C.PASS, f"max rel error {d.max_rel_err:.1e}")
                )
                continue
            from backproplab import nn

            module: Any = nn.LayerNorm(D, eps=EPS).to(np.float64)
            module.weight.data, module.bias.data = gamma.detach().numpy().copy(), beta.detach().numpy().copy()
            ctx = H.RowContext(
                name,
                q,
                value[q],
                ref_value,
                d,
                C.REFERENCE_RTOL,
                module=module,
                input=x.detach().numpy(),
                batch_size=N,
            )
            result.append(C.CheckRow(name, f"{q} vs PyTorch", C.FAIL, H.diagnose(ctx)[0], where))
        return result

    out_rows = C.guarded(name, "against PyTorch", against_torch, where)
    main_ok = all(r.status == C.PASS for r in out_rows)
    if is_function:

        def autograd_gradcheck() -> list[C.CheckRow]:
            xs = torch.tensor(rng.normal(size=(3, 4)), dtype=torch.float64, requires_grad=True)
            gs = torch.tensor(1 + 0.5 * rng.normal(size=4), dtype=torch.float64, requires_grad=True)
            bs = torch.tensor(0.5 * rng.normal(size=4), dtype=torch.float64, requires_grad=True)
            with C.calling(f"{name}.backward"):
                fn: Any = cls
                ok = torch.autograd.gradcheck(
                    lambda a, b, c: fn.apply(a, b, c, EPS), (xs, gs, bs), raise_exception=False
                )
            if ok:
                return [
                    C.CheckRow(
                        name,
                        "torch.autograd.gradcheck",
                        C.PASS,
                        "backward matches finite differences (float64)",
                    )
                ]
            return [
                C.CheckRow(
                    name,
                    "torch.autograd.gradcheck",
                    C.FAIL,
                    "backward differs from finite differences",
                    source_of(getattr(cls, "backward", cls)),
                )
            ]

        out_rows += C.guarded(name, "torch.autograd.gradcheck", autograd_gradcheck, where)

    def batch_of_one() -> list[C.CheckRow]:
        x1 = x[:1].detach().clone().requires_grad_(True)
        out, _, _ = run(x1)
        ref = F.layer_norm(x1, (D,), gamma, beta, EPS)
        d = tensor_diff(out.detach().numpy(), ref.detach().numpy())
        if C.agrees(d):
            return [C.CheckRow(name, "batch of 1", C.PASS, "one sample normalised over its features")]
        return [
            C.CheckRow(
                name,
                "batch of 1",
                C.FAIL,
                "with one sample the output differs: normalise each row over its features (dim 1), not over the batch",
                where,
            )
        ]

    if main_ok:
        out_rows += C.guarded(name, "batch of 1", batch_of_one, where)
    else:
        out_rows.append(
            C.CheckRow(name, "batch of 1", C.WARN, "not judged while the comparison with PyTorch above fails")
        )

    def wrong_shape() -> list[C.CheckRow]:
        bad = torch.zeros(N, D + 1, dtype=torch.float64)
        try:
            run(bad)
        except C.UserCodeError:
            return [
                C.CheckRow(name, "input shape checked", C.PASS, f"an input of {D + 1} features is refused")
            ]
        return [
            C.CheckRow(
                name,
                "input shape checked",
                C.WARN,
                f"an input of {D + 1} features for {D} neurons is not refused (the practical asks to check the input shape)",
                where,
            )
        ]

    if not is_function:
        out_rows += C.guarded(name, "input shape checked", wrong_shape, where)
    return out_rows
