"""Answers as `--format table` (aligned columns for people), `csv` (a header, one line per row) or `json`
(one document)."""

from __future__ import annotations

import io
import json
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.csv as pacsv

from catalog.questions import Answer

FORMATS = ("table", "json", "csv")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_table(table: pa.Table, out: TextIO) -> None:
    names = table.schema.names
    rows = [[_cell(v) for v in row.values()] for row in table.to_pylist()]
    widths = [max([len(name), *(len(row[i]) for row in rows)]) for i, name in enumerate(names)]
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type) for f in table.schema]

    def line(cells: list[str]) -> str:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out.write(line(names) + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in rows:
        out.write(line(row) + "\n")


def render_csv(table: pa.Table, out: TextIO) -> None:
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(quoting_style="needed"))
    out.write(buffer.getvalue().decode())


def render(answer: Answer, fmt: str, out: TextIO) -> None:
    if fmt == "json":
        out.write(json.dumps(answer.document(), separators=(",", ":")) + "\n")  # dumps: the C encoder
    elif fmt == "csv":
        render_csv(answer.table, out)
    else:
        render_table(answer.table, out)
