"""exchangelib configuration for one [target] section: credentials, retry policy, TLS, logging."""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    OAUTH2,
    Account,
    Configuration,
    Credentials,
    FailFast,
)
from exchangelib.errors import SessionPoolMinSizeReached
from exchangelib.protocol import BaseProtocol, Protocol
from exchangelib.services.common import EWSService
from oauthlib.oauth2 import TokenExpiredError

from migrator.model.errors import PlanError
from migrator.model.plan import TargetSettings

from .auth import MICROSOFT_TOKEN_URL, MigratorOAuth2Credentials, refused
from .errors import HttpThrottled, RequestTooLarge

AUTH_TYPES = {"ntlm": NTLM, "basic": BASIC, "oauth2": OAUTH2}


# A 404 to a request at least this large is IIS request filtering refusing its size (404.13,
# "Content length too large": "HTTP status codes in IIS", KB 943891; IIS 7 moved 413 there),
# not a wrong URL: no EWS request but CreateItem with mail in it comes near this size, and a
# wrong URL has already failed on the small requests before it (preflight).
FILTERED_REQUEST_BYTES = 64 * 1024


class FailFastWithHints(FailFast):
    """exchangelib's fail-fast policy (our retry layer decides), keeping the server's hint.

    Stock FailFast reports HTTP 503 without its Retry-After and 429 as an unknown failure; both
    become HttpThrottled (an ErrorServerBusy) carrying Retry-After in seconds. HTTP 413 (the WCF
    binding's maxReceivedMessageSize) and IIS's 404.13 (request filtering's
    maxAllowedContentLength; remote clients see a plain 404 page, so it is told from a wrong
    URL by the request's size) become RequestTooLarge, so upload can split the request.
    """

    def __init__(self, *, auth: str = "basic", account: str = "") -> None:
        super().__init__()
        self.auth = auth
        self.account = account
        # bearer tokens the server has taken: a 401 to one of them means it ran out (or was
        # revoked) and a new one is fetched; a 401 to a fresh token is a refusal
        self._accepted: dict[str, None] = {}
        self._accepted_lock = threading.Lock()

    def raise_response_errors(self, response: requests.Response) -> None:
        bearer = _bearer(response)
        if response.status_code == 401:
            with self._accepted_lock:
                taken = bearer is not None and bearer in self._accepted
            if taken:
                # exchangelib retires the session (its token with it), opens one with a fresh
                # token, and sends the request again; IIS refused it before EWS ran it
                raise TokenExpiredError(description="the EWS server no longer takes this token")
            raise refused(self.auth, self.account, response.content or b"", response.headers)
        if bearer is not None:
            with self._accepted_lock:
                self._accepted[bearer] = None
                while len(self._accepted) > ACCEPTED_TOKENS:
                    del self._accepted[next(iter(self._accepted))]
        if response.status_code in (429, 503):
            raise HttpThrottled(response.status_code, retry_after_seconds(response))
        if response.status_code == 413:
            raise RequestTooLarge(413)
        if response.status_code == 404 and _request_bytes(response) >= FILTERED_REQUEST_BYTES:
            raise RequestTooLarge(404)
        super().raise_response_errors(response)


ACCEPTED_TOKENS = 16  # bearer tokens remembered as taken by the server


def _bearer(response: requests.Response) -> str | None:
    header = (
        response.request.headers.get("Authorization", "") if response.request is not None else ""
    )
    scheme, _, token = str(header).partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def _request_bytes(response: requests.Response) -> int:
    body = response.request.body if response.request is not None else None
    return len(body) if isinstance(body, bytes | str) else 0


def retry_after_seconds(response: requests.Response) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value) or None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    server_now = response.headers.get("Date")
    try:
        now = parsedate_to_datetime(server_now) if server_now else None
    except (TypeError, ValueError):
        now = None
    if now is None:
        now = datetime.now(UTC)
    seconds = (when - now).total_seconds()
    return seconds if seconds > 0 else None


# --- TLS -------------------------------------------------------------------------------------
# exchangelib builds its HTTP sessions itself; the only hook is the adapter class on
# BaseProtocol, shared by every endpoint. We install ours only when a target asks for a
# non-default check, and it applies the setting of the endpoint each request goes to.
_tls_lock = threading.Lock()
_tls_by_prefix: dict[str, bool | str] = {}


class _EndpointTlsAdapter(requests.adapters.HTTPAdapter):
    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        url = request.url or ""
        for prefix, verify in _tls_by_prefix.items():
            if url.startswith(prefix):
                kwargs["verify"] = verify
                break
        return super().send(request, *args, **kwargs)


def configure_tls(endpoint: str, *, verify: bool, ca_file: str | None) -> None:
    """Make requests to `endpoint` check TLS with `ca_file`, or not at all when verify is False.

    Process-wide per endpoint: the target opened last decides for its endpoint.
    """
    with _tls_lock:
        if verify and not ca_file:
            if endpoint in _tls_by_prefix:
                _tls_by_prefix[endpoint] = True
            return
        _tls_by_prefix[endpoint] = ca_file if (verify and ca_file) else False
        BaseProtocol.HTTP_ADAPTER_CLS = _EndpointTlsAdapter
    if not verify:
        # The operator chose this in the plan: say it once, not on every request.
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        logging.getLogger(__name__).warning(
            "TLS certificate checks are off for %s (tls_verify = false)", endpoint
        )


# --- logging ---------------------------------------------------------------------------------
class _Redact(logging.Filter):
    """exchangelib logs request headers (Basic credentials) and whole SOAP bodies (base64 mail)."""

    LIMIT = 2000

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record must not break logging
            return True
        if "Authorization" in text or "client_secret" in text or len(text) > self.LIMIT:
            record.msg = text[: self.LIMIT].split("Request headers:")[0] + " [details withheld]"
            record.args = None
        return True


_logging_done = False


def quiet_exchangelib_logging() -> None:
    """At most warnings from exchangelib, with secrets and message bodies withheld."""
    global _logging_done
    if _logging_done:
        return
    _logging_done = True
    root = logging.getLogger("exchangelib")
    if root.level == logging.NOTSET or root.level < logging.WARNING:
        root.setLevel(logging.WARNING)
    # exchangelib shrinks its session pool when the server pushes back and says so as a
    # warning on every step; our own retry layer reports throttling, once, in the summary
    logging.getLogger("exchangelib.protocol").setLevel(logging.ERROR)
    redact = _Redact()
    for name in (
        "exchangelib",
        "exchangelib.util",
        "exchangelib.protocol",
        "exchangelib.services.common",
        "exchangelib.transport",
    ):
        logging.getLogger(name).addFilter(redact)


# --- parsing answers ---------------------------------------------------------------------------
class _WholeBody:
    """An answer whose body requests has read already (every service but streaming ones asks
    with stream=False), handed to exchangelib's parser as the bytes it is."""

    def __init__(self, content: bytes) -> None:
        self._content = content

    def iter_content(self) -> bytes:
        # exchangelib's to_xml() parses bytes straight from a BytesIO; what it gets from
        # requests' iter_content() it reads through a generator
        return self._content


_parse_lock = threading.Lock()
_parse_done = False


def parse_answers_whole() -> None:
    """Have exchangelib parse each answer from its bytes, not one byte at a time.

    exchangelib hands lxml `response.iter_content()`, whose chunk size is requests' default
    of one byte: every byte of every answer costs a Python generator step and a bytearray
    append (about 1 ms of client CPU for a small GetFolder answer, more than the request
    itself; seconds for a folder listing of a thousand items). The body is already in
    memory, so it is parsed from it directly. A streaming answer (none of ours) is left to
    exchangelib as it was.
    """
    global _parse_done
    with _parse_lock:
        if _parse_done:
            return
        _parse_done = True
        parse = EWSService.__dict__["_get_soap_parts"].__func__

        def _get_soap_parts(cls: type, response: Any) -> Any:
            if getattr(response, "_content_consumed", False) and isinstance(
                response.content, bytes
            ):
                response = _WholeBody(response.content)
            return parse(cls, response)

        EWSService._get_soap_parts = classmethod(_get_soap_parts)


# --- the environment's proxy settings ----------------------------------------------------------
def _remember_environment(session: requests.Session) -> None:
    """Have `session` read what the environment says about each origin (scheme, host and
    port) once: the proxy to use or NO_PROXY's exemption, and REQUESTS_CA_BUNDLE.

    requests reads and parses the proxy variables for every request (about 0.1 ms of client
    CPU each, as much as a small request's own work). What a URL gets depends on its origin
    only, so the answer is kept per origin for the session's life: the EWS endpoint and an
    OAuth2 token endpoint each get their own, as requests would give them. A session renewed
    later (exchangelib renews them) reads the environment afresh.
    """
    merge = session.merge_environment_settings
    kept: dict[tuple[Any, ...], dict[str, Any]] = {}

    def merge_environment_settings(
        url: str, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        parts = urlsplit(url)
        try:
            key = (
                parts.scheme,
                parts.netloc,
                session.trust_env,
                tuple(sorted((proxies or {}).items())),
                tuple(sorted((session.proxies or {}).items())),
                stream,
                verify,
                cert,
                session.stream,
                session.verify,
                session.cert,
            )
            found = kept.get(key)
        except TypeError:  # a setting that cannot be a key: ask the environment as requests does
            return merge(url, proxies, stream, verify, cert)
        if found is None:
            found = kept[key] = merge(url, proxies, stream, verify, cert)
        # each request gets its own copy: requests and adapters may change what they are given
        return {**found, "proxies": dict(found["proxies"])}

    session.merge_environment_settings = merge_environment_settings  # type: ignore[method-assign]


_environment_lock = threading.Lock()
_environment_done = False


def remember_environment_per_session() -> None:
    """Every HTTP session exchangelib opens reads the environment once per origin (see
    _remember_environment)."""
    global _environment_done
    with _environment_lock:
        if _environment_done:
            return
        _environment_done = True
        raw_session = BaseProtocol.__dict__["raw_session"].__func__

        def remembering_raw_session(cls: type, prefix: str, *args: Any, **kwargs: Any) -> Any:
            session = raw_session(cls, prefix, *args, **kwargs)
            _remember_environment(session)
            return session

        BaseProtocol.raw_session = classmethod(remembering_raw_session)


# --- configuration ---------------------------------------------------------------------------
def make_configuration(
    settings: TargetSettings, secrets: Mapping[str, str], *, max_connections: int
) -> Configuration:
    """The exchangelib Configuration for the plan's [target]; secrets are already resolved."""
    if not settings.url:
        raise PlanError(
            "plan",
            "target",
            'url is required for kind = "ews"',
            hint='e.g. url = "https://mail.example.org/EWS/Exchange.asmx"',
        )
    auth = settings.auth.lower()
    if auth not in AUTH_TYPES:
        raise PlanError(
            "plan",
            "target.auth",
            f"{settings.auth!r} is not an EWS auth type",
            hint="use one of: " + ", ".join(AUTH_TYPES),
        )
    credentials: Credentials | MigratorOAuth2Credentials
    if auth == "oauth2":
        missing = [n for n in ("client_id", "tenant_id") if not getattr(settings, n)]
        if "client_secret" not in secrets:
            missing.append("client_secret_env or client_secret_file")
        if missing:
            raise PlanError("plan", "target", "oauth2 needs " + ", ".join(missing))
        credentials = MigratorOAuth2Credentials(
            client_id=settings.client_id,
            client_secret=secrets["client_secret"],
            tenant_id=settings.tenant_id,
            token_url=settings.token_url
            or MICROSOFT_TOKEN_URL.format(tenant_id=settings.tenant_id),
            scope=settings.oauth_scope,
        )
    else:
        if not settings.username or "password" not in secrets:
            raise PlanError(
                "plan",
                "target",
                f"auth = {auth!r} needs username and a password",
                hint="set username and password_env or password_file",
            )
        credentials = Credentials(settings.username, secrets["password"])
    # exchangelib shares one Protocol (session pool, timeout, retry policy) per endpoint and
    # credentials process-wide; a token of our own in the credentials gives each target its own.
    credentials.migrator_target = uuid.uuid4().hex  # type: ignore[union-attr]
    configure_tls(settings.url, verify=settings.tls_verify, ca_file=settings.ca_file)
    return Configuration(
        service_endpoint=settings.url,
        credentials=credentials,
        auth_type=AUTH_TYPES[auth],
        retry_policy=FailFastWithHints(
            auth=auth, account=(settings.client_id if auth == "oauth2" else settings.username) or ""
        ),
        max_connections=max_connections,
    )


def forget_protocol(config: Configuration) -> None:
    """Close the target's own Protocol and drop it from exchangelib's process-wide cache."""
    try:
        protocol, _ = Protocol[config]
    except KeyError:
        return
    with contextlib.suppress(KeyError):
        del Protocol[config]
    if not isinstance(protocol, Exception):
        protocol.close()


def make_account(
    address: str, config: Configuration, *, impersonation: bool, timeout: float
) -> Account:
    account = Account(
        primary_smtp_address=address,
        config=config,
        autodiscover=False,
        access_type=IMPERSONATION if impersonation else DELEGATE,
        default_timezone=None,
    )
    protocol = account.protocol
    # Instance attributes of this target's own protocol (see make_configuration).
    protocol.TIMEOUT = timeout
    # With fail-fast there is no waiting; 0 keeps exchangelib from inventing a back-off hint
    # (it fills in RETRY_WAIT where the server gave none) so `retry_after` is only the server's.
    protocol.RETRY_WAIT = 0
    # exchangelib answers ErrorExceededConnectionCount by dropping a session and sending the
    # same request again at once, fail-fast or not, until its pool is down to one: a burst of
    # resends (each may carry 25 MB of mail) at a server that just said "too many". Our
    # limiter decides how many requests are in flight, so the pool never shrinks and the
    # error reaches the retry layer, which waits and sends fewer at a time.
    protocol.decrease_poolsize = _keep_pool_size
    return account


def _keep_pool_size() -> None:
    raise SessionPoolMinSizeReached(
        "migrator's limiter, not exchangelib's pool, sets the concurrency"
    )
