"""The active Sieve script of an account over ManageSieve (RFC 5804, port 4190), read-only.

A client of our own, a few commands long (CAPABILITY, STARTTLS, AUTHENTICATE PLAIN,
LISTSCRIPTS, GETSCRIPT, LOGOUT): sievelib's client has no way to trust a private CA or to
set a connection timeout per server, and migrator only ever reads.

Logging in as a user without their password, as the IMAP source does: a Dovecot master user,
either as "user*master" with the master's password, or (authzid = true) SASL PLAIN with the
user as authorization identity and the master user as authentication identity.
"""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import ssl

from migrator.model.errors import Outage, PermanentError, TransientError
from migrator.model.plan import FilterSettings
from migrator.model.reasons import Reason
from migrator.model.sieve import SieveScript

from .parse import MAX_SCRIPT_BYTES

_LITERAL = re.compile(rb"\{(\d+)\+?\}$")
_STATUS = re.compile(rb"^(OK|NO|BYE)\b", re.IGNORECASE)
MAX_LINE = 64 * 1024


class ManageSieveError(PermanentError):
    pass


class _Connection:
    def __init__(self, settings: FilterSettings) -> None:
        self.settings = settings
        self.where = f"ManageSieve {settings.host}:{settings.port}"
        self.sock: socket.socket | ssl.SSLSocket
        self.buffer = b""

    # --- wire ---------------------------------------------------------------------------------
    def open(self) -> None:
        s = self.settings
        try:
            self.sock = socket.create_connection((s.host or "", s.port), timeout=s.timeout)
        except OSError as exc:
            raise TransientError(
                f"{self.where}: {exc.strerror or exc}",
                outage=Outage("source", "unreachable", f"{self.where}: {exc.strerror or exc}"),
            ) from exc
        if s.tls == "ssl":
            self._tls()
        capabilities = self._response()
        if s.tls == "starttls":
            if "STARTTLS" not in capabilities:
                raise ManageSieveError(
                    f"{self.where} does not offer STARTTLS",
                    reason=Reason.TLS,
                    hint='set [settings] sieve_tls = "ssl" or "none"',
                )
            self._command(b"STARTTLS")
            self._tls()
            self._response()  # capabilities again, now over TLS

    def _tls(self) -> None:
        s = self.settings
        context = (
            ssl.create_default_context(cafile=s.ca_file)
            if s.tls_verify
            else ssl._create_unverified_context()
        )
        try:
            self.sock = context.wrap_socket(self.sock, server_hostname=s.host)
        except (ssl.SSLError, OSError) as exc:
            raise ManageSieveError(
                f"{self.where}: TLS failed ({exc})",
                reason=Reason.TLS,
                hint="check [settings] sieve_ca_file / sieve_tls_verify",
            ) from exc

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if len(self.buffer) > MAX_LINE:
                raise ManageSieveError(
                    f"{self.where}: a line longer than {MAX_LINE} bytes", reason="sieve-unreadable"
                )
            try:
                chunk = self.sock.recv(65536)
            except OSError as exc:
                raise TransientError(f"{self.where}: {exc}") from exc
            if not chunk:
                raise TransientError(f"{self.where}: the server closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            try:
                chunk = self.sock.recv(min(65536, size - len(self.buffer) + 2))
            except OSError as exc:
                raise TransientError(f"{self.where}: {exc}") from exc
            if not chunk:
                raise TransientError(f"{self.where}: the server closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _command(self, *parts: bytes) -> list[bytes]:
        try:
            self.sock.sendall(b" ".join(parts) + b"\r\n")
        except OSError as exc:
            raise TransientError(f"{self.where}: {exc}") from exc
        return self._response_lines()

    def _response_lines(self) -> list[bytes]:
        """The lines before the final OK (a literal's bytes inline); NO/BYE raise."""
        lines: list[bytes] = []
        while True:
            line = self._line()
            literal = _LITERAL.search(line)
            if literal:
                size = int(literal.group(1))
                if size > MAX_SCRIPT_BYTES + 1024:
                    raise ManageSieveError(
                        f"{self.where}: the server sends {size:,} bytes, over {MAX_SCRIPT_BYTES:,}",
                        reason="sieve-unreadable",
                    )
                line = line[: literal.start()] + _quote(self._exactly(size))
                line += self._line()
            status = _STATUS.match(line)
            if status and status.group(1).upper() == b"OK":
                return lines
            if status:
                text = _unquote_tail(line)
                raise ManageSieveError(f"{self.where}: {text}", reason="sieve-refused")
            lines.append(line)

    def _response(self) -> set[str]:
        names = set()
        for line in self._response_lines():
            strings = _strings(line)
            if strings:
                names.add(strings[0].upper())
        return names

    # --- commands ---------------------------------------------------------------------------
    def login(self, login: str, password: str) -> None:
        s = self.settings
        if s.authzid and s.master_user:
            authz, authc = login, s.master_user
        elif s.master_user:
            authz, authc = "", f"{login}*{s.master_user}"
        else:
            authz, authc = "", login
        token = base64.b64encode(f"{authz}\0{authc}\0{password}".encode())
        try:
            self._command(b'AUTHENTICATE "PLAIN"', b'"' + token + b'"')
        except ManageSieveError as exc:
            # the server's words only: the request carried the password
            raise ManageSieveError(
                f"{self.where}: login as {login} refused",
                reason="sieve-auth",
                hint="check [settings] sieve_master_user / sieve_password_env "
                "(or the [source] ones they default to)",
            ) from exc

    def active(self) -> str | None:
        for line in self._command(b"LISTSCRIPTS"):
            strings = _strings(line)
            if strings and line.rstrip().upper().endswith(b"ACTIVE"):
                return strings[0]
        return None

    def get(self, name: str) -> bytes:
        lines = self._command(b"GETSCRIPT", _quote(name.encode("utf-8")))
        strings = [s for line in lines for s in _strings_raw(line)]
        return strings[0] if strings else b""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"LOGOUT\r\n")
        with contextlib.suppress(OSError):
            self.sock.close()


def _quote(data: bytes) -> bytes:
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


_STRING = re.compile(rb'"((?:[^"\\]|\\.)*)"', re.DOTALL)


def _strings_raw(line: bytes) -> list[bytes]:
    return [re.sub(rb"\\(.)", rb"\1", m.group(1), flags=re.DOTALL) for m in _STRING.finditer(line)]


def _strings(line: bytes) -> list[str]:
    return [s.decode("utf-8", "replace") for s in _strings_raw(line)]


def _unquote_tail(line: bytes) -> str:
    strings = _strings(line)
    return strings[-1] if strings else line.decode("utf-8", "replace")


class ManageSieveReader:
    """Reads each account's active script; one connection per account (a login per user)."""

    def __init__(self, settings: FilterSettings, password: str) -> None:
        self.settings = settings
        self._password = password

    def read_active(self, login: str) -> SieveScript | None:
        conn = _Connection(self.settings)
        conn.open()
        try:
            conn.login(login, self._password)
            name = conn.active()
            if name is None:
                return None
            data = conn.get(name)
        finally:
            conn.close()
        return SieveScript(
            name=name,
            origin=f"managesieve {self.settings.host}:{self.settings.port} ({login})",
            text=data.decode("utf-8", "replace"),
            size=len(data),
        )
