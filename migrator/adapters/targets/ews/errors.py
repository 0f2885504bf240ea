"""Translate exchangelib and HTTP failures into migrator's TransientError / PermanentError.

The table here is the one documented in docs/targets.md; keep both in step. Nothing outside this
package ever sees an exchangelib exception.
"""

from __future__ import annotations

import socket
import traceback
from collections.abc import Sequence

import requests
from exchangelib import errors as ews
from oauthlib.oauth2.rfc6749.errors import OAuth2Error

from migrator.model.errors import MigratorError, PermanentError, TransientError
from migrator.model.reasons import Reason
from migrator.model.secrecy import WITHHELD, unless_secret

from . import reachability
from .auth import ServiceAccountRefused, token_refused

_NO_MAILBOX = (
    ews.ErrorNonExistentMailbox,
    ews.ErrorInvalidSmtpAddress,
    ews.ErrorNonPrimarySmtpAddress,
    ews.ErrorInvalidMailbox,
    ews.ErrorNameResolutionNoMailbox,
    ews.ErrorAccountDisabled,
)
_NO_PERMISSION = (
    ews.ErrorImpersonateUserDenied,
    ews.ErrorImpersonationDenied,
    ews.ErrorAccessDenied,
    ews.ErrorCreateItemAccessDenied,
    ews.ErrorCreateSubfolderAccessDenied,
    ews.ErrorNotDelegate,
    ews.ErrorInvalidExchangeImpersonationHeaderData,
)
_TOO_LARGE = (
    ews.ErrorMessageSizeExceeded,
    ews.ErrorDataSizeLimitExceeded,
    ews.ErrorAttachmentSizeLimitExceeded,
)
_REJECTED = (
    ews.ErrorMimeContentConversionFailed,
    ews.ErrorMimeContentInvalid,
    ews.ErrorUnsupportedMimeConversion,
    ews.ErrorCorruptData,
    ews.ErrorItemCorrupt,
    ews.ErrorItemSave,
    ews.ErrorItemSavePropertyError,
    ews.ErrorInvalidRequest,
    ews.ErrorInvalidServerVersion,  # what exchangelib makes of ErrorInvalidRequest on every version
    ews.ErrorInvalidPropertyRequest,
    ews.ErrorInvalidExtendedPropertyValue,
    ews.ErrorInvalidValueForProperty,
    ews.ErrorSchemaValidation,
)
_QUOTA = (ews.ErrorQuotaExceeded, ews.ErrorFolderSave, ews.ErrorFolderSaveFailed)
_NOT_FOUND = (
    ews.ErrorFolderNotFound,
    ews.ErrorParentFolderNotFound,
    ews.ErrorItemNotFound,
    ews.ErrorSavedItemFolderNotFound,
)
# Exchange's own words for "not now": the mailbox is moving, failing over or its database is down.
_TRANSIENT = (
    ews.ErrorTimeoutExpired,
    ews.ErrorInternalServerTransientError,
    ews.ErrorInternalServerError,
    ews.ErrorTooManyObjectsOpened,
    ews.ErrorMailboxMoveInProgress,
    ews.ErrorMailboxStoreUnavailable,
    ews.ErrorMailboxFailover,
    ews.ErrorMailboxLogonFailed,
    ews.ErrorConnectionFailed,
    ews.ErrorConnectionFailedTransientError,
    ews.ErrorADUnavailable,
    ews.ErrorBatchProcessingStopped,
    ews.SessionPoolMinSizeReached,
)
_CONNECTION = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    socket.timeout,
    ConnectionError,
)
# exchangelib turns a failed connection into ErrorServerBusy("Reraised from ErrorTimeoutExpired(...
# when it has spare sessions: the server never said it was busy, the connection broke.
_BROKEN_CONNECTION_MARK = "Reraised from ErrorTimeoutExpired"


class HttpThrottled(ews.ErrorServerBusy):
    """HTTP 429/503 answered by the server (raised by our retry policy, see connection.py)."""

    def __init__(self, status: int, back_off: float | None) -> None:
        super().__init__(f"HTTP {status} from the server", back_off=back_off)
        self.status = status


class RequestTooLarge(ews.TransportError):
    """The server refused the request for its size before EWS looked at it: HTTP 404.13 from
    IIS request filtering (maxAllowedContentLength) or 413 from the WCF binding
    (maxReceivedMessageSize). Nothing was stored."""

    def __init__(self, status: int = 413) -> None:
        self.status = status
        what = "404.13, IIS request filtering" if status == 404 else "413 Request Entity Too Large"
        super().__init__(f"HTTP {what}")


def _code(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc).strip()
    return f"{name}: {text}" if text else name


def _from_exchangelib(exc: BaseException) -> bool:
    """True when the exception was raised inside exchangelib (not by a bug of ours)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and "exchangelib" in frames[-1].filename


def is_ambiguous(exc: BaseException) -> bool:
    """True when a request may have reached the server before it failed (the connection broke
    or timed out), so the caller must look before sending again."""
    if isinstance(exc, HttpThrottled | RequestTooLarge):
        return False
    if isinstance(exc, ews.ErrorServerBusy):
        return str(exc).startswith(_BROKEN_CONNECTION_MARK)
    return isinstance(
        exc,
        ews.ErrorTimeoutExpired
        | ews.ErrorInternalServerTransientError
        | ews.ErrorInternalServerError
        | ews.MalformedResponseError
        | ews.SOAPError
        | requests.exceptions.RequestException
        | OSError,
    )


def translate(exc: Exception, *, where: str, secrets: Sequence[str] = ()) -> Exception:
    """The migrator error for `exc`; `where` names the mailbox/folder/operation for the message.

    `secrets` are the credentials the requests carried: the exception's text is left out when
    one occurs in it (never masked; see model/secrecy.py). Returns exceptions that are not ours
    to judge (bugs in our code) unchanged. A failure of the server as a whole (refused,
    unresolvable, TLS, timeout, the service account refused) carries an Outage, and its message
    names the innermost cause, not exchangelib's wrapper.
    """
    translated = _translate(exc, where=where, secrets=secrets)
    if translated is exc or not isinstance(translated, TransientError | PermanentError):
        return translated
    outage = reachability.outage_of(exc)
    if outage is not None:
        translated.outage = outage
        if outage.kind != "auth":
            translated.message = f"{where}: {outage.cause}"
            translated.args = (translated.message,)
    return translated


def _translate(exc: Exception, *, where: str, secrets: Sequence[str]) -> Exception:
    if isinstance(exc, MigratorError):
        return exc
    detail = _code(exc)
    if unless_secret(detail, *secrets) != detail:
        detail = f"{type(exc).__name__}: {WITHHELD}"
    if isinstance(exc, ews.ErrorServerBusy):
        back_off = exc.back_off if exc.back_off and exc.back_off > 0 else None
        if str(exc).startswith(_BROKEN_CONNECTION_MARK):
            return TransientError(f"{where}: connection to the EWS server failed ({detail})")
        if isinstance(exc, HttpThrottled):
            return TransientError(
                f"{where}: the server is throttling (HTTP {exc.status})",
                retry_after=back_off,
                throttled=True,
            )
        # with or without BackOffMilliseconds: the HTTP-200 ErrorInternalServerError whose
        # inner error is ErrorServerBusy has none ("EWS throttling in Exchange", table 4)
        return TransientError(
            f"{where}: the server is busy (ErrorServerBusy)", retry_after=back_off, throttled=True
        )
    if isinstance(exc, ews.ErrorExceededConnectionCount):
        # EWSMaxConcurrency (27 by default) counts the service account's requests in flight
        # over every process using it; the answer carries no back-off hint
        return TransientError(
            f"{where}: the service account has more EWS requests in flight than "
            "Exchange allows it (ErrorExceededConnectionCount)",
            throttled=True,
            hint="lower [run] target_concurrency (over all hosts) below the "
            "service account's EWSMaxConcurrency",
        )
    if isinstance(exc, ews.ErrorExceededFindCountLimit):
        return TransientError(
            f"{where}: the service account's searches hold more results than "
            "Exchange allows it at once (ErrorExceededFindCountLimit)",
            throttled=True,
        )
    if isinstance(exc, OAuth2Error):
        return token_refused(exc, where)
    if isinstance(exc, ServiceAccountRefused):
        return PermanentError(f"{where}: {exc.cause}", reason=Reason.AUTH, hint=exc.hint)
    if isinstance(exc, ews.UnauthorizedError | ews.CASError):
        return PermanentError(
            f"{where}: the EWS server refused our credentials ({detail})",
            reason=Reason.AUTH,
            hint="check [target] username and the password/secret it names",
        )
    if isinstance(exc, _NO_MAILBOX):
        return PermanentError(
            f"{where}: no such mailbox on the target ({detail})",
            reason=Reason.NO_MAILBOX,
            hint="create the mailbox, or fix [target] address template",
        )
    if isinstance(exc, _NO_PERMISSION):
        return PermanentError(
            f"{where}: the service account may not write to this mailbox ({detail})",
            reason=Reason.NO_PERMISSION,
            hint="grant ApplicationImpersonation (or FullAccess for delegate mode)",
        )
    if isinstance(exc, RequestTooLarge):
        return PermanentError(
            f"{where}: the server refused the request as too large ({exc})",
            reason=Reason.TOO_LARGE,
            hint="the server's request limit is below [target] max_message_size",
        )
    if isinstance(exc, _TOO_LARGE):
        return PermanentError(
            f"{where}: the server refused the message as too large ({detail})",
            reason=Reason.TOO_LARGE,
        )
    if isinstance(exc, _QUOTA):
        return PermanentError(
            f"{where}: the target mailbox is over its quota ({detail})",
            reason=Reason.QUOTA,
            hint="raise the mailbox quota, then run again",
        )
    if isinstance(exc, _REJECTED):
        return PermanentError(
            f"{where}: the server rejected the content ({detail})", reason=Reason.REJECTED
        )
    if isinstance(exc, _NOT_FOUND):
        return PermanentError(
            f"{where}: not found on the target ({detail})",
            reason=Reason.NOT_FOUND,
            hint="was the folder deleted in the target? run again to recreate it",
        )
    if isinstance(exc, ews.ErrorTimeoutExpired) and str(exc).startswith("Reraised from"):
        return TransientError(f"{where}: connection to the EWS server failed ({detail})")
    if isinstance(exc, _TRANSIENT):
        return TransientError(f"{where}: temporary server problem ({detail})")
    if isinstance(exc, ews.RedirectError):
        return PermanentError(
            f"{where}: the EWS URL redirects elsewhere ({detail})",
            reason=Reason.CONFIG,
            hint="set [target] url to the final EWS endpoint",
        )
    if isinstance(exc, ews.MalformedResponseError) and any(
        f"Code: {code}" in str(exc) for code in (400, 404, 405)
    ):
        return PermanentError(
            f"{where}: the URL does not answer as an EWS endpoint ({detail})",
            reason=Reason.CONFIG,
            hint="check [target] url (…/EWS/Exchange.asmx)",
        )
    if isinstance(exc, requests.exceptions.SSLError) or (
        isinstance(exc, ews.TransportError)
        and not isinstance(exc, ews.ResponseMessageError)
        and any(mark in str(exc) for mark in ("SSL", "certificate", "CERTIFICATE"))
    ):
        return PermanentError(
            f"{where}: TLS check of the EWS server failed ({detail})",
            reason=Reason.TLS,
            hint="set [target] ca_file to the CA that signed the server certificate",
        )
    if isinstance(exc, _CONNECTION):
        return TransientError(f"{where}: cannot connect to the EWS server ({detail})")
    if isinstance(exc, ews.ResponseMessageError):
        # Any other Exchange response code: the server understood us and said no.
        return PermanentError(f"{where}: the server answered {detail}", reason=Reason.EWS_ERROR)
    if isinstance(exc, ews.TransportError | ews.EWSError | OSError):
        return TransientError(f"{where}: EWS transport problem ({detail})")
    if isinstance(exc, ValueError | TypeError | AttributeError) and _from_exchangelib(exc):
        return PermanentError(f"{where}: unexpected EWS answer ({detail})", reason=Reason.EWS_ERROR)
    return exc
