"""CSV and JSON account reports (one row per account in scope)."""

from __future__ import annotations

import csv
import json
from typing import IO, Any

# a cell starting with one of these is a formula to Excel/LibreOffice: a directory value such as
# "=HYPERLINK(...)" must stay text when the manager opens the CSV
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return "" if value is None else value


def write_csv(data: dict[str, Any], stream: IO[str]) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(data["columns"])
    for row in data["rows"]:
        writer.writerow([_cell(v) for v in row])


def write_json(data: dict[str, Any], stream: IO[str]) -> None:
    columns = data["columns"]
    out = {k: v for k, v in data.items() if k not in ("columns", "rows")}
    out["rows"] = [dict(zip(columns, row, strict=True)) for row in data["rows"]]
    json.dump(out, stream, ensure_ascii=False, indent=1, default=str)
    stream.write("\n")
