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

from migrator.adapters.network import network_outage
from migrator.model.errors import PermanentError, TransientError
from migrator.model.reasons import Reason
from migrator.model.secrecy import unless_secret

# Exchange: "NO Server Unavailable. 15 ... throttled. Suggested Backoff Time: 15000 milliseconds"
_BACKOFF = re.compile(rb"Suggested Backoff Time:\s*(\d+)\s*milli", re.IGNORECASE)
_CODE = re.compile(rb"\[([A-Za-z-]+)")
_TOO_LARGE_TEXT = (
    b"maximum size of appendable message",
    b"message too large",
    b"message size exceeds",
)
# Exchange Online past its limit of concurrent IMAP connections per mailbox: the login is
# taken, then every command gets "BAD User is authenticated but not connected."
_NOT_CONNECTED = b"authenticated but not connected"
# Exchange Online, once a session's OAuth2 token has run out:
# "* BYE Session invalidated - AccessTokenExpired"
_TOKEN_EXPIRED = b"accesstokenexpired"
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
        return TransientError(
            f"{where}: the server is throttling us ({what}): {shown}",
            retry_after=backoff_hint(text),
        )
    if _NOT_CONNECTED in lowered:
        return TransientError(
            f"{where}: the server took the login but does not serve the session ({what}): {shown}",
            hint="Exchange Online answers so past its limit of concurrent IMAP "
            "connections per mailbox (about 20, the user's own mail clients included); if it "
            "lasts, check that the app's service principal has FullAccess on the mailbox",
        )
    if code == b"TOOBIG" or any(t in lowered for t in _TOO_LARGE_TEXT):
        return PermanentError(
            f"{where}: {what} refused as too large: {shown}",
            reason=Reason.TOO_LARGE,
            hint="the mailbox's maximum message size is lower; raise it on "
            "the server or accept the message as skipped",
        )
    if code in (b"OVERQUOTA",) or b"quota" in lowered:
        return PermanentError(
            f"{where}: mailbox over quota ({what}): {shown}",
            reason=Reason.QUOTA,
            hint="raise the mailbox's quota on the target, then run again",
        )
    if code == b"NOPERM":
        return PermanentError(
            f"{where}: not allowed ({what}): {shown}",
            reason=Reason.NO_PERMISSION,
            hint="grant the administrator insert/create rights on the mailbox",
        )
    if code in (b"NONEXISTENT", b"TRYCREATE"):
        return PermanentError(
            f"{where}: folder not found ({what}): {shown}", reason=Reason.NOT_FOUND
        )
    if code in TRANSIENT_CODES:
        return TransientError(f"{where}: server temporarily unable ({what}): {shown}")
    return PermanentError(f"{where}: the server refused {what}: {shown}", reason=Reason.REJECTED)


def backoff_hint(text: bytes) -> float | None:
    """Seconds from Exchange's "Suggested Backoff Time: N milliseconds", if `text` has it."""
    match = _BACKOFF.search(text)
    return int(match.group(1)) / 1000 if match else None


def session_unusable(text: bytes) -> bool:
    """The answer means this session will serve nothing more: open another one."""
    return _NOT_CONNECTED in text.lower()


def token_expired(text: bytes | str) -> bool:
    """The server ended the session because its OAuth2 token ran out."""
    if isinstance(text, str):
        text = text.encode("utf-8", "replace")
    return _TOKEN_EXPIRED in text.lower()


def connection_error(
    exc: BaseException,
    *,
    where: str,
    what: str,
    endpoint: str | None = None,
    timeout: float | None = None,
    secrets: tuple[str, ...] = (),
) -> TransientError:
    """A connection that broke or went silent during `what`. With the server's `endpoint`, it
    carries an unconfirmed Outage: the engine asks the server (a probe) whether it is down.
    `secrets`: those the exchange carried (a login's password), so the words are left out
    whole when one occurs in them."""
    detail = unless_secret(clean(str(exc)) or type(exc).__name__, *secrets)
    if isinstance(exc, socket.timeout | TimeoutError):
        detail = f"timed out ({detail})"
    outage = None
    if endpoint is not None:
        outage = network_outage(
            exc, service="target", endpoint=endpoint, timeout=timeout, connecting=False
        )
    return TransientError(f"{where}: connection lost during {what}: {detail}", outage=outage)


def is_tls_failure(exc: BaseException) -> bool:
    return isinstance(exc, ssl.SSLError)
