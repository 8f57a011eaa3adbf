"""``backproplab``: train the practical's models, plot runs, and verify gradients.

Sub-commands are imported lazily, so ``backproplab --help`` and the NumPy trainers never import
torch. A user error (bad flag value, missing data, wrong shape) prints one line and exits 2; a
Ctrl-C exits 130 after the trainer has saved what it had.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from backproplab.cli.dataclass_args import add_dataclass_args, config_from_namespace
from backproplab.errors import BackproplabError

# name -> (module, help). A trainer module defines CONFIG (a dataclass) and run(cfg) -> summary dict.
TRAINERS: dict[str, tuple[str, str]] = {
    "mlp-numpy": ("backproplab.training.mlp_numpy", "the practical's MLP in the NumPy engine"),
    "mlp-torch": ("backproplab.training.mlp_torch", "the practical's MLP in PyTorch, with its tuning knobs"),
    "convnet": ("backproplab.training.convnet", "the practical's PreAct ConvNet in PyTorch"),
    "convnet-numpy": (
        "backproplab.training.convnet_numpy",
        "the practical's PreAct ConvNet in the NumPy engine",
    ),
    "speedrun": ("backproplab.training.speedrun", "a fast CIFAR-10 CNN recipe, timed over --runs (GPU)"),
}

# name -> (module, help). A tool module defines add_arguments(parser) and main(args) -> exit code.
TOOLS: dict[str, tuple[str, str]] = {
    "demo": (
        "backproplab.cli.demo",
        "train the default NumPy MLP on CIFAR-10 (or the bundled digits offline)",
    ),
    "plot": ("backproplab.cli.plot", "overlay the curves of several runs in one picture"),
    "gradcheck": (
        "backproplab.cli.gradcheck",
        "check every backward pass against float64 central differences",
    ),
    "parity": (
        "backproplab.cli.parity",
        "compare the NumPy MLP with its PyTorch twin, layer by layer and over training",
    ),
    "doctor": (
        "backproplab.cli.doctor",
        "check an MLP for the usual reasons it will not learn (PASS/WARN/FAIL)",
    ),
}


def _trainer_config(module: Any) -> type:
    cls: type = module.CONFIG
    return cls


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser; only the sub-command named in ``argv`` is imported to add its flags."""
    parser = argparse.ArgumentParser(
        prog="backproplab", description="Train the practical's models, plot runs, and verify gradients."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = sub.add_parser("train", help="train a model; writes a run directory")
    tsub = train.add_subparsers(dest="trainer", required=True, metavar="MODEL")
    for name, (mod_name, help_text) in TRAINERS.items():
        p = tsub.add_parser(name, help=help_text, description=help_text)
        if len(argv) > 1 and argv[0] == "train" and argv[1] == name:
            add_dataclass_args(p, _trainer_config(importlib.import_module(mod_name)))
    for name, (mod_name, help_text) in TOOLS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if argv and argv[0] == name:
            importlib.import_module(mod_name).add_arguments(p)
    return parser


def print_summary(summary: dict[str, Any]) -> None:
    """The lines a user wants at the end of a run: accuracy and where the files are."""
    acc = summary.get("final_test_acc")
    best = summary.get("best_test_acc")
    print(
        f"final test accuracy: {acc:.4f} (best {best:.4f} at step {summary.get('best_step')})"
        if acc is not None
        else "no evaluation ran"
    )
    run_dir = summary.get("run_dir")
    if run_dir:
        print(f"run directory: {run_dir}")
        for name in ("curves.png", "metrics.jsonl", "summary.json", "config.json"):
            print(f"  {name}: {run_dir}/{name}")
        if summary.get("model"):
            print(f"  model: {summary['model']}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            module = importlib.import_module(TRAINERS[args.trainer][0])
            cfg: Any = config_from_namespace(_trainer_config(module), args)
            print_summary(module.run(cfg))
            return 0
        return int(importlib.import_module(TOOLS[args.command][0]).main(args))
    except BackproplabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: everything written so far is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
