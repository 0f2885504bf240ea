"""The circuit breaker: when a server the run needs is down, the run stops within seconds.

Without it, a target that refuses connections made every account retry for minutes and then
fail (and be charged an attempt) one after the other: a campaign of thousands of accounts took
a day to fail. Adapters mark a failure that is the service's rather than one account's with
an `Outage` (model/errors.py): refused, unresolvable, TLS, no answer within `timeout`, the
service account's credentials refused. The breaker counts them per service:

- A failure that may be one request's own (a read timeout or a reset in the middle of a
  request) counts only when the server does not answer a bare probe either (`probe()` of the
  target; one probe at a time, its verdict reused for PROBE_FRESH_S).
- Any request of that service that gets an answer (even "no such mailbox", even "busy")
  clears the count: the server is there.
- TRIP_AFTER failures in a row, spread over at least TRIP_SPAN_S, trip it: the run stops,
  gives every account it holds back unchanged (no attempt charged) and exits 2 naming the
  innermost cause. A blip shorter than that (one reset, a restart of a second) is ridden out
  by the retries as before.

An account that ends on such a failure before the breaker trips (its retries ran out, or the
failure cannot be retried: the service account's password) is given back unchanged too, and
its worker waits a back-off before claiming the next one, so that a dead server does not sweep
the whole account list in a second. A run that ends while a service it gave accounts back for
is still failing exits 2 the same way.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

from migrator.adapters.targets.base import (
    CarriesChanges,
    ChecksPresence,
    FindsByContent,
    FlagChange,
    GroupsIdentical,
    Inventories,
    KeyedItems,
    ListsByKey,
    Probes,
    ShowsFlags,
    Target,
    TargetFolder,
    Withdraws,
)
from migrator.engine.mailbox import Stopped
from migrator.model.errors import Outage, PermanentError, ServiceUnavailable, TransientError
from migrator.model.mail import Flags, FolderRole, UploadItem, UploadResult

T = TypeVar("T")

TRIP_AFTER = 3  # failures of one service in a row, with no answer from it in between ...
TRIP_SPAN_S = 2.0  # ... spread over at least this long (a shorter blip is ridden out)
PROBE_FRESH_S = 10.0  # how long a probe's verdict stands for the requests failing meanwhile
NOTICE_EVERY_S = 30.0  # at most one "waiting for" line per service this often, same reason

_HINTS = {
    "unreachable": (
        "check that {what} is running and that this host can reach it (host and port in {section})"
    ),
    "timeout": (
        "{what} accepts connections but does not answer within {section} timeout: check its "
        "health and load, or raise timeout"
    ),
    "tls": "check the server's certificate and tls / ca_file in {section}",
    "auth": "check the service account (username) and the password or secret {section} names",
    "broken": "{what} breaks off every connection: check its logs, and port and tls in {section}",
    "unavailable": "{what} says it cannot serve us now: check its logs and back ends",
}


@dataclass
class _Streak:
    count: int
    first_at: float
    outage: Outage


class Breaker:
    """Counts each service's failures in a row; trips once, calling `on_trip`. Thread-safe."""

    def __init__(
        self,
        on_trip: Callable[[ServiceUnavailable], None],
        *,
        trip_after: int = TRIP_AFTER,
        span: float = TRIP_SPAN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_trip = on_trip
        self.trip_after = trip_after
        self.span = span
        self._clock = clock
        self._lock = threading.Lock()
        self._streaks: dict[str, _Streak] = {}
        self.tripped: ServiceUnavailable | None = None

    def failed(self, outage: Outage) -> None:
        now = self._clock()
        with self._lock:
            streak = self._streaks.get(outage.service)
            if streak is None:
                streak = self._streaks[outage.service] = _Streak(0, now, outage)
            streak.count += 1
            streak.outage = outage
            if (
                self.tripped is not None
                or streak.count < self.trip_after
                or now - streak.first_at < self.span
            ):
                return
            self.tripped = self._error(streak, now)
            error = self.tripped
        self._on_trip(error)

    def succeeded(self, service: str) -> None:
        with self._lock:
            self._streaks.pop(service, None)

    def down(self, service: str | None = None) -> Outage | None:
        """The outage of a service (any, when None) that has failed since it last answered."""
        with self._lock:
            streaks = [s for name, s in self._streaks.items() if service is None or name == service]
            return streaks[0].outage if streaks else None

    def trip_now(self, service: str | None = None) -> ServiceUnavailable | None:
        """Trip on the current streak of `service` (any), whatever its length: the run ends
        and the last word of that service was a failure."""
        with self._lock:
            streaks = [s for name, s in self._streaks.items() if service is None or name == service]
            if self.tripped is not None or not streaks:
                return self.tripped
            self.tripped = self._error(streaks[0], self._clock())
            return self.tripped

    def check(self) -> None:
        """Before a request: once tripped, nothing more is sent."""
        if self.tripped is not None:
            raise Stopped(f"stopped: {self.tripped.message}")

    @staticmethod
    def _error(streak: _Streak, now: float) -> ServiceUnavailable:
        outage = streak.outage
        seen = (
            f"{streak.count} failures in a row over {now - streak.first_at:.1f} s"
            if streak.count > 1
            else "it failed and nothing else got through"
        )
        section = {"target": "[target]", "source": "[source]", "directory": "[directory]"}.get(
            outage.service, "the plan"
        )
        hint = outage.hint or _HINTS.get(outage.kind, "check {what}").format(
            what=outage.what, section=section
        )
        return ServiceUnavailable(
            outage,
            f"{outage.what} is unavailable: {outage.cause} ({seen}). The run stopped and gave the "
            "accounts it was working on back unchanged: no account was charged an attempt",
            hint=f"{hint}; then run again",
        )


def outage_of(exc: BaseException) -> Outage | None:
    outage = getattr(exc, "outage", None)
    return outage if isinstance(outage, Outage) else None


class GuardedTarget:
    """The target as the engine uses it: each call reports to the breaker, and none is sent
    once it has tripped (`Stopped`). Implements adapters.targets.base.Target; made by `guard`,
    it declares the optional capabilities of the target it guards, and no others."""

    def __init__(
        self, inner: Target, breaker: Breaker, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._inner = inner
        self._breaker = breaker
        self._clock = clock
        self._probe_lock = threading.Lock()
        self._verdict: tuple[float, Outage | None] | None = None

    @property
    def max_message_size(self) -> int:
        return self._inner.max_message_size

    @max_message_size.setter
    def max_message_size(self, value: int) -> None:
        self._inner.max_message_size = value

    # --- the contract ------------------------------------------------------------------------
    def preflight(self, mailbox: str) -> None:
        self._watch(lambda: self._inner.preflight(mailbox))

    def is_excluded(self, path: tuple[str, ...]) -> bool:
        return self._inner.is_excluded(path)

    def ensure_folder(self, mailbox: str, path: tuple[str, ...], role: FolderRole) -> TargetFolder:
        return self._watch(lambda: self._inner.ensure_folder(mailbox, path, role))

    def upload(
        self, mailbox: str, folder: TargetFolder, items: Sequence[UploadItem]
    ) -> list[UploadResult]:
        results = self._watch(lambda: self._inner.upload(mailbox, folder, items))
        errors = [r.error for r in results if r.error is not None]
        if len(errors) < len(results):
            self._breaker.succeeded("target")
        else:
            outages = [o for o in map(outage_of, errors) if o is not None]
            self._judge(outages[0] if outages else None)
        return results

    def find(
        self,
        mailbox: str,
        folder: TargetFolder,
        keys: Sequence[str],
        exclude_ids: Collection[str] = (),
    ) -> dict[str, str]:
        return self._watch(lambda: self._inner.find(mailbox, folder, keys, exclude_ids=exclude_ids))

    def count(self, mailbox: str, folder: TargetFolder) -> int:
        return self._watch(lambda: self._inner.count(mailbox, folder))

    def close(self) -> None:
        self._inner.close()

    # --- watching ----------------------------------------------------------------------------
    def _watch(self, call: Callable[[], T]) -> T:
        self._breaker.check()
        try:
            result = call()
        except (TransientError, PermanentError) as exc:
            self._judge(outage_of(exc))
            raise
        self._breaker.succeeded("target")
        return result

    def _judge(self, outage: Outage | None) -> None:
        if outage is not None and not outage.confirmed:
            outage = self._probe()
        if outage is None:
            # the server answered (busy, no such mailbox, ...), or answers a probe: it is there
            self._breaker.succeeded("target")
        else:
            self._breaker.failed(outage)

    def _probe(self) -> Outage | None:
        """None when the server answers a bare request (the failure was that request's own)."""
        inner = self._inner
        if not isinstance(inner, Probes):
            return None
        with self._probe_lock:
            if self._verdict is not None and self._clock() - self._verdict[0] < PROBE_FRESH_S:
                return self._verdict[1]
            verdict: Outage | None = None
            try:
                inner.probe()
            except (TransientError, PermanentError) as exc:
                verdict = outage_of(exc)
            self._verdict = (self._clock(), verdict)
            return verdict


# --- the optional capabilities, watched like the contract ----------------------------------------
# One class per capability; `guard` composes those the guarded target declares. Each is only
# ever mixed in over a target that has it, which the casts below rely on.


class _ListsByKey(GuardedTarget):
    def items_by_key(self, mailbox: str, folder: TargetFolder) -> KeyedItems | None:
        inner = cast(ListsByKey, self._inner)
        return self._watch(lambda: inner.items_by_key(mailbox, folder))


class _FindsByContent(GuardedTarget):
    def find_uploads(
        self,
        mailbox: str,
        folder: TargetFolder,
        items: Sequence[UploadItem],
        known_ids: Collection[str] = (),
    ) -> dict[str, str]:
        inner = cast(FindsByContent, self._inner)
        return self._watch(lambda: inner.find_uploads(mailbox, folder, items, known_ids=known_ids))


class _GroupsIdentical(GuardedTarget):
    def identical_items(self, mailbox: str, folder: TargetFolder) -> list[list[str]]:
        inner = cast(GroupsIdentical, self._inner)
        return self._watch(lambda: inner.identical_items(mailbox, folder))


class _Withdraws(GuardedTarget):
    def withdraw(self, mailbox: str, folder: TargetFolder, target_ids: Collection[str]) -> None:
        inner = cast(Withdraws, self._inner)
        self._watch(lambda: inner.withdraw(mailbox, folder, target_ids))


class _Inventories(GuardedTarget):
    def inventory(
        self, mailbox: str, folders: Mapping[str, Sequence[str]]
    ) -> Mapping[str, tuple[Mapping[str, int], int]]:
        inner = cast(Inventories, self._inner)
        return self._watch(lambda: inner.inventory(mailbox, folders))


class _ChecksPresence(GuardedTarget):
    def present(
        self, mailbox: str, folder: TargetFolder, target_ids: Collection[str]
    ) -> tuple[set[str], int]:
        inner = cast(ChecksPresence, self._inner)
        return self._watch(lambda: inner.present(mailbox, folder, target_ids))


class _CarriesChanges(GuardedTarget):
    def update_flags(
        self, mailbox: str, folder: TargetFolder, changes: Sequence[FlagChange]
    ) -> list[Exception | None]:
        inner = cast(CarriesChanges, self._inner)
        return self._watch(lambda: inner.update_flags(mailbox, folder, changes))

    def prepare_move(
        self, mailbox: str, source: TargetFolder, dest: TargetFolder, target_ids: Sequence[str]
    ) -> dict[str, Any]:
        inner = cast(CarriesChanges, self._inner)
        return self._watch(lambda: inner.prepare_move(mailbox, source, dest, target_ids))

    def move(
        self, mailbox: str, source: TargetFolder, dest: TargetFolder, target_ids: Sequence[str]
    ) -> dict[str, str | Exception | None]:
        inner = cast(CarriesChanges, self._inner)
        return self._watch(lambda: inner.move(mailbox, source, dest, target_ids))

    def locate_moved(
        self,
        mailbox: str,
        source: TargetFolder,
        dest: TargetFolder,
        moved: Mapping[str, str],
        facts: Mapping[str, Any],
        taken: Collection[str],
    ) -> dict[str, str | None]:
        inner = cast(CarriesChanges, self._inner)
        return self._watch(lambda: inner.locate_moved(mailbox, source, dest, moved, facts, taken))

    def rename_folder(
        self, mailbox: str, folder: TargetFolder, path: tuple[str, ...], role: FolderRole
    ) -> tuple[TargetFolder, dict[str, str]] | None:
        inner = cast(CarriesChanges, self._inner)
        return self._watch(lambda: inner.rename_folder(mailbox, folder, path, role))

    def delete(self, mailbox: str, folder: TargetFolder, target_ids: Sequence[str]) -> None:
        inner = cast(CarriesChanges, self._inner)
        self._watch(lambda: inner.delete(mailbox, folder, target_ids))


class _ShowsFlags(GuardedTarget):
    def shown(self, flags: Flags) -> tuple[object, ...]:
        return cast(ShowsFlags, self._inner).shown(flags)  # no request: nothing to watch

    def flags_of(
        self, mailbox: str, folder: TargetFolder, target_ids: Sequence[str]
    ) -> dict[str, tuple[object, ...]]:
        inner = cast(ShowsFlags, self._inner)
        return self._watch(lambda: inner.flags_of(mailbox, folder, target_ids))


_CAPABILITIES: tuple[tuple[type, type[GuardedTarget]], ...] = (
    (ListsByKey, _ListsByKey),
    (FindsByContent, _FindsByContent),
    (GroupsIdentical, _GroupsIdentical),
    (Withdraws, _Withdraws),
    (Inventories, _Inventories),
    (ChecksPresence, _ChecksPresence),
    (CarriesChanges, _CarriesChanges),
    (ShowsFlags, _ShowsFlags),
)


@functools.cache
def _guarded_class(parts: tuple[type[GuardedTarget], ...]) -> type[GuardedTarget]:
    if not parts:
        return GuardedTarget
    return cast(
        type[GuardedTarget], type("GuardedTarget", parts, {"__doc__": GuardedTarget.__doc__})
    )


def guard(
    inner: Target, breaker: Breaker, clock: Callable[[], float] = time.monotonic
) -> GuardedTarget:
    """`inner` watched by `breaker`, declaring the same optional capabilities as `inner`."""
    parts = tuple(part for capability, part in _CAPABILITIES if isinstance(inner, capability))
    return _guarded_class(parts)(inner, breaker, clock)


class WaitNotices:
    """'waiting for the target server until 14:03:05: ...' while the run backs off, at most
    one line per service every NOTICE_EVERY_S for the same kind of reason (a new reason is
    said at once): shown even with --quiet, so a run that seems stuck says why."""

    def __init__(
        self,
        emit: Callable[[str], None],
        *,
        every: float = NOTICE_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._emit = emit
        self.every = every
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, str]] = {}

    def waiting(self, what: str, kind: str, why: str, seconds: float) -> None:
        now = self._clock()
        with self._lock:
            last = self._last.get(what)
            if last is not None and last[1] == kind and now - last[0] < self.every:
                return
            self._last[what] = (now, kind)
        until = datetime.fromtimestamp(self._wall() + seconds).strftime("%H:%M:%S")
        self._emit(f"waiting for {what} until {until}: {why}")
