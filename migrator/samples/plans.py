"""Plan files of sample campaigns (tests, benchmarks, `make demo`), built from sections.

A `SamplePlan` holds each section of a plan as a mapping and writes it as TOML with one writer,
so a path, a URL or a `DOMAIN\\user` name is quoted the same, and right, in every campaign. The
helpers below give the sections sample campaigns share: the sample directory as LDIF, Maildirs
laid out by domain and local part, the EWS simulator or an IMAP server as target, a SQLite
state. A campaign changes what it needs with keyword arguments, `dataclasses.replace` or by
editing a section's mapping before writing.

    plan = SamplePlan(
        "t",
        directory=ldif_directory(root / "directory.ldif"),
        source=maildir_source(root / "vmail"),
        target=ews_target(sim.url, username="svc", password_env="PASSWORD"),
        run={"workers": 2},
        state=sqlite_state(root / "state.db"),
    )
    plan.write(root / "plan.toml")
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrator.model.plan import Plan
from migrator.plan import parse_plan
from migrator.samples.directory import DEFAULT_BASE, DEFAULT_FILTER

# Where the sample generator writes each person's Maildir (samples/mail.py write_maildir)
MAILDIR_LAYOUT = "{root}/{domain}/{local}/Maildir"
SAMPLE_ATTRIBUTES = {"address": "mail", "uid": "uid", "name": "cn", "batch": "ou"}

Section = dict[str, Any]


def toml_value(value: object) -> str:
    """One TOML value: strings as basic strings (JSON's escapes are TOML's, but for DEL, which
    TOML wants escaped too), numbers and booleans as such, lists inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _table(name: str, entries: Mapping[str, Any], notes: Mapping[str, str]) -> list[str]:
    """`[name]` and its keys (None: left out), then its sub-tables (a mapping value)."""
    lines = [f"[{name}]"]
    nested = []
    for key, value in entries.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            nested.append((key, value))
            continue
        note = notes.get(f"{name}.{key}")
        if note:
            lines.append(f"# {note}")
        lines.append(f"{key} = {toml_value(value)}")
    for key, value in nested:
        lines += _table(f"{name}.{key}", value, notes)
    return lines


@dataclass
class SamplePlan:
    """A plan as sections: `[plan]` (name, description), `[directory]`, `[source]`, `[target]`,
    and the optional `[run]`, `[state]` and any `more` sections, in that order. `notes` puts a
    comment line above a key ("target.max_message_size" -> text); `header` above everything."""

    name: str
    directory: Section
    source: Section
    target: Section
    run: Section = field(default_factory=dict)
    state: Section = field(default_factory=dict)
    description: str | None = None
    more: dict[str, Section] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    header: str | None = None

    def text(self) -> str:
        lines = [f"# {self.header}"] if self.header else []
        tables: list[tuple[str, Mapping[str, Any]]] = [
            ("plan", {"name": self.name, "description": self.description}),
            ("directory", self.directory),
            ("source", self.source),
            ("target", self.target),
            ("run", self.run),
            ("state", self.state),
            *self.more.items(),
        ]
        for name, entries in tables:
            if entries or name == "plan":
                lines += [*_table(name, entries, self.notes), ""]
        return "\n".join(lines)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.text(), encoding="utf-8")
        return path

    def parse(self, file: str = "plan.toml") -> Plan:
        """The plan as migrator reads it (relative paths left as they are)."""
        return parse_plan(self.text(), file)


def ldif_directory(
    ldif: Path | str,
    *,
    base: str = f"ou=people,{DEFAULT_BASE}",
    filter: str | None = DEFAULT_FILTER,
    **more: Any,
) -> Section:
    """The `[directory]` of an LDIF file written by samples/directory.py (`url = "ldif:..."`)."""
    return {"url": f"ldif:{ldif}", "base": base, "filter": filter, **more}


def maildir_source(root: Path | str, *, path: str = MAILDIR_LAYOUT, **more: Any) -> Section:
    return {"kind": "maildir", "root": str(root), "path": path, **more}


def imap_source(
    host: str,
    port: int,
    *,
    master_user: str,
    password_env: str,
    login: str = "{uid}",
    tls: str = "none",
    **more: Any,
) -> Section:
    """An IMAP source read through a master user (each account logs in as `login`)."""
    return {
        "kind": "imap",
        "host": host,
        "port": port,
        "tls": tls,
        "login": login,
        "master_user": master_user,
        "password_env": password_env,
        **more,
    }


def ews_target(
    url: str, *, username: str, password_env: str, auth: str | None = "basic", **more: Any
) -> Section:
    """An EWS target (`auth` None: the key left out, the plan's default)."""
    return {
        "kind": "ews",
        "url": url,
        "auth": auth,
        "username": username,
        "password_env": password_env,
        **more,
    }


def imap_target(
    host: str,
    port: int,
    *,
    username: str | None,
    password_env: str | None,
    tls: str = "none",
    auth: str = "login",
    **more: Any,
) -> Section:
    """An IMAP target; `username` logs in (with `proxy_login`, as each account's mailbox).
    Without a password (None: `auth = "xoauth2"`, say) the key is left out."""
    return {
        "kind": "imap",
        "host": host,
        "port": port,
        "tls": tls,
        "auth": auth,
        "username": username,
        "password_env": password_env,
        **more,
    }


def sqlite_state(path: Path | str) -> Section:
    return {"url": f"sqlite:///{path}"}
