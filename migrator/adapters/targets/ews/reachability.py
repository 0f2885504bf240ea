"""Is the EWS server down, or is this one mailbox's trouble? (see model.errors.Outage)

exchangelib hides the socket's words under its own: a refused connection arrives as
"No valid version headers found in response (ErrorTimeoutExpired('Reraised from
ConnectionError(...Connection refused...))')" because the first request was its version
guess. `outage_of` reads what the socket said and where it said it; `probe` asks the server
whether it answers at all, with a bare request bounded by [target] timeout, when a request
failed in a way that may be its own (a read timeout, a reset).
"""

from __future__ import annotations

import re
from dataclasses import replace
from urllib.parse import urlsplit

import requests
import urllib3
from exchangelib import errors as ews

from migrator.adapters.network import chain, endpoint_of, network_outage
from migrator.model.errors import Outage, PermanentError, TransientError
from migrator.model.plan import TargetSettings
from migrator.model.reasons import Reason

from .auth import ServiceAccountRefused

_HOST_PORT = re.compile(r"host='([^']+)', port=(\d+)")
_TIMEOUT = re.compile(r"(?:read|connect) timeout=([\d.]+)")


def outage_of(exc: BaseException) -> Outage | None:
    """The Outage `exc` amounts to: the service account refused (HTTP 401), or a socket
    failure (refused, unresolvable, TLS, timeout, reset) under whatever exchangelib made of it."""
    links = chain(exc)
    if isinstance(exc, ServiceAccountRefused):
        return Outage("target", "auth", exc.cause, hint=exc.hint)
    if isinstance(exc, ews.UnauthorizedError):
        return Outage(
            "target", "auth", f"the EWS server refused the service account's credentials ({exc})"
        )
    endpoint = _endpoint(links)
    if endpoint is None:
        return None
    connecting = any(
        isinstance(link, requests.exceptions.ConnectTimeout | urllib3.exceptions.NewConnectionError)
        for link in links
    )
    return network_outage(
        exc, service="target", endpoint=endpoint, timeout=_timeout(links), connecting=connecting
    )


def probe(settings: TargetSettings) -> None:
    """A bare POST to the EWS URL: any HTTP answer (401 without credentials) means the server
    is there. Raises TransientError/PermanentError carrying a confirmed Outage when not."""
    url = settings.url or ""
    verify: bool | str = (
        settings.ca_file if settings.tls_verify and settings.ca_file else settings.tls_verify
    )
    try:
        requests.post(
            url, data=b"", timeout=settings.timeout, verify=verify, allow_redirects=False
        ).close()
    except requests.RequestException as exc:
        outage = outage_of(exc) or Outage(
            "target", "unreachable", f"{url}: {type(exc).__name__}: {exc}"
        )
        outage = replace(outage, confirmed=True)
        message = f"EWS server {url}: {outage.cause}"
        if outage.kind == "tls":
            raise PermanentError(
                message,
                reason=Reason.TLS,
                outage=outage,
                hint="set [target] ca_file to the CA that signed the server certificate",
            ) from None
        raise TransientError(message, outage=outage) from None


def _endpoint(links: list[BaseException]) -> str | None:
    for link in links:
        url = getattr(getattr(link, "request", None), "url", None)
        if isinstance(url, str) and url:
            parts = urlsplit(url)
            return endpoint_of(
                parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
            )
        pool = getattr(link, "pool", None)
        if pool is not None and getattr(pool, "host", None):
            return endpoint_of(pool.host, pool.port)
    for link in links:  # exchangelib re-raises some from text only
        found = _HOST_PORT.search(str(link))
        if found:
            return endpoint_of(found.group(1), int(found.group(2)))
    return None


def _timeout(links: list[BaseException]) -> float | None:
    for link in links:
        found = _TIMEOUT.search(str(link))
        if found:
            return float(found.group(1))
    return None
