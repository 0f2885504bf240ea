"""SOAP 1.1 envelopes, response messages and faults shaped like Exchange 2016 writes them.

Responses are built as strings: cheaper than a tree for the big CreateItem/GetItem answers.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
M_NS = "http://schemas.microsoft.com/exchange/services/2006/messages"
T_NS = "http://schemas.microsoft.com/exchange/services/2006/types"
E_NS = "http://schemas.microsoft.com/exchange/services/2006/errors"

_ENVELOPE_OPEN = f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAP_NS}">'
_BODY_OPEN = (
    '<s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
)
_ENVELOPE_TAIL = "</s:Body></s:Envelope>"

# Exchange's own wording for the errors the simulator produces.
MESSAGE_TEXTS = {
    "ErrorAccessDenied": "Access is denied. Check credentials and try again.",
    "ErrorFolderExists": "A folder with the specified name already exists.",
    "ErrorFolderNotFound": "The specified folder could not be found in the store.",
    "ErrorImpersonateUserDenied": (
        "The account does not have permission to impersonate the requested user."
    ),
    "ErrorInvalidIdMalformed": "Id is malformed.",
    "ErrorInvalidExtendedPropertyValue": (
        "The extended property value is inconsistent with its type."
    ),
    "ErrorInvalidOperation": "The operation is not valid.",
    "ErrorInvalidRequest": "The request is invalid.",
    "ErrorItemNotFound": "The specified object was not found in the store.",
    "ErrorMessageSizeExceeded": "The message exceeds the maximum supported size.",
    "ErrorNonExistentMailbox": "The SMTP address has no mailbox associated with it.",
    "ErrorSchemaValidation": "The request failed schema validation.",
    "ErrorServerBusy": "The server cannot service this request right now. Try again later.",
    "ErrorUnsupportedPathForQuery": "The property path is not supported for this type of query.",
    "ErrorMimeContentConversionFailed": "Unable to convert MIME content.",
    "ErrorInvalidPropertyRequest": "The property request is invalid.",
    "ErrorInvalidServerVersion": "The specified server version is invalid.",
    # the wording of Exchange Online's answer quoted in exchangelib issue #279 (two spaces)
    "ErrorExceededConnectionCount": (
        "You have exceeded the available concurrent connections for your account.  "
        "Try again once your other requests have completed."
    ),
    # Exchange's wording of this one is not documented anywhere found: ours
    "ErrorExceededFindCountLimit": (
        "The find operation exceeds the number of items your throttling policy allows "
        "(EWSFindCountLimit). Try again once your other searches have completed."
    ),
    "ErrorInternalServerError": "An internal server error occurred. The operation failed.",
    # exchangelib issue #457 quotes this answer of a full mailbox
    "ErrorQuotaExceeded": "Mailbox has exceeded maximum mailbox size.",
}


class EwsError(Exception):
    """An error Exchange reports with a response code.

    fault=True: the whole request fails with a SOAP fault (e.g. impersonation failures);
    otherwise it becomes the error response message of one item or folder.
    """

    def __init__(
        self,
        code: str,
        text: str | None = None,
        *,
        fault: bool = False,
        values: dict[str, str] | None = None,
        detail: str | None = None,
        faultstring: str | None = None,
    ) -> None:
        self.code = code
        self.text = text or MESSAGE_TEXTS.get(code, code)
        self.fault = fault
        self.values = values or {}
        # MessageXml content other than Name/Value pairs (ErrorSchemaValidation's line,
        # position and violation), already XML
        self.detail = detail
        # a fault's faultstring when it says more than e:Message (schema validation does)
        self.faultstring = faultstring or self.text
        super().__init__(f"{code}: {self.faultstring}")


def esc(text: str) -> str:
    return escape(text)


def attr(text: str) -> str:
    return quoteattr(text)


def envelope(body: str, header: str | None) -> bytes:
    """A SOAP envelope; `header` is the ServerVersionInfo element, None for a fault (Exchange
    sends faults without a header: exchangelib issues #501 and #927 show such answers)."""
    head = "" if header is None else f"<s:Header>{header}</s:Header>"
    return (_ENVELOPE_OPEN + head + _BODY_OPEN + body + _ENVELOPE_TAIL).encode("utf-8")


def response(operation: str, messages: list[str]) -> str:
    return (
        f'<m:{operation}Response xmlns:m="{M_NS}" xmlns:t="{T_NS}"><m:ResponseMessages>'
        + "".join(messages)
        + f"</m:ResponseMessages></m:{operation}Response>"
    )


def success(operation: str, inner: str = "") -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Success">'
        f"<m:ResponseCode>NoError</m:ResponseCode>{inner}</m:{operation}ResponseMessage>"
    )


def _message_xml(values: dict[str, str]) -> str:
    if not values:
        return ""
    return f"<m:MessageXml>{_values(values)}</m:MessageXml>"


# Error messages of these operations still carry their (empty) container: the schema's
# ItemInfoResponseMessageType requires it.
_REQUIRED_CONTAINER = {"CreateItem": "<m:Items/>", "GetItem": "<m:Items/>"}


def error(operation: str, err: EwsError, inner: str = "") -> str:
    inner = inner or _REQUIRED_CONTAINER.get(operation, "")
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Error">'
        f"<m:MessageText>{esc(err.text)}</m:MessageText>"
        f"<m:ResponseCode>{err.code}</m:ResponseCode>"
        "<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>"
        f"{_message_xml(err.values)}{inner}</m:{operation}ResponseMessage>"
    )


def _values(values: dict[str, str]) -> str:
    return "".join(f"<t:Value Name={attr(k)}>{esc(v)}</t:Value>" for k, v in values.items())


def fault(err: EwsError) -> str:
    inner = _values(err.values) + (err.detail or "")
    message_xml = f'<t:MessageXml xmlns:t="{T_NS}">{inner}</t:MessageXml>' if inner else ""
    return (
        "<s:Fault>"
        f'<faultcode xmlns:a="{T_NS}">a:{err.code}</faultcode>'
        f'<faultstring xml:lang="en-US">{esc(err.faultstring)}</faultstring>'
        "<detail>"
        f'<e:ResponseCode xmlns:e="{E_NS}">{err.code}</e:ResponseCode>'
        f'<e:Message xmlns:e="{E_NS}">{esc(err.text)}</e:Message>'
        f"{message_xml}"
        "</detail></s:Fault>"
    )


def schema_violation(violation: str, line: int, position: int) -> EwsError:
    """ErrorSchemaValidation as Exchange words it: the reader's complaint after "The request
    failed schema validation: " in faultstring, and line, position and complaint in MessageXml
    (the answer quoted in exchangelib issue #501; php-ews issue #440 for the depth quota)."""
    detail = (
        f"<t:LineNumber>{line}</t:LineNumber><t:LinePosition>{position}</t:LinePosition>"
        f"<t:Violation>{esc(violation)}</t:Violation>"
    )
    return EwsError(
        "ErrorSchemaValidation",
        fault=True,
        detail=detail,
        faultstring=f"The request failed schema validation: {violation}",
    )


def max_depth_exceeded(limit: int, line: int, position: int) -> EwsError:
    """WCF's reader quota message, word for word (php-ews issue #440)."""
    violation = (
        f"The maximum read depth ({limit}) has been exceeded because XML data being read has more "
        "levels of nesting than is allowed by the quota. This quota may be increased by changing "
        "the MaxDepth property on the XmlDictionaryReaderQuotas object used when creating the XML "
        f"reader. Line {line}, position {position}."
    )
    return schema_violation(violation, line, position)


def exceeded_connection_count(limit: int) -> EwsError:
    """Past EWSMaxConcurrency: no back-off hint ("Suggested backoff time 0 ms"), as in the
    answer quoted in OfficeDev/ews-managed-api issue #293."""
    return EwsError(
        "ErrorExceededConnectionCount",
        fault=True,
        values={
            "Policy": "MaxConcurrency",
            "MaxConcurrencyLimit": str(limit),
            "ErrorMessage": (
                f"This operation exceeds the throttling budget for policy part 'MaxConcurrency', "
                f"policy value '{limit}',  Budget type: 'Ews'.  Suggested backoff time 0 ms."
            ),
        },
    )


def internal_server_busy() -> EwsError:
    """HTTP 200 with ErrorInternalServerError whose inner error is ErrorServerBusy: one of
    the throttling answers of "EWS throttling in Exchange" (table 4); no back-off hint.
    exchangelib raises the inner error (ErrorServerBusy)."""
    return EwsError(
        "ErrorInternalServerError",
        values={
            "InnerErrorMessageText": MESSAGE_TEXTS["ErrorServerBusy"],
            "InnerErrorResponseCode": "ErrorServerBusy",
            "InnerErrorDescriptiveLinkKey": "0",
        },
    )


def server_busy(backoff_ms: int) -> EwsError:
    return EwsError("ErrorServerBusy", fault=True, values={"BackOffMilliseconds": str(backoff_ms)})
