"""The Prometheus metrics endpoint of `run --metrics-port` and `workers --metrics-port`: the
only home of prometheus_client, imported only when the option is given (docs/metrics.md).

Two kinds of numbers, both labelled with the plan and the target server:
- what this process did, counted as it happens, through the engine's two interfaces: the
  Progress it reports to (messages, bytes, skips, accounts finished, takeovers) and the
  limiter every target request goes through (latency, throttling answers, back-off, ceiling);
- where the campaign stands, read from the state database at each scrape, with the queries of
  `status` (accounts by state, messages, bytes, skips) and of `workers` (the fleet).
Counters start at zero with each process, as Prometheus expects (`rate()`, `increase()`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from migrator.engine.limiter import AdaptiveLimiter
from migrator.engine.progress import AccountOutcome, Progress
from migrator.model.errors import MigratorError, UsageError
from migrator.model.scope import Scope
from migrator.model.status import LIVE_WORKERS, Status, WorkerState

LABELS = ("plan", "target")
# a request to EWS or IMAP takes from milliseconds (a lookup) to minutes (a large upload)
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
ACCOUNT_STATES = (
    Status.PENDING,
    Status.RUNNING,
    Status.SYNCED,
    Status.VERIFIED,
    Status.FAILED,
    Scope.EXCLUDED,
    Scope.INVALID,
    Scope.VANISHED,
)
WORKER_STATES = tuple(WorkerState)


def new_registry() -> CollectorRegistry:
    """A registry of this endpoint's own (with the process's CPU, memory and file figures),
    not the library's global one: a test may run several in one process."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


@contextmanager
def serving(registry: CollectorRegistry, port: int, address: str = "") -> Iterator[str]:
    """Serve /metrics on `address`:`port` (all interfaces when empty) while the block runs;
    the URL it is served at."""
    try:
        server, thread = start_http_server(port, addr=address or "0.0.0.0", registry=registry)
    except OSError as exc:
        raise UsageError(
            f"cannot serve metrics on {address or '*'}:{port}: {exc.strerror or exc}",
            hint="choose another --metrics-port (or stop what listens on it)",
        ) from None
    try:
        yield f"http://{address or '0.0.0.0'}:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class RunMetrics:
    """What one `migrator run` process does: a LimiterWatch for the engine's limiter, and a
    Progress wrapper (`progress()`) for what it reports."""

    def __init__(
        self, registry: CollectorRegistry, *, plan: str, target: str, worker: dict[str, str]
    ) -> None:
        labels = {"plan": plan, "target": target}
        self._labels = labels
        self._limiter: AdaptiveLimiter | None = None
        self.messages = Counter(
            "migrator_messages_done",
            "Messages this process moved into the target.",
            LABELS,
            registry=registry,
        ).labels(**labels)
        self.bytes = Counter(
            "migrator_bytes_done",
            "Bytes of the messages this process moved.",
            LABELS,
            registry=registry,
        ).labels(**labels)
        self.skipped = Counter(
            "migrator_messages_skipped", "Messages this process skipped, by reason.",
            (*LABELS, "reason"),
            registry=registry,
        )  # fmt: skip
        self.finished = Counter(
            "migrator_accounts_finished",
            "Accounts this process finished a pass on, by outcome "
            "(synced, failed, interrupted, deferred, lost).",
            (*LABELS, "outcome"), registry=registry,
        )  # fmt: skip
        self.takeovers = Counter(
            "migrator_lease_takeovers",
            "Accounts this process took over from a worker whose lease had expired "
            "(counted when it finishes them).",
            LABELS, registry=registry,
        ).labels(**labels)  # fmt: skip
        self.latency = Histogram(
            "migrator_target_request_seconds", "How long requests to the target took.", LABELS,
            buckets=LATENCY_BUCKETS, registry=registry,
        ).labels(**labels)  # fmt: skip
        self.throttles = Counter(
            "migrator_target_throttled",
            "Throttling answers from the target (ErrorServerBusy, 503 with a hint).",
            LABELS, registry=registry,
        ).labels(**labels)  # fmt: skip
        self.backoff = Counter(
            "migrator_target_backoff_seconds",
            "Seconds workers waited before trying a target request again.",
            LABELS, registry=registry,
        ).labels(**labels)  # fmt: skip
        for name, doc, read in (
            ("migrator_limiter_ceiling",
             "This process's share of the target's ceiling (its hard limit).",
             lambda lim: lim.ceiling),
            ("migrator_limiter_limit",
             "Requests the adaptive limiter lets through now (lowered by throttling).",
             lambda lim: lim.limit),
            ("migrator_target_requests_in_flight", "Requests to the target in flight now.",
             lambda lim: lim.in_flight),
        ):  # fmt: skip
            Gauge(name, doc, LABELS, registry=registry).labels(**labels).set_function(
                self._reader(read)
            )
        Gauge(
            "migrator_worker_info", "This process as a worker: its unique id, label, host and pid.",
            (*LABELS, *sorted(worker)), registry=registry,
        ).labels(**labels, **worker).set(1)  # fmt: skip

    def _reader(self, read: Callable[[AdaptiveLimiter], int]) -> Callable[[], float]:
        def value() -> float:
            return float(read(self._limiter)) if self._limiter is not None else 0.0

        return value

    # --- LimiterWatch ------------------------------------------------------------------
    def watching(self, limiter: AdaptiveLimiter) -> None:
        self._limiter = limiter

    def request_done(self, seconds: float) -> None:
        self.latency.observe(seconds)

    def throttled(self) -> None:
        self.throttles.inc()

    def backed_off(self, seconds: float) -> None:
        self.backoff.inc(seconds)

    # --- Progress ----------------------------------------------------------------------
    def progress(self, inner: Progress) -> Progress:
        return _CountingProgress(inner, self)

    def account_finished(self, outcome: AccountOutcome) -> None:
        self.finished.labels(**self._labels, outcome=outcome.status).inc()
        if outcome.took_over:
            self.takeovers.inc()
        for skip in outcome.skipped:
            self.skipped.labels(**self._labels, reason=skip.reason).inc()


class _CountingProgress:
    """Passes everything on to the display, and counts what the metrics show."""

    def __init__(self, inner: Progress, metrics: RunMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def run_started(self, total_accounts: int, migrated_before: int) -> None:
        self._inner.run_started(total_accounts, migrated_before)

    def account_started(self, address: str) -> None:
        self._inner.account_started(address)

    def messages_done(self, address: str, count: int, nbytes: int) -> None:
        self._metrics.messages.inc(count)
        self._metrics.bytes.inc(nbytes)
        self._inner.messages_done(address, count, nbytes)

    def account_finished(self, outcome: AccountOutcome) -> None:
        self._metrics.account_finished(outcome)
        self._inner.account_finished(outcome)

    def note(self, message: str) -> None:
        self._inner.note(message)

    def waiting(self, message: str) -> None:
        self._inner.waiting(message)


def _read(read: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """What `read` returns, or None when the state database cannot be read now (it shows as
    migrator_state_up 0 rather than as an error page Prometheus cannot parse)."""
    try:
        return read()
    except MigratorError:
        return None


class CampaignCollector(Collector):
    """Where the campaign stands, from the state database (`status`'s counts) at each scrape."""

    def __init__(self, read: Callable[[], dict[str, Any]], *, plan: str, target: str) -> None:
        self._read = read
        self._labels = [plan, target]

    def collect(self) -> Iterator[Metric]:
        data = _read(self._read)  # at every scrape: a few indexed aggregates, as `status`
        up = GaugeMetricFamily(
            "migrator_state_up", "1 when the last read of the state database worked.", labels=LABELS
        )
        up.add_metric(self._labels, 1.0 if data is not None else 0.0)
        yield up
        if data is None:
            return
        accounts = data["accounts"]
        by_state = GaugeMetricFamily(
            "migrator_accounts",
            "The plan's accounts by state (status and scope).",
            labels=(*LABELS, "state"),
        )
        for state in ACCOUNT_STATES:
            by_state.add_metric([*self._labels, state], float(accounts.get(state, 0)))
        yield by_state
        for name, key, doc in (
            ("migrator_accounts_in_scope", "total", "Accounts in scope."),
            (
                "migrator_accounts_migrated",
                "migrated",
                "Accounts migrated (the N of `status`'s N of M).",
            ),
            (
                "migrator_accounts_interrupted",
                "interrupted",
                "Accounts left running by a worker whose lease expired.",
            ),
        ):
            yield self._gauge(name, doc, accounts[key])
        messages = data["messages"]
        yield self._gauge(
            "migrator_campaign_messages_done",
            "Messages in the target, by every pass of every worker.",
            messages["done"],
        )
        yield self._gauge(
            "migrator_campaign_bytes_done", "Bytes of those messages.", messages["bytes"]
        )
        yield self._gauge(
            "migrator_campaign_messages_failed",
            "Messages that failed for good.",
            messages["failed"],
        )
        skipped = GaugeMetricFamily(
            "migrator_campaign_messages_skipped",
            "Messages skipped, by reason.",
            labels=(*LABELS, "reason"),
        )
        for reason, n in sorted(data["skipped_by_reason"].items()):
            skipped.add_metric([*self._labels, reason], float(n))
        yield skipped

    def _gauge(self, name: str, doc: str, value: float) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, doc, labels=LABELS)
        family.add_metric(self._labels, float(value))
        return family


class FleetCollector(Collector):
    """The fleet (`workers`' view) from the state database at each scrape."""

    def __init__(self, read: Callable[[], dict[str, Any]], *, plan: str, target: str) -> None:
        self._read = read
        self._labels = [plan, target]

    def collect(self) -> Iterator[Metric]:
        data = _read(self._read)
        if data is None:
            return
        totals = data["totals"]
        workers = GaugeMetricFamily(
            "migrator_workers", "The plan's workers by state.", labels=(*LABELS, "state")
        )
        for state in WORKER_STATES:
            workers.add_metric([*self._labels, state], float(totals.get(state, 0)))
        yield workers
        ceiling = GaugeMetricFamily(
            "migrator_target_ceiling",
            "Requests all workers together may have in flight to the target.",
            labels=LABELS,
        )
        ceiling.add_metric(self._labels, float(data["ceiling"]))
        yield ceiling
        rate = GaugeMetricFamily(
            "migrator_fleet_messages_per_second",
            "Messages/s of the running workers together (last minute).",
            labels=LABELS,
        )  # fmt: skip
        rate.add_metric(self._labels, float(totals["rate"]))
        yield rate
        held = GaugeMetricFamily(
            "migrator_fleet_accounts_in_hand", "Accounts the running workers hold.", labels=LABELS
        )
        held.add_metric(self._labels, float(totals["accounts_in_hand"]))
        yield held
        share = GaugeMetricFamily(
            "migrator_worker_share",
            "Each live worker's share of the target's ceiling.",
            labels=(*LABELS, "worker"),
        )
        for w in data["workers"]:
            if w["state"] in LIVE_WORKERS and w["share"] is not None:
                share.add_metric([*self._labels, w["id"]], float(w["share"]))
        yield share
