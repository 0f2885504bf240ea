"""SOAP 1.1 envelopes, response messages and faults shaped like Exchange 2016 writes them.

Responses are built as strings: cheaper than a tree for the big CreateItem/GetItem answers.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
M_NS = "http://schemas.microsoft.com/exchange/services/2006/messages"
T_NS = "http://schemas.microsoft.com/exchange/services/2006/types"
E_NS = "http://schemas.microsoft.com/exchange/services/2006/errors"

# Exchange 2016 CU23 reports this build; exchangelib maps 15.1 to the "Exchange2016" API version
# and, seeing the dated "V2017_07_11" form, keeps the API version it asked with.
SERVER_VERSION_INFO = (
    f'<h:ServerVersionInfo xmlns:h="{T_NS}" MajorVersion="15" MinorVersion="1" '
    'MajorBuildNumber="2507" MinorBuildNumber="6" Version="V2017_07_11"/>'
)

_ENVELOPE_HEAD = (
    f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAP_NS}">'
    f"<s:Header>{SERVER_VERSION_INFO}</s:Header>"
    '<s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
)
_ENVELOPE_TAIL = "</s:Body></s:Envelope>"

# Exchange's own wording for the errors the simulator produces.
MESSAGE_TEXTS = {
    "ErrorAccessDenied": "Access is denied. Check credentials and try again.",
    "ErrorFolderExists": "A folder with the specified name already exists.",
    "ErrorFolderNotFound": "The specified folder could not be found in the store.",
    "ErrorImpersonateUserDenied": "The account does not have permission to impersonate the requested user.",
    "ErrorInvalidIdMalformed": "Id is malformed.",
    "ErrorInvalidExtendedPropertyValue": "The extended property value is inconsistent with its type.",
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
    ) -> None:
        self.code = code
        self.text = text or MESSAGE_TEXTS.get(code, code)
        self.fault = fault
        self.values = values or {}
        super().__init__(f"{code}: {self.text}")


def esc(text: str) -> str:
    return escape(text)


def attr(text: str) -> str:
    return quoteattr(text)


def envelope(body: str) -> bytes:
    return (_ENVELOPE_HEAD + body + _ENVELOPE_TAIL).encode("utf-8")


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
    inner = "".join(f"<t:Value Name={attr(k)}>{esc(v)}</t:Value>" for k, v in values.items())
    return f"<m:MessageXml>{inner}</m:MessageXml>"


def error(operation: str, err: EwsError, inner: str = "") -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Error">'
        f"<m:MessageText>{esc(err.text)}</m:MessageText>"
        f"<m:ResponseCode>{err.code}</m:ResponseCode>"
        "<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>"
        f"{_message_xml(err.values)}{inner}</m:{operation}ResponseMessage>"
    )


def fault(err: EwsError) -> str:
    values = "".join(f"<t:Value Name={attr(k)}>{esc(v)}</t:Value>" for k, v in err.values.items())
    message_xml = f'<t:MessageXml xmlns:t="{T_NS}">{values}</t:MessageXml>' if values else ""
    return (
        "<s:Fault>"
        f'<faultcode xmlns:a="{T_NS}">a:{err.code}</faultcode>'
        f'<faultstring xml:lang="en-US">{esc(err.text)}</faultstring>'
        "<detail>"
        f'<e:ResponseCode xmlns:e="{E_NS}">{err.code}</e:ResponseCode>'
        f'<e:Message xmlns:e="{E_NS}">{esc(err.text)}</e:Message>'
        f"{message_xml}"
        "</detail></s:Fault>"
    )


def server_busy(backoff_ms: int) -> EwsError:
    return EwsError("ErrorServerBusy", fault=True, values={"BackOffMilliseconds": str(backoff_ms)})
