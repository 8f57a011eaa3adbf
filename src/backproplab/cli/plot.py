"""``backproplab plot RUN_DIR [RUN_DIR ...] -o FILE.png``: overlay runs in one picture."""

from __future__ import annotations

import argparse

from backproplab.training.plots import plot_run_dirs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", help="run directories (each with a metrics.jsonl)")
    parser.add_argument("-o", "--output", required=True, help="picture to write (.png)")


def main(args: argparse.Namespace) -> int:
    path = plot_run_dirs(args.run_dirs, args.output)
    print(f"curves of {len(args.run_dirs)} runs: {path}")
    return 0
