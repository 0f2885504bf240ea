"""A PostgreSQL state server that cannot be reached: sessions wait for it (the retry primitive,
bounded by Store.reconnect_seconds), say so once, and give up with StateUnavailable.

Between the store and the real server sits a TCP relay that hangs up on the first connections
it is given, as a server that is down or restarting does, then relays to PostgreSQL.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import suppress

import pytest

from migrator.store import open_store
from migrator.store.store import StateUnavailable
from tests.fixtures.store import PG_HOST, PG_PORT, postgres_database


class Relay:
    """Hangs up on the first `refuse` connections (all of them when None), relays the rest."""

    def __init__(self, refuse: int | None) -> None:
        self.refuse = refuse
        self.refused = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            if self.refuse is None or self.refused < self.refuse:
                self.refused += 1
                client.close()
                continue
            server = socket.create_connection((PG_HOST, PG_PORT))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def database() -> Iterator[str]:
    """A database at this migrator's schema, its URL with the relay's port to be filled in."""
    with postgres_database("reconnect") as url:
        open_store(url).close()  # creates the schema
        yield url.replace(f":{PG_PORT}/", ":{port}/")


def test_a_session_waits_for_the_server_and_says_so_once(database: str) -> None:
    relay = Relay(refuse=0)  # reachable while the store opens
    try:
        store = open_store(database.format(port=relay.port))
        try:
            store.engine.dispose()  # no pooled connection left: the next session connects anew
            relay.refused, relay.refuse = 0, 3
            said: list[str] = []
            store.on_reconnect_wait = said.append
            store.reconnect_seconds = 60
            assert store.plan_id("none") is None
            assert relay.refused == 3
            assert len(said) == 1 and "unreachable" in said[0], said
            assert "retrying for up to 60 s" in said[0]
        finally:
            store.close()
    finally:
        relay.close()


def test_a_session_gives_up_after_reconnect_seconds(database: str) -> None:
    relay = Relay(refuse=0)
    try:
        store = open_store(database.format(port=relay.port))
        try:
            store.engine.dispose()
            relay.refused, relay.refuse = 0, None
            store.reconnect_seconds = 1
            with pytest.raises(StateUnavailable, match="lost the connection"):
                store.plan_id("none")
            assert relay.refused >= 2  # it tried again before giving up
        finally:
            store.close()
    finally:
        relay.close()
