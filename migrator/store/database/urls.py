"""State database URLs as they may be shown: passwords masked.

Kept free of SQLAlchemy so the quick read-only path (`status`) can use it.
"""

from __future__ import annotations

import re

from migrator.model.secrecy import unless_secret

# user:password@ inside something that looks like a URL, even one too broken to parse
_PASSWORD_IN_TEXT = re.compile(r"(://[^:/?#@\s]*:)([^@\s]*)(@)")


def mask_url(raw: str) -> str:
    """The URL as it may be shown: the password field of any URL in it replaced by ***.

    By position in the URL, never by searching for the password's text elsewhere."""
    return _PASSWORD_IN_TEXT.sub(r"\1***\3", raw)


def scrub(text: str, password: str | None) -> str:
    """A driver's words as they may be shown: URLs without their password, and the whole
    text left out when the password still occurs in it (never starred out of the words)."""
    return unless_secret(mask_url(text), password)
