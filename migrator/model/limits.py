"""The bounds of every number an operator sets, in a plan or on the command line.

One table, read by the plan loader and by the CLI's options, so `[run] workers = 100000` fails
`check-plan` just as `--workers 100000` fails at the prompt, instead of a run that starts
100,000 threads. Bounds are what makes sense for a mail migration, with room to spare; a
value outside them is a typo far more often than a need.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bound:
    low: int | float
    high: int | float
    why: str  # what the number is, for the error message
    hint: str | None = None

    def describe(self) -> str:
        return f"between {_num(self.low)} and {_num(self.high)}"


def _num(value: int | float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


MIB = 1024 * 1024

# threads of one process: beyond a few hundred a process spends its time switching, and the
# target throttles long before; more hosts (PostgreSQL state) is the way to go wider
WORKERS = Bound(
    1,
    256,
    "accounts migrated at once by one process",
    hint="to migrate more accounts at once, run migrator on more hosts sharing a PostgreSQL state",
)
# concurrent requests to the target (per process, and the shared ceiling of a fleet);
# Exchange allows 27 EWS connections per user by default
TARGET_CONCURRENCY = Bound(1, 1024, "concurrent requests to the target")
MAX_ACCOUNT_ATTEMPTS = Bound(1, 1000, "automatic attempts at a failing account")
CHUNK_MESSAGES = Bound(1, 10_000, "messages in one upload chunk")
CHUNK_BYTES = Bound(1024, 1024 * MIB, "bytes in one upload chunk")
LEASE_SECONDS = Bound(10, 86_400, "seconds a worker's claim lasts without a heartbeat")
DELETION_LIMIT = Bound(
    0,
    100,
    "percent of an account's messages one pass may delete",
    hint=(
        "100 lets a pass delete everything; `migrator run --allow-deletions` lets one run pass "
        "the limit"
    ),
)
MAX_MESSAGE_SIZE = Bound(1, 2 * 1024 * MIB - 1, "bytes of the largest message sent")
PAGE_SIZE = Bound(1, 100_000, "entries per page of the directory search")
TIMEOUT = Bound(0.1, 86_400.0, "seconds to wait for an answer")
PORT = Bound(1, 65_535, "TCP port")
EVENTS_SHOWN = Bound(1, 10_000, "events shown")
# how long after a wave's switch its final delta pass runs: up to a week
FINAL_DELTA_AFTER = Bound(0, 7 * 86_400, "seconds between a wave's switch and its final delta pass")
# how long after an account's pass a run may pass it again: up to a month
PASS_INTERVAL = Bound(
    0, 31 * 86_400, "seconds after an account's pass before a run passes it again"
)
# how many days of events and runs `migrator prune` keeps: a day to ten years
RETENTION_DAYS = Bound(1, 3_650, "days of events and runs `migrator prune` keeps")
POSTFIX_TIMEOUT = Bound(
    1, 3_600, "seconds Postfix may take to show new routing or deliver its queue"
)
