"""Turning ldap3 failures into DirectoryError with words an operator can act on.

Every message names the directory URL (never a password) and says what to change next. What
ldap3 or the server said about a bind is shown only without the password in it (model/secrecy.py);
nothing is masked afterwards.
"""

from __future__ import annotations

import re
from typing import Any

from ldap3.core.exceptions import LDAPException, LDAPInvalidFilterError, LDAPStartTLSError

from migrator.model.errors import DirectoryError
from migrator.model.plan import DirectorySettings
from migrator.model.secrecy import unless_secret

# LDAP result codes (RFC 4511 section 4.1.9) this module gives their own wording
PROTOCOL_ERROR = 2
SIZE_LIMIT_EXCEEDED = 4
ADMIN_LIMIT_EXCEEDED = 11
UNAVAILABLE_CRITICAL_EXTENSION = 12
CONFIDENTIALITY_REQUIRED = 13
NO_SUCH_OBJECT = 32
INVALID_DN_SYNTAX = 34
INAPPROPRIATE_AUTHENTICATION = 48
INVALID_CREDENTIALS = 49
INSUFFICIENT_ACCESS = 50
BUSY = 51
UNAVAILABLE = 52
UNWILLING_TO_PERFORM = 53

# a server that will not page answers the first paged request with one of these
PAGING_REFUSED = frozenset(
    {ADMIN_LIMIT_EXCEEDED, UNAVAILABLE_CRITICAL_EXTENSION, UNWILLING_TO_PERFORM}
)

_SSL_SOURCE = re.compile(r"\s*\(_ssl\.c:\d+\)")
_TLS_HINT = (
    "set [directory] ca_file to the PEM file of the CA that signed the server's certificate "
    "(and check the host in the URL is a name the certificate lists); tls_verify = false turns "
    "the check off, which lets anyone in between read the directory"
)


def connect_error(
    settings: DirectorySettings, exc: LDAPException, password: str | None
) -> DirectoryError:
    # ldap3's words about opening, StartTLS or binding: the bind carried the password
    detail = unless_secret(_detail(exc), password)
    lowered = detail.lower()
    if isinstance(exc, LDAPStartTLSError) and "wrap socket" not in lowered:
        return DirectoryError(
            f"{settings.url}: the server refused StartTLS ({detail})",
            hint="the server has no TLS configured for StartTLS; configure TLS on it, use an "
            "ldaps:// URL if it offers one, or set [directory] start_tls = false",
        )
    if _looks_like_tls(lowered):
        return DirectoryError(
            f"{settings.url}: TLS negotiation or certificate check failed ({detail})",
            hint=_TLS_HINT,
        )
    if "timed out" in lowered or "timeout" in lowered:
        return DirectoryError(
            f"{settings.url}: no answer within {settings.timeout:g} s ({detail})",
            hint="check the host and port in [directory] url and that no firewall drops the "
            "connection; raise [directory] timeout if the server is merely slow",
        )
    if "invalid server address" in lowered:
        return DirectoryError(
            f"{settings.url}: cannot connect: the host name does not resolve ({detail})",
            hint="check the host in [directory] url and this host's DNS settings",
        )
    return DirectoryError(
        f"{settings.url}: cannot connect to the directory server ({detail})",
        hint="check the host and port in [directory] url, that the LDAP server is running, "
        "and that this host may reach it",
    )


def bind_error(
    settings: DirectorySettings, result: dict[str, Any] | None, password: str | None
) -> DirectoryError:
    # the result code's name is ldap3's own; the server's diagnostic text answers the bind
    code, text = _code(result), result_text(result, password)
    who = f"as {settings.bind_dn}" if settings.bind_dn else "anonymously"
    where_password = _password_source(settings)
    if code == INVALID_CREDENTIALS:
        return DirectoryError(
            f"{settings.url}: bind {who} refused: invalid credentials",
            hint=f"check [directory] bind_dn and the password in {where_password}",
        )
    if code in (CONFIDENTIALITY_REQUIRED, INAPPROPRIATE_AUTHENTICATION) or (
        code == UNWILLING_TO_PERFORM and not settings.bind_dn
    ):
        return DirectoryError(
            f"{settings.url}: bind {who} refused: {text}",
            hint="the server wants an encrypted connection or a real account: use ldaps:// or "
            "start_tls = true, and set [directory] bind_dn with a password",
        )
    return DirectoryError(
        f"{settings.url}: bind {who} failed: {text}",
        hint=f"check [directory] bind_dn and the password in {where_password}",
    )


def filter_error(settings: DirectorySettings, search_filter: str, exc: Exception) -> DirectoryError:
    return DirectoryError(
        f"{settings.url}: invalid search filter {search_filter!r}: {_detail(exc)}",
        hint="write an RFC 4515 filter such as (&(objectClass=person)(mail=*)); every part in "
        "parentheses, and *, (, ), \\ inside values escaped as \\2a, \\28, \\29, \\5c",
    )


def search_error(
    settings: DirectorySettings, search_filter: str, result: dict[str, Any] | None
) -> DirectoryError:
    code, text = _code(result), result_text(result)
    if code == NO_SUCH_OBJECT:
        return DirectoryError(
            f"{settings.url}: the search base {settings.base!r} does not exist",
            hint="check [directory] base: it must be the DN of an entry on this server, e.g. "
            "dc=ife,dc=org,dc=mx or ou=people,dc=ife,dc=org,dc=mx",
        )
    if code == PROTOCOL_ERROR and "filter" in text.lower():
        return filter_error(settings, search_filter, ValueError(text))
    if code == INVALID_DN_SYNTAX:
        return DirectoryError(
            f"{settings.url}: the search base {settings.base!r} is not a valid DN ({text})",
            hint="check [directory] base, e.g. dc=ife,dc=org,dc=mx",
        )
    if code == INSUFFICIENT_ACCESS:
        return DirectoryError(
            f"{settings.url}: not allowed to search under {settings.base!r} ({text})",
            hint="bind with an account that may read the people entries ([directory] bind_dn)",
        )
    if code in (BUSY, UNAVAILABLE):
        return DirectoryError(
            f"{settings.url}: the server is busy or unavailable ({text})",
            hint="try again later",
        )
    return DirectoryError(
        f"{settings.url}: search {search_filter!r} under {settings.base!r} failed: {text}",
        hint="check [directory] base and filter; the server's own words are above",
    )


def size_limit_error(
    settings: DirectorySettings,
    returned: int,
    *,
    paging_refused: str | None,
    paged: bool,
    part: str,
) -> DirectoryError:
    """A search that still hit the size limit after being split in parts (`part` names the one)."""
    if paged:
        why = f"the server stops even paged searches at its size limit ({returned} entries)"
    elif paging_refused is not None:
        why = (
            f"the server refused paged results ({paging_refused}) and stops a search at its "
            f"size limit ({returned} entries)"
        )
    else:
        why = f"the server stops a search at its size limit ({returned} entries)"
    return DirectoryError(
        f"{settings.url}: size limit exceeded: {why}, even for one part of the search split to "
        f"stay under it ({part}); the account list would be incomplete",
        hint="ask the directory administrator to allow paged results (RFC 2696) or to raise "
        'the size limit for the bind DN (OpenLDAP: limits dn.exact="<bind dn>" '
        "size=unlimited), or narrow [directory] filter or base",
    )


def ldif_error(settings: DirectorySettings, problem: str, hint: str) -> DirectoryError:
    return DirectoryError(f"{settings.url}: {problem}", hint=hint)


def lost_error(settings: DirectorySettings, exc: LDAPException) -> DirectoryError:
    """A failure in the middle of talking to the server (socket closed, timeout)."""
    detail = _detail(exc)
    if isinstance(exc, LDAPInvalidFilterError):
        return DirectoryError(f"{settings.url}: invalid search filter: {detail}")
    return DirectoryError(
        f"{settings.url}: the connection to the directory failed during the search ({detail})",
        hint="run again; if it keeps failing, check the server's logs, its idle/time limits, "
        "and raise [directory] timeout",
    )


def not_ldap_error(
    settings: DirectorySettings, exc: Exception, password: str | None = None
) -> DirectoryError:
    detail = unless_secret(_detail(exc), password)
    return DirectoryError(
        f"{settings.url}: the server's answer is not LDAP ({type(exc).__name__}: {detail})",
        hint="check the port in [directory] url: 389 for ldap://, 636 for ldaps://; an ldaps "
        "port reached with ldap:// (or the reverse) answers like this",
    )


def _looks_like_tls(lowered: str) -> bool:
    return any(
        word in lowered for word in ("ssl", "tls", "certificate", "handshake", "wrap socket")
    )


def _detail(exc: BaseException) -> str:
    value: object = exc
    while isinstance(value, BaseException | tuple | list):
        inner = value.args if isinstance(value, BaseException) else value
        if len(inner) != 1:
            break
        value = inner[0]
    # ldap3 wraps socket errors in the repr of tuples and lists; keep the readable words
    text = _SSL_SOURCE.sub("", str(value)).strip("()\"', ") or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _code(result: dict[str, Any] | None) -> int | None:
    return None if not result else result.get("result")


def result_text(result: dict[str, Any] | None, password: str | None = None) -> str:
    """The result code's name (ldap3's table) and the server's diagnostic message; the latter
    only when `password` (sent in the request answered) does not occur in it."""
    if not result:
        return "no answer from the server"
    parts = [str(result.get("description") or f"result code {result.get('result')}")]
    if result.get("message"):
        parts.append(unless_secret(str(result["message"]), password))
    return ": ".join(parts)


def _password_source(settings: DirectorySettings) -> str:
    if settings.password_env:
        # not the variable's name: a plan may hold the password itself in its place
        return "the environment variable named by [directory] password_env"
    if settings.password_file:
        return f"the file {settings.password_file}"
    return "[directory] password_env or password_file"
