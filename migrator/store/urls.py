"""State database URLs as they may be shown: passwords masked.

Kept free of SQLAlchemy so the quick read-only path (`status`) can use it.
"""

from __future__ import annotations

import re

# user:password@ inside something that looks like a URL, even one too broken to parse
_PASSWORD_IN_TEXT = re.compile(r"(://[^:/?#@\s]*:)([^@\s]*)(@)")


def mask_url(raw: str) -> str:
    """The URL as it may be shown: any password replaced by ***."""
    return _PASSWORD_IN_TEXT.sub(r"\1***\3", raw)


def scrub(text: str, password: str | None) -> str:
    """Remove a password from a driver's message (some echo the connection string)."""
    if password:
        text = text.replace(password, "***")
    return mask_url(text)
