"""The one text-table formatter of every report the project prints (check, gradcheck, parity,
doctor, sweep)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence


def format_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Collection[int] = (),
    notes: Mapping[int, str] | None = None,
    indent: str = "    ",
) -> list[str]:
    """The lines of a table: the header, a rule of dashes, one line per row.

    Every column is as wide as its widest cell and two spaces apart; columns whose index is in
    ``right`` (numbers) are right-aligned, the others left-aligned; trailing spaces are dropped, so
    a free-text last column is never padded. ``notes[k]`` is printed on its own line, after
    ``indent``, under row ``k`` (where a failure is, what the worst element was).
    """
    n = len(header)
    for k, row in enumerate(rows):
        if len(row) != n:
            raise ValueError(f"row {k} has {len(row)} cells, the header {n}")
    widths = [max([len(header[c]), *(len(row[c]) for row in rows)]) for c in range(n)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(w) if c in right else cell.ljust(w)
            for c, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    lines = [line(header), "  ".join("-" * w for w in widths)]
    for k, row in enumerate(rows):
        lines.append(line(row))
        if notes and k in notes:
            lines.append(f"{indent}{notes[k]}")
    return lines
