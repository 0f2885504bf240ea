"""A local Exchange Web Services endpoint that exchangelib talks to over real HTTP.

See docs/ews-simulator.md. Stdlib HTTP server, lxml for parsing, SQLite for the mailboxes.
"""

from .faults import FaultKind, Faults
from .server import DEFAULT_USERS, EWS_PATH, EwsSimulator, SimStats, serve
from .store import SimFolder, SimItem

__all__ = [
    "DEFAULT_USERS",
    "EWS_PATH",
    "EwsSimulator",
    "FaultKind",
    "Faults",
    "SimFolder",
    "SimItem",
    "SimStats",
    "serve",
]
