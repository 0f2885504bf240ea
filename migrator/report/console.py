"""One place that builds rich consoles and makes directory values safe to print."""

from __future__ import annotations

import errno
import json
import sys
import unicodedata
from collections.abc import Iterable
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
    return _Console(
        file=stream, highlight=False, soft_wrap=False, width=None if stream.isatty() else 120
    )


def error_console() -> Console:
    # not a terminal (a log, cron's mail): one line per message, never a path broken in two
    return _Console(file=sys.stderr, highlight=False, soft_wrap=not sys.stderr.isatty())


def safe(value: object, limit: int = 60) -> str:
    """A value from the directory or a mailbox as it may appear on a terminal.

    Control characters (which could move the cursor or forge lines) are shown as escapes,
    rich markup is escaped, and very long values are cut with an ellipsis.
    """
    text = _printable(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return escape(text)


def _printable(value: object) -> str:
    if value is None:
        return ""
    text = str(value)
    if text.isprintable():  # the common case, and fast: none of the categories below is printable
        return text
    return "".join(
        ch if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp") else f"\\x{ord(ch):02x}"
        for ch in text
    )


def print_json(data: Any, file: IO[str] | None = None) -> None:
    stream = file or sys.stdout
    json.dump(data, stream, ensure_ascii=False, indent=2, default=str)
    stream.write("\n")


def print_json_array(items: Iterable[Any], file: IO[str] | None = None) -> int:
    """A JSON array written item by item, exactly as print_json(list(items)) would print it,
    in constant memory: the first items are out before the last are read. Nothing is written
    before the first item exists, so an error raised in getting it leaves no half array.
    Returns how many items were written."""
    stream = file or sys.stdout
    count = 0
    for item in items:
        # one write per item: json.dump's many small writes cost more than the encoding
        stream.write(("[\n  " if not count else ",\n  ") + _array_item(item))
        count += 1
    stream.write("\n]\n" if count else "[]\n")
    return count


# json's indenting encoder is pure Python; for a flat object (every value a scalar or an empty
# list) the C encoder with these separators writes the same text three times faster
_FLAT_ITEM = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",\n    ", ": ")).encode


def _array_item(item: Any) -> str:
    """`item` as json.dumps(..., indent=2) lays it out inside an array (one level in)."""
    if (
        isinstance(item, dict)
        and item
        and not any(isinstance(v, dict | list | tuple) and v for v in item.values())
    ):
        return "{\n    " + _FLAT_ITEM(item)[1:-1] + "\n  }"
    return json.dumps(item, ensure_ascii=False, indent=2, default=str).replace("\n", "\n  ")


def plain(value: object, limit: int = 60) -> str:
    """Like safe(), for text written straight to the stream rather than through rich: control
    characters escaped and long values cut, but no markup escaping (nothing interprets it)."""
    text = _printable(value)
    return text[: limit - 1] + "…" if len(text) > limit else text
