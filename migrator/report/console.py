"""One place that builds rich consoles and makes directory values safe to print."""

from __future__ import annotations

import errno
import json
import sys
import unicodedata
from typing import IO, Any

from rich.console import Console
from rich.markup import escape


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # rich would exit(1) on the spot, from whichever thread printed; the CLI's one error
        # handler decides what a closed pipe means (cli/errors.py), so let the error reach it
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def console(file: IO[str] | None = None) -> Console:
    # no colour or animation when not a terminal (rich detects it); width stays readable in logs
    stream = file or sys.stdout
    return _Console(file=stream, highlight=False, soft_wrap=False, width=None if stream.isatty() else 120)


def error_console() -> Console:
    # not a terminal (a log, cron's mail): one line per message, never a path broken in two
    return _Console(file=sys.stderr, highlight=False, soft_wrap=not sys.stderr.isatty())


def safe(value: object, limit: int = 60) -> str:
    """A value from the directory or a mailbox as it may appear on a terminal.

    Control characters (which could move the cursor or forge lines) are shown as escapes,
    rich markup is escaped, and very long values are cut with an ellipsis.
    """
    if value is None:
        return ""
    text = "".join(
        ch if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp") else f"\\x{ord(ch):02x}"
        for ch in str(value)
    )
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return escape(text)


def print_json(data: Any, file: IO[str] | None = None) -> None:
    stream = file or sys.stdout
    json.dump(data, stream, ensure_ascii=False, indent=2, default=str)
    stream.write("\n")
