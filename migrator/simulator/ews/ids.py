"""Opaque EWS ids for folders and items.

Exchange ids are base64 blobs that name the mailbox and the object; ours carry a kind byte, the
mailbox row id and the object row id, so any id can be routed to its mailbox without a lookup.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass

_MAGIC = b"SIM1"
_LAYOUT = struct.Struct(">4scIQ")
FOLDER = b"F"
ITEM = b"I"


@dataclass(frozen=True)
class ObjectId:
    kind: bytes
    mailbox_id: int
    row_id: int


class MalformedIdError(ValueError):
    """Not an id this simulator issued."""


def encode(kind: bytes, mailbox_id: int, row_id: int) -> str:
    return base64.b64encode(_LAYOUT.pack(_MAGIC, kind, mailbox_id, row_id)).decode("ascii")


def decode(text: str, kind: bytes) -> ObjectId:
    try:
        raw = base64.b64decode(text, validate=True)
        magic, found_kind, mailbox_id, row_id = _LAYOUT.unpack(raw)
    except (binascii.Error, struct.error, ValueError) as e:
        raise MalformedIdError(text) from e
    if magic != _MAGIC or found_kind != kind:
        raise MalformedIdError(text)
    return ObjectId(kind=found_kind, mailbox_id=mailbox_id, row_id=row_id)


def change_key(version: int) -> str:
    return base64.b64encode(b"CQAAABYAAAA" + struct.pack(">I", version)).decode("ascii")
