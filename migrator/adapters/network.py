"""Socket-level failures in words an operator can act on, the same for every adapter.

Libraries wrap the failure that matters in their own: exchangelib turns "Connection refused"
into "No valid version headers found" (it was guessing the server version), urllib3 into "Max
retries exceeded". `innermost` walks `__cause__`/`__context__` down to what the socket said;
`network_outage` names it with the server's host and port and says whether it is the server's
for sure (a refused or unresolvable connection) or may be one request's own (a read timeout or a
reset in the middle of a big upload, which the engine confirms with a probe first).
"""

from __future__ import annotations

import errno
import socket
import ssl

from migrator.model.errors import Outage

_NO_ROUTE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}


def chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps, outermost first (`__cause__`, else `__context__`)."""
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in out) and len(out) < 50:
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


def innermost(exc: BaseException) -> BaseException:
    return chain(exc)[-1]


def endpoint_of(host: str | None, port: int | None) -> str:
    host = host or "?"
    return f"[{host}]:{port}" if ":" in host and port else f"{host}:{port}" if port else host


def network_outage(
    exc: BaseException, *, service: str, endpoint: str, timeout: float | None, connecting: bool
) -> Outage | None:
    """The Outage `exc` (or what it wraps) amounts to, or None when it is no socket failure.

    `connecting`: the failure came before anything was sent (connect, TLS handshake, greeting):
    nothing account-specific had happened yet, so it is the server's for sure.
    """
    inner = innermost(exc)
    limit = f" within {timeout:g} s" if timeout else ""
    if isinstance(inner, ssl.SSLCertVerificationError):
        detail = inner.verify_message or inner.reason or str(inner)
        return Outage(service, "tls", f"the TLS certificate of {endpoint} is not trusted: {detail}")
    if isinstance(inner, ssl.SSLError) and not isinstance(
        inner, ssl.SSLEOFError | ssl.SSLZeroReturnError
    ):
        return Outage(service, "tls", f"TLS with {endpoint} failed: {inner.reason or inner}")
    if isinstance(inner, ConnectionRefusedError):
        return Outage(service, "unreachable", f"connection refused by {endpoint}")
    if isinstance(inner, socket.gaierror):
        host = endpoint.rsplit(":", 1)[0].strip("[]")
        return Outage(
            service, "unreachable", f"the host name {host} does not resolve ({inner.strerror})"
        )
    if isinstance(inner, TimeoutError):
        # connecting: no connection, or no greeting; else silent in the middle of a request
        return Outage(service, "timeout", f"no answer from {endpoint}{limit}", confirmed=connecting)
    if isinstance(
        inner,
        ConnectionResetError
        | ConnectionAbortedError
        | BrokenPipeError
        | ssl.SSLEOFError
        | EOFError,
    ):
        return Outage(
            service,
            "broken",
            f"the connection to {endpoint} was broken off ({_words(inner)})",
            confirmed=connecting,
        )
    if isinstance(inner, OSError) and inner.errno in _NO_ROUTE:
        return Outage(service, "unreachable", f"no route to {endpoint} ({inner.strerror})")
    return None


def _words(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
