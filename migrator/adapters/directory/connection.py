"""Opening an ldap3 connection for a DirectorySettings: a real server or an LDIF file.

`ldif:PATH` loads the file into ldap3's in-process mock server (MOCK_SYNC), so discovery runs
the very same search code with no server at all. An LDIF file is read as it is: bind_dn and
the password are not used for it (reading the file is the authorisation).
"""

from __future__ import annotations

import contextlib
import logging
import math
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from ldap3 import ANONYMOUS, MOCK_SYNC, NONE, SIMPLE, SYNC, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.utils.dn import parse_dn, safe_dn

from migrator.model.errors import DirectoryError
from migrator.model.plan import DirectorySettings

from . import errors
from .ldif import LdifSyntaxError, read_ldif

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"ldap": 389, "ldaps": 636}


def connect(settings: DirectorySettings, password: str | None) -> Connection:
    """A bound connection, or DirectoryError saying what went wrong and what to do."""
    if settings.is_ldif:
        return _load_ldif(settings)
    return _connect_server(settings, password)


def _connect_server(settings: DirectorySettings, password: str | None) -> Connection:
    scheme, host, port = _parse_url(settings)
    use_ssl = scheme == "ldaps"
    if use_ssl and settings.start_tls:
        raise DirectoryError(
            f"{settings.url}: start_tls is set on an ldaps:// URL, which is encrypted already",
            hint="use ldap://host:389 with start_tls = true, or ldaps://host:636 without it",
        )
    tls = _tls(settings) if use_ssl or settings.start_tls else None
    if settings.bind_dn and not password:
        raise DirectoryError(
            f"{settings.url}: bind_dn {settings.bind_dn!r} is set but no password was given",
            hint="set [directory] password_env or password_file, or remove bind_dn to bind "
            "anonymously",
        )
    server = Server(
        host,
        port=port,
        use_ssl=use_ssl,
        tls=tls,
        get_info=NONE,  # no schema reading: one round trip less, and no surprises from it
        connect_timeout=settings.timeout,
    )
    conn = Connection(
        server,
        user=settings.bind_dn,
        password=password if settings.bind_dn else None,
        authentication=SIMPLE if settings.bind_dn else ANONYMOUS,
        client_strategy=SYNC,
        # ldap3 packs this into a socket option and needs whole seconds
        receive_timeout=max(1, math.ceil(settings.timeout)),
        auto_referrals=False,
        raise_exceptions=False,
        read_only=True,
    )
    try:
        conn.open()
        if settings.start_tls:
            conn.start_tls(read_server_info=False)
        bound = conn.bind()
    except LDAPException as exc:
        _quietly_close(conn)
        raise errors.connect_error(settings, exc, password) from None
    except Exception as exc:  # ldap3 fails with anything (KeyError...) on a non-LDAP answer
        _quietly_close(conn)
        raise errors.not_ldap_error(settings, exc, password) from None
    if not bound:
        result = conn.result
        _quietly_close(conn)
        raise errors.bind_error(settings, result, password)
    log.debug("bound to %s as %s", settings.url, settings.bind_dn or "anonymous")
    return conn


def _parse_url(settings: DirectorySettings) -> tuple[str, str, int]:
    try:
        parts = urlsplit(settings.url)
        port = parts.port
    except ValueError as exc:
        raise DirectoryError(
            f"{settings.url}: not a valid directory URL ({exc})",
            hint="write ldap://host:port, ldaps://host:port or ldif:PATH",
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise DirectoryError(
            f"{settings.url}: not a directory URL this tool reads",
            hint="write ldap://host:port, ldaps://host:port or ldif:PATH",
        )
    if parts.path not in ("", "/"):
        raise DirectoryError(
            f"{settings.url}: the URL has a path; the search base belongs in [directory] base",
            hint="write ldap://host:port and put the DN in [directory] base",
        )
    return scheme, parts.hostname, port or DEFAULT_PORTS[scheme]


def _tls(settings: DirectorySettings) -> Tls:
    if settings.ca_file and not Path(settings.ca_file).is_file():
        raise DirectoryError(
            f"{settings.url}: the CA file {settings.ca_file!r} does not exist",
            hint="set [directory] ca_file to the PEM file of the CA that signed the server's "
            "certificate",
        )
    # ldap3 checks the host name itself after the handshake whenever validation is on
    return Tls(
        validate=ssl.CERT_REQUIRED if settings.tls_verify else ssl.CERT_NONE,
        ca_certs_file=settings.ca_file,
    )


def _load_ldif(settings: DirectorySettings) -> Connection:
    path = Path(settings.ldif_path)
    if not path.is_file():
        raise errors.ldif_error(
            settings,
            f"LDIF file {str(path)!r} not found",
            'check [directory] url = "ldif:PATH"; a relative PATH is taken from the folder of '
            "the plan file",
        )
    server = Server("ldif", get_info=NONE)
    conn = Connection(server, client_strategy=MOCK_SYNC, raise_exceptions=False, read_only=True)
    count = 0
    try:
        for record in read_ldif(path):
            try:
                added = conn.strategy.add_entry(record.dn, record.attributes, validate=False)
            except LDAPException as exc:
                raise LdifSyntaxError(record.line, f"invalid entry {record.dn!r}: {exc}") from None
            if not added:
                raise LdifSyntaxError(record.line, f"entry {record.dn!r} appears twice")
            _keep_rdn_values_as_written(conn, record.dn, record.attributes)
            count += 1
    except LdifSyntaxError as exc:
        raise errors.ldif_error(
            settings,
            f"cannot parse {path} at line {exc.line}: {exc.problem}",
            "fix the file (RFC 2849 LDIF: records of 'dn: ...' then 'attribute: value' lines, "
            "separated by blank lines) or export it again, e.g. with slapcat or ldapsearch -LLL",
        ) from None
    except OSError as exc:
        raise errors.ldif_error(
            settings,
            f"cannot read LDIF file {str(path)!r}: {exc.strerror}",
            "check the file's permissions",
        ) from None
    conn.bind()
    log.debug("loaded %d entries from %s", count, path)
    return conn


def _keep_rdn_values_as_written(
    conn: Connection, dn: str, attributes: dict[str, list[bytes]]
) -> None:
    # The mock adds each RDN value to the entry in its DN-escaped form ("a\\=b") when that
    # spelling is not among the values; a real server compares them unescaped. Put back the
    # values the file wrote for every RDN attribute it did write.
    written = {name.lower(): values for name, values in attributes.items()}
    first_rdn = dn.split(",", 1)[0]
    if "\\" not in first_rdn and "+" not in first_rdn:
        # the common case, without parsing the DN again (loading is dominated by DN parsing)
        name, _, value = first_rdn.partition("=")
        if value.strip().encode("utf-8") in written.get(name.strip().lower(), ()):
            return
    stored = conn.strategy.entries[safe_dn(dn)]
    for rdn_attribute, _value, separator in parse_dn(dn):
        values = written.get(rdn_attribute.lower())
        if values:
            stored[rdn_attribute] = list(values)
        if separator != "+":  # the first RDN ends here
            break


def _quietly_close(conn: Connection) -> None:
    # closing a connection that already failed: nothing more to report
    with contextlib.suppress(Exception):
        conn.unbind()
