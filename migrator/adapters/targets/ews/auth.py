"""The service account on the wire: NTLM/Basic refusals, OAuth2 client credentials, and what to
say when Exchange or the identity platform refuses them.

- NTLM and Basic: IIS answers 401 to a wrong password, an expired password and a disabled
  account alike (Windows refuses the logon; the answer does not say why); a locked-out account
  gets the same 401 with "The referenced account is currently locked out" in the page, which
  exchangelib looks for. Each becomes one error naming the account and what to check.
- OAuth2 (client credentials, Exchange Online or Exchange Server in hybrid with modern auth):
  the token comes from `token_url` (default: Microsoft's v2.0 endpoint for `tenant_id`) for
  `oauth_scope`. The token endpoint's refusals are told apart by their AADSTS code: a wrong
  secret (7000215), an expired one (7000222), a disabled app (7000112), an unknown app
  (700016) or tenant (90002), a bad scope (1002012).
- A token that runs out mid-run: exchangelib's own refresh asks the endpoint for a
  refresh-token grant, which client credentials do not have (exchangelib issue #1345, the
  InvalidClientIdError after an hour); `MigratorOAuth2Credentials` leaves that out, so an expired
  token makes exchangelib open a session with a fresh one and send the request again. A token the
  server refuses before the client thinks it expired (a clock ahead, a revoked token) is handled
  the same way once the server had accepted it (see connection.FailFastWithHints).
"""

from __future__ import annotations

import re
from typing import Any

from exchangelib import OAuth2Credentials
from exchangelib.errors import UnauthorizedError
from oauthlib.oauth2.rfc6749.errors import InsecureTransportError, OAuth2Error

from migrator.model.errors import Outage, PermanentError, TransientError
from migrator.model.reasons import Reason

MICROSOFT_TOKEN_URL = "https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token"
LOCKED_OUT_MARK = b"currently locked out"
_AADSTS = re.compile(r"AADSTS(\d+)")
_DIAGNOSTICS_REASON = re.compile(r'reason="([^"]{1,200})"')


class MigratorOAuth2Credentials(OAuth2Credentials):  # type: ignore[misc]
    """Client credentials against the plan's token endpoint and scope, without the
    refresh-token grant exchangelib would try when a token expires (see the module doc)."""

    def __init__(self, *, token_url: str, scope: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.migrator_token_url = token_url
        self.migrator_scope = scope

    @property
    def token_url(self) -> str:
        return self.migrator_token_url

    @property
    def scope(self) -> list[str]:
        return [self.migrator_scope]

    def __hash__(self) -> int:
        # exchangelib keys its Protocol cache on the credentials; the OAuth client object it
        # caches on them once the first session is made must not change that key
        return hash(
            tuple(
                getattr(self, k)
                for k in sorted(self.__dict__)
                if k not in ("_lock", "identity", "_access_token", "client")
            )
        )

    def __eq__(self, other: object) -> bool:
        return self is other or (
            isinstance(other, MigratorOAuth2Credentials)
            and hash(self) == hash(other)
            and self.client_secret == other.client_secret
        )

    def session_params(self) -> dict[str, Any]:
        # no auto_refresh_url: requests-oauthlib then raises TokenExpiredError for an expired
        # token, and exchangelib opens a new session, which fetches a new token
        return {"token": self.access_token}


class ServiceAccountRefused(UnauthorizedError):  # type: ignore[misc]
    """HTTP 401 for the service account, with what it most likely means and what to do."""

    def __init__(self, cause: str, hint: str) -> None:
        super().__init__(cause)
        self.cause = cause
        self.hint = hint


def refused(auth: str, account: str, body: bytes, headers: Any) -> ServiceAccountRefused:
    """What a 401 for our credentials means, by the auth type in use."""
    if auth == "oauth2":
        reason = _DIAGNOSTICS_REASON.search(headers.get("x-ms-diagnostics", "") or "")
        said = f": {reason.group(1)}" if reason else ""
        return ServiceAccountRefused(
            f"the EWS server refused the access token of app {account} (HTTP 401{said})",
            "the app needs the full_access_as_app application permission of Office 365 Exchange "
            "Online with admin consent (Exchange Server in hybrid: OAuth set up between it and "
            "Microsoft Entra ID, Test-OAuthConnectivity -Service EWS); check client_id, tenant_id "
            "and oauth_scope",
        )
    if LOCKED_OUT_MARK in body:
        return ServiceAccountRefused(
            f"the service account {account} is locked out in Active Directory (the EWS server "
            "said: the referenced account is currently locked out)",
            "unlock it (Unlock-ADAccount) and find what still tries an old password with it (an "
            "old plan, another migrator host, a scheduled task): it locks the account again",
        )
    return ServiceAccountRefused(
        f"the EWS server refused the service account's credentials (HTTP 401 for {account}: a "
        "wrong password, or one that expired, or a disabled account)",
        "check the service account ([target] username) and the password password_env or "
        "password_file names; then the account in Active Directory (Get-ADUser -Properties "
        "Enabled,PasswordExpired,LockedOut)",
    )


_TOKEN_REFUSALS = {
    "7000215": (
        "the token endpoint refused the app's client secret (AADSTS7000215: invalid client secret)",
        "put the secret's Value, not its Secret ID, where client_secret_env / client_secret_file "
        "points; check client_id and tenant_id",
    ),
    "7000222": (
        "the app's client secret has expired (AADSTS7000222)",
        "create a new client secret for the app (Microsoft Entra admin center > App "
        "registrations > the app > Certificates & secrets) and put its value where "
        "client_secret_env / client_secret_file points",
    ),
    "7000112": (
        "the app is disabled in the tenant (AADSTS7000112)",
        "enable it (Microsoft Entra admin center > Enterprise applications > the app > "
        "Properties > Enabled for users to sign in), or use an app that is",
    ),
    "700016": (
        "the tenant has no app with this client_id (AADSTS700016)",
        "check client_id and tenant_id",
    ),
    "90002": ("the identity platform knows no such tenant (AADSTS90002)", "check tenant_id"),
    "1002012": (
        "the identity platform refused the scope (AADSTS1002012)",
        "oauth_scope must be the EWS resource followed by /.default",
    ),
}


def token_refused(exc: OAuth2Error, where: str) -> Exception:
    """The migrator error for the token endpoint's refusal (an OAuth2Error from oauthlib)."""
    if isinstance(exc, InsecureTransportError):
        return PermanentError(
            f"{where}: OAuth2 tokens are only sent over HTTPS, and token_url or url is http://",
            reason=Reason.CONFIG,
            hint="use https:// URLs for url and token_url (a test setup may set "
            "OAUTHLIB_INSECURE_TRANSPORT=1 to allow http)",
        )
    status = getattr(exc, "status_code", None) or 400
    code = str(getattr(exc, "error", "") or "")
    if not re.fullmatch(r"[a-z_]{1,64}", code):
        code = type(exc).__name__
    if status == 429 or status >= 500 or code in ("temporarily_unavailable", "server_error"):
        return TransientError(
            f"{where}: the token endpoint answered HTTP {status} ({code})", throttled=status == 429
        )
    number = _AADSTS.search(str(getattr(exc, "description", "") or ""))
    cause, hint = _TOKEN_REFUSALS.get(
        number.group(1) if number else "",
        (
            f"the token endpoint refused the app's client credentials ({code}"
            + (f", AADSTS{number.group(1)}" if number else "")
            + ")",
            "check client_id, tenant_id, token_url and the secret client_secret_env / "
            "client_secret_file names",
        ),
    )
    return PermanentError(
        f"{where}: {cause}",
        reason=Reason.AUTH,
        hint=hint,
        outage=Outage("target", "auth", cause, hint=hint),
    )
