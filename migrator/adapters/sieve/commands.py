"""Sieve commands sievelib does not know, taught to it through its own extension point
(`sievelib.commands.add_commands`), so a script using them still parses and the translation
can report exactly that statement instead of refusing the whole script.

Only the syntax is described here (from the RFCs and Pigeonhole's documentation); none of them
has an Exchange equivalent, so the translation refuses each one by name.
"""

from __future__ import annotations

from typing import Any

from sievelib import commands as sieve

_COMPARATOR = sieve.comparator
_MATCH_TYPE = sieve.match_type


def _tag(
    name: str, *values: str, extra: Any = None, extension: str | None = None
) -> dict[str, Any]:
    arg: dict[str, Any] = {"name": name, "type": ["tag"], "values": list(values), "required": False}
    if extra is not None:
        arg["extra_arg"] = {"type": extra}
    if extension is not None:
        arg["extension"] = extension
    return arg


def _positional(name: str, *types: str, required: bool = True) -> dict[str, Any]:
    return {"name": name, "type": list(types), "required": required}


class IncludeCommand(sieve.ControlCommand):
    """RFC 6609: include [:personal / :global] [:once] [:optional] "script"."""

    extension = "include"
    args_definition = [
        _tag("location", ":personal", ":global"),
        _tag("once", ":once"),
        _tag("optional", ":optional"),
        _positional("script", "string"),
    ]


class ReturnCommand(sieve.ControlCommand):
    extension = "include"
    args_definition: list[Any] = []


class GlobalCommand(sieve.ControlCommand):
    extension = "include"
    args_definition = [_positional("names", "string", "stringlist")]


class ErejectCommand(sieve.ActionCommand):
    extension = "ereject"
    args_definition = [_positional("reason", "string")]


class MailboxexistsCommand(sieve.TestCommand):
    extension = "mailbox"
    args_definition = [_positional("mailboxes", "string", "stringlist")]


class SpamtestCommand(sieve.TestCommand):
    extension = "spamtest"
    args_definition = [
        _tag("percent", ":percent", extension="spamtestplus"),
        _COMPARATOR,
        _MATCH_TYPE,
        _positional("value", "string"),
    ]


class VirustestCommand(sieve.TestCommand):
    extension = "virustest"
    args_definition = [_COMPARATOR, _MATCH_TYPE, _positional("value", "string")]


class DuplicateCommand(sieve.TestCommand):
    extension = "duplicate"
    args_definition = [
        _tag("handle", ":handle", extra="string"),
        _tag("header", ":header", extra="string"),
        _tag("uniqueid", ":uniqueid", extra="string"),
        _tag("seconds", ":seconds", extra="number"),
        _tag("last", ":last"),
    ]


class AddheaderCommand(sieve.ActionCommand):
    extension = "editheader"
    args_definition = [
        _tag("last", ":last"),
        _positional("field-name", "string"),
        _positional("value", "string"),
    ]


class DeleteheaderCommand(sieve.ActionCommand):
    extension = "editheader"
    args_definition = [
        _tag("index", ":index", extra="number"),
        _tag("last", ":last"),
        _COMPARATOR,
        _MATCH_TYPE,
        _positional("field-name", "string"),
        _positional("value-patterns", "string", "stringlist", required=False),
    ]


class _ProgramCommand(sieve.ActionCommand):
    args_definition = [
        _tag("copy", ":copy"),
        _tag("try", ":try"),
        _positional("program", "string"),
        _positional("arguments", "string", "stringlist", required=False),
    ]


class PipeCommand(_ProgramCommand):
    extension = "vnd.dovecot.pipe"


class FilterCommand(_ProgramCommand):
    extension = "vnd.dovecot.filter"


class ExecuteCommand(_ProgramCommand):
    extension = "vnd.dovecot.execute"


class StringCommand(sieve.TestCommand):
    extension = "variables"
    args_definition = [
        _COMPARATOR,
        _MATCH_TYPE,
        _positional("source", "string", "stringlist"),
        _positional("key-list", "string", "stringlist"),
    ]


class IhaveCommand(sieve.TestCommand):
    extension = "ihave"
    args_definition = [_positional("capabilities", "string", "stringlist")]


class ErrorCommand(sieve.ActionCommand):
    extension = "ihave"
    args_definition = [_positional("message", "string")]


# Two gaps of sievelib's argument tables, filled in place (the tables are what its parser
# reads): the subaddress extension's :user/:detail (RFC 5233), and the i;ascii-numeric
# comparator every Sieve implementation must offer (RFC 5228 2.7.3; relational tests use it).
def _fill_argument_tables() -> None:
    extra = sieve.comparator.get("extra_arg", {})
    values = extra.get("values")
    if isinstance(values, list) and '"i;ascii-numeric"' not in values:
        values.append('"i;ascii-numeric"')
    address_part: Any = sieve.address_part
    address_part.setdefault("extension_values", {}).update(
        {":user": "subaddress", ":detail": "subaddress"}
    )


_REGISTERED = False


def register() -> None:
    """Teach sievelib the commands above (once per process)."""
    global _REGISTERED
    if _REGISTERED:
        return
    sieve.add_commands(
        [
            IncludeCommand,
            ReturnCommand,
            GlobalCommand,
            ErejectCommand,
            MailboxexistsCommand,
            SpamtestCommand,
            VirustestCommand,
            DuplicateCommand,
            AddheaderCommand,
            DeleteheaderCommand,
            PipeCommand,
            FilterCommand,
            ExecuteCommand,
            StringCommand,
            IhaveCommand,
            ErrorCommand,
        ]
    )
    _fill_argument_tables()
    _REGISTERED = True
