"""Building LDAP search filters safely from values that came from somewhere else."""

from __future__ import annotations

# RFC 4515 section 3: in an assertion value these must be written as a backslash and two
# hex digits. Everything else, UTF-8 included, may stand as is.
_ESCAPES = {"\\": "\\5c", "*": "\\2a", "(": "\\28", ")": "\\29", "\x00": "\\00"}


def escape_filter_value(value: str) -> str:
    """Escape `value` so `(attr=<escaped>)` matches exactly `value` (RFC 4515).

    >>> escape_filter_value("close)(uid=*")
    'close\\\\29\\\\28uid=\\\\2a'
    """
    return "".join(_ESCAPES.get(ch, ch) for ch in value)
