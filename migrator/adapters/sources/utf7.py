"""IMAP modified UTF-7 (RFC 3501 section 5.1.3), the encoding of mailbox names.

Dovecot stores Maildir++ and fs-layout folder names on disk in this encoding too
(``Entw&APw-rfe`` is ``Entwürfe``), and IMAP servers send mailbox names in it.
"""

from __future__ import annotations

import base64
import binascii


def encode(name: str) -> str:
    """Encode a Unicode mailbox name; printable ASCII stays as is, '&' becomes '&-'."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            utf16 = "".join(pending).encode("utf-16-be")
            b64 = base64.b64encode(utf16).decode("ascii").rstrip("=").replace("/", ",")
            out.append("&" + b64 + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def decode(name: str) -> str:
    """Decode a modified UTF-7 name. Raises ValueError on anything not validly encoded
    (callers that read names from disk fall back to the raw name)."""
    out: list[str] = []
    i = 0
    while i < len(name):
        ch = name[i]
        if ord(ch) > 0x7E or (ord(ch) < 0x20):
            raise ValueError(f"not modified UTF-7: character {ch!r} must be encoded")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = name.find("-", i + 1)
        if end < 0:
            raise ValueError("not modified UTF-7: '&' without closing '-'")
        chunk = name[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            b64 += "=" * (-len(b64) % 4)
            try:
                raw = base64.b64decode(b64, validate=True)
                text = raw.decode("utf-16-be")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise ValueError(f"not modified UTF-7: bad base64 section {chunk!r}") from exc
            if any(0x20 <= ord(c) <= 0x7E for c in text):
                raise ValueError(f"not modified UTF-7: {chunk!r} encodes printable ASCII")
            out.append(text)
        i = end + 1
    return "".join(out)


def decode_lenient(name: str) -> str:
    """Decode when validly encoded, else return the name unchanged (e.g. a UTF-8 name on disk
    such as 'R&D' written by a tool that does not encode)."""
    try:
        return decode(name)
    except ValueError:
        return name
