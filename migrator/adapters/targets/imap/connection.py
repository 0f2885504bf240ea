"""Logged-in IMAP sessions, one mailbox each, and the pool that shares them among threads.

IMAP logs in per mailbox (as the owner, as an administrator acting for it, or with an app-only
OAuth2 token naming it), so a session belongs to one mailbox for its whole life. The pool caps
the sessions a Target holds open at `max_connections` and, when full, closes the idle session
used longest ago to make room for a different mailbox.
"""

from __future__ import annotations

import contextlib
import imaplib
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from migrator.adapters.network import endpoint_of, network_outage
from migrator.model.errors import Outage, PermanentError, TransientError
from migrator.model.plan import TargetSettings
from migrator.model.reasons import Reason
from migrator.model.secrecy import WITHHELD, unless_secret

from . import errors
from .oauth import TokenSource

_RIGHT_INSERT = "i"
# A session idle longer than this is checked with NOOP before use: servers drop idle
# connections (Dovecot after 30 minutes, Exchange Online sooner) and a chunk should not fail
# only because its connection had quietly gone.
IDLE_CHECK_SECONDS = 60.0
# capabilities of Exchange Online's IMAP4 service that no other server announces (protocol logs
# in MailKit issues #849, #1494, #2016)
EXCHANGE_CAPABILITIES = frozenset(
    {"CLIENTACCESSRULES", "CLIENTNETWORKPRESENCELOCATION", "BACKENDAUTHENTICATE"}
)


@dataclass
class Session:
    """One authenticated connection for one mailbox (used by one thread at a time)."""

    client: IMAPClient
    mailbox: str
    capabilities: frozenset[str]
    exchange: bool  # the server is Microsoft Exchange (greeting, capabilities): apply its quirks
    # the server serves messages as it built them, not as appended (Exchange): recognise our
    # uploads by what survives conversion (converted.py)
    converts: bool = False
    # XOAUTH2: when the session retires (its token is due for renewal; time.monotonic), and
    # the token it logged in with (to drop it when the server says it ran out)
    expires_at: float | None = None
    token: str | None = None
    selected: tuple[str, bool] | None = None  # (folder, readonly)
    broken: bool = False
    last_used: float = 0.0  # time.monotonic() when it went back to the pool
    tags: Iterator[int] = field(default_factory=lambda: iter(range(1, 1 << 62)))

    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities

    def append_limit(self) -> int | None:
        for cap in self.capabilities:
            if cap.startswith("APPENDLIMIT="):
                value = cap.split("=", 1)[1]
                return int(value) if value.isdigit() else None
        return None

    def next_tag(self) -> bytes:
        return b"M%d" % next(self.tags)


class Connector:
    """Opens sessions from the plan's [target] settings and the resolved secrets."""

    def __init__(
        self, settings: TargetSettings, secrets: dict[str, str], tokens: TokenSource | None
    ) -> None:
        self.settings = settings
        self._password = secrets.get("password", "")
        self._tokens = tokens
        self.where = f"IMAP server {settings.host}:{settings.port}"
        self.endpoint = endpoint_of(settings.host, settings.port)
        self._context: ssl.SSLContext | None = None
        if settings.tls != "none":
            try:
                self._context = ssl.create_default_context(cafile=settings.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise PermanentError(
                    f"[target] ca_file {settings.ca_file}: cannot load: {exc}", reason=Reason.TLS
                ) from None
            if not settings.tls_verify:
                self._context.check_hostname = False
                self._context.verify_mode = ssl.CERT_NONE

    def login_name(self, mailbox: str) -> str:
        """Who the server is told logs in (shown in messages; never a secret)."""
        s = self.settings
        if s.auth == "xoauth2" or not s.username:
            return mailbox
        if s.auth == "plain":
            return f"{s.username} (acting as {mailbox})"
        return self._proxy_login(mailbox)

    def _proxy_login(self, mailbox: str) -> str:
        local, _, domain = mailbox.partition("@")
        try:
            return self.settings.proxy_login.format(
                address=mailbox, local=local, domain=domain, username=self.settings.username
            )
        except (KeyError, IndexError, ValueError) as exc:
            raise PermanentError(
                f"[target] proxy_login {self.settings.proxy_login!r}: {exc}",
                reason=Reason.CONFIG,
                hint="use {address}, {local}, {domain} and {username}",
            ) from None

    def _client(self, where: str) -> IMAPClient:
        """A connection that has greeted us (nothing account-specific yet: any failure here is
        the server's, and carries a confirmed Outage)."""
        try:
            return IMAPClient(
                self.settings.host,
                port=self.settings.port,
                ssl=self.settings.tls == "ssl",
                ssl_context=self._context,
                timeout=self.settings.timeout,
            )
        except ssl.SSLError as exc:
            raise self._tls_error(where, exc) from None
        except (OSError, imaplib.IMAP4.error) as exc:
            outage = network_outage(
                exc,
                service="target",
                endpoint=self.endpoint,
                timeout=self.settings.timeout,
                connecting=True,
            )
            detail = outage.cause if outage is not None else errors.clean(str(exc))
            raise TransientError(
                f"{where}: cannot connect to {self.where}: {detail}",
                outage=outage,
                hint="check host, port and tls in [target] and that the server is running",
            ) from None

    def probe(self) -> None:
        """Does the server greet and answer a NOOP? (no login: the engine asks after a timeout
        or a reset, to tell a server that is down from one slow request)"""
        client = self._client(self.where)
        try:
            client._imap.debug = 0
            client.noop()
        except ssl.SSLError as exc:
            raise self._tls_error(self.where, exc) from None
        except errors.CONNECTION_LOST as exc:
            outage = network_outage(
                exc,
                service="target",
                endpoint=self.endpoint,
                timeout=self.settings.timeout,
                connecting=True,
            )
            raise TransientError(
                f"{self.where}: no answer to NOOP: {errors.clean(str(exc))}",
                outage=outage
                or Outage("target", "broken", f"{self.endpoint} greets but does not answer"),
            ) from None
        except imaplib.IMAP4.error:
            pass  # it answered
        finally:
            errors_close(client)

    def open(self, mailbox: str) -> Session:
        where = f"mailbox {mailbox}"
        client = self._client(where)
        # IMAPClient raises imaplib's debug level to feed its logger, which formats every
        # literal we send; our APPENDs would be copied for nothing.
        client._imap.debug = 0
        client.normalise_times = False
        client.folder_encode = False  # names stay modified UTF-7: our codec handles them
        try:
            if self.settings.tls == "starttls":
                client.starttls(self._context)
            greeting = client.welcome or b""
            expires, token = self._authenticate(client, mailbox, where)
            caps = frozenset(c.decode("ascii", "replace").upper() for c in client.capabilities())
        except ssl.SSLError as exc:
            errors_close(client)
            raise self._tls_error(where, exc) from None
        except errors.CONNECTION_LOST as exc:
            errors_close(client)
            raise errors.connection_error(
                exc,
                where=where,
                what="login",
                endpoint=self.endpoint,
                timeout=self.settings.timeout,
                secrets=(self._password,),
            ) from None
        except imaplib.IMAP4.error as exc:  # STARTTLS or CAPABILITY refused
            errors_close(client)
            raise PermanentError(
                f"{where}: {self.where} refused to set up the session: {errors.clean(str(exc))}",
                reason=Reason.TLS if self.settings.tls == "starttls" else Reason.CONFIG,
                hint='check tls in [target]: "ssl" on the implicit-TLS port (993), "starttls" '
                "on 143",
            ) from None
        except BaseException:
            errors_close(client)
            raise
        # Exchange's greeting is a setting (Set-ImapSettings -Banner): capabilities only
        # Exchange announces tell it too
        exchange = b"microsoft exchange" in greeting.lower() or bool(caps & EXCHANGE_CAPABILITIES)
        # Exchange builds the MIME it serves ([MS-OXCMAIL]); the plan may say otherwise
        converts = exchange if self.settings.converts == "auto" else self.settings.converts == "yes"
        return Session(
            client=client,
            mailbox=mailbox,
            capabilities=caps,
            exchange=exchange,
            converts=converts,
            expires_at=expires,
            token=token,
            last_used=time.monotonic(),
        )

    def _authenticate(
        self, client: IMAPClient, mailbox: str, where: str
    ) -> tuple[float | None, str | None]:
        """Log in; for XOAUTH2 also (when the session retires, the token it used)."""
        s = self.settings
        sent: tuple[str, ...] = (self._password,)  # the secrets this exchange carries
        try:
            if s.auth == "xoauth2":
                tokens: list[str] = []
                try:
                    return self._oauth2_login(client, mailbox, tokens)
                finally:
                    sent = (*sent, *tokens)
            elif s.username and s.auth == "plain":
                client.plain_login(s.username, self._password, authorization_identity=mailbox)
            elif s.username:
                client.login(self._proxy_login(mailbox), self._password)
            elif s.auth == "plain":
                client.plain_login(mailbox, self._password)
            else:
                client.login(mailbox, self._password)
        except LoginError as exc:
            raise self._login_error(exc, mailbox, where, sent) from None
        except imaplib.IMAP4.error as exc:
            if isinstance(exc, imaplib.IMAP4.abort):
                raise
            raise self._login_error(exc, mailbox, where, sent) from None
        return None, None

    def _oauth2_login(self, client: IMAPClient, mailbox: str, sent: list[str]) -> tuple[float, str]:
        """XOAUTH2 login; `sent` collects the tokens it sends (secrets a refusal must not echo)."""
        if self._tokens is None:  # pragma: no cover - built together in the target
            raise PermanentError("xoauth2 without a token source", reason=Reason.CONFIG)
        fetches = self._tokens.fetches
        token = self._tokens.token()
        sent.append(token.value)
        try:
            client.oauth2_login(mailbox, token.value)
        except LoginError:
            if self._tokens.fetches != fetches:
                raise  # a token fetched just now: the refusal is not about its age
            # Exchange Online refuses a token that ran out ("NO AUTHENTICATE failed."), also
            # one our clock still thought good: once more with a fresh one
            self._tokens.invalidate(token.value)
            token = self._tokens.token()
            sent.append(token.value)
            client.oauth2_login(mailbox, token.value)
        return token.renew_at, token.value

    def _login_error(
        self, exc: Exception, mailbox: str, where: str, sent: tuple[str, ...]
    ) -> Exception:
        text = errors.clean(str(exc))
        raw = text.encode("utf-8", "replace")
        code = errors.response_code(raw)
        # the server answers the command that carried the secret: its words are shown whole,
        # or only its response code (an atom of RFC 5530's) when the secret occurs in them
        if unless_secret(text, *sent) == WITHHELD:
            raw = b"[" + code + b"]" if code else b""
            text = f"[{code.decode()}] {WITHHELD}" if code else WITHHELD
        who = self.login_name(mailbox)
        if code == b"AUTHORIZATIONFAILED":
            # the administrator authenticated, but may not act as this user: on Dovecot this is
            # what a master login to a user that does not exist gets
            return PermanentError(
                f"{where}: no such mailbox on {self.where}, or {self.settings.username} may not "
                f"act for it ({text})",
                reason=Reason.NO_MAILBOX,
                hint="check the target address template and that the mailbox exists",
            )
        if code == b"UNAVAILABLE" or b"throttl" in raw.lower():
            return errors.answer_error(raw.lstrip(b"b'\""), where=where, what="login")
        outage = None
        if (
            self.settings.username
            and self.settings.auth != "xoauth2"
            and code == b"AUTHENTICATIONFAILED"
        ):
            # the administrator's own password was refused (a mailbox it may not act for, or
            # that does not exist, is AUTHORIZATIONFAILED above): every mailbox will be
            outage = Outage(
                "target",
                "auth",
                f"{self.where} refused the password of {self.settings.username} ({text})",
            )
        hint = "check username, auth and the password/client secret source in [target]"
        if self.settings.auth == "xoauth2":
            # the token itself was issued, so the app's credentials are good; Exchange Online
            # says no more than "AUTHENTICATE failed" for everything else
            hint = (
                "the token endpoint issued a token, but the server refused it for this "
                "mailbox: the mailbox must exist with IMAP enabled (Set-CASMailbox "
                "-ImapEnabled), the app needs the IMAP.AccessAsApp permission with admin "
                "consent, and its service principal FullAccess on the mailbox "
                "(New-ServicePrincipal, Add-MailboxPermission)"
            )
        return PermanentError(
            f"{where}: {self.where} refused the credentials of {who} ({text})",
            reason=Reason.AUTH,
            hint=hint,
            outage=outage,
        )

    def _tls_error(self, where: str, exc: ssl.SSLError) -> PermanentError:
        detail = getattr(exc, "verify_message", None) or exc.reason or str(exc)
        return PermanentError(
            f"{where}: TLS with {self.where} failed: {detail}",
            reason=Reason.TLS,
            hint="set ca_file to the CA of the server certificate, or check "
            "tls (ssl on 993, starttls on 143)",
            outage=Outage("target", "tls", f"TLS with {self.endpoint} failed: {detail}"),
        )


def errors_close(client: IMAPClient) -> None:
    with contextlib.suppress(Exception):
        client.shutdown()


def close_session(session: Session) -> None:
    """Log out politely; a broken connection is just dropped."""
    if session.broken:
        errors_close(session.client)
        return
    try:
        session.client.logout()
    except Exception:  # already gone: nothing to save
        errors_close(session.client)


class Pool:
    """At most `size` sessions, reused per mailbox. Thread-safe."""

    def __init__(
        self,
        opener: Callable[[str], Session],
        size: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open = opener
        self.size = max(1, size)
        self._slots = threading.BoundedSemaphore(self.size)
        self._lock = threading.Lock()
        self._idle: OrderedDict[int, Session] = OrderedDict()  # least recently used first
        self._busy = 0
        self._clock = clock
        self._closed = False
        self.opened = 0  # sessions opened so far (for tests and benchmarks)
        self.peak = 0  # most sessions open at once

    @contextlib.contextmanager
    def lease(self, mailbox: str) -> Iterator[Session]:
        self._slots.acquire()
        try:
            session = self._take(mailbox)
            try:
                yield session
            finally:
                self._give_back(session)
        finally:
            self._slots.release()

    def _take(self, mailbox: str) -> Session:
        stale: list[Session] = []
        with self._lock:
            if self._closed:
                raise RuntimeError("IMAP target used after close()")
            found: Session | None = None
            for key, session in list(self._idle.items()):
                if session.mailbox == mailbox:
                    del self._idle[key]
                    if session.expires_at is not None and self._clock() >= session.expires_at:
                        stale.append(session)  # its OAuth2 token ran out: log in afresh
                        continue
                    found = session
                    break
            if found is None and self._busy + len(self._idle) >= self.size and self._idle:
                stale.append(self._idle.popitem(last=False)[1])
            self._busy += 1
        for session in stale:
            close_session(session)
        if found is not None and self._clock() - found.last_used > IDLE_CHECK_SECONDS:
            try:
                found.client.noop()
            except Exception:  # gone while idle: replace it
                found.broken = True
                close_session(found)
                found = None
        if found is not None:
            return found
        try:
            session = self._open(mailbox)
        except BaseException:
            with self._lock:
                self._busy -= 1
            raise
        with self._lock:
            self.opened += 1
            self.peak = max(self.peak, self._busy + len(self._idle))
        return session

    def _give_back(self, session: Session) -> None:
        with self._lock:
            self._busy -= 1
            if not session.broken and not self._closed:
                session.last_used = self._clock()
                self._idle[id(session)] = session
                return
        close_session(session)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = list(self._idle.values())
            self._idle.clear()
        for session in idle:
            close_session(session)


def rights_allow_insert(rights: str) -> bool:
    return _RIGHT_INSERT in rights
