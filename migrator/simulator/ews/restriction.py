"""FindItem restrictions compiled to SQL over the items table.

Strings compare as Exchange compares them: ignoring case (IsEqualTo, IsNotEqualTo and the
ordering comparisons on a string property or field match "ABC" for "abc"; Contains follows its
ContainmentComparison, "Exact" being the only case-sensitive one). The store keeps a case-folded
copy of every property value for this (store.py, `casefold`). Source: the Restriction and
Contains element references of EWS (Microsoft Learn), and exchangelib's note that its `__in`
and `__contains` lookups on strings are case-insensitive against Exchange
(exchangelib/restriction.py); Unicode case folding for non-ASCII text is our choice, Exchange's
exact collation is not verified.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from .props import (
    PR_CLIENT_SUBMIT_TIME,
    PR_MESSAGE_DELIVERY_TIME,
    PR_MESSAGE_FLAGS,
    PropRef,
    canonical_scalar,
    canonical_time,
    parse_ref,
)
from .soap import T_NS, EwsError

_COMPARISONS = {
    "IsEqualTo": "=",
    "IsNotEqualTo": "<>",
    "IsGreaterThan": ">",
    "IsGreaterThanOrEqualTo": ">=",
    "IsLessThan": "<",
    "IsLessThanOrEqualTo": "<=",
}
# FieldURI -> (column expression, kind) for the item fields a restriction may name.
_COLUMNS = {
    "item:Subject": ("subject", "text"),
    "item:ItemClass": ("item_class", "text"),
    "item:DateTimeReceived": ("received", "time"),
    "item:DateTimeSent": ("sent", "time"),
    "item:DateTimeCreated": ("created", "time"),
    "item:Size": ("size", "int"),
    "message:IsRead": ("is_read", "bool"),
    "item:IsDraft": ("((message_flags & 8) != 0)", "bool"),
}
# Tags the simulator keeps in columns rather than in item_props.
_TAG_COLUMNS = {
    PR_MESSAGE_FLAGS: ("message_flags", "int"),
    PR_MESSAGE_DELIVERY_TIME: ("received", "time"),
    PR_CLIENT_SUBMIT_TIME: ("sent", "time"),
}


def _local(elem: etree._Element) -> str:
    return etree.QName(elem).localname


def _constant(elem: etree._Element) -> str:
    holder = elem.find(f"{{{T_NS}}}FieldURIOrConstant")
    constant = holder.find(f"{{{T_NS}}}Constant") if holder is not None else None
    if constant is None:
        raise EwsError("ErrorInvalidRestriction", "Only constants can be compared", fault=True)
    return constant.get("Value", "")


def _column_value(kind: str, text: str) -> object:
    if kind == "int":
        return int(text)
    if kind == "bool":
        return 1 if text.strip().lower() in ("true", "1") else 0
    if kind == "time":
        return canonical_time(text)
    return text.casefold()


def _path(elem: etree._Element) -> etree._Element:
    for child in elem:
        if _local(child) in ("FieldURI", "ExtendedFieldURI", "IndexedFieldURI"):
            return child
    raise EwsError("ErrorInvalidRestriction", f"{_local(elem)} names no property", fault=True)


def _prop_subquery(ref: PropRef, op: str | None, value: str | None) -> tuple[str, list[object]]:
    if op is None:
        return "id IN (SELECT item_id FROM item_props WHERE key = ?)", [ref.key]
    assert value is not None
    canonical = canonical_scalar(ref, value)
    if ref.is_integer:
        compare: str = f"CAST(value AS INTEGER) {op} ?"
        arg: object = int(canonical)
    else:
        # every other type is compared in its canonical text, folded: only strings can differ
        # in case, and the canonical forms of times and booleans do not
        compare, arg = f"folded {op} ?", canonical.casefold()
    if op == "<>":
        # A message without the property is "not equal" too.
        sql = "id NOT IN (SELECT item_id FROM item_props WHERE key = ? AND folded = ?)"
        return sql, [ref.key, str(arg).casefold()]
    return f"id IN (SELECT item_id FROM item_props WHERE key = ? AND {compare})", [ref.key, arg]


def _compare(path: etree._Element, op: str | None, value: str | None) -> tuple[str, list[object]]:
    if _local(path) == "ExtendedFieldURI":
        ref = parse_ref(path)
        if ref.tag in _TAG_COLUMNS:
            column, kind = _TAG_COLUMNS[ref.tag]
        else:
            return _prop_subquery(ref, op, value)
    elif _local(path) == "FieldURI" and path.get("FieldURI") in _COLUMNS:
        column, kind = _COLUMNS[path.get("FieldURI", "")]
    else:
        raise EwsError("ErrorUnsupportedPathForQuery", fault=True)
    if op is None:
        return f"{column} IS NOT NULL", []
    assert value is not None
    if kind == "text":
        column = f"casefold({column})"
    try:
        return f"{column} {op} ?", [_column_value(kind, value)]
    except ValueError as e:
        raise EwsError("ErrorInvalidRestriction", f"Bad constant {value!r}", fault=True) from e


def compile_restriction(elem: etree._Element) -> tuple[str, list[object]]:
    """SQL condition and parameters for one restriction element (t:Restriction's child)."""
    name = _local(elem)
    if name in ("And", "Or"):
        parts = [compile_restriction(child) for child in elem]
        if not parts:
            return ("1" if name == "And" else "0"), []
        joiner = " AND " if name == "And" else " OR "
        return joiner.join(f"({sql})" for sql, _ in parts), [a for _, args in parts for a in args]
    if name == "Not":
        sql, args = compile_restriction(elem[0])
        return f"NOT ({sql})", args
    if name in _COMPARISONS:
        return _compare(_path(elem), _COMPARISONS[name], _constant(elem))
    if name == "Exists":
        return _compare(_path(elem), None, None)
    if name == "Contains":
        path = _path(elem)
        constant = elem.find(f"{{{T_NS}}}Constant")
        text = "" if constant is None else constant.get("Value", "")
        field = path.get("FieldURI") if _local(path) == "FieldURI" else None
        column = {"item:Subject": "subject", "item:Categories": "categories"}.get(field or "")
        if column is None:
            raise EwsError("ErrorUnsupportedPathForQuery", fault=True)
        return _contains(
            column,
            text,
            elem.get("ContainmentMode", "Substring"),
            elem.get("ContainmentComparison", "Exact"),
        )
    raise EwsError("ErrorInvalidRestriction", f"Unsupported restriction {name}", fault=True)


def _contains(column: str, text: str, mode: str, comparison: str) -> tuple[str, list[object]]:
    if comparison != "Exact":  # IgnoreCase, Loose and their combinations
        column, text = f"casefold({column})", text.casefold()
    if mode == "FullString":
        return f"{column} = ?", [text]
    if mode == "Prefixed":
        return f"substr({column}, 1, length(?)) = ?", [text, text]
    # Substring, and the word modes (PrefixOnWords, ExactPhrase) approximated by it
    return f"instr({column}, ?) > 0", [text]


_FOLDER_FIELDS = {
    "folder:DisplayName": lambda f: f.name,
    "folder:FolderClass": lambda f: f.folder_class,
}


def folder_matches(elem: etree._Element, folder: Any) -> bool:
    """Evaluate a FindFolder restriction on one folder (folder trees are small: no SQL)."""
    name = _local(elem)
    if name == "And":
        return all(folder_matches(child, folder) for child in elem)
    if name == "Or":
        return any(folder_matches(child, folder) for child in elem)
    if name == "Not":
        return not folder_matches(elem[0], folder)
    path = _path(elem)
    getter = _FOLDER_FIELDS.get(path.get("FieldURI", "")) if _local(path) == "FieldURI" else None
    if getter is None:
        raise EwsError("ErrorUnsupportedPathForQuery", fault=True)
    value = getter(folder)
    if name == "Exists":
        return value is not None
    if name == "Contains":
        constant = elem.find(f"{{{T_NS}}}Constant")
        wanted = "" if constant is None else constant.get("Value", "")
        return value is not None and wanted.lower() in value.lower()
    if name in ("IsEqualTo", "IsNotEqualTo"):
        # Exchange compares folder names without regard to case.
        equal = value is not None and value.lower() == _constant(elem).lower()
        return equal if name == "IsEqualTo" else not equal
    raise EwsError("ErrorInvalidRestriction", f"Unsupported folder restriction {name}", fault=True)
