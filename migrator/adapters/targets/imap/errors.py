"""What IMAP servers answer, translated into migrator's errors.

IMAP tells failures apart by response codes in brackets (RFC 5530: [AUTHENTICATIONFAILED],
[NOPERM], [OVERQUOTA], ...) and, on Exchange, by fixed English wordings. Both are read here so
the rest of the package only sees TransientError and PermanentError with stable reasons.
"""

from __future__ import annotations

import imaplib
import re
import socket
import ssl

from migrator.model.errors import PermanentError, TransientError
from migrator.model.secrecy import unless_secret

AUTH = "auth"
NO_MAILBOX = "no-mailbox"
NO_PERMISSION = "no-permission"
TOO_LARGE = "too-large"
REJECTED = "rejected"
QUOTA = "quota"
NOT_FOUND = "not-found"
TLS = "tls"
CONFIG = "config"

# Exchange: "NO Server Unavailable. 15 ... throttled. Suggested Backoff Time: 15000 milliseconds"
_BACKOFF = re.compile(rb"Suggested Backoff Time:\s*(\d+)\s*milli", re.IGNORECASE)
_CODE = re.compile(rb"\[([A-Za-z-]+)")
_TOO_LARGE_TEXT = (b"maximum size of appendable message", b"message too large",
                   b"message size exceeds")
TRANSIENT_CODES = {b"UNAVAILABLE", b"INUSE", b"LIMIT", b"SERVERBUG", b"EXPUNGEISSUED"}

# A dropped or broken connection: imaplib raises `abort` on EOF and BYE; raw socket errors
# (reset, broken pipe, timeout) arrive as OSError.
CONNECTION_LOST = (imaplib.IMAP4.abort, OSError)


def response_code(text: bytes) -> bytes | None:
    """The RFC 5530 code of a tagged answer's text, e.g. b"NOPERM", upper case."""
    match = _CODE.search(text)
    return match.group(1).upper() if match else None


def clean(text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip()
    if text.startswith(("b'", 'b"')) and len(text) > 2:
        text = text[2:-1]
    return text


def answer_error(text: bytes, *, where: str, what: str) -> Exception:
    """The error for a NO/BAD answer `text` (without tag and status) to `what` at `where`."""
    shown = clean(text)
    backoff = _BACKOFF.search(text)
    code = response_code(text)
    lowered = text.lower()
    if backoff is not None or b"throttl" in lowered:
        retry = int(backoff.group(1)) / 1000 if backoff else None
        return TransientError(f"{where}: the server is throttling us ({what}): {shown}",
                              retry_after=retry)
    if code == b"TOOBIG" or any(t in lowered for t in _TOO_LARGE_TEXT):
        return PermanentError(f"{where}: {what} refused as too large: {shown}", reason=TOO_LARGE,
                              hint="the mailbox's maximum message size is lower; raise it on "
                              "the server or accept the message as skipped")
    if code in (b"OVERQUOTA",) or b"quota" in lowered:
        return PermanentError(f"{where}: mailbox over quota ({what}): {shown}", reason=QUOTA,
                              hint="raise the mailbox's quota on the target, then run again")
    if code == b"NOPERM":
        return PermanentError(f"{where}: not allowed ({what}): {shown}", reason=NO_PERMISSION,
                              hint="grant the administrator insert/create rights on the mailbox")
    if code in (b"NONEXISTENT", b"TRYCREATE"):
        return PermanentError(f"{where}: folder not found ({what}): {shown}", reason=NOT_FOUND)
    if code in TRANSIENT_CODES:
        return TransientError(f"{where}: server temporarily unable ({what}): {shown}")
    return PermanentError(f"{where}: the server refused {what}: {shown}", reason=REJECTED)


def connection_error(exc: BaseException, *, where: str, what: str, secrets: tuple[str, ...] = ()) -> TransientError:
    """`secrets`: those the exchange carried (a login's password), so the words are left out
    whole when one occurs in them."""
    detail = unless_secret(clean(str(exc)) or type(exc).__name__, *secrets)
    if isinstance(exc, socket.timeout | TimeoutError):
        detail = f"timed out ({detail})"
    return TransientError(f"{where}: connection lost during {what}: {detail}")


def is_tls_failure(exc: BaseException) -> bool:
    return isinstance(exc, ssl.SSLError)
