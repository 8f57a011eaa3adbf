"""``backproplab check PATH [--only NAME] [--seed S] [--json]``: check the user's own code.

PATH is a Python file or a folder of them (the practical's filled-in template, a CS231n-style
``layers.py``, any layers with ``forward``/``backward``); see :mod:`backproplab.verify.usercode`
for what is found and :mod:`backproplab.verify.check` for the checks. Prints one table (module,
check, PASS/WARN/FAIL, detail; a failure adds the user's file and line). Exit code 0 when
nothing fails, 1 on any FAIL, 2 for a bad PATH.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from backproplab.cli.dataclass_args import add_dataclass_args, config_from_namespace
from backproplab.utils.table import format_table
from backproplab.verify.check import FAIL, PASS, STATUSES, WARN, CheckReport


@dataclass
class CheckConfig:
    """Flags of ``backproplab check``."""

    path: str = field(default="", metadata={"cli": False})  # the positional PATH
    only: str | None = field(
        default=None, metadata={"help": "check only what is named like this (e.g. Linear)"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the random inputs, parameters and gradients"})
    json: bool = field(default=False, metadata={"help": "print the report as JSON instead of a table"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="your Python file or a folder of them")
    add_dataclass_args(parser, CheckConfig)


def format_report(report: CheckReport) -> str:
    """The table: one line per check, the user's file:line under a FAIL or WARN that has one."""
    header = ("module", "check", "status", "detail")
    rows = [(r.module, r.check, r.status, r.detail) for r in report.rows]
    notes = {k: f"at {r.where}" for k, r in enumerate(report.rows) if r.status != PASS and r.where}
    lines = [f"checked {report.path}: found {', '.join(report.found) or 'nothing'}", ""]
    lines += format_table(header, rows, notes=notes)
    counts = ", ".join(f"{report.count(s)} {s}" for s in STATUSES)
    lines += ["", f"{len(report.rows)} checks: {counts}"]
    lines.append(
        "CHECK FAILED"
        if not report.ok
        else ("CHECK PASSED" if not report.count(WARN) else "CHECK PASSED (with warnings)")
    )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from backproplab.verify.usercode import run_check

    cfg = config_from_namespace(CheckConfig, args)
    report = run_check(args.path, seed=cfg.seed, only=cfg.only)
    print(report.to_json() if cfg.json else format_report(report))
    return 1 if any(r.status == FAIL for r in report.rows) else 0
