"""Time and measure the practical's ConvNet in backproplab's NumPy engine against PyTorch on the CPU.

Both sides get the same thread count (OPENBLAS/OMP/MKL threads, set before NumPy is imported, and
torch.set_num_threads), the same weights (the torch model's state dict loaded into the NumPy
model) and the same batch. Every measurement interleaves NumPy and PyTorch repetitions, so load
from other processes hits both alike, with a pause before each timed run so that neither side's
idle BLAS/OpenMP threads still spin into the other's timing (``interleave.py``), and reports the
median. Ratios are NumPy time / PyTorch time (below 1.0: the NumPy engine is faster).

0. A float32 GEMM (3072 x 3072, NumPy's BLAS) measured in the same run: the machine's limit, against
   which the achieved GFLOP/s below are reported.
1. Layers: forward plus backward of each distinct conv, BatchNorm and max-pool layer of the ConvNet
   at its real input shape (batch 32, CIFAR-10 sizes), with a random upstream gradient, and the
   Adam step over all parameters; the conv rows name the NumPy algorithm (Winograd or im2col) and
   give the achieved GFLOP/s of both frameworks (nominal direct-convolution FLOPs / time: Winograd
   does 2.25x fewer multiplications than it is credited with, as cuDNN's and oneDNN's figures count).
2. The whole training step at batch 32: forward, cross-entropy, backward, Adam step (lr 1e-4),
   as ``train convnet-numpy`` and ``train convnet`` do, with its nominal GFLOP/s. Target: ratio at
   most 0.9. ``--algorithm im2col`` times the NumPy engine with its plain reference convolutions.
3. Memory (``--mem_steps``, default 200; 0 skips): each framework runs in a fresh subprocess that
   records its resident set size after building the model and one batch (and resets its peak
   RSS, VmHWM, to it), then trains ``--mem_steps`` steps. "peak" is the increase of the peak RSS
   over that baseline (the
   gradients, the Adam state and the largest transient allocations of a step: the same
   accounting for both). "growth" is the current RSS after the last 10 steps minus the current RSS
   after steps 10-19 (medians of the per-step readings: a leak would grow it by the leaked bytes
   per step times the steps);
   for NumPy, tracemalloc's count of live NumPy allocations is reported at the same two points.
   Target: NumPy peak at most 2x PyTorch's; no growth.
4. ``--mlp`` also runs ``benchmarks/mlp_numpy_vs_torch.py`` (the engine's MLP target, ratio <= 0.9).

    python benchmarks/conv_numpy_vs_torch.py [--threads 2] [--repeats 7] [--mem_steps 200] [--mlp]
        [--algorithm auto|im2col|winograd]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for both frameworks")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=7, help="interleaved timed repetitions (median reported)")
    p.add_argument(
        "--mem_steps", type=int, default=200, help="training steps of the memory check (0: skip it)"
    )
    p.add_argument("--skip_layers", action="store_true", help="skip the per-layer timings")
    p.add_argument("--mlp", action="store_true", help="also run benchmarks/mlp_numpy_vs_torch.py")
    p.add_argument(
        "--algorithm", default="auto", choices=("auto", "im2col", "winograd"), help="NumPy Conv2d algorithm"
    )
    p.add_argument("--memory_worker", choices=("numpy", "torch"), help=argparse.SUPPRESS)
    return p.parse_args()


ARGS = parse()
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)

import tracemalloc  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import interleave  # noqa: E402
import numpy as np  # noqa: E402
from gemm import GEMM_SIZE, gemm_gflops  # noqa: E402

from backproplab import nn  # noqa: E402
from backproplab.nn.conv import set_conv_algorithm  # noqa: E402
from backproplab.nn.convnet import ConvNet  # noqa: E402

LR, N_CLASSES, SIDE = 1e-4, 10, 32
TARGET_STEP_RATIO, TARGET_MEMORY_RATIO = 0.9, 2.0


def conv_flops(conv: nn.Conv2d, x_shape: tuple[int, ...]) -> float:
    """Nominal FLOPs of forward + backward of ``conv`` on ``x_shape``: 2 N Ho Wo C_out C_in kH kW per
    product (forward, dL/dW, and dL/dX unless the layer skips it)."""
    n, co, ho, wo = conv.output_shape(x_shape)
    kh, kw = conv.kernel_size
    one = 2.0 * n * ho * wo * co * conv.in_channels * kh * kw
    return one * (3 if conv.needs_input_grad else 2)


def step_flops(model: ConvNet, x: np.ndarray) -> float:
    """Nominal FLOPs of one training step: the convolutions and the linear layer (forward and both
    gradients; element-wise work not counted), found by recording each layer's input shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    named = [(k, m) for k, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    originals = {k: m.forward for k, m in named}
    for k, m in named:

        def record(inp: np.ndarray, k: str = k) -> np.ndarray:
            shapes[k] = inp.shape
            return originals[k](inp)

        object.__setattr__(m, "forward", record)
    with nn.no_grad():
        model(x)
    for _, m in named:
        object.__delattr__(m, "forward")
    total = 0.0
    for k, m in named:
        if isinstance(m, nn.Conv2d):
            total += conv_flops(m, shapes[k])
        else:
            total += 2.0 * shapes[k][0] * m.in_features * m.out_features * (3 if m.needs_input_grad else 2)
    return total


def _status_mib(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS: resident now; VmHWM: peak resident) in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def current_rss_mib() -> float:
    return _status_mib("VmRSS")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """Peak RSS of this process image (VmHWM). Not ru_maxrss: after fork + exec that starts at the
    parent's peak, which would hide a smaller child's peak."""
    return _status_mib("VmHWM")


def batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ARGS.batch_size, 3, SIDE, SIDE)).astype(np.float32)  # (B, 3, 32, 32)
    y = rng.integers(0, N_CLASSES, size=ARGS.batch_size)
    return x, y


def interleaved(fn_a: Callable[[], object], fn_b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median seconds of fn_a and fn_b, timed alternately after one warm-up call each, with a pause
    before each timed call (:mod:`interleave`)."""
    ta, tb = interleave.interleaved(fn_a, fn_b, repeats)
    return float(np.median(ta)), float(np.median(tb))


# --------------------------------------------------------------------------- steps
class NumpyStep:
    def __init__(self, state: dict[str, np.ndarray] | None = None) -> None:
        self.model = ConvNet(3, N_CLASSES, rng=np.random.default_rng(0), input_grad=False)
        set_conv_algorithm(self.model, ARGS.algorithm)
        if state is not None:
            self.model.load_state_dict(state)
        self.loss_fn = nn.SoftmaxCrossEntropy()
        self.opt = nn.optim.Adam(self.model.parameters(), lr=LR)
        self.x, self.y = batch()

    def __call__(self) -> float:
        loss = self.loss_fn(self.model(self.x), self.y)
        self.model.backward(self.loss_fn.backward())
        self.opt.step()
        self.opt.zero_grad()
        return float(loss)


class TorchStep:
    def __init__(self) -> None:
        import torch

        from backproplab.torch_models.convnet import ConvNet as TorchConvNet

        self.torch = torch
        self.model = TorchConvNet(3, N_CLASSES, generator=torch.Generator().manual_seed(0))
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR)
        x, y = batch()
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)

    def __call__(self) -> float:
        loss = self.loss_fn(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad()
        return float(loss.detach())


# --------------------------------------------------------------------------- layers
def layer_cases() -> list[tuple[str, str, float, Callable[[], object], Callable[[], object]]]:
    """(label, NumPy algorithm, nominal FLOPs, numpy fwd+bwd, torch fwd+bwd) for each distinct conv,
    BatchNorm and pool layer of the ConvNet."""
    import torch

    from backproplab.torch_models.convnet import ConvNet as TorchConvNet

    tmodel = TorchConvNet(3, N_CLASSES, generator=torch.Generator().manual_seed(0))
    nmodel = ConvNet(3, N_CLASSES, rng=np.random.default_rng(0))
    set_conv_algorithm(nmodel, ARGS.algorithm)
    nmodel.load_state_dict(tmodel.state_dict())
    rng = np.random.default_rng(1)
    b = ARGS.batch_size
    specs = [  # (label, attribute path, input channels, input side)
        ("conv0 3x3 3->64 @32", "conv0", 3, 32),
        ("preact1.bn 64 @32", "preact1.bn", 64, 32),
        ("preact1.conv 3x3 64 @32", "preact1.conv", 64, 32),
        ("conv1 1x1 64->128 @32", "conv1", 64, 32),
        ("maxpool1 3/2/1 128 @32", "maxpool1", 128, 32),
        ("preact2.conv 3x3 128 @16", "preact2_a.conv", 128, 16),
        ("conv2 1x1 128->256 @16", "conv2", 128, 16),
        ("maxpool2 3/2/1 256 @16", "maxpool2", 256, 16),
        ("preact3.bn 256 @8", "preact3_a.bn", 256, 8),
        ("preact3.conv 3x3 256 @8", "preact3_a.conv", 256, 8),
        ("conv3 1x1 256->512 @8", "conv3", 256, 8),
        ("maxpool3 3/2/1 512 @8", "maxpool3", 512, 8),
        ("preact4.conv 3x3 512 @4", "preact4_a.conv", 512, 4),
        ("maxpool4 3/2/1 512 @4", "maxpool4", 512, 4),
        ("preact5.conv 3x3 512 @2", "preact5_a.conv", 512, 2),
        ("maxpool5 3/2/1 512 @2", "maxpool5", 512, 2),
    ]
    named_n, named_t = dict(nmodel.named_modules()), dict(tmodel.named_modules())
    cases: list[tuple[str, str, float, Callable[[], object], Callable[[], object]]] = []
    for label, path, c, side in specs:
        nm, tm = named_n[path], named_t[path]
        # the NumPy layers get channels-last memory, as inside the ConvNet
        x = rng.normal(size=(b, side, side, c)).astype(np.float32).transpose(0, 3, 1, 2)  # (B, C, H, W)
        needs_dx = path != "conv0"
        if hasattr(nm, "needs_input_grad"):
            nm.needs_input_grad = needs_dx
        out_shape = nm(x).shape
        nm.backward(np.zeros(out_shape, dtype=np.float32))  # release the cache
        g = (
            rng.normal(size=(out_shape[0], out_shape[2], out_shape[3], out_shape[1]))
            .astype(np.float32)
            .transpose(0, 3, 1, 2)
        )
        tx = torch.from_numpy(np.ascontiguousarray(x)).requires_grad_(needs_dx)
        tg = torch.from_numpy(np.ascontiguousarray(g))

        def run_numpy(nm: nn.Module = nm, x: np.ndarray = x, g: np.ndarray = g) -> None:
            nm(x)
            nm.backward(g)
            nm.zero_grad()

        def run_torch(tm: torch.nn.Module = tm, tx: torch.Tensor = tx, tg: torch.Tensor = tg) -> None:
            tm(tx).backward(tg)
            tm.zero_grad()
            tx.grad = None

        algo, flops = "", 0.0
        if isinstance(nm, nn.Conv2d):
            algo = "winograd" if nm.uses_winograd(x.shape) else "im2col"
            flops = conv_flops(nm, x.shape)
        cases.append((label, algo, flops, run_numpy, run_torch))
    cases.append(("Adam step (all params)", "", 0.0, *adam_case()))
    return cases


def adam_case() -> tuple[Callable[[], object], Callable[[], object]]:
    """One Adam step over the ConvNet's parameters (random gradients) in each framework."""
    import torch

    nstep, tstep = NumpyStep(), TorchStep()
    rng = np.random.default_rng(2)
    grads = [rng.normal(size=p.shape).astype(np.float32) for p in nstep.model.parameters()]
    tgrads = [torch.from_numpy(g.copy()) for g in grads]

    def run_numpy() -> None:
        for p, g in zip(nstep.model.parameters(), grads, strict=True):
            p.grad = g
        nstep.opt.step()

    def run_torch() -> None:
        for p, g in zip(tstep.model.parameters(), tgrads, strict=True):
            p.grad = g
        tstep.opt.step()

    return run_numpy, run_torch


# --------------------------------------------------------------------------- memory
def memory_worker(kind: str) -> None:
    """Run in a fresh process: print one JSON line with peak and growth figures."""
    step: Callable[[], float] = NumpyStep() if kind == "numpy" else TorchStep()
    if kind == "numpy":
        tracemalloc.start()
    reset_peak_rss()
    base_peak = current_rss_mib()  # the model, its weights and one batch
    traced = []
    rss = []  # current RSS after each step
    t0 = time.perf_counter()
    for i in range(1, ARGS.mem_steps + 1):
        step()
        rss.append(current_rss_mib())
        if i == 1:
            first_peak = peak_rss_mib() - base_peak
        if i == 10 and kind == "numpy":
            traced.append(tracemalloc.get_traced_memory()[0] / 2**20)
    wall = time.perf_counter() - t0
    if kind == "numpy":
        traced.append(tracemalloc.get_traced_memory()[0] / 2**20)
    # RSS early (steps 10-19) and late (the last 10 steps), as medians: malloc's caching moves
    # single readings by a transient buffer or two
    early, late = float(np.median(rss[9:19])), float(np.median(rss[-10:]))
    print(
        json.dumps(
            {
                "kind": kind,
                "steps": ARGS.mem_steps,
                "peak_first_step_mib": first_peak,
                "peak_mib": peak_rss_mib() - base_peak,
                "rss_early_mib": early,
                "rss_late_mib": late,
                "traced_step10_end_mib": traced,
                "seconds": wall,
            }
        )
    )


def run_memory_worker(kind: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--memory_worker", kind, "--threads", str(ARGS.threads)]
    cmd += ["--batch_size", str(ARGS.batch_size), "--mem_steps", str(ARGS.mem_steps)]
    cmd += ["--algorithm", ARGS.algorithm]
    out = subprocess.run(
        cmd, check=True, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------- main
def main() -> int:
    if ARGS.memory_worker:
        memory_worker(ARGS.memory_worker)
        return 0
    import torch

    torch.set_num_threads(ARGS.threads)
    print(
        f"threads: {ARGS.threads} (OPENBLAS_NUM_THREADS=OMP_NUM_THREADS={ARGS.threads}, "
        f"torch.set_num_threads({ARGS.threads}))"
    )
    print(
        f"numpy {np.__version__}, torch {torch.__version__}, batch {ARGS.batch_size}, "
        f"median of {ARGS.repeats} interleaved runs"
    )
    gemm = gemm_gflops()
    print(
        f"float32 GEMM {GEMM_SIZE}x{GEMM_SIZE} (NumPy's BLAS): {gemm:.0f} GFLOP/s  (conv algorithm: {ARGS.algorithm})"
    )
    if not ARGS.skip_layers:
        print(
            f"\n{'layer (forward + backward)':<28}{'numpy':>9}{'numpy ms':>10}{'torch ms':>10}{'ratio':>7}"
            f"{'np GFLOP/s':>12}{'th GFLOP/s':>12}"
        )
        for label, algo, flops, run_numpy, run_torch in layer_cases():
            tn, tt = interleaved(run_numpy, run_torch, ARGS.repeats)
            rates = f"{flops / tn / 1e9:>12.0f}{flops / tt / 1e9:>12.0f}" if flops else ""
            print(f"{label:<28}{algo:>9}{tn * 1e3:>10.1f}{tt * 1e3:>10.1f}{tn / tt:>7.2f}{rates}")
    tstep = TorchStep()
    nstep = NumpyStep({k: v.numpy() for k, v in tstep.model.state_dict().items()})
    flops = step_flops(nstep.model, nstep.x)
    tn, tt = interleaved(nstep, tstep, ARGS.repeats)
    ok = tn / tt <= TARGET_STEP_RATIO
    print(
        f"\nwhole ConvNet training step (batch {ARGS.batch_size}, Adam, {flops / 1e9:.1f} nominal GFLOP): "
        f"numpy {tn * 1e3:.0f} ms, torch {tt * 1e3:.0f} ms"
    )
    print(
        f"  numpy {flops / tn / 1e9:.0f} GFLOP/s, torch {flops / tt / 1e9:.0f} GFLOP/s "
        f"(GEMM {gemm:.0f}: numpy at {flops / tn / 1e9 / gemm:.0%} of it)"
    )
    print(f"  ratio {tn / tt:.2f} (target <= {TARGET_STEP_RATIO}: {'met' if ok else 'NOT met'})")
    if ARGS.mem_steps > 0:
        res = {kind: run_memory_worker(kind) for kind in ("numpy", "torch")}
        print(f"\nmemory over {ARGS.mem_steps} training steps (each framework in a fresh process)")
        print(
            f"{'':<8}{'peak MiB':>10}{'(1st step)':>12}{'RSS 10-19':>12}{'RSS last 10':>13}{'growth MiB':>12}"
        )
        for kind, r in res.items():
            growth = float(r["rss_late_mib"]) - float(r["rss_early_mib"])
            print(
                f"{kind:<8}{r['peak_mib']:>10.0f}{r['peak_first_step_mib']:>12.0f}{r['rss_early_mib']:>12.0f}"
                f"{r['rss_late_mib']:>13.0f}{growth:>12.1f}"
            )
        traced = res["numpy"]["traced_step10_end_mib"]
        print(
            "numpy live allocations (tracemalloc) at step 10 and at the end: "
            f"{traced[0]:.1f} / {traced[1]:.1f} MiB"
        )
        ratio = float(res["numpy"]["peak_mib"]) / float(res["torch"]["peak_mib"])
        print(
            f"  peak ratio {ratio:.2f} (target <= {TARGET_MEMORY_RATIO}: "
            f"{'met' if ratio <= TARGET_MEMORY_RATIO else 'NOT met'})"
        )
    if ARGS.mlp:
        script = Path(__file__).with_name("mlp_numpy_vs_torch.py")
        print(f"\n$ {script.name} --threads {ARGS.threads}", flush=True)
        subprocess.run([sys.executable, str(script), "--threads", str(ARGS.threads)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
