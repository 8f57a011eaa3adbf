"""Time the same MLP training step in backproplab's NumPy engine and in PyTorch on the CPU.

Both sides get the same thread count (OpenBLAS/OMP threads for NumPy, torch.set_num_threads for
PyTorch), the same weights, the same batches and plain SGD; each side runs interleaved
repetitions, each after a pause that lets the other's idle threads stop spinning (``interleave.py``);
the median and the best repetition's step times are reported. The ratio is NumPy time / PyTorch time;
the target is at most 0.9 at both sizes. Achieved GFLOP/s (the step's matrix products: forward, dL/dW
and dL/dX except for the first layer, which neither framework computes) are reported against a float32
3072 x 3072 GEMM measured in the same run.

    python benchmarks/mlp_numpy_vs_torch.py [--threads 2] [--steps 200] [--cifar PATH]

With ``--cifar`` it also times the whole default ``train mlp-numpy`` run (1400 steps, data
loaded from the decoded cache, which a first load creates).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--steps", type=int, default=200, help="timed steps per repetition")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch_size", type=int, default=200)
    p.add_argument("--cifar", default=None, help="CIFAR-10 copy: also time the whole default run")
    return p.parse_args()


ARGS = parse()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from gemm import GEMM_SIZE, gemm_gflops  # noqa: E402
from interleave import interleaved  # noqa: E402

from backproplab import nn  # noqa: E402
from backproplab.torch_models import TorchMLP  # noqa: E402

torch.set_num_threads(ARGS.threads)
N_INPUTS, N_CLASSES, LR = 3072, 10, 1e-3
TARGET_RATIO = 0.9


def step_flops(hidden: list[int]) -> float:
    """FLOPs of the matrix products of one step: 2 B in out per product; three per layer (forward,
    dL/dW, dL/dX), two for the first (no dL/dX for the data)."""
    widths = [N_INPUTS, *hidden, N_CLASSES]
    pairs = list(itertools.pairwise(widths))
    return sum(2.0 * ARGS.batch_size * a * b * (2 if i == 0 else 3) for i, (a, b) in enumerate(pairs))


def numpy_step(
    model: nn.MLP, loss_fn: nn.SoftmaxCrossEntropy, opt: nn.optim.SGD, x: np.ndarray, y: np.ndarray
) -> float:
    loss = loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    opt.step()
    opt.zero_grad()
    return float(loss)


def torch_step(
    model: TorchMLP, loss_fn: torch.nn.Module, opt: torch.optim.SGD, x: torch.Tensor, y: torch.Tensor
) -> float:
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    opt.zero_grad()
    return float(loss.detach())


def bench(hidden: list[int]) -> tuple[float, float, float, float]:
    rng = np.random.default_rng(0)
    n_batches = 16
    xs = rng.normal(0, 50, size=(n_batches, ARGS.batch_size, N_INPUTS)).astype(np.float32)
    ys = rng.integers(0, N_CLASSES, size=(n_batches, ARGS.batch_size))
    tmodel = TorchMLP(
        N_INPUTS, hidden, N_CLASSES, init_scheme="torch", generator=torch.Generator().manual_seed(0)
    )
    nmodel = nn.MLP(N_INPUTS, hidden, N_CLASSES, rng=rng, input_grad=False)
    nmodel.load_state_dict(tmodel.state_dict())
    nloss, tloss = nn.SoftmaxCrossEntropy(), torch.nn.CrossEntropyLoss()
    nopt = nn.optim.SGD(nmodel.parameters(), lr=LR)
    topt = torch.optim.SGD(tmodel.parameters(), lr=LR)
    txs, tys = torch.from_numpy(xs), torch.from_numpy(ys)

    def run_numpy() -> None:
        for i in range(ARGS.steps):
            numpy_step(nmodel, nloss, nopt, xs[i % n_batches], ys[i % n_batches])

    def run_torch() -> None:
        for i in range(ARGS.steps):
            torch_step(tmodel, tloss, topt, txs[i % n_batches], tys[i % n_batches])

    tn, tt = (np.array(t) / ARGS.steps for t in interleaved(run_numpy, run_torch, ARGS.repeats))
    return float(np.median(tn)), float(np.median(tt)), float(tn.min()), float(tt.min())


def time_full_run(path: str) -> None:
    from backproplab.data import load_dataset
    from backproplab.training import mlp_numpy

    load_dataset("cifar10", path)  # make sure the decoded cache exists
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = mlp_numpy.run(mlp_numpy.MLPNumpyConfig(data_dir=path, out=f"{tmp}/run"), progress=False)
        wall = time.perf_counter() - t0
    print(
        f"\nwhole default CIFAR-10 run (1400 steps, cached data): {wall:.1f} s wall, test acc {summary['final_test_acc']:.4f}"
    )


def main() -> int:
    print(
        f"threads: {ARGS.threads}  batch: {ARGS.batch_size}  steps x repeats: {ARGS.steps} x {ARGS.repeats}"
    )
    print(f"numpy {np.__version__}, torch {torch.__version__}")
    gemm = gemm_gflops()
    print(f"float32 GEMM {GEMM_SIZE}x{GEMM_SIZE} (NumPy's BLAS): {gemm:.0f} GFLOP/s")
    print(
        f"{'hidden units':<14}{'numpy steps/s':>15}{'torch steps/s':>15}"
        f"{'ratio (median)':>16}{'ratio (best)':>14}{'np GFLOP/s':>12}{'th GFLOP/s':>12}{'np/GEMM':>9}"
    )
    worst = 0.0
    for hidden in ([100], [1024, 1024]):
        tn, tt, bn, bt = bench(hidden)
        worst = max(worst, tn / tt)
        label = ",".join(map(str, hidden))
        flops = step_flops(hidden)
        print(
            f"{label:<14}{1 / tn:>15.1f}{1 / tt:>15.1f}{tn / tt:>16.3f}{bn / bt:>14.3f}"
            f"{flops / tn / 1e9:>12.0f}{flops / tt / 1e9:>12.0f}{flops / tn / 1e9 / gemm:>9.0%}"
        )
    print(
        f"target: median time ratio numpy/torch <= {TARGET_RATIO} for both sizes -> "
        f"{'met' if worst <= TARGET_RATIO else 'NOT met'} (worst {worst:.3f})"
    )
    if ARGS.cifar:
        time_full_run(ARGS.cifar)
    return 0


if __name__ == "__main__":
    sys.exit(main())
