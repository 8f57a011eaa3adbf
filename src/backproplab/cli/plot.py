"""``backproplab plot RUN_DIR [RUN_DIR ...] -o FILE.{png,svg,pdf}``: overlay runs in one picture.

Runs are labelled by what differs between them (``--labels`` to choose); the loss axis is
logarithmic when the losses span decades (``--logy`` / ``--no-logy`` to choose); runs on different
data sets are refused unless ``--mixed_datasets``. See :mod:`backproplab.training.plots`.
"""

from __future__ import annotations

import argparse

from backproplab.errors import ConfigError
from backproplab.training.plots import plot_run_dirs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (each with a metrics.jsonl)"
    )
    parser.add_argument("-o", "--output", required=True, help="picture to write: .png, .svg or .pdf")
    parser.add_argument("--labels", default=None, help="comma-separated legend labels, one per run")
    parser.add_argument("--title", default="", help="title of the picture")
    parser.add_argument(
        "--logy",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="log loss axis (default: by range)",
    )
    parser.add_argument("--mixed_datasets", action="store_true", help="allow runs on different data sets")


def main(args: argparse.Namespace) -> int:
    labels = None if args.labels is None else [s.strip() for s in args.labels.split(",")]
    if labels is not None and any(not s for s in labels):
        raise ConfigError(f"--labels has an empty label: {args.labels!r}")
    path = plot_run_dirs(
        args.run_dirs,
        args.output,
        labels=labels,
        title=args.title,
        logy=args.logy,
        mixed_datasets=args.mixed_datasets,
    )
    print(f"curves of {len(args.run_dirs)} runs: {path}")
    return 0
