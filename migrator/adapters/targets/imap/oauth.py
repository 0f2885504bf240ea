"""App-only OAuth2 access tokens (client-credentials flow) for XOAUTH2 logins.

Microsoft's identity platform hands out tokens for `https://outlook.office365.com/.default` to an
application with the `IMAP.AccessAsApp` permission. One POST of a form is all the flow needs, so
it is done with urllib rather than a further dependency. Tokens are cached and fetched again a
margin before they expire, so a run of many hours never logs in with a stale token. The
margin is at most a quarter of the token's life, so a short-lived token is still reused.
Exchange Online ends a session whose token runs out (`* BYE Session invalidated -
AccessTokenExpired`); a token the server refuses early is dropped with `invalidate()`.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from migrator.adapters.network import endpoint_of, network_outage
from migrator.model.errors import Outage, PermanentError, TransientError
from migrator.model.reasons import Reason
from migrator.model.secrecy import unless_secret

MICROSOFT_TOKEN_URL = "https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token"
REFRESH_MARGIN = 300.0  # seconds before expiry a token is replaced
MARGIN_SHARE = 0.25  # ... but never more than this share of its lifetime
DEFAULT_LIFETIME = 3600.0  # when the answer has no expires_in
_ERROR_CODE = re.compile(r"^[a-z_]{1,64}$")


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float  # on the source's clock (time.monotonic by default)
    renew_at: float  # from here on a new token is fetched and sessions using this one retire


def xoauth2_string(user: str, token: str) -> str:
    """The SASL XOAUTH2 initial response (before base64, which IMAPClient adds)."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


class TokenSource:
    """Thread-safe cache of one application's access token."""

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str,
        timeout: float = 30.0,
        margin: float = REFRESH_MARGIN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_url = token_url
        self._client_id = client_id
        self._secret = client_secret
        self._scope = scope
        self._timeout = timeout
        self._margin = margin
        self._clock = clock
        self._lock = threading.Lock()
        self._token: Token | None = None
        self.fetches = 0  # how many times the endpoint was asked (for tests and reports)

    def token(self) -> Token:
        """A token valid for at least the refresh margin (or a fresh one)."""
        with self._lock:
            if self._token is None or self._clock() >= self._token.renew_at:
                self._token = self._fetch()
            return self._token

    def invalidate(self, value: str) -> None:
        """The server no longer takes token `value` (it ended a session with it, or refused
        it): the next call fetches a new one. A newer token is kept."""
        with self._lock:
            if self._token is not None and self._token.value == value:
                self._token = None

    def _fetch(self) -> Token:
        form = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._secret,
                "scope": self._scope,
            }
        ).encode()
        request = urllib.request.Request(
            self.token_url,
            data=form,
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
        )
        started = self._clock()
        self.fetches += 1
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as answer:  # noqa: S310
                body = answer.read()
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            shown = unless_secret(str(reason), self._secret)
            parts = urllib.parse.urlsplit(self.token_url)
            outage = network_outage(
                reason if isinstance(reason, BaseException) else exc,
                service="target",
                endpoint=endpoint_of(parts.hostname, parts.port or 443),
                timeout=self._timeout,
                connecting=True,
            )
            raise TransientError(
                f"token endpoint {self.token_url}: cannot connect: {shown}",
                hint="check token_url / tenant_id and the network",
                outage=outage,
            ) from None
        try:
            data = json.loads(body)
            value = str(data["access_token"])
            lifetime = float(data.get("expires_in", DEFAULT_LIFETIME))
        except (ValueError, KeyError, TypeError):
            raise PermanentError(
                f"token endpoint {self.token_url}: the answer holds no access_token",
                reason=Reason.CONFIG,
                hint="token_url must be an OAuth2 token endpoint",
            ) from None
        margin = min(self._margin, lifetime * MARGIN_SHARE)
        return Token(value, started + lifetime, started + lifetime - margin)

    def _http_error(self, exc: urllib.error.HTTPError) -> Exception:
        try:
            detail = json.loads(exc.read() or b"{}")
        except ValueError:
            detail = {}
        code = detail.get("error", "") if isinstance(detail, dict) else ""
        # only an RFC 6749 error code (invalid_client...), never the free text of the answer
        code = code if isinstance(code, str) and _ERROR_CODE.match(code) else ""
        where = f"token endpoint {self.token_url}"
        if exc.code == 429 or exc.code >= 500:
            retry = exc.headers.get("Retry-After") if exc.headers else None
            return TransientError(
                f"{where}: HTTP {exc.code}",
                retry_after=float(retry) if retry and retry.isdigit() else None,
            )
        # the description may quote the client id but never the secret; show only the code
        refused = (
            f"{where}: client credentials refused (HTTP {exc.code} "
            f"{code or unless_secret(str(exc.reason), self._secret)})"
        )
        return PermanentError(
            refused,
            reason=Reason.AUTH,
            outage=Outage("target", "auth", refused),
            hint="check client_id, tenant_id and the client secret; the app needs the "
            "IMAP.AccessAsApp permission and a service principal with mailbox access",
        )
