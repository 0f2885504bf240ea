"""Event log lines for `events` (one line per event; JSON Lines with --json)."""

from __future__ import annotations

import json
from typing import IO, Any

from rich.console import Console

from migrator.report.console import safe


def event_line(e: dict[str, Any]) -> str:
    when = (e["at"] or "").replace("T", " ").rstrip("Z")
    states = f"{e['from'] or ''} -> {e['to'] or ''}" if (e["from"] or e["to"]) else ""
    detail = e["detail"] or {}
    extra = (
        ", ".join(f"{k}={v}" for k, v in detail.items() if v not in (None, "", 0))
        if isinstance(detail, dict)
        else str(detail)
    )
    parts = [when, e["account"] or "-", e["kind"], states, extra]
    return "  ".join(p for p in parts if p)


def render_event(con: Console, e: dict[str, Any]) -> None:
    con.print(safe(event_line(e), 1000), soft_wrap=True)


def write_event_json(e: dict[str, Any], stream: IO[str]) -> None:
    stream.write(json.dumps(e, ensure_ascii=False, default=str) + "\n")
    stream.flush()
