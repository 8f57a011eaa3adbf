"""``backproplab``: train the practical's models, plot runs, and verify gradients.

Sub-commands are imported lazily, so ``backproplab --help`` and the NumPy trainers never import
torch. A user error (bad flag value, missing data, wrong shape, an ``--out`` that cannot be
written, a full disk) prints one ``error: ...`` line and exits 2; a Ctrl-C exits 130 after the
trainer has saved what it had, also when it comes while the trainer is still being imported. A run
that fails before its training starts removes the run directory it had made.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backproplab.cli.dataclass_args import (
    OneLineParser,
    add_dataclass_args,
    config_from_namespace,
    unknown_flag_error,
)
from backproplab.errors import BackproplabError, DiskFullError, NonFiniteError

#: Exit codes: 0 done, 1 a check or verification failed, 2 a bad input (flag, path, data, disk), 3 a run
#: whose loss became non-finite (metrics kept), 130 interrupted (Ctrl-C).
EXIT_DIVERGED = 3

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
    "check": (
        "backproplab.cli.check",
        "check your own layers, losses and models (a file or folder) against PyTorch",
    ),
    "doctor": (
        "backproplab.cli.doctor",
        "check an MLP for the usual reasons it will not learn (PASS/WARN/FAIL)",
    ),
    "sweep": ("backproplab.cli.sweep", "search a trainer's flags on Ray Tune (SWEEP.toml); see sweeps/"),
}


def _trainer_config(module: Any) -> type:
    cls: type = module.CONFIG
    return cls


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser; only the sub-command named in ``argv`` is imported to add its flags."""
    parser = OneLineParser(
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


def _active_parser(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.ArgumentParser:
    """The (sub-)parser of the command that ``argv`` names: ``train MODEL`` or ``TOOL``."""
    current = parser
    for word in argv[:2]:
        subs = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            break
        current = subs[0].choices[word]
    return current


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


#: OSErrors that come from the user's environment (an --out on a read-only file system, a full
#: disk, ...), reported as one line rather than a traceback.
USER_OS_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR}
)


def _run_serial() -> int:
    run_dir = sys.modules.get("backproplab.training.run_dir")
    return 0 if run_dir is None else int(run_dir.last_run_serial())


def _abandon_unstarted_runs(since: int) -> None:
    """Remove the run directories this command made for runs that failed before training."""
    run_dir = sys.modules.get("backproplab.training.run_dir")
    if run_dir is not None:
        run_dir.abandon_unstarted_runs(since)


def _with_resume_hint(e: BackproplabError) -> str:
    """The error's line; for a full disk in a run directory that holds a checkpoint, it ends with
    how to continue the run once there is space."""
    text = str(e)
    if isinstance(e, DiskFullError) and e.filename and text.endswith("and try again"):
        run = Path(e.filename).parent
        if any((run / name).is_file() for name in ("checkpoint.pt", "checkpoint.npz")):
            return f"{text.removesuffix('try again')}continue the run with --resume {run}"
    return text


def _os_error_line(e: OSError) -> str:
    where = f" {e.filename}" if e.filename else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full: cannot write{where} ({e.strerror}); what was written before is kept"
    return f"cannot write{where}: {e.strerror}"


def main(argv: Sequence[str] | None = None) -> int:
    """The ``backproplab`` command; returns the exit code (0, 1 for failed checks, 2, 130)."""
    since = _run_serial()
    try:
        return _main(argv)
    except KeyboardInterrupt:
        _abandon_unstarted_runs(since)
        print("interrupted: everything written so far is kept", file=sys.stderr)
        return 130
    except NonFiniteError as e:  # a run that diverged: its metrics are kept; not a bad input
        _abandon_unstarted_runs(since)
        print(f"error: {_with_resume_hint(e)}", file=sys.stderr)
        return EXIT_DIVERGED
    except BackproplabError as e:
        _abandon_unstarted_runs(since)
        print(f"error: {_with_resume_hint(e)}", file=sys.stderr)
        return 2
    except MemoryError as e:
        _abandon_unstarted_runs(since)
        detail = str(e).split("\n")[0] or "the allocation failed"
        print(f"error: out of memory ({detail}); use a smaller model or --batch_size", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in USER_OS_ERRNOS:
            raise
        _abandon_unstarted_runs(since)
        print(f"error: {_os_error_line(e)}", file=sys.stderr)
        return 2


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        raise unknown_flag_error(_active_parser(parser, argv), extra)
    if args.command == "train":
        module = importlib.import_module(TRAINERS[args.trainer][0])
        cfg: Any = config_from_namespace(_trainer_config(module), args)
        print_summary(module.run(cfg))
        return 0
    return int(importlib.import_module(TOOLS[args.command][0]).main(args))


if __name__ == "__main__":
    sys.exit(main())
