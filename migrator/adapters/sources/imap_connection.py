"""Opening an authenticated IMAP connection, and turning library errors into ours.

IMAPClient is used only in the imap_* modules of this package. Every failure leaves here as a
TransientError (worth retrying: unreachable, reset, timeout) or a SourceError with a reason code
("auth", "tls", "protocol"); the password never appears in any message. A failure that is the
server's and not the account's (no connection or greeting, TLS, the master user's password
refused, the server's authentication back end down) carries an Outage: the engine stops the
run on it instead of charging every account an attempt.
"""

from __future__ import annotations

import contextlib
import imaplib
import socket
import ssl
from dataclasses import dataclass, field

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from migrator.adapters.network import endpoint_of, network_outage
from migrator.model.errors import Outage, SourceError, TransientError
from migrator.model.reasons import Reason
from migrator.model.secrecy import unless_secret

TLS_MODES = ("ssl", "starttls", "none")

# What a dropped or broken connection looks like: imaplib raises `abort` on EOF, BYE and socket
# errors it catches itself; raw socket errors (reset, broken pipe, timeout) surface as OSError.
CONNECTION_LOST = (imaplib.IMAP4.abort, OSError)


@dataclass(frozen=True)
class ImapAccess:
    """How to reach and log in to one account's mailbox.

    `user` is the mailbox owner. With `master_user` the source logs in as `user*master_user`
    (Dovecot master user) with the master password; with `authzid` it authenticates with SASL
    PLAIN as `master_user` (an administrator) and asks to act as `user`. Otherwise `password`
    is the user's own.
    """

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    tls: str = "ssl"
    tls_verify: bool = True
    ca_file: str | None = None
    master_user: str | None = None
    authzid: bool = False
    master_separator: str = "*"
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.tls not in TLS_MODES:
            raise ValueError(f"tls must be one of {', '.join(TLS_MODES)}, not {self.tls!r}")
        if self.authzid and not self.master_user:
            raise ValueError(
                "authzid login needs master_user (the administrator to authenticate as)"
            )

    @property
    def where(self) -> str:
        return endpoint_of(self.host, self.port)

    @property
    def login_name(self) -> str:
        """The identity shown in messages: who logs in, and as whom."""
        if self.master_user and self.authzid:
            return f"{self.master_user} (authorized as {self.user})"
        if self.master_user:
            return f"{self.user}{self.master_separator}{self.master_user}"
        return self.user


def _tls_context(access: ImapAccess) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=access.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise SourceError(
            f"IMAP {access.where}: cannot load ca_file {access.ca_file}: {exc}",
            reason=Reason.TLS,
            hint="ca_file must be a PEM file holding the CA certificate that signed the server's",
        ) from None
    if not access.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _tls_failure(access: ImapAccess, exc: ssl.SSLError) -> SourceError:
    detail = getattr(exc, "verify_message", None) or exc.reason or str(exc)
    return SourceError(
        f"IMAP {access.where}: TLS certificate check failed: {detail}",
        reason=Reason.TLS,
        outage=Outage(
            "source", "tls", f"the TLS certificate of {access.where} is not trusted: {detail}"
        ),
        hint=(
            "set ca_file in [source] to the CA that signed the server certificate (a private CA), "
            "make sure host matches a name in the certificate, or (tests only) tls_verify = false"
        ),
    )


def connect(access: ImapAccess) -> IMAPClient:
    """A logged-in IMAPClient; the caller logs out. Raises TransientError or SourceError."""
    context = _tls_context(access) if access.tls != "none" else None
    try:
        client = IMAPClient(
            access.host,
            port=access.port,
            ssl=access.tls == "ssl",
            ssl_context=context,
            timeout=access.timeout,
        )
    except ssl.SSLCertVerificationError as exc:
        raise _tls_failure(access, exc) from None
    except ssl.SSLError as exc:
        raise SourceError(
            f"IMAP {access.where}: TLS handshake failed: {exc.reason or exc}",
            reason=Reason.TLS,
            outage=Outage("source", "tls", f"TLS with {access.where} failed: {exc.reason or exc}"),
            hint='check that the port speaks implicit TLS (tls = "ssl", usually 993) '
            'or use tls = "starttls" on port 143',
        ) from None
    except (socket.gaierror, OSError, imaplib.IMAP4.error) as exc:
        # nothing of the account has happened yet: whatever fails here is the server's
        outage = network_outage(
            exc, service="source", endpoint=access.where, timeout=access.timeout, connecting=True
        )
        raise TransientError(
            f"IMAP server {access.where} unreachable: {outage.cause if outage else _describe(exc)}",
            hint="check host and port in [source] and that the server is running",
            outage=outage,
        ) from None
    # IMAPClient turns imaplib's debug level up to 5 to feed its logger, and at that level
    # imaplib formats the repr of every response, literals included, whether or not anything
    # is logged: for a 1 MiB body range that is several copies and milliseconds per fetch.
    client._imap.debug = 0
    try:
        client.normalise_times = False  # keep INTERNALDATE's zone; we convert to UTC ourselves
        client.folder_encode = False  # mailbox names stay modified UTF-7; decoded by our codec
        if access.tls == "starttls":
            try:
                client.starttls(context)
            except ssl.SSLCertVerificationError as exc:
                raise _tls_failure(access, exc) from None
            except imaplib.IMAP4.error as exc:
                raise SourceError(
                    f"IMAP {access.where}: STARTTLS refused: {_describe(exc)}",
                    reason=Reason.TLS,
                    outage=Outage(
                        "source", "tls", f"{access.where} refused STARTTLS: {_describe(exc)}"
                    ),
                    hint='use tls = "ssl" on the implicit-TLS port, or tls = "none"',
                ) from None
        _authenticate(client, access)
    except BaseException:
        close_quietly(client)
        raise
    return client


def _authenticate(client: IMAPClient, access: ImapAccess) -> None:
    try:
        if access.master_user and access.authzid:
            client.plain_login(
                access.master_user, access.password, authorization_identity=access.user
            )
        elif access.master_user:
            client.login(
                f"{access.user}{access.master_separator}{access.master_user}", access.password
            )
        else:
            client.login(access.user, access.password)
    except LoginError as exc:
        said = _server_text(exc, access.password)
        if "[UNAVAILABLE]" in str(exc):  # RFC 5530: the server's auth backend is down, not us
            raise TransientError(
                f"IMAP {access.where}: authentication temporarily unavailable for "
                f"{access.login_name}: {said}",
                outage=Outage(
                    "source",
                    "unavailable",
                    f"{access.where} cannot authenticate anyone now ({said})",
                ),
            ) from None
        outage = None
        if access.master_user and "[AUTHENTICATIONFAILED]" in str(exc):
            # the master user's own password was refused (a user it may not act for, or that
            # does not exist, is [AUTHORIZATIONFAILED]): every account will be
            outage = Outage(
                "source",
                "auth",
                f"{access.where} refused the password of the master user "
                f"{access.master_user} ({said})",
            )
        raise SourceError(
            f"IMAP login refused at {access.where} for {access.login_name}: {said}",
            reason=Reason.AUTH,
            hint="check the login template, master_user and the password source in [source]",
            outage=outage,
        ) from None
    except CONNECTION_LOST as exc:
        raise TransientError(
            f"IMAP {access.where}: connection lost while logging in as {access.login_name}: "
            f"{_server_text(exc, access.password)}"
        ) from None


def _server_text(exc: BaseException, secret: str) -> str:
    # the server answers the LOGIN that carried the password: its words whole, or not at all
    return unless_secret(_describe(exc), secret)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text or type(exc).__name__


def close_quietly(client: IMAPClient) -> None:
    # the connection may already be gone; there is nothing to save
    with contextlib.suppress(Exception):
        client.shutdown()


def close(client: IMAPClient) -> None:
    """Log out politely, or just drop the socket if the server is already gone."""
    try:
        client.logout()
    except Exception:  # a dead connection cannot log out; just release the socket
        close_quietly(client)
