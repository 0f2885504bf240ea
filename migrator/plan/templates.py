"""Plan templates such as "{root}/{domain}/{uid}/Maildir".

Only `{name}` fields are allowed (no attribute access, indexing or format specs), and values
are substituted exactly once: a directory value that contains braces stays literal text, it is
never re-read as a template. `{{` and `}}` stand for literal braces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class TemplateError(ValueError):
    """A template is malformed or names a field that has no value."""


@dataclass(frozen=True)
class Template:
    text: str
    parts: tuple[tuple[str, bool], ...]  # (literal text, False) or (field name, True)

    @classmethod
    def parse(cls, text: str) -> Template:
        parts: list[tuple[str, bool]] = []
        pos = 0
        for match in _TOKEN.finditer(text):
            if match.start() > pos:
                parts.append((text[pos : match.start()], False))
            token = match.group(0)
            if token == "{{":
                parts.append(("{", False))
            elif token == "}}":
                parts.append(("}", False))
            elif token in ("{", "}"):
                raise TemplateError(
                    f"unbalanced '{token}' at position {match.start()} in {text!r} "
                    "(write '{{' or '}}' for a literal brace)"
                )
            else:
                name = match.group(1)
                if not _NAME.match(name):
                    raise TemplateError(
                        f"field {{{name}}} in {text!r} is not a plain name "
                        "(only {name} fields are allowed, e.g. {uid} or {domain})"
                    )
                parts.append((name, True))
            pos = match.end()
        if pos < len(text):
            parts.append((text[pos:], False))
        return cls(text, tuple(parts))

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for name, is_field in self.parts if is_field))

    def render(self, values: Mapping[str, str | None]) -> str:
        out: list[str] = []
        for text, is_field in self.parts:
            if not is_field:
                out.append(text)
                continue
            value = values.get(text)
            if value is None or value == "":
                raise TemplateError(f"no value for {{{text}}}")
            out.append(value)
        return "".join(out)

    def check_fields(self, allowed: set[str]) -> list[str]:
        """The fields of this template that are not among `allowed`."""
        return [name for name in self.fields if name not in allowed]
