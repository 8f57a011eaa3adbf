"""``backproplab demo``: the main job, ``train mlp-numpy`` with the practical's defaults.

With ``--data_dir`` (or a CIFAR-10 copy already in the cache) it trains on CIFAR-10; offline
with no copy at hand it trains on scikit-learn's 8x8 digits, a real data set that ships inside a
dependency, and says so in one line.
"""

from __future__ import annotations

import argparse

from backproplab.cli.main import print_summary
from backproplab.data import load_dataset
from backproplab.errors import DataError
from backproplab.training import mlp_numpy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data_dir", default=None, help="a CIFAR-10 copy (directory or archive)")
    parser.add_argument("--out", default=None, help="run directory (default: runs/mlp-numpy-<time>)")


def main(args: argparse.Namespace) -> int:
    cfg = mlp_numpy.MLPNumpyConfig(data_dir=args.data_dir, out=args.out)
    if args.data_dir is None:
        try:
            load_dataset("cifar10", None, download=False)
        except DataError:
            print(
                "No CIFAR-10 copy given or cached (make demo DATA=...): training on scikit-learn's 8x8 digits instead."
            )
            cfg.dataset = "digits"
    cfg.validate()
    print_summary(mlp_numpy.run(cfg))
    return 0
