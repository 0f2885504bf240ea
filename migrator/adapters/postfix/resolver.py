"""Ask the running Postfix where it delivers an address, without sending mail.

Postfix's queue manager asks its address resolver, trivial-rewrite(8), for each recipient's
(transport, next hop); trivial-rewrite consults transport_maps, the virtual and local domain
classes and relayhost. migrator asks the same service the same question over its socket
($queue_directory/private/$rewrite_service_name), so the answer is the one the running mail
system acts on after a reload, not what a file says. Postfix's internal protocol: attribute
lists of `name NUL value NUL` pairs ended by a lone NUL; the server may first announce
`protocol NUL trivial_rewrite_protocol`.

The socket is Postfix's private one: root (or the postfix user) can open it.
"""

from __future__ import annotations

import select
import socket
from dataclasses import dataclass
from pathlib import Path

from migrator.model.errors import PostfixError

_ANNOUNCE_WAIT_S = 0.5  # older servers announce nothing: do not wait longer for it


@dataclass(frozen=True)
class Resolution:
    transport: str
    nexthop: str
    recipient: str

    @property
    def result(self) -> str:
        """As a transport_maps result reads: transport:nexthop."""
        return f"{self.transport}:{self.nexthop}"


class Resolver:
    def __init__(self, socket_path: Path, timeout: float = 10.0) -> None:
        self.path = socket_path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = b""

    def __enter__(self) -> Resolver:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buffer = b""

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except OSError as exc:
            sock.close()
            raise PostfixError(
                f"cannot ask Postfix's address resolver at {self.path}: {exc.strerror or exc}",
                hint="Postfix must be running, and this user must be allowed into its private "
                "directory (root or postfix); or set [cutover] resolver = false to check the "
                "built map only",
            ) from None
        self._sock = sock
        self._buffer = b""
        ready, _, _ = select.select([sock], [], [], _ANNOUNCE_WAIT_S)
        if ready:
            announced = self._attributes()
            if (
                announced
                and announced[0][0] == "protocol"
                and announced[0][1] != "trivial_rewrite_protocol"
            ):
                self.close()
                raise PostfixError(
                    f"{self.path} is not Postfix's address resolver (it speaks {announced[0][1]})"
                )
        return sock

    def resolve(self, address: str) -> Resolution:
        """Where Postfix delivers `address` now; one retry on a connection the server closed
        (trivial-rewrite processes exit after a reload or when a map changed)."""
        for attempt in (1, 2):
            sock = self._connect()
            try:
                sock.sendall(
                    b"request\0resolve\0sender\0\0address\0"
                    + address.encode("utf-8", "surrogateescape")
                    + b"\0\0"
                )
                pairs = self._attributes()
            except (OSError, EOFError) as exc:
                self.close()
                if attempt == 2:
                    raise PostfixError(
                        f"Postfix's address resolver at {self.path} stopped answering: {exc}"
                    ) from None
                continue
            values = dict(pairs)
            if "transport" not in values:
                raise PostfixError(f"Postfix's address resolver answered {pairs!r} for {address}")
            return Resolution(
                values["transport"], values.get("nexthop", ""), values.get("recipient", "")
            )
        raise AssertionError("unreachable")

    def _attributes(self) -> list[tuple[str, str]]:
        """One attribute list: name/value pairs up to the lone NUL that ends it."""
        pairs: list[tuple[str, str]] = []
        while True:
            name = self._field()
            if name == "":
                return pairs
            pairs.append((name, self._field()))

    def _field(self) -> str:
        assert self._sock is not None
        while b"\0" not in self._buffer:
            chunk = self._sock.recv(4096)
            if not chunk:
                raise EOFError("connection closed")
            self._buffer += chunk
        field, _, self._buffer = self._buffer.partition(b"\0")
        return field.decode("utf-8", "surrogateescape")
