"""The HTTP side: authentication, fault injection, statistics and the EwsSimulator facade."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType

from lxml import etree

from . import ids, soap
from . import schema as ews_schema
from .auth import (
    DEFAULT_DOMAIN,
    Authenticator,
    ConnectionAuth,
    ServiceAccounts,
    TokenCheck,
    register_ntlm_accounts,
)
from .changes import visible_items
from .faults import FaultDice, FaultKind, Faults
from .limits import Budgets, ExchangeLimits, MailboxLimits
from .locales import DEFAULT_CULTURE
from .operations import Operations, Policy, RequestContext
from .props import (
    MSGFLAG_UNSENT,
    PR_CLIENT_SUBMIT_TIME,
    PR_MESSAGE_DELIVERY_TIME,
    PR_MESSAGE_FLAGS,
    tag_key,
)
from .rules import InboxRules
from .soap import SOAP_NS, T_NS, EwsError
from .store import FolderRow, SimFolder, SimItem, Store
from .versions import DEFAULT_EXCHANGE, SCHEMA_NAMES, ExchangeBuild, exchange_build

EWS_PATH = "/EWS/Exchange.asmx"
DEFAULT_USERS = {"svc-migrator": "Sim-Passw0rd!"}
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)


@dataclass
class SimStats:
    """What the simulator saw; a snapshot (see EwsSimulator.stats)."""

    requests: dict[str, int] = field(default_factory=dict)  # per EWS operation (and "auth")
    faults: dict[str, int] = field(default_factory=dict)  # per FaultKind value
    max_concurrency: int = 0  # most requests in flight at once
    busy_backoff_ms: list[int] = field(default_factory=list)  # BackOffMilliseconds of busy answers
    items_created: int = 0
    # what a strict simulator refused as Exchange would (not faults): schema_validation,
    # max_depth, server_version, connection_count, find_count_limit, quota
    refused: dict[str, int] = field(default_factory=dict)
    max_request_depth: int = 0  # deepest request seen, elements from the SOAP Envelope
    timeline: list[TimelineEntry] = field(default_factory=list)  # every request, in arrival order


# Requests remembered for SimStats.timeline; enough for any test, bounded for long benchmarks.
TIMELINE_LIMIT = 200_000


@dataclass(frozen=True)
class TimelineEntry:
    """One request as the simulator saw it: when it arrived and was answered (monotonic
    seconds), the mailbox it was for (X-AnchorMailbox), the answer ("ok", "auth" for a 401,
    "busy", "http503", "reset", "lost", "internal_busy", or what a strict simulator refused:
    "connection_count",
    "schema_validation", "max_depth", "server_version") and the back-off hint the answer
    carried, in seconds."""

    arrived: float
    answered: float
    mailbox: str
    answer: str
    hint_s: float | None


class _Counters:
    def __init__(self) -> None:
        self.timeline: list[TimelineEntry] = []
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.busy_backoff_ms: list[int] = []
        self.items_created = 0
        self.refused: Counter[str] = Counter()
        self.max_depth = 0

    def fault(self, kind: FaultKind) -> None:
        with self.lock:
            self.faults[kind.value] += 1

    def refusal(self, what: str) -> None:
        with self.lock:
            self.refused[what] += 1

    def snapshot(self) -> SimStats:
        with self.lock:
            return SimStats(
                requests=dict(self.requests),
                faults=dict(self.faults),
                max_concurrency=self.max_in_flight,
                busy_backoff_ms=list(self.busy_backoff_ms),
                items_created=self.items_created,
                timeline=sorted(self.timeline, key=lambda e: e.arrived),
                refused=dict(self.refused),
                max_request_depth=self.max_depth,
            )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    sim: EwsSimulator

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that went away mid-request (killed, timed out) is routine for a server:
        say nothing, as IIS does. Anything else is a simulator bug and keeps its traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"
    disable_nagle_algorithm = True
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet: tests and benchmarks read SimStats instead of an access log."""

    # --- plumbing -------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, headers: Iterable[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Powered-By", "ASP.NET")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_plain(self, status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        body = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _reset(self) -> None:
        """Drop the connection without an answer: RST instead of FIN, like a dying front end."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None:
            self._send_plain(411, "Length Required")
            return None
        remaining = int(length)
        chunks = []
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _caller(self) -> str | None:
        """Who sends this request (Basic, NTLM on this connection, or a bearer token); None
        after answering 401 (see auth.py)."""
        conn = getattr(self, "_conn_auth", None)
        if conn is None:
            conn = self._conn_auth = ConnectionAuth()
        verdict = self.server.sim._auth.authenticate(self.headers.get("Authorization", ""), conn)
        if isinstance(verdict, str):
            return verdict
        with self.server.sim._counters.lock:
            self.server.sim._counters.requests["auth"] += 1
        self._answer = "auth"
        self._send_plain(401, verdict.page, verdict.headers)
        return None

    # --- requests -------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802
        # Exchange answers a browser GET of the endpoint with the WSDL pointer page; a 401
        # first, as the endpoint is authenticated. Enough for a readiness probe.
        self._answer = "ok"
        if self._caller() is None:
            return
        self._send_plain(200, "EWS simulator")

    def do_POST(self) -> None:  # noqa: N802
        sim = self.server.sim
        counters = sim._counters
        arrived = time.monotonic()
        self._answer = "ok"
        self._hint_s: float | None = None
        with counters.lock:
            counters.in_flight += 1
            counters.max_in_flight = max(counters.max_in_flight, counters.in_flight)
            in_flight = counters.in_flight
        try:
            self._post(sim, in_flight)
        finally:
            with counters.lock:
                counters.in_flight -= 1
                if len(counters.timeline) < TIMELINE_LIMIT:
                    counters.timeline.append(
                        TimelineEntry(
                            arrived,
                            time.monotonic(),
                            (self.headers.get("X-AnchorMailbox") or "").lower(),
                            self._answer,
                            self._hint_s,
                        )
                    )

    def _fault(self, sim: EwsSimulator, err: EwsError) -> None:
        # Exchange sends SOAP faults with HTTP 500 and without the version header.
        self._send(500, sim._answer(soap.fault(err), fault=True))

    def _refuse(self, sim: EwsSimulator, what: str, err: EwsError) -> None:
        sim._counters.refusal(what)
        self._answer = what
        self._fault(sim, err)

    def _post(self, sim: EwsSimulator, in_flight: int) -> None:
        faults = sim._dice.faults
        dice = sim._dice
        counters = sim._counters
        body = self._read_body()
        if body is None:
            return
        if self.path.split("?")[0].lower() != EWS_PATH.lower():
            self._send_plain(404, "Not Found")
            return
        # IIS request filtering refuses an over-size request before authentication and before
        # EWS runs: HTTP 404 with sub-status 13 (maxAllowedContentLength), not 413. Remote
        # clients see IIS's generic 404 page, not the sub-status (errorMode DetailedLocalOnly).
        # Source: "Request Filtering <requestFiltering>" and "The HTTP status code in IIS"
        # (Microsoft Learn).
        if faults.max_request_bytes is not None and len(body) > faults.max_request_bytes:
            counters.fault(FaultKind.REQUEST_TOO_LARGE)
            self._send_plain(404, _IIS_404)
            return
        user = self._caller()
        if user is None:
            return
        # faults limited to some operations need the operation's name before the XML is parsed
        faulty = dice.applies_to(_operation_name(body) if faults.operations is not None else None)
        if faulty and dice.roll(faults.reset_rate):
            counters.fault(FaultKind.RESET)
            self._answer = "reset"
            self._reset()
            return
        if faulty and dice.roll(faults.http503_rate):
            counters.fault(FaultKind.HTTP503)
            extra = (
                [] if faults.retry_after_s is None else [("Retry-After", str(faults.retry_after_s))]
            )
            self._answer = "http503"
            self._hint_s = None if faults.retry_after_s is None else float(faults.retry_after_s)
            self._send_plain(503, "Service Unavailable", extra)
            return
        limits = sim.limits
        # EWSMaxConcurrency: a connection counts from the moment its request is received until
        # its answer is sent, per caller; one too many is refused, the others go on
        # ("EWS throttling in Exchange", Throttling policies and concurrency).
        if limits is not None and not sim._budgets.enter(user, limits.max_concurrency):
            self._refuse(
                sim, "connection_count", soap.exceeded_connection_count(limits.max_concurrency)
            )
            return
        ctx = RequestContext(user=user, header=None, anchor=self.headers.get("X-AnchorMailbox"))
        try:
            self._carry_out(sim, body, ctx, faulty, in_flight)
        finally:
            if limits is not None:
                sim._budgets.leave(user)
            sim._budgets.release_find(user, ctx.find_charged)

    def _carry_out(
        self, sim: EwsSimulator, body: bytes, ctx: RequestContext, faulty: bool, in_flight: int
    ) -> None:
        faults = sim._dice.faults
        dice = sim._dice
        counters = sim._counters
        limits = sim.limits
        if faults.delay_s > 0:
            counters.fault(FaultKind.DELAY)
            time.sleep(faults.delay_s)
        try:
            root = etree.fromstring(body, _PARSER)
        except etree.XMLSyntaxError as e:
            line, position = e.position
            self._refuse(sim, "schema_validation", soap.schema_violation(str(e), line, position))
            return
        depth, deepest = _depth(root, limits.max_read_depth if limits is not None else None)
        with counters.lock:
            counters.max_depth = max(counters.max_depth, depth)
        if deepest is not None and limits is not None:
            line, position = _position(body, limits.max_read_depth)
            self._refuse(
                sim, "max_depth", soap.max_depth_exceeded(limits.max_read_depth, line, position)
            )
            return
        header = root.find(f"{{{SOAP_NS}}}Header")
        soap_body = root.find(f"{{{SOAP_NS}}}Body")
        if soap_body is None or len(soap_body) == 0:
            err = EwsError("ErrorSchemaValidation", "The request has no SOAP body.", fault=True)
            self._refuse(sim, "schema_validation", err)
            return
        request = soap_body[0]
        operation = etree.QName(request).localname
        with counters.lock:
            counters.requests[operation] += 1
        if limits is not None:
            refusal = _version_refusal(header, sim.exchange)
            if refusal is not None:
                self._refuse(sim, "server_version", refusal)
                return
        if sim._schema is not None:
            violation = _schema_violation(sim._schema, header, request)
            if violation is not None:
                self._refuse(sim, "schema_validation", violation)
                return
        busy_kind = None
        if faulty and faults.max_concurrency is not None and in_flight > faults.max_concurrency:
            busy_kind = FaultKind.CONCURRENCY
        elif faulty and dice.roll(faults.server_busy_rate):
            busy_kind = FaultKind.SERVER_BUSY
        if busy_kind is not None:
            counters.fault(busy_kind)
            with counters.lock:
                counters.busy_backoff_ms.append(faults.backoff_ms)
            self._answer = "busy"
            self._hint_s = faults.backoff_ms / 1000
            self._fault(sim, soap.server_busy(faults.backoff_ms))
            return
        if faulty and dice.roll(faults.internal_busy_rate):
            counters.fault(FaultKind.INTERNAL_BUSY)
            self._answer = "internal_busy"
            ctx.internal_busy = dice.uniform()
        ctx.header = header
        try:
            answer = sim._operations.dispatch(operation, request, ctx)
        except EwsError as e:
            self._fault(sim, e)
            return
        except Exception as e:  # a simulator bug must not look like a network fault
            traceback.print_exc()
            err = EwsError("ErrorInternalServerError", f"Simulator error: {e!r}", fault=True)
            self._fault(sim, err)
            return
        if operation == "CreateItem":
            created = answer.count('ResponseClass="Success"')
            with counters.lock:
                counters.items_created += created
        if faulty and dice.roll(faults.lost_answer_rate):
            counters.fault(FaultKind.LOST_ANSWER)
            self._answer = "lost"
            self._reset()
            return
        data = sim._answer(answer, fault=False)
        # the finds are answered: their results stop counting against the caller's budget now,
        # not after the client already has the answer and may have sent its next request
        sim._budgets.release_find(ctx.user, ctx.find_charged)
        ctx.find_charged = 0
        self._send(200, data)


# What IIS shows a remote client for any 404, 404.13 included (its custom error page).
_IIS_404 = (
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
    '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n'
    '<html xmlns="http://www.w3.org/1999/xhtml">\n<head>\n'
    '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"/>\n'
    "<title>404 - File or directory not found.</title>\n</head>\n<body>\n"
    '<div id="header"><h1>Server Error</h1></div>\n<div id="content">\n'
    ' <div class="content-container"><fieldset>\n'
    "  <h2>404 - File or directory not found.</h2>\n"
    "  <h3>The resource you are looking for might have been removed, had its name changed, "
    "or is temporarily unavailable.</h3>\n"
    " </fieldset></div>\n</div>\n</body>\n</html>\n"
)


def _depth(root: etree._Element, limit: int | None) -> tuple[int, etree._Element | None]:
    """The nesting depth of the request in elements, the Envelope being 1, as WCF's reader
    counts it against XmlDictionaryReaderQuotas.MaxDepth; and the first element deeper than
    `limit`, if any."""
    deepest = 1
    stack = [(root, 1)]
    while stack:
        elem, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if limit is not None and depth > limit:
                return depth, elem
        stack.extend((child, depth + 1) for child in elem if isinstance(child.tag, str))
    return deepest, None


_TAG = re.compile(rb"<(/?)([^\s/>!?]+)[^>]*?(/?)>|<!--.*?-->|<\?.*?\?>|<!\[CDATA\[.*?\]\]>", re.S)


def _position(body: bytes, limit: int) -> tuple[int, int]:
    """Line and position (1-based, of the element's name) where the reader passes `limit`."""
    depth = 0
    for match in _TAG.finditer(body):
        closing, name, empty = match.group(1), match.group(2), match.group(3)
        if name is None:
            continue
        if closing:
            depth -= 1
            continue
        depth += 1
        if depth > limit:
            start = match.start()
            line_start = body.rfind(b"\n", 0, start) + 1
            return body.count(b"\n", 0, start) + 1, start - line_start + 2
        if empty:
            depth -= 1
    return 1, 1


def _version_refusal(header: etree._Element | None, build: ExchangeBuild) -> EwsError | None:
    """A RequestServerVersion this server does not speak: ErrorInvalidServerVersion for a
    version of the schema newer than the server, ErrorInvalidRequest for a name the schema
    does not know (Exchange 2019 answered "Exchange2019" so: exchangelib issue #927)."""
    if header is None:
        return None
    requested = header.find(f"{{{T_NS}}}RequestServerVersion")
    if requested is None:
        return None
    version = requested.get("Version", "")
    if version in build.accepts:
        return None
    if version in SCHEMA_NAMES:
        return EwsError("ErrorInvalidServerVersion", fault=True)
    return EwsError("ErrorInvalidRequest", fault=True)


def _schema_violation(
    schema: ews_schema.EwsSchema, header: etree._Element | None, request: etree._Element
) -> EwsError | None:
    """The first part of the request that Microsoft's schema refuses: the EWS header elements,
    then the operation (the SOAP envelope itself is not in the EWS schema)."""
    parts = (
        []
        if header is None
        else [h for h in header if isinstance(h.tag, str) and etree.QName(h).namespace == T_NS]
    )
    for part in [*parts, request]:
        violation = schema.check(part)
        if violation is not None:
            return soap.schema_violation(violation.text, violation.line, violation.position)
    return None


_OPERATION = re.compile(rb"<(?:[A-Za-z0-9_]+:)?Body[^>]*>\s*<(?:[A-Za-z0-9_]+:)?([A-Za-z]+)")


def _operation_name(body: bytes) -> str | None:
    """The EWS operation of a request, from the first element in its SOAP Body (a look at the
    first few kilobytes: the body may be a 40 MB CreateItem)."""
    found = _OPERATION.search(body, 0, 64 * 1024)
    return found.group(1).decode() if found else None


_NO_LIMITS = MailboxLimits()


class SchemaViolations(AssertionError):
    """The simulator wrote answers that Microsoft's EWS schema refuses (a simulator bug)."""

    def __init__(self, violations: list[str]) -> None:
        shown = "\n".join(violations[:5])
        more = f"\n... and {len(violations) - 5} more" if len(violations) > 5 else ""
        super().__init__(
            f"{len(violations)} answer(s) of the EWS simulator do not match the "
            f"schema:\n{shown}{more}"
        )
        self.violations = violations


def _answer_violation(schema: ews_schema.EwsSchema, data: bytes, fault: bool) -> str | None:
    root = etree.fromstring(data, _PARSER)
    header = root.find(f"{{{SOAP_NS}}}Header")
    body = root.find(f"{{{SOAP_NS}}}Body")
    assert body is not None
    parts = [] if header is None else [h for h in header if isinstance(h.tag, str)]
    if not fault:
        # a Fault is SOAP's own, not in the EWS schema (its MessageXml is open content anyway)
        parts += [b for b in body if isinstance(b.tag, str)]
    for part in parts:
        violation = schema.check(part)
        if violation is not None:
            return f"{etree.QName(part).localname}: {violation.text}"
    return None


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


class EwsSimulator:
    """An Exchange Web Services endpoint over real HTTP, backed by SQLite in ``data_dir``."""

    def __init__(
        self,
        data_dir: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        users: dict[str, str] | None = None,
        faults: Faults | None = None,
        auth: str | Iterable[str] = "basic",
        token_check: TokenCheck | None = None,
        ntlm_domain: str = DEFAULT_DOMAIN,
        strict: bool = True,
        validate: bool | None = None,
        exchange: str = DEFAULT_EXCHANGE,
        limits: ExchangeLimits | None = None,
    ) -> None:
        """strict: refuse what Exchange refuses (read depth, EWSMaxConcurrency,
        EWSFindCountLimit, unknown server versions; see ExchangeLimits); False for tests that
        need a lenient server. validate: check every request against Microsoft's EWS schema
        (ErrorSchemaValidation when it does not match) and every answer the simulator writes
        (`stop()` raises SchemaViolations if one did not match). None means "as strict": the
        schema must then be found, or SchemaNotFound says where to put it. exchange: "2013",
        "2016" or "2019", the build the simulator passes for. auth: the schemes the EWS virtual
        directory takes, "basic", "ntlm", "oauth2" or several (auth.py); "oauth2" needs
        token_check, which names the caller of a bearer token or raises TokenRefused; NTLM
        accounts answer as `ntlm_domain\\user` or `user`."""
        self.data_dir = Path(data_dir)
        self.host = host
        self._requested_port = port
        self.accounts = ServiceAccounts(
            {k.lower(): (k, v) for k, v in (users or DEFAULT_USERS).items()}, domain=ntlm_domain
        )
        self._auth = Authenticator(
            (auth,) if isinstance(auth, str) else tuple(auth), self.accounts, token_check
        )
        self.exchange: ExchangeBuild = exchange_build(exchange)
        self._limits = limits or ExchangeLimits()
        self.strict = strict
        validate = strict if validate is None else validate
        self._schema = ews_schema.load() if validate else None
        self._dice = FaultDice(faults or Faults())
        self._counters = _Counters()
        self._budgets = Budgets()
        self._mailbox_limits: dict[int, MailboxLimits] = {}
        self._violations: list[str] = []
        self._violations_lock = threading.Lock()
        self._store = Store(self.data_dir)
        self._operations = Operations(
            self._store,
            Policy(
                limits=lambda: self.limits,
                budgets=self._budgets,
                max_message_bytes=lambda: self._dice.faults.max_message_bytes,
                mailbox_limits=lambda mailbox_id: self._mailbox_limits.get(mailbox_id, _NO_LIMITS),
                short_page=self._short_page,
                count_fault=lambda kind: self._counters.fault(kind),
                count_refusal=lambda what: self._counters.refusal(what),
            ),
        )
        self._rules = InboxRules(self._operations, self._store)
        self._rules.install()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = port

    @property
    def limits(self) -> ExchangeLimits | None:
        """Exchange's limits in force; None for a lenient simulator."""
        return self._limits if self.strict else None

    @property
    def validates(self) -> bool:
        return self._schema is not None

    def _short_page(self, entries: int) -> int:
        faults = self._dice.faults
        if entries < 2 or not self._dice.roll(faults.short_page_rate):
            return entries
        self._counters.fault(FaultKind.SHORT_PAGE)
        return 1 + int(self._dice.uniform() * (entries - 1))

    def _answer(self, body: str, *, fault: bool) -> bytes:
        """The envelope of an answer, checked against the schema when validating."""
        data = soap.envelope(body, None if fault else self.exchange.header)
        if self._schema is not None:
            problem = _answer_violation(self._schema, data, fault)
            if problem is not None:
                # a bug of the simulator: send the answer anyway (the client's behaviour is
                # part of what a test sees), say so now, and fail the test at stop()
                print(f"EWS simulator: invalid answer: {problem}", file=sys.stderr, flush=True)
                with self._violations_lock:
                    self._violations.append(problem)
        return data

    def answer_violations(self) -> list[str]:
        """Answers of this simulator that did not match Microsoft's schema (should be none)."""
        with self._violations_lock:
            return list(self._violations)

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{EWS_PATH}"

    def start(self) -> None:
        if self._server is not None:
            return
        server = _Server((self.host, self._requested_port), _Handler)
        server.sim = self
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="ews-simulator",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._store.close()
        # A stopped simulator can be started again on the same data directory.
        self._store = Store(self.data_dir)
        self._operations._store = self._store
        self._rules._store = self._store
        violations = self.answer_violations()
        if violations:
            raise SchemaViolations(violations)

    def __enter__(self) -> EwsSimulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- configuration --------------------------------------------------------------------

    def check_password(self, user: str, password: str) -> str | None:
        """The canonical user name when the password matches; domain\\user and UPN forms
        accepted."""
        return self.accounts.check_password(user, password)

    def set_account_state(
        self, user: str, *, locked: bool = False, password_expired: bool = False
    ) -> None:
        """Lock a service account out (too many wrong passwords in Active Directory), or let its
        password expire: both are refused with 401 from then on, a locked one with Windows'
        words for it (auth.py)."""
        name = self.accounts.canonical(user)
        if name is None:
            raise KeyError(f"no service account {user!r}")
        for flag, names in (
            (locked, self.accounts.locked),
            (password_expired, self.accounts.expired),
        ):
            if flag:
                names.add(name.lower())
            else:
                names.discard(name.lower())
        if "ntlm" in self._auth.schemes:
            register_ntlm_accounts(self.accounts)

    def add_mailbox(
        self, address: str, *, allow: set[str] | None = None, culture: str = DEFAULT_CULTURE
    ) -> None:
        """A mailbox whose default folders are named in `culture`'s language ("es-MX": Bandeja de
        entrada, Elementos enviados, Calendario, ...; see locales.py). allow: the service users
        that may open it (None: all)."""
        self._store.add_mailbox(address, allow, culture)

    def set_faults(self, faults: Faults) -> None:
        self._dice.replace(faults)

    def set_limits(self, limits: ExchangeLimits) -> None:
        """Exchange's limits for a strict simulator (defaults: ExchangeLimits())."""
        self._limits = limits

    def set_mailbox_limits(
        self,
        address: str,
        *,
        max_receive_bytes: int | None = None,
        prohibit_send_receive_bytes: int | None = None,
    ) -> None:
        """The mailbox's MaxReceiveSize and ProhibitSendReceiveQuota (None: unlimited). Kept in
        memory: a new simulator on the same data directory starts without them."""
        self._mailbox_limits[self._mailbox_id(address)] = MailboxLimits(
            max_receive_bytes=max_receive_bytes,
            prohibit_send_receive_bytes=prohibit_send_receive_bytes,
        )

    @property
    def faults(self) -> Faults:
        return self._dice.faults

    def set_outlook_rule_blob(self, address: str, exists: bool = True) -> None:
        """Whether Outlook keeps client-side rules for `address` (GetInboxRules shows it)."""
        self._rules.set_outlook_rule_blob(address, exists)

    def set_rules_quota(self, quota_bytes: int) -> None:
        """Every mailbox's inbox rules quota (Exchange: Set-Mailbox -RulesQuota; 64 KB default)."""
        self._rules.quota = quota_bytes

    # --- inspection -----------------------------------------------------------------------

    def _mailbox_id(self, address: str) -> int:
        mailbox = self._store.mailbox_by_address(address)
        if mailbox is None:
            raise KeyError(f"no mailbox {address!r} in the simulator")
        return mailbox.id

    def folders(self, address: str) -> list[SimFolder]:
        rows = self._store.all_folders(self._mailbox_id(address))
        by_id = {f.id: f for f in rows}

        def path(folder: FolderRow) -> tuple[str, ...]:
            names: list[str] = []
            current: FolderRow | None = folder
            while current is not None and current.distinguished not in ("root", "msgfolderroot"):
                names.append(current.name)
                current = by_id.get(current.parent_id) if current.parent_id is not None else None
            return tuple(reversed(names))

        return [
            SimFolder(
                id=ids.encode(ids.FOLDER, f.mailbox_id, f.id),
                parent_id=None
                if f.parent_id is None
                else ids.encode(ids.FOLDER, f.mailbox_id, f.parent_id),
                name=f.name,
                folder_class=f.folder_class,
                distinguished=f.distinguished,
                path=path(f),
            )
            for f in rows
        ]

    def items(self, address: str, folder_id: str | None = None) -> list[SimItem]:
        mailbox_id = self._mailbox_id(address)
        row_folder = None if folder_id is None else ids.decode(folder_id, ids.FOLDER).row_id
        item_ids = self._store.folder_items(mailbox_id, row_folder)
        if row_folder is None:  # what the user sees: not the Recoverable Items dumpster
            item_ids = visible_items(self._store, mailbox_id, item_ids)
        rows = self._store.items_by_id(item_ids, with_mime=True)
        props = self._store.props_by_item(item_ids)
        result = []
        for item_id in item_ids:
            row = rows[item_id]
            extended = {key: p.value for key, p in props[item_id].items()}
            extended[tag_key(PR_MESSAGE_FLAGS)] = str(row.message_flags)
            extended[tag_key(PR_MESSAGE_DELIVERY_TIME)] = row.received
            if row.sent is not None:
                extended[tag_key(PR_CLIENT_SUBMIT_TIME)] = row.sent
            created = _parse_time(row.created)
            received = _parse_time(row.received)
            assert created is not None and received is not None
            result.append(
                SimItem(
                    id=ids.encode(ids.ITEM, row.mailbox_id, row.id),
                    folder_id=ids.encode(ids.FOLDER, row.mailbox_id, row.folder_id),
                    mime=row.mime or b"",
                    is_read=row.is_read,
                    is_draft=bool(row.message_flags & MSGFLAG_UNSENT),
                    message_flags=row.message_flags,
                    categories=list(row.categories),
                    extended=extended,
                    subject=row.subject,
                    created=created,
                    received=received,
                    sent=_parse_time(row.sent),
                    item_class=row.item_class,
                    size=row.size,
                )
            )
        return result

    def stats(self) -> SimStats:
        return self._counters.snapshot()

    def reset_stats(self) -> None:
        with self._counters.lock:
            in_flight = self._counters.in_flight
            self._counters = _Counters()
            self._counters.in_flight = in_flight


def serve(
    port: int,
    data_dir: Path | str,
    users: dict[str, str] | None = None,
    faults: Faults | None = None,
    mailboxes: Iterable[str] = (),
    *,
    host: str = "127.0.0.1",
    announce: Callable[[str], object] | None = None,
    exchange: str = DEFAULT_EXCHANGE,
    auth: str | Iterable[str] = "basic",
    culture: str = DEFAULT_CULTURE,
) -> None:
    """Run a simulator until SIGINT/SIGTERM (the ``migrator ews-simulator`` command); strict,
    and checked against Microsoft's schema when it can be found (a warning says when not)."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    validate = ews_schema.locate() is not None
    if not validate:
        print(
            "ews-simulator: Microsoft's EWS schema was not found (see docs/ews-simulator.md); "
            "requests and answers are not checked against it",
            file=sys.stderr,
            flush=True,
        )
    sim = EwsSimulator(
        data_dir,
        host=host,
        port=port,
        users=users,
        faults=faults,
        validate=validate,
        exchange=exchange,
        auth=auth,
    )
    try:
        for address in mailboxes:
            sim.add_mailbox(address, culture=culture)
        sim.start()
        if announce is None:
            print(sim.url, flush=True)
        else:
            announce(sim.url)
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
