"""Parse a Sieve script with sievelib into the neutral tree of model/sieve.py.

sievelib (a maintained, pure-Python RFC 5228 parser with the common extensions) checks the
grammar and the `require`d extensions; it keeps no source positions, so each top-level
statement's original text is cut from the script with sievelib's own lexer (the statements come
out in the same order as the parser's results). A report can then quote exactly what the user
wrote.
"""

from __future__ import annotations

import re
from typing import Any

from sievelib import commands as sieve_commands
from sievelib import parser as sieve_parser
from sievelib.tools import unquote

from migrator.model.sieve import ParsedScript, SieveNode, SieveScript, SieveStatement

from .commands import register

# Pigeonhole's default sieve_max_script_size: Dovecot itself refuses to compile larger scripts.
MAX_SCRIPT_BYTES = 1024 * 1024
_LABEL = re.compile(rb"^#\s*rule:\s*\[(.*)\]\s*$")


def parse_script(script: SieveScript) -> ParsedScript:
    """The script's statements, or the parser's message when it does not parse."""
    register()
    data = script.text.encode("utf-8")
    size = max(len(data), script.size)
    if size > MAX_SCRIPT_BYTES:
        return ParsedScript(
            script,
            error=f"the script is {size:,} bytes, over the {MAX_SCRIPT_BYTES:,} bytes Dovecot "
            "itself compiles (sieve_max_script_size)",
        )
    parser = sieve_parser.Parser()
    try:
        ok = parser.parse(data)
    except RecursionError:
        return ParsedScript(script, error="the script nests tests or blocks too deeply to read")
    if not ok:
        return ParsedScript(script, error=str(parser.error))
    spans = list(_statement_spans(data))
    results = list(parser.result)
    requires: list[str] = []
    statements: list[SieveStatement] = []
    for index, command in enumerate(results):
        node = _node(command)
        if node.name == "require":
            for arg in node.args:
                requires.extend(arg if isinstance(arg, tuple) else (arg,))
            continue
        if index < len(spans) and len(spans) == len(results):
            start, end = spans[index]
            text = data[start:end].decode("utf-8", "replace")
            line = data.count(b"\n", 0, start) + 1
        else:  # cannot happen with sievelib's lexer; keep a faithful rendering anyway
            text, line = node.name, 0
        statements.append(
            SieveStatement(node=node, text=text, line=line, label=_label(command.hash_comments))
        )
    return ParsedScript(script, statements=tuple(statements), requires=tuple(requires))


def _label(comments: list[bytes]) -> str | None:
    """The rule name a client wrote above the statement (Roundcube: "# rule:[Name]")."""
    for comment in reversed(comments or []):
        found = _LABEL.match(comment.strip())
        if found:
            name = found.group(1).decode("utf-8", "replace").strip()
            return name or None
    return None


def _statement_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each top-level command, found with sievelib's lexer (strings, text:
    blocks and comments are single tokens, so braces and semicolons inside them do not count)."""
    lexer = sieve_parser.Lexer(sieve_parser.Parser.lrules)
    spans: list[tuple[int, int]] = []
    depth = 0
    start: int | None = None
    for kind, value in lexer.scan(data):
        pos = lexer.pos  # the token's start: scan() advances after the yield
        if kind in ("hash_comment", "bracket_comment"):
            continue
        if start is None:
            start = pos
        end = pos + len(value)
        if kind == "left_cbracket":
            depth += 1
        elif kind == "right_cbracket":
            depth -= 1
            if depth == 0:
                spans.append((start, end))
                start = None
        elif kind == "semicolon" and depth == 0:
            spans.append((start, end))
            start = None
    return spans


def _node(command: sieve_commands.Command) -> SieveNode:
    tags: dict[str, Any] = {}
    args: list[Any] = []
    tests: list[SieveNode] = []
    for definition in command.args_definition:
        name = definition["name"]
        if name not in command.arguments:
            continue
        value = command.arguments[name]
        kinds = definition["type"]
        if "tag" in kinds:
            extra = command.extra_arguments.get(name)
            tags[str(value).lower()] = None if extra is None else _value(extra)
        elif kinds == ["testlist"]:
            tests.extend(_node(test) for test in value)
        elif kinds == ["test"]:
            tests.append(_node(value))
        else:
            args.append(_value(value))
    return SieveNode(
        name=command.name.lower(),
        tags=tags,
        args=tuple(args),
        tests=tuple(tests),
        block=tuple(_node(child) for child in command.children),
    )


def _value(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_string(v) for v in value)
    return _string(str(value))


def _string(text: str) -> str:
    if text.startswith("text:"):
        return _multiline(text)
    return unquote(text)


def _multiline(text: str) -> str:
    """The body of a text: ... . block (RFC 5228 2.4.2): the first line (after "text:") and the
    final "." dropped, a leading ".." of a line unstuffed."""
    body = text.split("\n", 1)[1] if "\n" in text else ""
    lines = body.split("\n")
    if lines and lines[-1].rstrip("\r") == ".":
        lines = lines[:-1]
    out = [line[1:] if line.startswith("..") else line for line in lines]
    return "\n".join(line.rstrip("\r") for line in out) + ("\n" if out else "")
