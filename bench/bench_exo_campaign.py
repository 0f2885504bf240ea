"""The demo's campaign into Exchange Online over IMAP, killed at random instants.

    .venv/bin/python -m bench.bench_exo_campaign [--accounts 3592] [--kills 4] [--seed 1]
                                                 [--token-lifetime 60] [--workers 8]

Exchange Online is the Exchange-Online-like front of tests/fixtures/exo_front.py (TLS, app-only
XOAUTH2 tokens from a local identity platform, EXO's CAPABILITY set, 20 connections per
mailbox, its size-limit and throttling wordings, tokens that run out mid-session, messages
served as Exchange rebuilds them with RFC822.SIZE a stored-size estimate) in front of a Dovecot
that keeps what it is given.

1. builds the demo's campaign (migrator.samples.demo: an LDIF directory, a Maildir of about four
   small messages per account, every 50th account with the hard cases real mail holds, every
   1000th with a message over the mailboxes' size limit, 2 MiB here, and a lost file);
2. starts the Dovecot, the identity platform (tokens live --token-lifetime seconds, so sessions
   are renewed throughout the run) and the front, with faults sprinkled over the campaign:
   throttling answered NO and answered BAD then hung up, tokens that run out as an APPEND
   arrives, answers lost after the server stored;
3. runs `migrator discover`, then `migrator run`, killed with SIGKILL --kills times at random
   instants, then `run` until one ends with no account failed; one more pass must send
   nothing;
4. compares every target mailbox with its Maildir, read from the Dovecot behind the front with
   FETCH BODY.PEEK[] FLAGS INTERNALDATE: every message exactly once, with its bytes (as Dovecot
   serves them), its flags but keywords and its date, in Exchange Online's folder; the ledger
   and the skipped messages agree.
Prints the figures docs/benchmarks.md records; exit 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from imapclient import IMAPClient

from migrator.adapters.sources.maildir import MaildirSource
from migrator.model.mail import MessageRecord
from migrator.samples import demo
from migrator.samples.directory import DEFAULT_BASE, DEFAULT_FILTER
from tests.fixtures.exo_campaign import EXO_ROLE_FOLDERS, exo_flags
from tests.fixtures.exo_front import (
    CLIENT_ID,
    CLIENT_SECRET,
    TENANT,
    ExoStack,
    running_exo_dovecot,
)
from tests.fixtures.imap_case import dovecot_wire_bytes
from tests.fixtures.imap_proxy import Rule, exchange_throttled

SECRET_ENV = "MIGRATOR_BENCH_EXO_SECRET"
SIZE_LIMIT = demo.MAX_MESSAGE_SIZE  # the demo's big messages are just over it

PLAN = """\
[plan]
name = "demo-exchange-online"
[directory]
url = "ldif:{ldif}"
base = "ou=people,{base}"
filter = "{filter}"
[directory.attributes]
address = "mail"
uid = "uid"
name = "cn"
batch = "ou"
[source]
kind = "maildir"
root = "{vmail}"
path = "{{root}}/{{domain}}/{{local}}/Maildir"
[target]
kind = "imap"
host = "{host}"
port = {port}
tls = "ssl"
ca_file = "{ca_file}"
auth = "xoauth2"
client_id = "{client_id}"
tenant_id = "{tenant}"
client_secret_env = "{secret_env}"
token_url = "{token_url}"
timeout = 60
[run]
workers = {workers}
target_concurrency = {concurrency}
[state]
url = "sqlite:///{state}"
"""


def log(text: str) -> None:
    print(text, flush=True)


def cli(folder: Path, *args: str, timeout: float = 7200) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, SECRET_ENV: CLIENT_SECRET}
    return subprocess.run(
        [sys.executable, "-m", "migrator", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(folder: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, SECRET_ENV: CLIENT_SECRET}
    return subprocess.Popen(
        [sys.executable, "-m", "migrator", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def faults(rnd: random.Random, accounts: int, each: int) -> list[Rule]:
    """`each` of every kind, aimed at the first INBOX message of random accounts (the demo's
    subjects say whose they are: "Informe <index>-<n> de <folder>")."""
    rules = []
    picks = rnd.sample(range(accounts), min(accounts, 4 * each))
    kinds = [
        ("no", exchange_throttled(2000)),
        ("bad-bye", exchange_throttled(1000)),
        ("expire", b""),
        ("drop-after", b""),
    ]
    for n, index in enumerate(picks):
        action, text = kinds[n % len(kinds)]
        subject = b"Subject: Informe %d-0 de INBOX\n" % index
        rules.append(Rule("APPEND", action, text=text, contains=subject))
    return rules


def source_copies(maildir: Path) -> tuple[Counter[tuple[str, bytes, frozenset[str], int]], int]:
    """What the target must hold for one Maildir, and the messages over the size limit."""
    want: Counter[tuple[str, bytes, frozenset[str], int]] = Counter()
    big = 0
    with MaildirSource(str(maildir)) as source:
        for folder in source.folders():
            name = (
                EXO_ROLE_FOLDERS[folder.role]
                if folder.role in EXO_ROLE_FOLDERS
                else "/".join(folder.path)
            )
            for record in source.messages(folder):
                if not isinstance(record, MessageRecord):
                    continue  # the lost file: skipped by the run as unreadable
                with record.open() as stream:
                    raw = stream.read()
                if len(raw) > SIZE_LIMIT:
                    big += 1
                    continue
                want[
                    (
                        name,
                        dovecot_wire_bytes(raw),
                        exo_flags(record.flags),
                        int(record.internal_date.timestamp()),
                    )
                ] += 1
    return want, big


def target_copies(stack: ExoStack, address: str) -> Counter[tuple[str, bytes, frozenset[str], int]]:
    client = IMAPClient(stack.store.host, port=stack.store.port, ssl=False, timeout=60)
    client.folder_encode = True
    client.normalise_times = False
    got: Counter[tuple[str, bytes, frozenset[str], int]] = Counter()
    try:
        client.login(stack.store.new_mailbox(address), "-")
        for _, _, name in client.list_folders():
            client.select_folder(name, readonly=True)
            uids = client.search(["ALL"])
            if not uids:
                continue
            for data in client.fetch(uids, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"]).values():
                flags = frozenset(f.decode() for f in data[b"FLAGS"]) - {"\\Recent"}
                got[(name, data[b"BODY[]"], flags, int(data[b"INTERNALDATE"].timestamp()))] += 1
    finally:
        client.logout()
    return got


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="/tmp/migrator-exo-bench")
    parser.add_argument("--accounts", type=int, default=demo.IN_SCOPE)
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--token-lifetime", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--faults", type=int, default=10, help="rules of each kind")
    args = parser.parse_args(argv)
    rnd = random.Random(args.seed)
    folder = Path(args.dir) / f"a{args.accounts}-s{args.seed}"
    if folder.exists():
        subprocess.run(["rm", "-rf", str(folder)], check=True)
    scale = args.accounts / demo.IN_SCOPE
    shape = demo.Shape(
        people=max(args.accounts, round(demo.TOTAL_PEOPLE * scale)),
        in_scope=args.accounts,
        offices=max(1, round(demo.OFFICES * scale)),
    )
    started = time.monotonic()
    demo.prepare(folder, shape)
    addresses = (folder / "mailboxes.txt").read_text().split()
    log(f"campaign: {len(addresses):,} accounts in {time.monotonic() - started:.0f} s")
    failures: list[str] = []
    with running_exo_dovecot() as store:
        stack = ExoStack(store, lifetime=args.token_lifetime, max_message_size=SIZE_LIMIT)
        rules = faults(rnd, len(addresses), args.faults)
        for rule in rules:
            stack.front.add(rule)
        plan = folder / "exo-plan.toml"
        plan.write_text(
            PLAN.format(
                ldif=(folder / "directory.ldif").resolve(),
                base=DEFAULT_BASE,
                filter=DEFAULT_FILTER,
                vmail=(folder / "vmail").resolve(),
                host=stack.front.host,
                port=stack.front.port,
                ca_file=store.ca_file,
                client_id=CLIENT_ID,
                tenant=TENANT,
                secret_env=SECRET_ENV,
                token_url=stack.platform.token_url,
                workers=args.workers,
                concurrency=2 * args.workers,
                state=(folder / "exo-state.db").resolve(),
            )
        )
        try:
            discovered = cli(folder, "discover", "--plan", str(plan))
            assert discovered.returncode == 0, discovered.stderr[-2000:]
            runs: list[tuple[str, float, int | None]] = []
            first_started = time.monotonic()
            for _ in range(args.kills):
                proc = start(folder, "run", "--plan", str(plan), "--quiet")
                t0 = time.monotonic()
                try:
                    proc.wait(timeout=rnd.uniform(5, 60))
                    runs.append(("ended", time.monotonic() - t0, proc.returncode))
                    break
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    proc.communicate()
                    runs.append(("SIGKILL", time.monotonic() - t0, None))
            summary: dict[str, object] = {}
            for _ in range(6):
                t0 = time.monotonic()
                final = cli(folder, "run", "--plan", str(plan), "--json")
                runs.append(("run", time.monotonic() - t0, final.returncode))
                if final.returncode in (0, 1) and final.stdout:
                    summary = json.loads(final.stdout)
                    if summary["accounts"]["failed"] == 0:  # type: ignore[index]
                        break
            total_seconds = time.monotonic() - first_started
            for what, seconds, code in runs:
                log(f"  {what:8s} {seconds:7.1f} s  exit {code}")
            log(
                f"final run: {json.dumps(summary.get('accounts'))} "
                f"{json.dumps(summary.get('messages'))}"
            )
            stack.front.reset()
            again = cli(folder, "run", "--plan", str(plan), "--json")
            if again.returncode != 0 or sum(stack.front.seen.values()):
                failures.append(
                    f"a further pass: exit {again.returncode}, commands {dict(stack.front.seen)}"
                )
            unfired = [r.action for r in rules if r.times]
            front, platform = stack.front, stack.platform
            log(
                f"front: {front.logins:,} logins, {platform.fetches:,} tokens, "
                f"{front.expired_sessions} sessions ended by token expiry, "
                f"{front.too_large} APPENDs over the size limit, {front.auth_failures} refused "
                f"logins, {front.not_connected} over the connection limit, "
                f"busiest mailbox {max(front.peak.values(), default=0)} sessions; "
                f"faults that never fired: {len(unfired)} of {len(rules)}"
            )

            # -- the verdict ------------------------------------------------------------------
            t0 = time.monotonic()
            figures: Counter[str] = Counter()

            def check(address: str) -> tuple[str, Counter[str], list[str]]:
                local, _, domain = address.partition("@")
                want, big = source_copies(folder / "vmail" / domain / local / "Maildir")
                got = target_copies(stack, address)
                found: Counter[str] = Counter(
                    source=sum(want.values()) + big, big=big, target=sum(got.values())
                )
                problems = []
                missing, extra = want - got, got - want
                if missing or extra:
                    problems.append(
                        f"{address}: {sum(missing.values())} missing or different, "
                        f"{sum(extra.values())} too many or different"
                    )
                return address, found, problems

            with ThreadPoolExecutor(4) as pool:
                for _, found, problems in pool.map(check, addresses):
                    figures.update(found)
                    failures.extend(problems)
            with sqlite3.connect(folder / "exo-state.db") as db:
                states = dict(db.execute("select state, count(*) from messages group by state"))
                reasons = dict(
                    db.execute(
                        "select reason, count(*) from messages "
                        "where state = 'skipped' group by reason"
                    )
                )
            if states.get("done") != figures["target"]:
                failures.append(f"ledger done {states.get('done')} != target {figures['target']}")
            if reasons.get("too-large", 0) != figures["big"]:
                failures.append(f"skipped too-large {reasons.get('too-large')} != {figures['big']}")
            if set(states) - {"done", "skipped"}:
                failures.append(f"ledger states {states}")
            log(
                f"compared {len(addresses):,} mailboxes in {time.monotonic() - t0:.0f} s: "
                f"{figures['source']:,} source messages, {figures['target']:,} in the target, "
                f"{figures['big']} over the size limit; ledger {states}, skipped {reasons}"
            )
            done = states.get("done", 0)
            log(
                f"RESULT accounts={len(addresses)} messages={done} kills="
                f"{sum(1 for r in runs if r[0] == 'SIGKILL')} wall={total_seconds:.0f}s "
                f"rate={done / total_seconds:.0f}/s problems={len(failures)}"
            )
        finally:
            stack.close()
    for problem in failures[:30]:
        log(f"PROBLEM {problem}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
