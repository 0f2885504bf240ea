"""How the simulator's IIS front authenticates a caller: Basic, NTLM and OAuth2 bearer tokens.

Exchange Server's EWS virtual directory authenticates in IIS before EWS runs
(`Get-WebServicesVirtualDirectory | fl *Authentication`: Windows integrated authentication, i.e.
NTLM/Negotiate, is on by default, Basic off; OAuth on for hybrid and modern auth):

- **Basic**: `Authorization: Basic base64(user:password)` on every request.
- **NTLM** (MS-NLMP over HTTP): an unauthenticated request gets 401 with `WWW-Authenticate:
  NTLM`; the client sends its NEGOTIATE message, gets the CHALLENGE in a second 401, and sends
  AUTHENTICATE. The authentication belongs to the TCP connection: later requests on it carry no
  Authorization header (IIS's default, `authPersistSingleRequest="false"`; Microsoft Learn,
  "Windows Authentication <windowsAuthentication>"). pyspnego's NTLM acceptor checks the
  messages against the service accounts, which it reads from the file named by the
  NTLM_USER_FILE environment variable (lines `DOMAIN:USER:PASSWORD`; the simulator writes one
  file per process with the accounts of every simulator in it).
- **OAuth2**: `Authorization: Bearer <token>`; a token the identity platform did not issue, or
  one that has expired, gets 401 with `WWW-Authenticate: Bearer ... error="invalid_token"` and an
  `x-ms-diagnostics` header naming the reason (the layout of Exchange's answer as recorded in
  Microsoft's Skype/Exchange OAuth troubleshooting pages; the codes per reason are not
  documented and ours are assumed).

A locked-out account is refused like a wrong password (401: Windows refuses the logon either
way), but the page says "The referenced account is currently locked out and may not be logged
on to." (the Windows message of ERROR_ACCOUNT_LOCKED_OUT, which exchangelib has looked for in
answers since its first version). An expired password is refused exactly like a wrong one.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMES = ("basic", "ntlm", "oauth2")
DEFAULT_DOMAIN = "EXAMPLE"
REALM = "ews-simulator"
LOCKED_OUT = "The referenced account is currently locked out and may not be logged on to."
# Exchange's OAuth front (resource id of Exchange and the ACS issuer, as in its 401 answers)
_BEARER = (
    'Bearer client_id="00000002-0000-0ff1-ce00-000000000000", '
    'trusted_issuers="00000001-0000-0000-c000-000000000000@*", '
    'token_types="app_asserted_user_v1 service_asserted_app_v1", '
    'authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize"'
)
_NTLM_SIGNATURE = b"NTLMSSP\x00"


class TokenRefused(Exception):  # noqa: N818 - a verdict, not an error of the simulator
    """A bearer token the simulator does not take: `reason` goes to x-ms-diagnostics."""

    def __init__(self, reason: str, code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code

    @classmethod
    def expired(cls) -> TokenRefused:
        return cls("The token has expired.", 2000008)

    @classmethod
    def invalid(cls) -> TokenRefused:
        return cls("The token is not valid.", 2000001)


# A token check: the caller's name (whose budgets and mailbox rights apply) for a token the
# identity platform issued and that has not expired; raises TokenRefused otherwise.
TokenCheck = Callable[[str], str]


@dataclass
class Refusal:
    """The 401 answer to send: headers and a page."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    page: str = "401 - Unauthorized: Access is denied due to invalid credentials."


@dataclass
class ServiceAccounts:
    """The simulator's service users: passwords, and those locked out or whose password expired."""

    passwords: dict[str, tuple[str, str]]  # lower-case name -> (name as configured, password)
    domain: str = DEFAULT_DOMAIN
    locked: set[str] = field(default_factory=set)  # lower-case names
    expired: set[str] = field(default_factory=set)

    def canonical(self, user: str) -> str | None:
        """The configured name for `user`, `DOMAIN\\user` and UPN forms accepted."""
        name = user.split("\\", 1)[1] if "\\" in user else user
        known = self.passwords.get(name.lower()) or self.passwords.get(
            name.split("@", 1)[0].lower()
        )
        return known[0] if known else None

    def check_password(self, user: str, password: str) -> str | None:
        name = self.canonical(user)
        if name is None or self.passwords[name.lower()][1] != password:
            return None
        return name


# ------------------------------------------------------------------------------- NTLM accounts

_ntlm_lock = threading.Lock()
_ntlm_entries: dict[tuple[str, str], str] = {}
_ntlm_file: Path | None = None


def register_ntlm_accounts(accounts: ServiceAccounts) -> None:
    """Put the accounts where pyspnego's NTLM acceptor reads them (NTLM_USER_FILE), beside those
    of the other simulators of this process. Expired passwords are left out: Windows refuses
    the logon as for a wrong one."""
    global _ntlm_file
    with _ntlm_lock:
        for name, password in accounts.passwords.values():
            if ":" in name or ":" in password or "\n" in password:
                raise ValueError(f"NTLM accounts cannot have ':' in name or password ({name!r})")
            for domain in ("", accounts.domain.upper()):
                if name.lower() in accounts.expired:
                    _ntlm_entries.pop((domain, name), None)
                else:
                    _ntlm_entries[(domain, name)] = password
        if _ntlm_file is None:
            handle, path = tempfile.mkstemp(prefix="ews-simulator-ntlm-", suffix=".txt")
            os.close(handle)
            _ntlm_file = Path(path)
            atexit.register(_ntlm_file.unlink, missing_ok=True)
        text = "".join(f"{d}:{u}:{p}\n" for (d, u), p in _ntlm_entries.items())
        _ntlm_file.write_text(text, encoding="utf-8")
        os.environ["NTLM_USER_FILE"] = str(_ntlm_file)


def _ntlm_type(token: bytes) -> int:
    if len(token) < 12 or not token.startswith(_NTLM_SIGNATURE):
        return 0
    return int.from_bytes(token[8:12], "little")


# --------------------------------------------------------------------------- per connection


class ConnectionAuth:
    """The authentication state of one HTTP connection (NTLM is connection-based)."""

    def __init__(self) -> None:
        self._ntlm: Any = None  # a pyspnego acceptor between NEGOTIATE and AUTHENTICATE
        self.user: str | None = None  # who the connection was authenticated as by NTLM


class Authenticator:
    """Checks each request's Authorization header for the schemes the EWS vdir has on."""

    def __init__(
        self,
        schemes: Iterable[str],
        accounts: ServiceAccounts,
        token_check: TokenCheck | None = None,
    ) -> None:
        self.schemes = tuple(schemes)
        unknown = set(self.schemes) - set(SCHEMES)
        if unknown or not self.schemes:
            raise ValueError(
                f"auth schemes must be among {', '.join(SCHEMES)}, not {sorted(unknown)}"
            )
        if "oauth2" in self.schemes and token_check is None:
            raise ValueError("auth 'oauth2' needs token_check (what the identity platform issued)")
        self.accounts = accounts
        self.token_check = token_check
        if "ntlm" in self.schemes:
            register_ntlm_accounts(accounts)

    def challenges(self) -> list[tuple[str, str]]:
        """WWW-Authenticate headers of a 401 to a request without (usable) credentials."""
        headers = []
        if "ntlm" in self.schemes:
            headers += [("WWW-Authenticate", "Negotiate"), ("WWW-Authenticate", "NTLM")]
        if "basic" in self.schemes:
            headers.append(("WWW-Authenticate", f'Basic realm="{REALM}"'))
        if "oauth2" in self.schemes:
            headers.append(("WWW-Authenticate", _BEARER))
        return headers

    def authenticate(self, header: str, conn: ConnectionAuth) -> str | Refusal:
        """The caller's name, or the 401 to answer."""
        scheme, _, token = header.strip().partition(" ")
        scheme = scheme.lower()
        token = token.strip()
        if scheme == "basic" and "basic" in self.schemes:
            return self._basic(token)
        if scheme in ("ntlm", "negotiate") and "ntlm" in self.schemes:
            return self._ntlm(scheme, token, conn)
        if scheme == "bearer" and "oauth2" in self.schemes:
            return self._bearer(token)
        if not header and conn.user is not None:
            return conn.user  # a connection NTLM authenticated stays so
        return Refusal(self.challenges())

    def _basic(self, token: str) -> str | Refusal:
        try:
            user, _, password = base64.b64decode(token).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return Refusal(self.challenges())
        name = self.accounts.canonical(user)
        if name is not None and name.lower() in self.accounts.locked:
            return Refusal(self.challenges(), LOCKED_OUT)
        checked = self.accounts.check_password(user, password)
        if checked is None or checked.lower() in self.accounts.expired:
            return Refusal(self.challenges())
        return checked

    def _ntlm(self, scheme: str, token: str, conn: ConnectionAuth) -> str | Refusal:
        import spnego  # only simulators with NTLM on need it
        from spnego.exceptions import SpnegoError

        try:
            data = base64.b64decode(token)
        except binascii.Error:
            data = b""
        kind = _ntlm_type(data)
        if kind == 1:  # NEGOTIATE: answer the CHALLENGE, keep the acceptor for this connection
            conn.user = None
            started = spnego.server(protocol="ntlm")
            challenge = started.step(data) or b""
            conn._ntlm = started
            word = "NTLM" if scheme == "ntlm" else "Negotiate"
            return Refusal(
                [("WWW-Authenticate", f"{word} {base64.b64encode(challenge).decode('ascii')}")]
            )
        acceptor, conn._ntlm = conn._ntlm, None
        if kind != 3 or acceptor is None:
            return Refusal(self.challenges())
        try:
            acceptor.step(data)
            principal = str(acceptor.client_principal)
        except (SpnegoError, ValueError):
            principal = ""
        name = self.accounts.canonical(principal) if principal else self._claimed_user(data)
        if name is not None and name.lower() in self.accounts.locked:
            return Refusal(self.challenges(), LOCKED_OUT)
        if not principal or name is None:
            return Refusal(self.challenges())
        conn.user = name
        return name

    def _claimed_user(self, authenticate: bytes) -> str | None:
        """The user an AUTHENTICATE message names (MS-NLMP 2.2.1.3: UserNameFields at offset
        36, NegotiateFlags at 60), to tell a locked account's refusal from a wrong password."""
        if len(authenticate) < 64:
            return None
        length = int.from_bytes(authenticate[36:38], "little")
        offset = int.from_bytes(authenticate[40:44], "little")
        unicode = int.from_bytes(authenticate[60:64], "little") & 0x1
        raw = authenticate[offset : offset + length]
        return self.accounts.canonical(raw.decode("utf-16-le" if unicode else "latin-1", "replace"))

    def _bearer(self, token: str) -> str | Refusal:
        assert self.token_check is not None
        try:
            return self.token_check(token)
        except TokenRefused as refused:
            return Refusal(
                [
                    ("WWW-Authenticate", _BEARER + ', error="invalid_token"'),
                    (
                        "x-ms-diagnostics",
                        f'{refused.code};reason="{refused.reason}";error_category="invalid_token"',
                    ),
                ],
                f"401 - Unauthorized: {refused.reason}",
            )
