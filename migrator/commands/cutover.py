"""`cutover`: switch a wave of batches from Postfix's local delivery to the target, verified,
with a final delta pass after the switch and a way back (`--rollback`).

One command per wave; each step is recorded in the state database (cutover_waves,
cutover_steps) with its time, and running the same command again resumes the wave:

1. preconditions: every account has a completed pass and no failed messages (exceptions are
   listed and need --force), then a last delta pass;
2. route: the accounts become `switching`, the plan's block of the transport map is written
   from the state (every switching, switched or cut-over account), built with postmap beside
   the map, renamed into place, and Postfix reloaded;
3. verify: the built map answers the next hop for every address, and the running Postfix's
   address resolver sends every address of the wave there while a colleague still on Postfix
   resolves as before; any mismatch (or a failed reload) takes the wave out again, and its
   accounts are as before it;
4. the accounts are `switched`; the final delta pass (the same command run again, or after
   [cutover] final_delta_after) picks up what was delivered to the old mailbox until the
   switch, once Postfix's active queue holds nothing more for them: then `cut-over`.

`--rollback` takes the selection's accounts out of the map, reloads, verifies that Postfix
delivers them locally again, and clears their cut-over state (their status is untouched).
The state is always written before the map changes, so after a crash the state says at
least what the map holds, and the next run makes them agree.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from migrator.adapters.postfix import Postfix, Resolver, install_map, map_key_problem, read_map
from migrator.adapters.postfix.map_file import Backup, conflicts
from migrator.commands.nexthop import nexthop_result
from migrator.commands.routing import nexthop_for
from migrator.commands.run import RunRequest, run
from migrator.commands.state import check_selection, plan_store
from migrator.engine.crashpoints import reached as crash_point
from migrator.engine.progress import Progress
from migrator.model.cutover import ROUTED, CutoverState, StepStatus, WaveStatus
from migrator.model.errors import (
    EXIT_OK,
    EXIT_PARTIAL,
    MigratorError,
    PlanError,
    PostfixError,
    UsageError,
)
from migrator.model.plan import CutoverSettings, Plan
from migrator.model.scope import Scope
from migrator.model.status import PASS_COMPLETED, Status
from migrator.store import Store
from migrator.store import cutover as state
from migrator.store.types import utcnow

_POLL_S = 0.25  # how often Postfix is asked again while it takes up a reload or delivers its queue
_SHOWN = 10  # addresses named in a message; the rest are counted


@dataclass
class CutoverRequest:
    batches: Sequence[str] = ()
    addresses: Sequence[str] = ()
    force: bool = False
    rollback: bool = False
    workers: int | None = None


@dataclass
class CutoverReport:
    plan: str
    kind: str  # switch | rollback
    wave: int
    resumed: bool
    nexthop: str
    transport_map: str
    steps: list[dict[str, Any]] = field(default_factory=list)  # what this command did, in order
    exceptions: list[dict[str, str]] = field(default_factory=list)
    left_out: list[dict[str, str]] = field(default_factory=list)
    switched: int = 0  # accounts switched by this command
    cut_over: int = 0  # accounts whose final delta this command finished
    reverted: int = 0
    waiting_final: int = 0  # switched, final delta still to come
    final_delta_at: datetime | None = None
    not_finished: list[dict[str, str]] = field(default_factory=list)  # final delta not done
    exit_code: int = EXIT_OK

    def as_json(self) -> dict[str, Any]:
        return {
            "plan": self.plan, "kind": self.kind, "wave": self.wave, "resumed": self.resumed,
            "nexthop": self.nexthop, "transport_map": self.transport_map, "steps": self.steps,
            "exceptions": self.exceptions, "left_out": self.left_out, "switched": self.switched,
            "cut_over": self.cut_over, "reverted": self.reverted,
            "waiting_final": self.waiting_final,
            "final_delta_at": self.final_delta_at.isoformat() if self.final_delta_at else None,
            "not_finished": self.not_finished, "exit_code": self.exit_code,
        }  # fmt: skip


class CutoverStopped(MigratorError):
    """A wave stopped before its switch went live: nothing routes differently than before."""

    def __init__(self, message: str, report: CutoverReport, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.report = report


def settings_of(plan: Plan) -> CutoverSettings:
    if plan.cutover is None:
        raise UsageError(
            f"plan {plan.name!r} has no [cutover] section: migrator does not know which Postfix "
            "map to write",
            hint=(
                'add [cutover] with transport_map = "hash:/etc/postfix/transport_migrated" '
                "(docs/plans.md)"
            ),
        )
    return plan.cutover


def _nexthop(plan: Plan, settings: CutoverSettings) -> str:
    if settings.nexthop is None:
        return nexthop_for(plan, None)
    try:
        return nexthop_result(settings.nexthop)
    except UsageError as exc:
        raise PlanError(
            plan.file, "cutover.nexthop", exc.message.replace("--nexthop ", "", 1), hint=exc.hint
        ) from None


@contextlib.contextmanager
def _map_lock(path: Path) -> Iterator[None]:
    """One cutover at a time per map file (on this host): two would overwrite each other."""
    lock = path.with_name(path.name + ".migrator-lock")
    try:
        fd = open(lock, "a")  # noqa: SIM115 - held for the block
    except OSError as exc:
        raise PostfixError(
            f"cannot create {lock}: {exc.strerror}",
            hint=f"this user must be able to write in {path.parent}",
        ) from None
    with fd:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"another `migrator cutover` is working on {path}",
                hint="wait for it to finish, then run this one",
            ) from None
        yield


def cutover(
    plan: Plan,
    request: CutoverRequest,
    *,
    state_url: str | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    say: Callable[[str], None] = lambda _text: None,
) -> CutoverReport:
    settings = settings_of(plan)
    if not request.batches and not request.addresses:
        raise UsageError(
            "which accounts? cutover needs --batch or --account", hint="e.g. --batch Office001"
        )
    nexthop = _nexthop(plan, settings)
    map_path = Path(settings.transport_map)
    with _map_lock(map_path), plan_store(plan, state_url, access="write") as (store, plan_id):
        check_selection(
            store,
            plan_id,
            plan,
            batches=request.batches,
            addresses=request.addresses,
            in_scope_only=not request.rollback,
        )
        kind = "rollback" if request.rollback else "switch"
        selection = {
            "batches": sorted(set(request.batches)),
            "accounts": sorted({a.strip().lower() for a in request.addresses}),
        }
        wave, new = state.open_wave(
            store, plan_id, kind, selection, state.selection_key(request.batches, request.addresses)
        )
        report = CutoverReport(plan.name, kind, int(wave["id"]), not new, nexthop, str(map_path))
        job = _Wave(
            plan,
            settings,
            store,
            plan_id,
            wave,
            nexthop,
            request,
            report,
            say,
            state_url,
            progress,
            stop,
        )
        if request.rollback:
            job.rollback()
        else:
            job.switch()
        return report


@dataclass
class _Wave:
    plan: Plan
    settings: CutoverSettings
    store: Store
    plan_id: int
    wave: dict[str, Any]
    nexthop: str
    request: CutoverRequest
    report: CutoverReport
    say: Callable[[str], None]
    state_url: str | None
    progress: Progress | None
    stop: threading.Event | None

    def __post_init__(self) -> None:
        self.postfix = Postfix(self.settings)
        self.map_path = Path(self.settings.transport_map)
        self.wave_id = int(self.wave["id"])
        self._params: dict[str, str] | None = None

    # --- steps as recorded -----------------------------------------------------------------
    @contextlib.contextmanager
    def _step(self, name: str) -> Iterator[dict[str, Any]]:
        step_id = state.start_step(self.store, self.wave_id, name)
        detail: dict[str, Any] = {}
        started = time.monotonic()
        try:
            yield detail
        except BaseException as exc:
            detail.setdefault(
                "error", str(exc) if isinstance(exc, MigratorError) else type(exc).__name__
            )
            with contextlib.suppress(MigratorError):
                state.finish_step(self.store, step_id, StepStatus.FAILED, detail)
            self.report.steps.append({"step": name, "status": StepStatus.FAILED, **detail})
            raise
        detail["seconds"] = round(time.monotonic() - started, 3)
        state.finish_step(self.store, step_id, StepStatus.DONE, detail)
        self.report.steps.append({"step": name, "status": StepStatus.DONE, **detail})

    def _fail_wave(self, error: str) -> None:
        state.update_wave(self.store, self.wave_id, status=WaveStatus.FAILED, error=error[:4000])

    # --- the switch ------------------------------------------------------------------------
    def switch(self) -> None:
        self._parameters()  # a Postfix whose main.cf cannot be read stops the wave before anything
        resuming = state.wave_accounts(
            self.store, self.wave_id, (CutoverState.SWITCHING, CutoverState.SWITCHED)
        )
        if not resuming:
            ids = self._prepare()
            if not ids:
                return
            crash_point("cutover.before-mark")
            state.begin_switch(self.store, self.plan_id, self.wave_id, ids)
            state.update_wave(self.store, self.wave_id, accounts=len(ids), nexthop=self.nexthop,
                              transport_map=str(self.map_path), status=WaveStatus.RUNNING,
                              error=None)  # fmt: skip
        switching = state.wave_accounts(self.store, self.wave_id, (CutoverState.SWITCHING,))
        just_switched = False
        if switching:
            self.say(f"routing {len(switching):,} accounts to {self.nexthop} in {self.map_path}")
            self._route_and_verify([str(r["address"]) for r in switching])
            now = utcnow()
            crash_point("cutover.before-confirm")
            self.report.switched = state.confirm_switch(self.store, self.plan_id, self.wave_id, now)
            state.update_wave(
                self.store, self.wave_id, status=WaveStatus.SWITCHED, switched_at=now, error=None
            )
            self.wave["switched_at"] = now
            just_switched = True
            self.say(
                f"switched {self.report.switched:,} accounts: Postfix sends their new mail to "
                f"{self.nexthop}"
            )
        self._final_delta(just_switched)

    def _prepare(self) -> list[int]:
        """Preconditions and the last delta pass; the ids of the accounts to switch."""
        with self._step("preconditions") as detail:
            rows = state.selected_accounts(
                self.store, self.plan_id, self.request.batches, self.request.addresses
            )
            candidates, exceptions, left_out, done = self._check(rows, delta_started=None)
            detail.update(accounts=len(rows), candidates=len(candidates),
                          exceptions=len(exceptions),
                          already=len(done), left_out=len(left_out))  # fmt: skip
            self._stop_on(exceptions, left_out, "before the last delta pass")
        if not candidates:
            state.update_wave(
                self.store,
                self.wave_id,
                status=WaveStatus.FINISHED,
                finished_at=utcnow(),
                error=None,
            )
            self.say(
                f"nothing to switch: {len(done):,} accounts of this selection are switched already"
            )
            return []
        with self._step("last-delta") as detail:
            started = utcnow()
            self._delta(candidates, detail, "last delta pass")
            rows = state.accounts_by_id(self.store, [r["id"] for r in candidates])
            candidates, exceptions, left_out, _done = self._check(rows, delta_started=started)
            detail.update(exceptions=len(exceptions))
            self._stop_on(exceptions, left_out, "after the last delta pass")
        return [int(r["id"]) for r in candidates]

    def _check(
        self, rows: list[dict[str, Any]], *, delta_started: datetime | None
    ) -> tuple[
        list[dict[str, Any]], list[dict[str, str]], list[dict[str, str]], list[dict[str, Any]]
    ]:
        """(accounts to switch, exceptions that need --force, accounts left out because they
        cannot be routed, accounts switched already)."""
        candidates, exceptions, left_out, done = [], [], [], []
        for row in rows:
            address = str(row["address"] or row["key"])
            if row["cutover"] in (CutoverState.SWITCHED, CutoverState.CUT_OVER):
                done.append(row)
                continue
            if row["cutover"] == CutoverState.SWITCHING and row["cutover_wave"] != self.wave_id:
                exceptions.append(
                    {
                        "account": address,
                        "problem": (
                            f"being switched by wave {row['cutover_wave']}, which did not finish"
                        ),
                    }
                )
                continue
            problem = (
                map_key_problem(str(row["address"])) if row["address"] else "it has no address"
            )
            if problem:
                left_out.append(
                    {"account": address, "problem": f"cannot be a transport_maps key: {problem}"}
                )
                continue
            why = _precondition(row, delta_started)
            if why:
                exceptions.append({"account": address, "problem": why})
            candidates.append(row)
        return candidates, exceptions, left_out, done

    def _stop_on(
        self, exceptions: list[dict[str, str]], left_out: list[dict[str, str]], when: str
    ) -> None:
        self.report.exceptions, self.report.left_out = exceptions, left_out
        blocking = [e for e in exceptions if "being switched by wave" in e["problem"]]
        listed = blocking or [*exceptions, *left_out]
        if blocking or (listed and not self.request.force):
            shown = "; ".join(f"{e['account']}: {e['problem']}" for e in listed[:_SHOWN])
            more = len(listed) - _SHOWN
            message = f"{len(listed):,} accounts are not ready for the switch ({when}): {shown}" + (
                f"; and {more:,} more" if more > 0 else ""
            )
            self._fail_wave(message)
            hint = (
                "finish or roll back that wave first; nothing was switched" if blocking else
                "fix them (`migrator show ADDR` says how), or go ahead with --force: accounts not "
                "ready are switched anyway, those whose address cannot be routed are left out; "
                "nothing was switched"
            )  # fmt: skip
            raise CutoverStopped(message, self.report, hint=hint)
        if left_out:
            self.say(
                f"{len(left_out):,} accounts are left out: their address cannot be a "
                "transport_maps key"
            )

    def _delta(
        self, rows: list[dict[str, Any]], detail: dict[str, Any], what: str, *, exact: bool = False
    ) -> None:
        """A delta pass through the engine (as `migrator run`): over the command's selection,
        or, with `exact`, over these accounts only."""
        self.say(f"{what} over {len(rows):,} accounts")
        workers = self.request.workers
        if exact:
            requests = [RunRequest(addresses=[str(r["address"]) for r in rows], workers=workers)]
        else:
            requests = (
                [RunRequest(batches=self.request.batches, workers=workers)]
                if self.request.batches
                else []
            )
            if self.request.addresses:
                requests.append(RunRequest(addresses=self.request.addresses, workers=workers))
        moved = 0
        for one in requests:
            summary = run(
                self.plan, one, state_url=self.state_url, progress=self.progress, stop=self.stop
            )
            moved += summary.messages_done
            if summary.stopped:
                raise MigratorError(
                    f"the {what} was interrupted; run the same cutover command again to resume"
                )
        detail["messages"] = moved

    # --- routing ---------------------------------------------------------------------------
    def _parameters(self) -> dict[str, str]:
        if self._params is None:
            values = self.postfix.parameters(
                "transport_maps", "queue_directory", "rewrite_service_name"
            )
            listed = [
                item for item in values.get("transport_maps", "").replace(",", " ").split() if item
            ]
            mine = f"{self.settings.map_type}:{self.map_path}"
            if not any(item in (mine, f"proxy:{mine}") for item in listed):
                config = self.settings.config_directory
                raise PostfixError(
                    f"{self.postfix.instance} does not read {mine}: its transport_maps is "
                    f"{values.get('transport_maps') or '(empty)'!r}",
                    hint="add it in front: postconf "
                    f"{'-c ' + config + ' ' if config else ''}"
                    f"-e 'transport_maps = {', '.join([mine, *listed])}' && postfix reload; "
                    "nothing was switched",
                )
            self._params = values
        return self._params

    def _routes(self, leave_out: set[str] = frozenset()) -> dict[str, str]:  # type: ignore[assignment]
        return {
            a: self.nexthop
            for a in state.routed_addresses(self.store, self.plan_id)
            if a not in leave_out
        }

    def _block(self, routes: dict[str, str], text: Any) -> dict[str, str]:
        """What migrator's block lists for `routes`: an address the administrator's own line
        routes the same way already is left to that line."""
        return {k: v for k, v in routes.items() if k not in text.others}

    def _install(self, routes: dict[str, str]) -> Backup:
        text = read_map(self.map_path, self.plan.name)
        clash = conflicts(text, routes)
        if clash:
            raise PostfixError(
                f"{self.map_path} routes {len(clash):,} of these addresses elsewhere in lines not "
                f"written by migrator: {'; '.join(clash[:_SHOWN])}",
                hint="remove or change those lines (the admin's own), then run the command again",
            )
        return install_map(
            self.map_path, text.render(self.plan.name, self._block(routes, text)),
            self.settings.map_type,
            lambda path: self.postfix.postmap(self.settings.map_type, path),
        )  # fmt: skip

    def _route_and_verify(self, addresses: list[str]) -> None:
        wave = set(addresses)
        block_before: dict[str, str] | None = None
        backup: Backup | None = None
        with self._step("route") as detail:
            try:
                self._parameters()
                block_before = read_map(self.map_path, self.plan.name).block
                colleagues = self._colleagues(addresses)
                before = self._resolve(list(colleagues.values())) if colleagues else {}
                routes = self._routes()
                backup = self._install(routes)
                crash_point("cutover.before-reload")
                detail.update(addresses=len(addresses), map_entries=len(routes))
                self.postfix.reload()
            except PostfixError as exc:
                self._back_out(wave, block_before, backup, exc)
                raise
        with self._step("verify") as detail:
            try:
                self._verify(routes, addresses, colleagues, before, detail)
            except PostfixError as exc:
                self._back_out(wave, block_before, backup, exc)
                raise
        backup.discard()

    def _colleagues(self, addresses: list[str]) -> dict[str, str]:
        """Per domain of the wave, a colleague whose mail stays on Postfix (to check that it
        does)."""
        skip = set(addresses) | set(state.routed_addresses(self.store, self.plan_id))
        found: dict[str, str] = {}
        for domain in sorted({a.rpartition("@")[2] for a in addresses}):
            other = state.colleague(self.store, self.plan_id, domain, skip)
            if other and not map_key_problem(other):
                found[domain] = other
        return found

    def _resolver(self) -> Resolver:
        params = self._parameters()
        socket_path = (
            Path(params["queue_directory"])
            / "private"
            / (params.get("rewrite_service_name") or "rewrite")
        )
        return Resolver(socket_path, timeout=min(self.settings.postfix_timeout, 30.0))

    def _resolve(self, addresses: list[str]) -> dict[str, str]:
        if not self.settings.resolver:
            return {}
        with self._resolver() as resolver:
            return {a: resolver.resolve(a).result for a in addresses}

    def _verify(self, routes: dict[str, str], wave: list[str], colleagues: dict[str, str],
                before: dict[str, str],
                detail: dict[str, Any]) -> None:  # fmt: skip
        """The built map and the running Postfix route the wave to the next hop; colleagues
        still on Postfix resolve as they did before. Postfix takes up a reload within moments:
        asked again until postfix_timeout."""
        answers = self.postfix.lookup(self.settings.map_type, self.map_path, routes)
        wrong_map = [
            f"{a} -> {answers.get(a, 'not found')}" for a in routes if answers.get(a) != routes[a]
        ]
        detail.update(map_checked=len(routes), map_wrong=len(wrong_map))
        if wrong_map:
            raise PostfixError(
                f"the built map {self.map_path} does not answer {self.nexthop} for "
                f"{len(wrong_map):,} addresses: " + "; ".join(wrong_map[:_SHOWN])
            )
        if not self.settings.resolver:
            detail["resolver"] = "off"
            return
        deadline = time.monotonic() + self.settings.postfix_timeout
        while True:
            now = self._resolve([*wave, *colleagues.values()])
            wrong = [f"{a} goes to {now[a]}" for a in wave if now[a] != self.nexthop]
            moved = [f"colleague {c} now goes to {now[c]} (before: {before.get(c)})"
                     for c in colleagues.values()
                     if before.get(c) is not None and now[c] != before[c]]  # fmt: skip
            if not wrong and not moved:
                break
            if time.monotonic() > deadline:
                detail.update(resolver_wrong=len(wrong) + len(moved))
                raise PostfixError(
                    f"the running {self.postfix.instance} does not route as the map says after "
                    f"{self.settings.postfix_timeout:.0f} s: "
                    + "; ".join([*moved, *wrong][:_SHOWN])
                    + (
                        f"; and {len(wrong) + len(moved) - _SHOWN:,} more"
                        if len(wrong) + len(moved) > _SHOWN
                        else ""
                    ),
                    hint="another transport_maps entry, a virtual alias or relayhost may take "
                    "precedence: `postconf -n` and `postmap -q ADDRESS` on each map show which; "
                    "the wave was taken out again",
                )
            time.sleep(_POLL_S)
        detail.update(
            resolver_checked=len(wave), colleagues={c: now[c] for c in colleagues.values()}
        )
        if not colleagues:
            detail["note"] = "no colleague of these domains is left on Postfix to compare with"

    def _back_out(self, wave: set[str], block_before: dict[str, str] | None, backup: Backup | None,
                  cause: MigratorError) -> None:  # fmt: skip
        """Take the wave out of the map again and forget it was being switched; when Postfix
        cannot be given the map without it, the accounts stay `switching` and the error says so."""
        try:
            without = self._routes(leave_out=wave)
            current = read_map(self.map_path, self.plan.name)
            want = set(self._block(without, current))
            if backup is not None and block_before is not None and set(block_before) == want:
                backup.restore()  # the very files Postfix read before: no postmap needed
            elif set(current.block) != want:
                self._install(without).discard()
            with contextlib.suppress(
                PostfixError
            ):  # a Postfix that cannot reload still re-reads a changed map
                self.postfix.reload()
        except PostfixError as again:
            self._fail_wave(
                f"{cause.message}; taking the wave out again failed too: {again.message}"
            )
            cause.hint = (
                "the accounts stay 'switching' (the map may still route them): fix Postfix, then "
                f"run the same command again (it routes them) or with --rollback; {again.message}"
            )
            return
        abandoned = state.abandon_switch(self.store, self.plan_id, self.wave_id)
        self._fail_wave(cause.message)
        self.say(
            f"the wave was taken out of the map again; {abandoned:,} accounts are as before it"
        )
        cause.hint = (
            cause.hint + "; " if cause.hint else ""
        ) + "nothing was switched: run the same command again once fixed"

    # --- the final delta -------------------------------------------------------------------
    def _final_delta(self, just_switched: bool) -> None:
        switched = state.wave_accounts(self.store, self.wave_id, (CutoverState.SWITCHED,))
        if not switched:
            self._finish_if_done()
            return
        after = self.settings.final_delta_after
        switched_at = self.wave.get("switched_at") or utcnow()
        if just_switched and after is None:
            self.report.waiting_final = len(switched)
            self.say(
                "final delta pass: run the same command again once the users' clients use the "
                f"target ({len(switched):,} accounts wait for it)"
            )
            return
        when = switched_at + timedelta(seconds=after or 0)
        self.report.final_delta_at = when
        self._wait_until(when)
        with self._step("final-delta") as detail:
            self._drain_queue([str(r["address"]) for r in switched], detail)
            started = utcnow()
            self._delta(
                [r for r in switched if r["scope"] == Scope.IN_SCOPE],
                detail,
                "final delta pass",
                exact=True,
            )
            rows = state.accounts_by_id(self.store, [r["id"] for r in switched])
            done = [r for r in rows if _completed_since(r, started)]
            self.report.not_finished = [
                {"account": str(r["address"]),
                 "problem": r["last_error_reason"] or "no completed pass"}
                for r in rows if not _completed_since(r, started)
            ]  # fmt: skip
            crash_point("cutover.before-finish")
            self.report.cut_over = state.finish_accounts(
                self.store, self.plan_id, self.wave_id, [r["id"] for r in done], utcnow()
            )
            detail.update(cut_over=self.report.cut_over, not_finished=len(self.report.not_finished))
        if self.report.not_finished:
            self.report.exit_code = EXIT_PARTIAL
            self.report.waiting_final = len(self.report.not_finished)
        self._finish_if_done()

    def _wait_until(self, when: datetime) -> None:
        seconds = (when - utcnow()).total_seconds()
        if seconds <= 0:
            return
        self.say(
            f"final delta pass at {when:%H:%M:%S} UTC ({seconds:,.0f} s after the switch as the "
            "plan says)"
        )
        stop = self.stop or threading.Event()
        if stop.wait(seconds):
            raise MigratorError(
                "stopped while waiting for the final delta pass; run the same command again to "
                "resume"
            )

    def _drain_queue(self, addresses: list[str], detail: dict[str, Any]) -> None:
        """Mail Postfix resolved for local delivery before the reload may still be in its active
        queue: the final delta waits until it is delivered, so it is in the Maildir to copy."""
        wanted = set(addresses)
        deadline = time.monotonic() + self.settings.postfix_timeout
        while True:
            queued = {a: n for a, n in self.postfix.queued_recipients().items() if a in wanted}
            if not queued:
                return
            if time.monotonic() > deadline:
                shown = ", ".join(f"{a} ({n})" for a, n in sorted(queued.items())[:_SHOWN])
                detail["queued"] = sum(queued.values())
                raise PostfixError(
                    f"Postfix's active queue still holds mail for {len(queued):,} switched "
                    f"accounts after {self.settings.postfix_timeout:.0f} s: {shown}",
                    hint="see `postqueue -p`; run the same command again once it is delivered "
                    "(their new mail already goes to the target)",
                )
            time.sleep(_POLL_S)

    def _finish_if_done(self) -> None:
        left = state.wave_accounts(
            self.store, self.wave_id, (CutoverState.SWITCHING, CutoverState.SWITCHED)
        )
        if not left:
            state.update_wave(
                self.store,
                self.wave_id,
                status=WaveStatus.FINISHED,
                finished_at=utcnow(),
                error=None,
            )

    # --- the way back ----------------------------------------------------------------------
    def rollback(self) -> None:
        self._parameters()
        rows = state.selected_accounts(self.store, self.plan_id, self.request.batches,
                                       self.request.addresses,
                                       in_scope_only=False)  # fmt: skip
        ids = [int(r["id"]) for r in rows if r["cutover"] in (*ROUTED, CutoverState.REVERTING)]
        if not ids:
            state.update_wave(
                self.store, self.wave_id, status=WaveStatus.FINISHED, finished_at=utcnow()
            )
            self.say("nothing to roll back: no account of this selection is switched")
            return
        state.begin_revert(self.store, self.plan_id, ids)
        ids = state.reverting_ids(self.store, self.plan_id, ids)
        addresses = sorted(
            str(r["address"]).lower() for r in rows if int(r["id"]) in set(ids) and r["address"]
        )
        state.update_wave(
            self.store,
            self.wave_id,
            accounts=len(ids),
            nexthop=self.nexthop,
            transport_map=str(self.map_path),
        )
        self.say(f"taking {len(ids):,} accounts out of {self.map_path}")
        backup: Backup | None = None
        with self._step("unroute") as detail:
            try:
                self._parameters()
                backup = self._install(self._routes())  # reverting accounts are not routed
                detail.update(addresses=len(addresses))
                self.postfix.reload()
            except PostfixError as exc:
                if backup is not None:
                    backup.restore()
                state.undo_revert(self.store, self.plan_id, ids)
                self._fail_wave(exc.message)
                exc.hint = (exc.hint + "; " if exc.hint else "") + "nothing was rolled back"
                raise
        with self._step("verify") as detail:
            self._verify_local(addresses, detail)
        if backup is not None:
            backup.discard()
        self.report.reverted = state.confirm_revert(self.store, self.plan_id, self.wave_id, ids)
        state.close_rolled_back_waves(self.store, self.plan_id)
        state.update_wave(
            self.store, self.wave_id, status=WaveStatus.FINISHED, finished_at=utcnow(), error=None
        )
        self.say(
            f"rolled back {self.report.reverted:,} accounts: Postfix delivers their new mail "
            "locally again"
        )

    def _verify_local(self, addresses: list[str], detail: dict[str, Any]) -> None:
        answers = self.postfix.lookup(self.settings.map_type, self.map_path, addresses)
        still = [a for a in addresses if a in answers]
        detail.update(map_checked=len(addresses))
        if still:
            self._fail_wave(f"{len(still):,} addresses are still in {self.map_path}")
            raise PostfixError(
                f"{self.map_path} still routes {len(still):,} addresses after the rollback (lines "
                f"not written by migrator?): {', '.join(still[:_SHOWN])}",
                hint="remove those lines, postmap the map, then run the rollback again",
            )
        if not self.settings.resolver:
            return
        deadline = time.monotonic() + self.settings.postfix_timeout
        while True:
            now = self._resolve(addresses)
            wrong = [f"{a} goes to {now[a]}" for a in addresses if now[a] == self.nexthop]
            if not wrong:
                break
            if time.monotonic() > deadline:
                self._fail_wave(f"{len(wrong):,} addresses still go to {self.nexthop}")
                raise PostfixError(
                    f"the running {self.postfix.instance} still sends {len(wrong):,} rolled-back "
                    f"addresses to {self.nexthop} after {self.settings.postfix_timeout:.0f} s: "
                    f"{'; '.join(wrong[:_SHOWN])}",
                    hint=(
                        "another transport_maps entry routes them (`postconf -n`); run the "
                        "rollback again once fixed"
                    ),
                )
            time.sleep(_POLL_S)
        detail.update(resolver_checked=len(addresses), local=sorted(set(now.values()))[:_SHOWN])


def _precondition(row: dict[str, Any], delta_started: datetime | None) -> str | None:
    """Why an account is not ready to switch (None when it is)."""
    status, passes = row["status"], int(row["passes"] or 0)
    if delta_started is not None and not _completed_since(row, delta_started):
        return f"the last delta pass did not complete ({row['last_error_reason'] or status})"
    if passes == 0:
        return (
            "no completed pass yet (pending)"
            if status == Status.PENDING
            else f"no completed pass yet ({status})"
        )
    if status == Status.FAILED:
        return f"its last pass failed ({row['last_error_reason'] or 'error'})"
    if (
        status == Status.RUNNING
        and row["lease_expires_at"] is not None
        and row["lease_expires_at"] > utcnow()
    ):
        return f"being migrated right now by {row['lease_owner']}"
    if int(row["messages_failed"] or 0):
        return f"{int(row['messages_failed']):,} failed messages"
    return None


def _completed_since(row: dict[str, Any], since: datetime) -> bool:
    last = row["last_pass_at"]
    return row["status"] in PASS_COMPLETED and last is not None and last >= since
