"""`migrator cutover` against a real Postfix (a private instance) with the EWS simulator as the
migration's target and an SMTP sink as the Exchange that Postfix relays switched users' mail to.

Mail is sent through Postfix's SMTP port before, during and after each wave; every message
must end exactly once either in the user's Maildir (and, once the account is cut over, in the
target through the final delta pass) or at the sink.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from migrator.adapters.postfix import Resolver, read_map
from migrator.model.errors import PlanError
from migrator.plan import parse_plan
from tests.fixtures.campaign import Campaign, build_campaign
from tests.fixtures.postfix import PostfixServer, Sink, running_postfix
from tests.fixtures.postfix import private_root as private_root  # noqa: F401 - fixture
from tests.fixtures.postfix import sink as sink  # noqa: F401 - fixture

pytestmark = pytest.mark.postfix
ROUTED = ("switching", "switched", "cut-over")


@dataclass
class World:
    campaign: Campaign
    postfix: PostfixServer
    sent: dict[str, str] = field(default_factory=dict)  # subject -> address

    @property
    def plan(self) -> str:
        return str(self.campaign.plan_path)

    def cli(self, *args: str, env: dict[str, str] | None = None) -> object:
        return self.campaign.cli(*args, "--plan", self.plan, env=env)

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.campaign.state_path)

    def batches(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        with self.db() as db:
            for address, batch in db.execute(
                "SELECT address, batch FROM accounts WHERE scope = 'in_scope' ORDER BY address"
            ):
                found.setdefault(batch, []).append(address)
        return found

    def outsiders(self) -> list[str]:
        with self.db() as db:
            inside = {
                a for (a,) in db.execute("SELECT address FROM accounts WHERE scope = 'in_scope'")
            }
        return [a for a in self.campaign.people if a not in inside]

    def send_each(self, addresses: list[str], label: str) -> None:
        for address in addresses:
            subject = self.postfix.send([address], f"{label} {address}")
            self.sent[subject] = address

    def routed(self) -> set[str]:
        with self.db() as db:
            return {
                a for (a,) in db.execute(f"SELECT address FROM accounts WHERE cutover IN {ROUTED}")
            }

    def cutover_states(self) -> dict[str, str | None]:
        with self.db() as db:
            return dict(
                db.execute(
                    "SELECT address, cutover FROM accounts WHERE scope = 'in_scope'"
                ).fetchall()
            )

    def map_block(self) -> set[str]:
        return set(read_map(self.postfix.transport_map, "t").block)

    def resolved(self, addresses: list[str]) -> dict[str, str]:
        with Resolver(self.postfix.root / "spool" / "private" / "rewrite") as resolver:
            return {a: resolver.resolve(a).result for a in addresses}

    def assert_agree(self) -> None:
        """The map's block, the running Postfix and the state say the same."""
        routed = self.routed()
        assert self.map_block() == routed
        deadline = time.monotonic() + 15
        while True:  # Postfix takes up a changed map within moments
            got = self.resolved(self.campaign.people)
            want = {
                a: self.postfix.sink.nexthop if a in routed else f"virtual:{a.partition('@')[2]}"
                for a in got
            }
            if got == want or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert got == want

    def assert_exactly_once(self) -> None:
        """Every message sent is in its user's Maildir or at the sink, once; a cut-over
        account's target holds its Maildir exactly (the final delta took what came before)."""
        self.postfix.wait_until_delivered()
        for subject, address in self.sent.items():
            local = self.postfix.maildir_subjects(address).count(subject)
            remote = self.postfix.sink_subjects(address).count(subject)
            assert (local, remote) in ((1, 0), (0, 1)), (
                f"{subject!r}: {local} in the Maildir, {remote} at the sink"
            )
        for address, state in self.cutover_states().items():
            if state == "cut-over":
                self.campaign.compare(address)


@pytest.fixture
def world(private_root: Path, sink: Sink) -> Iterator[World]:  # noqa: F811
    with build_campaign(
        private_root / "c", accounts=6, offices=3, messages_per_folder=1
    ) as campaign:
        assert campaign.cli("discover", "--plan", str(campaign.plan_path)).returncode == 0
        first = campaign.cli("run", "--plan", str(campaign.plan_path))
        assert first.returncode == 0, first.stdout + first.stderr
        with running_postfix(
            private_root / "postfix", campaign.root / "vmail", campaign.people, sink
        ) as postfix:
            campaign.plan_path.write_text(campaign.plan_path.read_text() + postfix.plan_section())
            yield World(campaign, postfix)


def _ok(result: object, code: int = 0) -> str:
    out = result.stdout + result.stderr  # type: ignore[attr-defined]
    assert result.returncode == code, out  # type: ignore[attr-defined]
    return out


def test_waves_switch_a_campaign_while_mail_flows_and_a_rollback_brings_mail_back(
    world: World,
) -> None:
    batches = world.batches()
    assert sorted(batches) == ["Office001", "Office002", "Office003"]
    everyone = [a for names in batches.values() for a in names] + world.outsiders()[:2]
    world.send_each(everyone, "before")
    world.postfix.wait_until_delivered()

    # wave 1: switched, then the final delta pass when the command runs again
    out = _ok(world.cli("cutover", "--batch", "Office001"))
    assert (
        f"switched {len(batches['Office001'])} accounts" in out
        and "run the same command again" in out
    )
    assert set(world.map_block()) == set(batches["Office001"])
    world.send_each(everyone, "after wave 1")
    out = _ok(world.cli("cutover", "--batch", "Office001"))
    assert f"{len(batches['Office001'])} cut over" in out
    world.assert_agree()
    for address in batches["Office001"]:
        assert world.postfix.sink_subjects(address) == [f"after wave 1 {address}"]
    for address in batches["Office002"]:
        assert world.postfix.maildir_subjects(address).count(f"after wave 1 {address}") == 1

    # wave 2: two batches at once
    _ok(world.cli("cutover", "--batch", "Office002", "--batch", "Office003"))
    world.send_each(everyone, "after wave 2")
    _ok(
        world.cli("cutover", "--batch", "Office003", "--batch", "Office002")
    )  # the same wave, any order
    world.assert_agree()
    assert set(world.cutover_states().values()) == {"cut-over"}
    world.assert_exactly_once()

    # the state says, for every account, when it was switched and when it was cut over
    with world.db() as db:
        rows = db.execute(
            "SELECT address, switched_at, cutover_at FROM accounts WHERE scope = 'in_scope'"
        ).fetchall()
        assert all(switched and cut for _, switched, cut in rows)
        events = db.execute("SELECT count(*) FROM events WHERE kind = 'switched'").fetchone()[0]
        assert events == len(rows)
        steps = [
            s for (s,) in db.execute("SELECT step FROM cutover_steps WHERE wave_id = 1 ORDER BY id")
        ]
        assert steps == ["preconditions", "last-delta", "route", "verify", "final-delta"]

    status = json.loads(_ok(world.cli("status", "--json")))
    totals = status["cutover"]["totals"]
    assert (totals["cut_over"], totals["switched"], totals["pre_staged"]) == (6, 0, 0)
    assert "cut-over: 6 of 6 accounts cut over" in _ok(world.cli("status"))

    # the way back: new mail of Office003 goes to the Maildirs again, the accounts are synced
    out = _ok(world.cli("cutover", "--rollback", "--batch", "Office003"))
    assert f"rolled back {len(batches['Office003'])} accounts" in out
    world.assert_agree()
    states = world.cutover_states()
    assert all(states[a] is None for a in batches["Office003"])
    with world.db() as db:
        assert {
            s
            for (s,) in db.execute(
                "SELECT status FROM accounts WHERE batch = 'Office003' AND scope = 'in_scope'"
            )
        } == {"synced"}
    world.send_each(batches["Office003"], "after rollback")
    world.assert_exactly_once()
    for address in batches["Office003"]:
        assert world.postfix.maildir_subjects(address).count(f"after rollback {address}") == 1

    report = world.campaign.root / "report.html"
    _ok(world.cli("report", "--format", "html", "--output", str(report)))
    html = report.read_text()
    assert "Cut-over timeline" in html and "rollback" in html and "Office003" in html


def test_mail_delivered_between_the_last_delta_and_the_switch_reaches_the_target(
    world: World,
) -> None:
    """The command is frozen right after its last delta pass; mail delivered to the Maildir
    then is picked up by the final delta pass (which runs at once: final_delta_after = 0)."""
    world.campaign.plan_path.write_text(
        world.campaign.plan_path.read_text() + 'final_delta_after = "0s"\n'
    )
    wave = world.batches()["Office002"]
    env = {**world.campaign.env, "MIGRATOR_CRASH_AT": "cutover.before-mark:1:stop"}
    process = world.campaign.start("cutover", "--batch", "Office002", "--plan", world.plan, env=env)
    try:
        _wait_stopped(process.pid)
        world.send_each(wave, "in the window")
        world.postfix.wait_until_delivered()
        for address in wave:
            assert world.postfix.maildir_subjects(address).count(f"in the window {address}") == 1
    finally:
        os.kill(process.pid, signal.SIGCONT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, out + err
    assert set(world.cutover_states()[a] for a in wave) == {"cut-over"}
    world.send_each(wave, "after the switch")
    world.assert_exactly_once()
    for address in wave:  # the window's message is in the target, the later one at the sink
        subjects = [item.subject for item in world.campaign.sim.items(address)]
        assert subjects.count(f"in the window {address}") == 1
        assert world.postfix.sink_subjects(address) == [f"after the switch {address}"]


def _wait_stopped(pid: int, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.05)
    raise AssertionError("the cutover process did not reach its crash point")


@pytest.mark.parametrize(
    "point",
    [
        "cutover.before-mark",
        "cutover.before-reload",
        "cutover.before-confirm",
        "cutover.before-finish",
    ],
)
def test_a_cutover_killed_at_any_step_resumes_and_map_postfix_and_state_agree(
    world: World, point: str
) -> None:
    wave = world.batches()["Office001"]
    env = {**world.campaign.env, "MIGRATOR_CRASH_AT": point}
    killed = world.cli("cutover", "--batch", "Office001", env=env)
    if point == "cutover.before-finish":  # reached by the second run, the final delta pass
        _ok(killed)
        killed = world.cli("cutover", "--batch", "Office001", env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    # after the kill the state says at least what the map holds (never less)
    assert world.map_block() <= world.routed()
    world.send_each(wave + world.batches()["Office002"], f"after a kill at {point}")
    _ok(world.cli("cutover", "--batch", "Office001"))
    if point != "cutover.before-finish":
        _ok(world.cli("cutover", "--batch", "Office001"))
    world.assert_agree()
    assert {world.cutover_states()[a] for a in wave} == {"cut-over"}
    world.assert_exactly_once()


def test_hostile_addresses_never_break_the_map(world: World) -> None:
    hostile = [
        "bad user@ife.org.mx",
        "hash#tag@ife.org.mx",
        "new\nline@ife.org.mx",
        "two@at@ife.org.mx",
        "tab\t@ife.org.mx",
    ]
    office = world.batches()["Office001"]
    with world.db() as db:
        for index, address in enumerate(hostile):
            db.execute(
                "INSERT INTO accounts (plan_id, key, dn, address, target_address, batch, aliases, attributes, scope,"
                " fingerprint, discovered_at, last_seen_at, status, passes, attempts, messages_done, messages_skipped,"
                " messages_failed, bytes_done, lease_epoch, last_pass_at)"
                " SELECT plan_id, ?, 'uid=h' || ?, ?, ?, batch, '[]', '{}', 'in_scope', 'x', discovered_at, last_seen_at,"
                " 'synced', 1, 0, 0, 0, 0, 0, 0, last_pass_at FROM accounts WHERE address = ?",
                (f"hostile{index}", index, address, address, office[0]),
            )
    # the administrator's own line stays as it is
    world.postfix.transport_map.write_text("# kept\npostmaster@ife.org.mx\tsmtp:[127.0.0.1]:1\n")
    world.postfix.postmap(world.postfix.transport_map)
    out = _ok(world.cli("cutover", "--batch", "Office001"), code=2)
    assert "not ready" in out or "cannot be a transport_maps key" in out  # listed, nothing switched
    assert world.routed() == set()
    out = _ok(world.cli("cutover", "--batch", "Office001", "--force"))
    assert "left out" in out.lower()
    text = world.postfix.transport_map.read_text()
    assert text.startswith("# kept\npostmaster@ife.org.mx\tsmtp:[127.0.0.1]:1\n")
    assert world.map_block() == set(office)
    assert world.routed() == set(office)
    world.assert_agree()
    for address in hostile:
        assert address not in text


def test_a_postfix_that_fails_to_reload_stops_the_wave_with_no_state_change(world: World) -> None:
    main_cf = world.postfix.etc / "main.cf"
    good = main_cf.read_text()
    map_before = world.postfix.transport_map.read_bytes()
    # a main.cf Postfix cannot read: stopped before anything changes
    main_cf.write_text(good + "this line is broken\n")
    out = _ok(world.cli("cutover", "--batch", "Office001"), code=2)
    assert "missing '=' after attribute name" in out
    assert world.routed() == set() and world.postfix.transport_map.read_bytes() == map_before
    # a main.cf `postfix reload` refuses: the map goes back as it was, the accounts too
    main_cf.write_text(good + f"daemon_directory = {world.postfix.root}/nonexistent\n")
    out = _ok(world.cli("cutover", "--batch", "Office001"), code=2)
    assert "reloading Postfix instance" in out and "nothing was switched" in out
    assert world.routed() == set() and world.postfix.transport_map.read_bytes() == map_before
    assert set(world.cutover_states().values()) == {None}
    with world.db() as db:
        assert db.execute("SELECT status, error FROM cutover_waves").fetchone()[0] == "failed"
        assert db.execute("SELECT count(*) FROM events WHERE kind = 'switched'").fetchone()[0] == 0
    main_cf.write_text(good)
    world.send_each(world.batches()["Office001"], "while Postfix was broken")
    _ok(world.cli("cutover", "--batch", "Office001"))
    world.assert_agree()
    _ok(world.cli("cutover", "--batch", "Office001"))
    world.assert_exactly_once()


def test_the_cutover_section_of_a_plan_is_checked() -> None:
    base = '[plan]\nname = "p"\n[directory]\nurl = "ldif:x"\nbase = "dc=x"\n[source]\nkind = "maildir"\nroot = "/r"\n[target]\nkind = "ews"\nurl = "https://ex.example/EWS/Exchange.asmx"\n'
    plan = parse_plan(
        base
        + '[cutover]\ntransport_map = "/etc/postfix/transport_migrated"\nfinal_delta_after = "15m"\npostmap = "sudo -n /usr/sbin/postmap"\n'
    )
    assert plan.cutover is not None
    assert (plan.cutover.map_type, plan.cutover.final_delta_after, plan.cutover.postmap) == (
        "hash",
        900.0,
        ("sudo", "-n", "/usr/sbin/postmap"),
    )
    for text, why in [
        ('transport_map = "lmdb:/etc/postfix/t"', "'lmdb' maps are not built by migrator"),
        ('transport_map = "/t"\nfinal_delta_after = "soon"', "'soon' is not a duration"),
        ('transport_map = "/t"\npostmap = ""', "is empty"),
        ('transport_map = "/t"\ntransport_mpa = "x"', "is not a known key"),
        ('nexthop = "x"', "[cutover.transport_map]: is missing"),
    ]:
        with pytest.raises(PlanError) as caught:
            parse_plan(base + "[cutover]\n" + text + "\n")
        assert why in str(caught.value)
