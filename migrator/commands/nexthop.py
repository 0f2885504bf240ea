"""Next hops for Postfix transport_maps, checked as Postfix reads them (transport(5)).

A result is `transport:nexthop`. For the transports that make sense here (smtp, relay, lmtp)
the next hop is `host`, `host:port`, `[host]`, `[host]:port`, `[ipv4]`, `[ipv6:address]`
(each with an optional `:port`; smtp(8)); lmtp also takes `unix:/path` and
`inet:host[:port]`. Ports are numbers here (Postfix also reads service names). One next hop:
the lists Postfix 3.5 reads are not written. Brackets
turn off the MX lookup, which is what a route to one Exchange server wants. A value Postfix
would refuse, or read as something else, must not reach a map that routes every migrated
user's mail: it is a usage error naming the value.
"""

from __future__ import annotations

import ipaddress
import re

from migrator.model.errors import UsageError

TRANSPORTS = ("smtp", "relay", "lmtp")
DEFAULT_PORT = 25
# Postfix's valid_hostname(): letters, digits, '-' and '_', labels of at most 63 characters
# that neither start nor end with '-', at most 255 characters in all, not all numeric
_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
_MAX_HOSTNAME = 255
_HINT = (
    "give a host (exchange.example.org, exchange.example.org:587, [10.0.0.5], 2001:db8::25) or "
    "a transport: smtp:[exchange.example.org]:25, relay:[10.0.0.5]:587, lmtp:inet:host:24, "
    "lmtp:unix:/path"
)


class _Bad(Exception):
    pass


def nexthop_result(value: str) -> str:
    """The transport_maps result for `--nexthop VALUE`: a full `transport:nexthop` as given
    (checked), or a host, which becomes `smtp:[host]:port` (port 25 unless given)."""
    try:
        return _result(value)
    except _Bad as exc:
        raise UsageError(
            f"--nexthop {value!r} is not a Postfix next hop: {exc}", hint=_HINT
        ) from None


def host_result(host: str, port: int = DEFAULT_PORT) -> str:
    """`smtp:[host]:port` for a host name or IP address (IPv6 as Postfix writes it)."""
    return f"smtp:{_bracketed(host)}:{port}"


def _result(value: str) -> str:
    if not value or value != value.strip() or any(ch.isspace() for ch in value):
        raise _Bad("it is empty or holds white space (one token in transport_maps)")
    if "#" in value or "," in value:
        raise _Bad("'#' and ',' cannot appear in a next hop")
    if _is_ipv6(value):
        return host_result(value)
    name, colon, rest = value.partition(":")
    if colon and (name.lower() in TRANSPORTS or not _is_port_text(rest)) and _transport_like(name):
        if name.lower() not in TRANSPORTS:
            raise _Bad(
                f"unknown transport {name!r}; migrated mail goes out by {', '.join(TRANSPORTS)}"
            )
        _check_nexthop(name.lower(), rest)
        return f"{name.lower()}:{rest}"
    return _host_form(value)


def _transport_like(name: str) -> bool:
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9_-]*$", name))


def _is_port_text(text: str) -> bool:
    return text.isdigit()


def _host_form(value: str) -> str:
    """A bare host, [host], host:port, [host]:port or an IPv6 address: smtp:[host]:port."""
    if value.startswith("["):
        inner, port = _split_bracketed(value)
        if _is_ipv6(inner):  # [2001:db8::25] for the user; Postfix wants [ipv6:2001:db8::25]
            return host_result(inner, port or DEFAULT_PORT)
        _check_bracketed(inner)
        return f"smtp:[{inner}]:{port or DEFAULT_PORT}"
    host, colon, port_text = value.partition(":")
    port = _port(port_text) if colon else DEFAULT_PORT
    if not _is_ipv4(host):  # brackets come with the result: an IPv4 address needs none here
        _check_host(host)
    return host_result(host, port)


def _check_nexthop(transport: str, nexthop: str) -> None:
    if not nexthop:
        raise _Bad(f"{transport}: needs a next hop after the colon")
    if transport == "lmtp" and nexthop.startswith("unix:"):
        # absolute, or relative to the queue directory (lmtp:unix:private/dovecot-lmtp)
        if not nexthop[len("unix:") :].strip("/"):
            raise _Bad("lmtp:unix: needs the path of a socket")
        return
    if transport == "lmtp" and nexthop.startswith("inet:"):
        nexthop = nexthop[len("inet:") :]
    if nexthop.startswith("["):
        inner, _port_value = _split_bracketed(nexthop)
        _check_bracketed(inner)
        return
    host, colon, port_text = nexthop.partition(":")
    if colon:
        _port(port_text)
    _check_host(host)


def _split_bracketed(text: str) -> tuple[str, int | None]:
    close = text.find("]")
    if close < 0:
        raise _Bad("'[' without ']'")
    inner, after = text[1:close], text[close + 1 :]
    if not after:
        return inner, None
    if not after.startswith(":"):
        raise _Bad(f"{after!r} after ']' (only :port may follow)")
    return inner, _port(after[1:])


def _check_bracketed(inner: str) -> None:
    if inner.lower().startswith("ipv6:"):  # smtp(8): "formatted as [ipv6:address]"
        _check_ipv6(inner[len("ipv6:") :])
        return
    if ":" in inner:  # also read by Postfix without the prefix
        _check_ipv6(inner)
        return
    if not _is_ipv4(inner):
        _check_host(inner)


def _check_ipv6(text: str) -> None:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        raise _Bad(f"{text!r} is not an IPv6 address") from None


def _check_host(host: str) -> None:
    if not host:
        raise _Bad("the host name is missing")
    if len(host) > _MAX_HOSTNAME:
        raise _Bad(f"the host name is longer than {_MAX_HOSTNAME} characters")
    if _is_ipv4(host):
        raise _Bad(
            f"an IP address is written in brackets, [{host}] (without them Postfix looks up MX "
            "records)"
        )
    labels = host.removesuffix(".").split(".")
    for label in labels:
        if not _LABEL.match(label):
            raise _Bad(
                f"{host!r} is not a host name (labels of letters, digits, '-' and '_', "
                "at most 63 characters each, not starting or ending with '-')"
            )
    if all(label.isdigit() for label in labels):
        raise _Bad(f"{host!r} is all numeric: not a host name")


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise _Bad(f"port {text!r} is not a number from 1 to 65535")
    return int(text)


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _bracketed(host: str) -> str:
    return f"[ipv6:{host}]" if _is_ipv6(host) else f"[{host}]"
