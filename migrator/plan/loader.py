"""Load a plan file (TOML) into a validated `Plan`, or fail with the file, the key and a fix.

Everything is checked before anything runs: unknown sections and keys (with the nearest known
name), types, kinds, required keys per kind, template fields, and secrets written in clear.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from migrator.model import limits
from migrator.model.errors import PlanError
from migrator.model.limits import Bound
from migrator.model.plan import (
    DELETION_MODES,
    AttributeMap,
    CutoverSettings,
    DirectorySettings,
    FilterSettings,
    Plan,
    RunSettings,
    SourceSettings,
    TargetSettings,
)
from migrator.plan.templates import Template, TemplateError

SOURCE_KINDS = ("maildir", "mbox", "imap")
TARGET_KINDS = ("ews", "imap")
EWS_AUTH = ("ntlm", "basic", "oauth2")
IMAP_TARGET_AUTH = ("login", "plain", "xoauth2")
TLS_MODES = ("ssl", "starttls", "none")
CONVERTS = ("auto", "yes", "no")  # [target] converts (imap)

# Keys whose presence means a secret was written into the plan itself.
_SECRET_KEYS = re.compile(
    r"^(password|passwd|pass|pwd|secret|client_secret|token|access_token|bind_password|"
    r"bind_pw|api_key|credentials?)$",
    re.IGNORECASE,
)

_SECTIONS = {"plan", "directory", "source", "target", "run", "state", "settings", "cutover"}

# Fields a template may use; "root" only where a root exists. Directory attributes named in
# [directory.attributes].extra are added at validation time.
ACCOUNT_FIELDS = {"address", "local", "domain", "uid", "name", "batch"}


class _Reader:
    """Typed access to one TOML table that remembers which keys were used."""

    def __init__(self, file: str, section: str, table: Mapping[str, Any]) -> None:
        self.file = file
        self.section = section
        self.table = dict(table)
        self.used: set[str] = set()

    def _err(self, key: str | None, message: str, hint: str | None = None) -> PlanError:
        where = f"{self.section}.{key}" if key else self.section
        return PlanError(self.file, where, message, hint=hint)

    def _get(self, key: str, types: tuple[type, ...], type_name: str, required: bool) -> Any:
        self.used.add(key)
        if key not in self.table:
            if required:
                raise self._err(key, "is missing", hint=f"add `{key} = ...` to [{self.section}]")
            return None
        value = self.table[key]
        # TOML booleans are ints in Python; keep them apart
        if isinstance(value, bool) and bool not in types:
            raise self._err(key, f"must be {type_name}, not a boolean")
        if not isinstance(value, types):
            # a value under a *_env key may be the secret written in place of the name: not quoted
            shown = "" if key.endswith("_env") else f" {value!r}"
            raise self._err(key, f"must be {type_name}, not {type(value).__name__}{shown}")
        return value

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> Any:
        value = self._get(key, (str,), "a string", required)
        if value is None:
            return default
        if "\x00" in value:
            raise self._err(key, "contains a NUL character")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key, (bool,), "true or false", False)
        return default if value is None else bool(value)

    def whole(self, key: str, default: int, bound: Bound) -> int:
        value = self._get(key, (int,), "a whole number", False)
        if value is None:
            return default
        self._check_bound(key, value, bound)
        return int(value)

    def number(self, key: str, default: float, bound: Bound) -> float:
        value = self._get(key, (int, float), "a number", False)
        if value is None:
            return default
        self._check_bound(key, value, bound)
        return float(value)

    def _check_bound(self, key: str, value: float, bound: Bound) -> None:
        # the same bounds as the command line's options (model/limits.py)
        if not bound.low <= value <= bound.high:
            shown = f"{value:,}" if isinstance(value, int) else f"{value:g}"
            raise self._err(
                key, f"must be {bound.describe()} ({bound.why}), not {shown}", hint=bound.hint
            )

    def choice(self, key: str, choices: tuple[str, ...], default: str | None = None) -> Any:
        value = self.text(key, default, required=default is None)
        if value not in choices:
            near = difflib.get_close_matches(str(value), choices, n=1)
            hint = f"did you mean {near[0]!r}?" if near else None
            raise self._err(key, f"is {value!r}; expected one of: {', '.join(choices)}", hint=hint)
        return value

    def str_list(self, key: str) -> tuple[str, ...]:
        value = self._get(key, (list,), "a list of strings", False)
        if value is None:
            return ()
        if not all(isinstance(v, str) for v in value):
            raise self._err(key, "must be a list of strings")
        return tuple(value)

    def str_table(self, key: str) -> dict[str, str]:
        value = self._get(key, (dict,), "a table of strings", False)
        if value is None:
            return {}
        bad = [k for k, v in value.items() if not isinstance(v, str)]
        if bad:
            raise self._err(f"{key}.{bad[0]}", "must be a string")
        return dict(value)

    def table_of(self, key: str) -> Mapping[str, Any]:
        value = self._get(key, (dict,), "a table", False)
        return value or {}

    def finish(self, known_extra: tuple[str, ...] = ()) -> None:
        """Refuse keys nobody read: a typo must not silently fall back to a default."""
        for key in self.table:
            if key in self.used or key in known_extra:
                continue
            if _SECRET_KEYS.match(key):
                raise self._err(
                    key,
                    "holds a secret; plans must never contain passwords",
                    hint=self._secret_hint(key),
                )
            near = difflib.get_close_matches(key, sorted(self.used), n=1)
            raise self._err(
                key,
                "is not a known key",
                hint=(f"did you mean {near[0]!r}?" if near else None),
            )

    def _secret_hint(self, key: str) -> str:
        """Where this section's secrets go instead: only keys that exist (`token_env` does not)."""
        if self.section == "state":
            return f"remove it; {STATE_SECRET_HINT}"
        prefixes = [k[: -len("_env")] for k in sorted(self.used) if k.endswith("_env")]
        if not prefixes:
            return (
                f"remove it; [{self.section}] takes no secret (secrets go in password_env or "
                "password_file of [directory], [source] or [target])"
            )
        if key.lower() in ("token", "access_token") and "client_secret" in prefixes:
            return (
                "remove it; migrator fetches OAuth2 tokens itself with client_id, tenant_id and "
                'client_secret_env = "VARIABLE" or client_secret_file = "/path"'
            )
        # the pair named like the key first (client_secret -> client_secret_env), then passwords
        prefixes.sort(key=lambda p: (p != key.lower(), p != "password", p))
        pairs = " or ".join(f"{p}_env / {p}_file" for p in prefixes)
        return (
            "remove it and name the environment variable or the file that holds it instead: "
            f"{pairs} "
            f'(e.g. {prefixes[0]}_env = "MIGRATOR_{prefixes[0].upper()}")'
        )


# PostgreSQL reads the state database's password itself (libpq), never from the plan
STATE_SECRET_HINT = (
    "the state database's password comes from the environment variable PGPASSWORD or the "
    'file ~/.pgpass (libpq reads them), e.g. url = "postgresql+psycopg://host/db"'
)


def _check_no_secret_in_url(
    reader: _Reader, key: str, url: str | None, *, hint: str | None = None
) -> None:
    if not url or url.startswith("ldif:"):
        return
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed [ of an IPv6 address; not quoted, it may hold a secret
        raise reader._err(key, "is not a valid URL") from None
    if parts.password is not None or parts.username is not None:
        if reader.section == "state":
            _check_no_password_in_state_url(reader, key, url)
            return
        raise reader._err(
            key,
            "contains a user name or password; plans must never contain passwords",
            hint=hint
            or "put the user in bind_dn/username and the password in an environment "
            "variable (password_env) or a file (password_file)",
        )


def _check_no_password_in_state_url(reader: _Reader, key: str, url: str) -> None:
    """A database user name is no secret (and libpq would otherwise take the login name of
    whoever runs migrator, which differs from host to host); a password is."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password is not None or re.match(r"^[^:/?#]+://[^/?#@]*:[^/?#@]*@", url):
        raise reader._err(
            key,
            "contains a password; plans must never contain passwords",
            hint="keep the user in the URL (postgresql://migrator@db.example.org/ife) and give "
            "the password in PGPASSWORD or ~/.pgpass",
        )


def resolve_state_url(url: str, base: Path) -> str:
    """A SQLite URL whose file path is relative, made absolute from `base` (the plan's folder),
    as every other path in a plan; any other URL unchanged.

    The folder's own % and ? are escaped: SQLAlchemy reads %XX escapes and a query in the URL.
    """
    match = re.match(r"^(sqlite(?:\+\w+)?:///)(.*)$", url.strip(), re.DOTALL)
    if match is None:
        return url
    prefix, rest = match.groups()
    path, question, query = rest.partition("?")
    if path in ("", ":memory:") or path.startswith("/"):
        return url
    if path.startswith("~"):
        expanded = Path(path).expanduser()
        if expanded.is_absolute():
            return prefix + _url_path(str(expanded)) + question + query
    return prefix + _url_path(str(base)).rstrip("/") + "/" + path + question + query


def _url_path(path: str) -> str:
    return path.replace("%", "%25").replace("?", "%3F")


def _url_without_secret(reader: _Reader, key: str) -> str | None:
    url = reader.text(key)
    _check_no_secret_in_url(reader, key, url)
    return url


def _template(reader: _Reader, key: str, text: str | None, allowed: set[str]) -> None:
    if text is None:
        return
    try:
        template = Template.parse(text)
    except TemplateError as exc:
        raise reader._err(key, str(exc)) from None
    unknown = template.check_fields(allowed)
    if unknown:
        raise reader._err(
            key,
            f"uses unknown field {{{unknown[0]}}}",
            hint="available fields: " + ", ".join("{" + f + "}" for f in sorted(allowed)),
        )


def _secret_pair(reader: _Reader, prefix: str) -> tuple[str | None, str | None]:
    env = reader.text(f"{prefix}_env")
    file = reader.text(f"{prefix}_file")
    if env and file:
        raise reader._err(
            f"{prefix}_env", f"both {prefix}_env and {prefix}_file are set", hint="keep one"
        )
    if env is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", env):
        # not quoted: the likeliest mistake is the secret itself in place of the name
        raise reader._err(
            f"{prefix}_env",
            "is not an environment variable name (letters, digits and _, not starting with a "
            "digit)",
            hint=f"write the name of the variable that holds the secret, e.g. {prefix}_env = "
            f'"MIGRATOR_{prefix.upper()}", never the secret itself',
        )
    return env, file


def _directory(file: str, table: Mapping[str, Any]) -> DirectorySettings:
    r = _Reader(file, "directory", table)
    url = r.text("url", required=True)
    _check_no_secret_in_url(r, "url", url)  # first: the checks below quote the URL
    if not re.match(r"^(ldaps?://|ldif:)", url):
        raise r._err(
            "url",
            f"{url!r} is not an LDAP URL",
            hint='write "ldap://host:389", "ldaps://host:636" or "ldif:/path/to/file.ldif"',
        )
    if url.startswith("ldif:") and not url[5:]:
        raise r._err("url", 'ldif: needs a file path, e.g. "ldif:plans/sample.ldif"')
    base = r.text("base", required=True)
    filt = r.text("filter", "(objectClass=*)")
    population = r.text("population", DirectorySettings.population)
    for key, value in (("filter", filt), ("population", population)):
        if not (value.startswith("(") and value.endswith(")")) or value.count("(") != value.count(
            ")"
        ):
            raise r._err(
                key,
                f"{value!r} is not an LDAP filter",
                hint='filters are parenthesised, e.g. "(&(employeeType=vocal)(mail=*))"',
            )
    password_env, password_file = _secret_pair(r, "password")
    attrs = _Reader(file, "directory.attributes", r.table_of("attributes"))
    attribute_map = AttributeMap(
        address=attrs.text("address", "mail"),
        uid=attrs.text("uid", "uid"),
        name=attrs.text("name", "cn"),
        batch=attrs.text("batch", "ou"),
        extra=attrs.str_list("extra"),
    )
    attrs.finish()
    for attr in attribute_map.requested():
        if not re.match(r"^[A-Za-z][A-Za-z0-9-]*(;[A-Za-z0-9-]+)*$", attr):
            raise attrs._err(None, f"{attr!r} is not an LDAP attribute name")
    settings = DirectorySettings(
        url=url,
        base=base,
        filter=filt,
        population=population,
        bind_dn=r.text("bind_dn"),
        password_env=password_env,
        password_file=password_file,
        start_tls=r.flag("start_tls", False),
        tls_verify=r.flag("tls_verify", True),
        ca_file=r.text("ca_file"),
        page_size=r.whole("page_size", DirectorySettings.page_size, limits.PAGE_SIZE),
        timeout=r.number("timeout", DirectorySettings.timeout, limits.TIMEOUT),
        attributes=attribute_map,
    )
    r.finish()
    if settings.start_tls and url.startswith("ldaps://"):
        raise r._err("start_tls", "cannot be used with ldaps:// (TLS is already on)")
    return settings


def _source(file: str, table: Mapping[str, Any], extra_fields: set[str]) -> SourceSettings:
    r = _Reader(file, "source", table)
    kind = r.choice("kind", SOURCE_KINDS)
    fields_ok = ACCOUNT_FIELDS | extra_fields
    if kind in ("maildir", "mbox"):
        root = r.text("root", required=True)
        path = r.text(
            "path", "{root}/{domain}/{local}/Maildir" if kind == "maildir" else "{root}/{uid}"
        )
        _template(r, "path", path, fields_ok | {"root"})
        folders_path = r.text("folders_path") if kind == "mbox" else None
        _template(r, "folders_path", folders_path, fields_ok | {"root"})
        settings = SourceSettings(
            kind=kind,
            root=root,
            path=path,
            folders_path=folders_path,
            maildir_layout=r.choice("layout", ("auto", "maildir++", "fs"), "auto")
            if kind == "maildir"
            else "auto",
            mbox_variant=r.choice(
                "variant", ("auto", "mboxo", "mboxrd", "mboxcl", "mboxcl2"), "auto"
            )
            if kind == "mbox"
            else "auto",
        )
    else:
        password_env, password_file = _secret_pair(r, "password")
        login = r.text("login", "{address}")
        _template(r, "login", login, fields_ok)
        tls = r.choice("tls", TLS_MODES, "ssl")
        settings = SourceSettings(
            kind=kind,
            host=r.text("host", required=True),
            port=r.whole("port", 993 if tls == "ssl" else 143, limits.PORT),
            tls=tls,
            tls_verify=r.flag("tls_verify", True),
            ca_file=r.text("ca_file"),
            login=login,
            master_user=r.text("master_user"),
            authzid=r.flag("authzid", False),
            password_env=password_env,
            password_file=password_file,
            timeout=r.number("timeout", SourceSettings.timeout, limits.TIMEOUT),
        )
        if not (password_env or password_file):
            raise r._err(
                "password_env",
                "is missing: an IMAP source needs a password (the user's, or the master user's)",
                hint='add password_env = "MIGRATOR_IMAP_PASSWORD" or password_file = "/path"',
            )
    r.finish()
    return settings


def _target(file: str, table: Mapping[str, Any], extra_fields: set[str]) -> TargetSettings:
    r = _Reader(file, "target", table)
    kind = r.choice("kind", TARGET_KINDS)
    address = r.text("address", "{address}")
    _template(r, "address", address, ACCOUNT_FIELDS | extra_fields)
    password_env, password_file = _secret_pair(r, "password")
    client_secret_env, client_secret_file = _secret_pair(r, "client_secret")
    common: dict[str, Any] = dict(
        kind=kind,
        username=r.text("username"),
        password_env=password_env,
        password_file=password_file,
        client_id=r.text("client_id"),
        tenant_id=r.text("tenant_id"),
        client_secret_env=client_secret_env,
        client_secret_file=client_secret_file,
        tls_verify=r.flag("tls_verify", True),
        ca_file=r.text("ca_file"),
        max_message_size=r.whole(
            "max_message_size", TargetSettings.max_message_size, limits.MAX_MESSAGE_SIZE
        ),
        address=address,
        archive_folder=r.text("archive_folder", "Archive"),
        folder_map=r.str_table("folder_map"),
        exclude_folders=r.str_list("exclude_folders"),
        timeout=r.number("timeout", TargetSettings.timeout, limits.TIMEOUT),
        token_url=_url_without_secret(r, "token_url"),
        oauth_scope=r.text("oauth_scope", TargetSettings.oauth_scope),
    )
    if kind == "ews":
        url = r.text("url")
        auth = r.choice("auth", EWS_AUTH, "ntlm")
        impersonation = r.flag("impersonation", True)
        settings = TargetSettings(url=url, auth=auth, impersonation=impersonation, **common)
        if url is not None:
            _check_no_secret_in_url(r, "url", url)
            if not re.match(r"^https?://", url):
                raise r._err(
                    "url",
                    f"{url!r} is not an EWS URL",
                    hint='write "https://mail.example.org/EWS/Exchange.asmx"',
                )
    else:
        tls = r.choice("tls", TLS_MODES, "ssl")
        auth = r.choice("auth", IMAP_TARGET_AUTH, "login")
        settings = TargetSettings(
            host=r.text("host", required=True),
            port=r.whole("port", 993 if tls == "ssl" else 143, limits.PORT),
            tls=tls,
            auth=auth,
            proxy_login=r.text("proxy_login", TargetSettings.proxy_login),
            tag_header=r.flag("tag_header", False),
            converts=r.choice("converts", CONVERTS, "auto"),
            **common,
        )
    needs = "client_secret" if settings.auth in ("oauth2", "xoauth2") else "password"
    if needs == "client_secret":
        for key in ("client_id", "tenant_id"):
            if not getattr(settings, key):
                raise r._err(key, f"is missing: auth = {settings.auth!r} needs it")
    r.finish()
    return settings


SIEVE_MODES = ("off", "file", "managesieve")


def _settings(
    file: str, table: Mapping[str, Any], source: SourceSettings, extra_fields: set[str]
) -> FilterSettings:
    r = _Reader(file, "settings", table)
    mode = r.choice("sieve", SIEVE_MODES, "off")
    fields_ok = ACCOUNT_FIELDS | extra_fields
    path = r.text("sieve_path")
    scripts = r.text("sieve_scripts")
    if mode == "file" and path is None:
        home = _home_template(source)
        if home is None:
            raise r._err(
                "sieve_path",
                'is missing: sieve = "file" needs the active script\'s path',
                hint='e.g. sieve_path = "{root}/{domain}/{local}/.dovecot.sieve" '
                "(Pigeonhole's default is ~/.dovecot.sieve)",
            )
        path = f"{home}/.dovecot.sieve"
        scripts = scripts or f"{home}/sieve"
    for key, value in (("sieve_path", path), ("sieve_scripts", scripts)):
        _template(r, key, value, fields_ok | {"root"})
    login = r.text("sieve_login")
    _template(r, "sieve_login", login, fields_ok)
    password_env, password_file = _secret_pair(r, "sieve_password")
    tls = r.choice("sieve_tls", ("starttls", "ssl", "none"), "starttls")
    host = r.text("sieve_host")
    imap = source.kind == "imap"
    settings = FilterSettings(
        sieve=mode,
        rules=r.flag("rules", True),
        vacation=r.flag("vacation", True),
        forwarding=r.flag("forwarding", False),
        remove_outlook_rules=r.flag("remove_outlook_rules", False),
        graph=r.flag("graph", False),
        graph_url=_url_without_secret(r, "graph_url") or FilterSettings.graph_url,
        internal_domains=tuple(
            d.strip().lower().lstrip("@") for d in r.str_list("internal_domains")
        ),
        path=path,
        scripts=scripts,
        root=r.text("sieve_root") or source.root,
        separator=r.text("sieve_separator", "."),
        prefix=r.text("sieve_prefix", ""),
        host=host or (source.host if imap else None),
        port=r.whole("sieve_port", 4190, limits.PORT),
        tls=tls,
        tls_verify=r.flag("sieve_tls_verify", source.tls_verify if imap else True),
        ca_file=r.text("sieve_ca_file") or (source.ca_file if imap else None),
        login=login or (source.login if imap else "{address}"),
        master_user=r.text("sieve_master_user") or (source.master_user if imap else None),
        authzid=r.flag("sieve_authzid", source.authzid if imap else False),
        password_env=password_env or (None if password_file else source.password_env),
        password_file=password_file or (None if password_env else source.password_file),
        timeout=r.number("sieve_timeout", FilterSettings.timeout, limits.TIMEOUT),
    )
    r.finish()
    if mode == "file" and not settings.root:
        raise r._err(
            "sieve_root",
            "is missing: scripts read from files must stay inside a root folder",
            hint='e.g. sieve_root = "/var/vmail"',
        )
    if mode == "managesieve":
        if not settings.host:
            raise r._err(
                "sieve_host",
                'is missing: sieve = "managesieve" needs the server',
                hint='e.g. sieve_host = "imap.example.org" (port 4190)',
            )
        if not (settings.password_env or settings.password_file):
            raise r._err(
                "sieve_password_env",
                "is missing: ManageSieve needs a password (the master user's, or the user's)",
                hint='add sieve_password_env = "MIGRATOR_SIEVE_PASSWORD"',
            )
    return settings


def _home_template(source: SourceSettings) -> str | None:
    """Dovecot's home from a Maildir path template ending in /Maildir, where Pigeonhole keeps
    ~/.dovecot.sieve and ~/sieve by default."""
    if source.kind == "maildir" and source.path and source.path.rstrip("/").endswith("/Maildir"):
        return source.path.rstrip("/")[: -len("/Maildir")]
    return None


def _run(file: str, table: Mapping[str, Any]) -> RunSettings:
    r = _Reader(file, "run", table)
    defaults = RunSettings()
    settings = RunSettings(
        workers=r.whole("workers", defaults.workers, limits.WORKERS),
        max_account_attempts=r.whole(
            "max_account_attempts", defaults.max_account_attempts, limits.MAX_ACCOUNT_ATTEMPTS
        ),
        chunk_messages=r.whole("chunk_messages", defaults.chunk_messages, limits.CHUNK_MESSAGES),
        chunk_bytes=r.whole("chunk_bytes", defaults.chunk_bytes, limits.CHUNK_BYTES),
        target_concurrency=r.whole(
            "target_concurrency", defaults.target_concurrency, limits.TARGET_CONCURRENCY
        ),
        lease_seconds=r.whole("lease_seconds", defaults.lease_seconds, limits.LEASE_SECONDS),
        deletions=r.choice("deletions", DELETION_MODES, defaults.deletions),
        deletion_limit=r.whole("deletion_limit", defaults.deletion_limit, limits.DELETION_LIMIT),
        pass_interval=_duration(r, "pass_interval", limits.PASS_INTERVAL) or defaults.pass_interval,
    )
    r.finish()
    return settings


# map types `postmap` builds into one file that can be replaced by a rename (Berkeley DB)
MAP_TYPES = ("hash", "btree")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def _command(r: _Reader, key: str, default: str) -> tuple[str, ...]:
    text = r.text(key, default)
    try:
        words = tuple(shlex.split(text))
    except ValueError as exc:
        raise r._err(key, f"{text!r} is not a command line: {exc}") from None
    if not words:
        raise r._err(
            key,
            "is empty",
            hint=f'write the command, e.g. {key} = "{default}" or "sudo -n {default}"',
        )
    return words


def _duration(r: _Reader, key: str, bound: limits.Bound = limits.FINAL_DELTA_AFTER) -> float | None:
    value = r._get(key, (int, float, str), 'a number of seconds or a duration such as "15m"', False)
    if value is None:
        return None
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise r._err(
                key,
                f"{value!r} is not a duration",
                hint='write seconds (900) or e.g. "30s", "15m", "2h"',
            )
        value = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    r._check_bound(key, value, bound)
    return float(value)


def _cutover(file: str, table: Mapping[str, Any]) -> CutoverSettings:
    r = _Reader(file, "cutover", table)
    where = r.text("transport_map", required=True)
    map_type, colon, path = where.partition(":")
    if not colon or "/" in map_type:  # a bare path (which may hold ':' after a '/')
        map_type, path = "hash", where
    if map_type not in MAP_TYPES:
        raise r._err(
            "transport_map",
            f"{map_type!r} maps are not built by migrator; it writes {' or '.join(MAP_TYPES)} maps",
            hint='e.g. transport_map = "hash:/etc/postfix/transport_migrated"',
        )
    if not path.strip():
        raise r._err(
            "transport_map",
            "needs the path of the map file",
            hint='e.g. "/etc/postfix/transport_migrated"',
        )
    settings = CutoverSettings(
        transport_map=path,
        map_type=map_type,
        nexthop=r.text("nexthop"),
        config_directory=r.text("config_directory"),
        postmap=_command(r, "postmap", "postmap"),
        postconf=_command(r, "postconf", "postconf"),
        postfix=_command(r, "postfix", "postfix"),
        postqueue=_command(r, "postqueue", "postqueue"),
        final_delta_after=_duration(r, "final_delta_after"),
        postfix_timeout=r.number(
            "postfix_timeout", CutoverSettings.postfix_timeout, limits.POSTFIX_TIMEOUT
        ),
        resolver=r.flag("resolver", True),
    )
    r.finish()
    return settings


def parse_plan(text: str, file: str = "<plan>") -> Plan:
    """Validate the TOML text of a plan. Relative paths stay as written (see load_plan)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(
            file, None, f"is not valid TOML: {exc}", hint="check quotes and [section] headers"
        ) from None
    for section in data:
        if section not in _SECTIONS:
            near = difflib.get_close_matches(section, sorted(_SECTIONS), n=1)
            raise PlanError(
                file,
                section,
                "is not a known section",
                hint=f"did you mean [{near[0]}]?"
                if near
                else "known: " + ", ".join(sorted(_SECTIONS)),
            )
        if not isinstance(data[section], dict):
            raise PlanError(file, section, "must be a [section], not a single value")
    for required in ("plan", "directory", "source", "target"):
        if required not in data:
            raise PlanError(
                file, required, "section is missing", hint=f"add a [{required}] section"
            )
    head = _Reader(file, "plan", data["plan"])
    name = head.text("name", required=True)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", name):
        raise head._err(
            "name", f"{name!r} is not a plan name", hint="letters, digits, '.', '_' and '-' only"
        )
    description = head.text("description")
    head.finish()
    directory = _directory(file, data["directory"])
    extra = set(directory.attributes.extra)
    source = _source(file, data["source"], extra)
    target = _target(file, data["target"], extra)
    run = _run(file, data.get("run", {}))
    filters = _settings(file, data.get("settings", {}), source, extra)
    if filters.graph:
        if target.kind != "imap":
            raise PlanError(
                file,
                "settings.graph",
                "is for an IMAP target (Exchange Online); an EWS target takes rules over EWS",
                hint="remove graph = true",
            )
        if not (
            target.client_id
            and target.tenant_id
            and (target.client_secret_env or target.client_secret_file)
        ):
            raise PlanError(
                file,
                "settings.graph",
                "needs the application's credentials in [target]: "
                "client_id, tenant_id and client_secret_env or client_secret_file",
                hint="the app needs Graph MailboxSettings.ReadWrite and Mail.ReadWrite",
            )
    cutover = _cutover(file, data["cutover"]) if "cutover" in data else None
    state = _Reader(file, "state", data.get("state", {}))
    state_url = state.text("url")
    _check_no_secret_in_url(state, "url", state_url, hint=STATE_SECRET_HINT)
    retention_days = (
        state.number("retention_days", 0, limits.RETENTION_DAYS)
        if "retention_days" in state.table
        else None
    )
    state.finish()
    return Plan(
        name=name,
        file=file,
        directory=directory,
        source=source,
        target=target,
        run=run,
        cutover=cutover,
        state_url=state_url,
        retention_days=retention_days,
        description=description,
        filters=filters,
    )


def _resolve(base: Path, value: str | None) -> str | None:
    """Paths in a plan are relative to the plan file's folder, like an include would be."""
    if value is None:
        return None
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path))


def _resolve_template(base: Path, template: str | None) -> str | None:
    """A path template that renders a relative path ("vmail/{domain}/{uid}") starts at the
    plan's folder too. One that starts with {root} or / is absolute already: a directory value
    with a / never reaches a path (discovery refuses it), so no field can make it relative."""
    if template is None or template.startswith(("{root}", "/")):
        return template
    if template.startswith("~"):
        return os.path.expanduser(template)
    folder = str(base).replace("{", "{{").replace("}", "}}").rstrip("/")
    return f"{folder}/{template}"


def load_plan(path: str | Path) -> Plan:
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(file, None, "does not exist", hint="check the --plan path") from None
    except UnicodeDecodeError:
        raise PlanError(file, None, "is not UTF-8 text") from None
    except OSError as exc:
        raise PlanError(file, None, f"cannot be read: {exc.strerror}") from None
    plan = parse_plan(text, file)
    base = Path(path).resolve().parent
    directory = plan.directory
    if directory.is_ldif:
        directory = _replace(directory, url="ldif:" + str(_resolve(base, directory.ldif_path)))
    directory = _replace(
        directory,
        password_file=_resolve(base, directory.password_file),
        ca_file=_resolve(base, directory.ca_file),
    )
    source = plan.source
    source = _replace(
        source,
        root=_resolve(base, source.root),
        path=_resolve_template(base, source.path),
        folders_path=_resolve_template(base, source.folders_path),
        password_file=_resolve(base, source.password_file),
        ca_file=_resolve(base, source.ca_file),
    )
    target = _replace(
        plan.target,
        password_file=_resolve(base, plan.target.password_file),
        client_secret_file=_resolve(base, plan.target.client_secret_file),
        ca_file=_resolve(base, plan.target.ca_file),
    )
    filters = _replace(
        plan.filters,
        path=_resolve_template(base, plan.filters.path),
        scripts=_resolve_template(base, plan.filters.scripts),
        root=_resolve(base, plan.filters.root),
        ca_file=_resolve(base, plan.filters.ca_file),
        password_file=_resolve(base, plan.filters.password_file),
    )
    state_url = resolve_state_url(plan.state_url, base) if plan.state_url else None
    cutover = plan.cutover
    if cutover is not None:
        cutover = _replace(
            cutover,
            transport_map=_resolve(base, cutover.transport_map),
            config_directory=_resolve(base, cutover.config_directory),
        )
    return _replace(
        plan,
        directory=directory,
        source=source,
        target=target,
        cutover=cutover,
        state_url=state_url,
        filters=filters,
    )


def _replace(obj: Any, **changes: Any) -> Any:
    names = {f.name for f in fields(obj)}
    return dataclasses.replace(obj, **{k: v for k, v in changes.items() if k in names})
