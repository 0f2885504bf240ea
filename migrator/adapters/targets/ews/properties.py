"""MAPI properties we set on every created message, registered once on exchangelib's Message.

Exchange shows an item created from MIME as an unsent draft unless PR_MESSAGE_FLAGS is given at
creation, and it takes the received/sent times from the time of the upload unless
PR_MESSAGE_DELIVERY_TIME / PR_CLIENT_SUBMIT_TIME are given (docs/targets.md, "What each
message carries").
"""

from __future__ import annotations

import threading

from exchangelib import ExtendedProperty, Message
from exchangelib.items import MeetingCancellation, MeetingRequest, MeetingResponse

# Our own property set: the source key of each uploaded item lives under it, so a crashed run
# can ask the target which keys already arrived. Never change it: older runs wrote with it.
SOURCE_KEY_PROPERTY_SET = "8f0c5b1e-3d2a-4f6b-9a7e-6d4c2b1a0e93"
SOURCE_KEY_PROPERTY_NAME = "MigratorSourceKey"

MSGFLAG_READ = 0x0001
MSGFLAG_UNSENT = 0x0008  # never set: it is what makes an item a draft
FLAG_STATUS_FLAGGED = 2
LAST_VERB_REPLY_TO_SENDER = 102
LAST_VERB_FORWARD = 104


class MessageFlags(ExtendedProperty):
    property_tag = 0x0E07  # PR_MESSAGE_FLAGS
    property_type = "Integer"


class DeliveryTime(ExtendedProperty):
    property_tag = 0x0E06  # PR_MESSAGE_DELIVERY_TIME
    property_type = "SystemTime"


class SubmitTime(ExtendedProperty):
    property_tag = 0x0039  # PR_CLIENT_SUBMIT_TIME
    property_type = "SystemTime"


class FlagStatus(ExtendedProperty):
    property_tag = 0x1090  # PR_FLAG_STATUS
    property_type = "Integer"


class LastVerbExecuted(ExtendedProperty):
    property_tag = 0x1081  # PR_LAST_VERB_EXECUTED: Outlook's "replied"/"forwarded" icon
    property_type = "Integer"


class SourceKey(ExtendedProperty):
    property_set_id = SOURCE_KEY_PROPERTY_SET
    property_name = SOURCE_KEY_PROPERTY_NAME
    property_type = "String"


# attribute name on Message -> property class
PROPERTIES: dict[str, type[ExtendedProperty]] = {
    "migrator_message_flags": MessageFlags,
    "migrator_delivery_time": DeliveryTime,
    "migrator_submit_time": SubmitTime,
    "migrator_flag_status": FlagStatus,
    "migrator_last_verb": LastVerbExecuted,
    "migrator_source_key": SourceKey,
}

_lock = threading.Lock()


def register_properties() -> None:
    """Register our properties on Message and on the meeting item classes (exchangelib keeps
    them class-wide), so reading items back with exchangelib shows them too: Exchange answers a
    message whose MIME is an invitation, a cancellation or a reply as a meeting item, not as a
    Message. Idempotent."""
    with _lock:
        for model in (Message, MeetingRequest, MeetingResponse, MeetingCancellation):
            known = {f.name for f in model.FIELDS}
            for name, cls in PROPERTIES.items():
                if name not in known:
                    model.register(name, cls)


register_properties()  # before MimeMessage below copies Message's field list


class MimeMessage(Message):  # type: ignore[misc]
    """A Message created from MIME that sends only what we set.

    exchangelib fills in defaults for Importance, Sensitivity, receipt requests and reminders;
    sent along with MimeContent they would override what the MIME headers say (an
    "Importance: high" message would arrive as normal). Dropping them lets Exchange take these
    from the MIME, as it does for delivered mail.
    """

    __slots__ = ()
    _MIME_DERIVED = (
        "sensitivity",
        "importance",
        "reminder_is_set",
        "reminder_minutes_before_start",
        "is_read_receipt_requested",
        "is_delivery_receipt_requested",
        "is_response_requested",
    )

    def clean(self, version: object = None) -> None:
        super().clean(version=version)
        for name in self._MIME_DERIVED:
            setattr(self, name, None)
