"""A local Exchange Web Services endpoint that exchangelib talks to over real HTTP.

See docs/ews-simulator.md. Stdlib HTTP server, lxml for parsing, SQLite for the mailboxes.
"""

from .faults import FaultKind, Faults
from .limits import ExchangeLimits, MailboxLimits
from .schema import SCHEMA_ENV, SchemaNotFound
from .server import DEFAULT_USERS, EWS_PATH, EwsSimulator, SchemaViolations, SimStats, serve
from .store import SimFolder, SimItem
from .versions import EXCHANGE_BUILDS

__all__ = [
    "DEFAULT_USERS",
    "EWS_PATH",
    "EXCHANGE_BUILDS",
    "SCHEMA_ENV",
    "EwsSimulator",
    "ExchangeLimits",
    "FaultKind",
    "Faults",
    "MailboxLimits",
    "SchemaNotFound",
    "SchemaViolations",
    "SimFolder",
    "SimItem",
    "SimStats",
    "serve",
]
