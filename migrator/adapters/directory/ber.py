"""The two LDAP controls ldap3 does not build: server side sorting and virtual list views.

ldap3 sends any control given as (oid, criticality, BER bytes) and hands back the value of a
response control it does not know as raw bytes. The values are small fixed structures, so a
few lines of BER (definite lengths, as LDAP requires, X.690 section 8) cover them:

- sort request (RFC 2891): SEQUENCE OF SEQUENCE { attributeType, [0] orderingRule OPTIONAL }
- sort response: SEQUENCE { sortResult ENUMERATED, [0] attributeType OPTIONAL }
- VLV request (draft-ietf-ldapext-ldapv3-vlv-09): SEQUENCE { beforeCount, afterCount,
  [0] byOffset SEQUENCE { offset, contentCount }, contextID OCTET STRING OPTIONAL }
- VLV response: SEQUENCE { targetPosition, contentCount, virtualListViewResult ENUMERATED,
  contextID OCTET STRING OPTIONAL }
"""

from __future__ import annotations

from dataclasses import dataclass

SORT_REQUEST_OID = "1.2.840.113556.1.4.473"
SORT_RESPONSE_OID = "1.2.840.113556.1.4.474"
VLV_REQUEST_OID = "2.16.840.1.113730.3.4.9"
VLV_RESPONSE_OID = "2.16.840.1.113730.3.4.10"

_INTEGER, _OCTET_STRING, _ENUMERATED, _SEQUENCE = 0x02, 0x04, 0x0A, 0x30


class BerError(ValueError):
    """A control value that is not the BER this module expects."""


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _length(len(body)) + body


def _integer(value: int, tag: int = _INTEGER) -> bytes:
    size = max(1, (value.bit_length() + 8) // 8)  # room for the sign bit
    return _tlv(tag, value.to_bytes(size, "big", signed=True))


def sort_request(attribute: str, ordering_rule: str | None = None) -> bytes:
    key = _tlv(_OCTET_STRING, attribute.encode("utf-8"))
    if ordering_rule:
        key += _tlv(0x80, ordering_rule.encode("utf-8"))  # [0] IMPLICIT MatchingRuleId
    return _tlv(_SEQUENCE, _tlv(_SEQUENCE, key))


def vlv_request(
    before: int, after: int, offset: int, content_count: int, context: bytes | None
) -> bytes:
    by_offset = _tlv(0xA0, _integer(offset) + _integer(content_count))  # [0] constructed
    body = _integer(before) + _integer(after) + by_offset
    if context:
        body += _tlv(_OCTET_STRING, context)
    return _tlv(_SEQUENCE, body)


@dataclass(frozen=True)
class VlvResponse:
    target_position: int
    content_count: int
    result: int  # an LDAP result code; 0 success
    context: bytes | None


def _read(data: bytes, at: int) -> tuple[int, bytes, int]:
    """(tag, body, position after) of the element starting at `at`."""
    if at + 2 > len(data):
        raise BerError("truncated element")
    tag, first = data[at], data[at + 1]
    at += 2
    if first & 0x80:
        size = first & 0x7F
        if size == 0 or size > 4 or at + size > len(data):
            raise BerError("unsupported length")
        length = int.from_bytes(data[at : at + size], "big")
        at += size
    else:
        length = first
    if at + length > len(data):
        raise BerError("element longer than the value")
    return tag, data[at : at + length], at + length


def _elements(body: bytes) -> list[tuple[int, bytes]]:
    found, at = [], 0
    while at < len(body):
        tag, value, at = _read(body, at)
        found.append((tag, value))
    return found


def _sequence(data: bytes) -> list[tuple[int, bytes]]:
    tag, body, _ = _read(data, 0)
    if tag != _SEQUENCE:
        raise BerError(f"expected a SEQUENCE, found tag {tag:#x}")
    return _elements(body)


def _int(element: tuple[int, bytes], tag: int = _INTEGER) -> int:
    if element[0] != tag or not element[1]:
        raise BerError(f"expected tag {tag:#x}, found {element[0]:#x}")
    return int.from_bytes(element[1], "big", signed=True)


def vlv_response(data: bytes) -> VlvResponse:
    items = _sequence(data)
    if len(items) < 3:
        raise BerError("VLV response with fewer than three fields")
    context = items[3][1] if len(items) > 3 and items[3][0] == _OCTET_STRING else None
    return VlvResponse(_int(items[0]), _int(items[1]), _int(items[2], _ENUMERATED), context or None)


def sort_result(data: bytes) -> int:
    """The sortResult code of a sort response control (0: sorted)."""
    return _int(_sequence(data)[0], _ENUMERATED)
