"""The whole `make demo` campaign switched wave by wave on a real Postfix, mail flowing throughout.

    .venv/bin/python -m bench.bench_cutover [--waves 8] [--people 9000 --in-scope 3592 --offices 332]

Builds the demo's sample (or reuses bench-cutover/ from an earlier run), discovers and
migrates it into the EWS simulator, starts a private Postfix instance (as root) delivering to
the demo's Maildirs and relaying switched users to an SMTP sink, then switches the 332 batches
in WAVES waves: for each wave `migrator cutover` (preconditions, last delta, route, verify)
and again (the final delta pass). Before and after each switch one message goes through
Postfix's SMTP port to a sample of every wave's users; at the end every message must be in
its Maildir (and then in the target) or at the sink, exactly once, and every account must have
a switch time. Prints the time of each step.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from migrator.adapters.postfix import map_key_problem
from migrator.samples import demo
from tests.fixtures.postfix import Sink, running_postfix

SAMPLE_PER_WAVE = 10  # users of each wave sent a message before and after every switch


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--waves", type=int, default=8)
    parser.add_argument("--people", type=int, default=demo.TOTAL_PEOPLE)
    parser.add_argument("--in-scope", type=int, default=demo.IN_SCOPE)
    parser.add_argument("--offices", type=int, default=demo.OFFICES)
    args = parser.parse_args()
    shape = demo.Shape(args.people, args.in_scope, args.offices)
    root = Path(tempfile.mkdtemp(prefix="migrator-bench-cutover-"))
    root.chmod(0o711)
    folder = root / "demo"
    started = time.monotonic()
    demo.prepare(folder, shape)
    print(f"sample built in {time.monotonic() - started:.1f} s", flush=True)
    port = demo._free_port()
    plan = demo.sample_plan(folder, port, shape).write(folder / "plan.toml")
    env = {**os.environ, demo.SIM_PASSWORD_ENV: demo.SIM_PASSWORD}
    migrator = [sys.executable, "-m", "migrator"]
    simulator = subprocess.Popen(
        [*migrator, "ews-simulator", "--port", str(port), "--data", str(folder / "ews"),
         "--mailboxes-from", str(folder / "mailboxes.txt")],
        env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    sink = Sink()
    try:
        demo._wait_for_port(port, simulator)

        def cli(*words: str) -> tuple[int, float, str]:
            t = time.monotonic()
            done = subprocess.run(
                [*migrator, *words, "--plan", str(plan)], env=env, capture_output=True, text=True
            )
            return done.returncode, time.monotonic() - t, done.stdout + done.stderr

        for step in (["discover"], ["run", "--quiet"]):
            code, seconds, out = cli(*step)
            print(f"migrator {' '.join(step)}: exit {code} in {seconds:.1f} s", flush=True)
            if code >= 2:
                print(out[-3000:])
                return 1
        db = sqlite3.connect(folder / "state.db")
        batches: dict[str, list[str]] = {}
        for address, batch in db.execute(
            "SELECT address, batch FROM accounts WHERE scope = 'in_scope' ORDER BY batch, address"
        ):
            batches.setdefault(batch, []).append(address)
        people = [
            a
            for (a,) in db.execute("SELECT address FROM accounts WHERE address IS NOT NULL")
            if not map_key_problem(a)
        ]
        names = sorted(batches)
        waves = [names[i :: args.waves] for i in range(args.waves)]
        with running_postfix(root / "postfix", folder / "vmail", people, sink) as postfix:
            plan.write_text(plan.read_text() + postfix.plan_section(postfix_timeout="120"))
            sent: dict[str, str] = {}
            samples = [sorted(a for b in wave for a in batches[b])[:: max(1, sum(len(batches[b]) for b in wave) // SAMPLE_PER_WAVE)]
                       for wave in waves]  # fmt: skip

            def send_round(label: str) -> None:
                for sample in samples:
                    for address in sample:
                        sent[postfix.send([address], f"{label} {address}")] = address

            totals = {"switch": 0.0, "final": 0.0}
            for number, wave in enumerate(waves, start=1):
                send_round(f"before wave {number}")
                flags = [w for b in wave for w in ("--batch", b)]
                code, switch_s, out = cli("cutover", "--quiet", *flags)
                if code != 0:
                    print(out[-3000:])
                    return 1
                send_round(f"after switch {number}")
                code, final_s, out = cli("cutover", "--quiet", *flags)
                if code != 0:
                    print(out[-3000:])
                    return 1
                totals["switch"] += switch_s
                totals["final"] += final_s
                accounts = sum(len(batches[b]) for b in wave)
                print(f"wave {number}: {len(wave)} batches, {accounts:,} accounts: switch {switch_s:.1f} s, "
                      f"final delta {final_s:.1f} s", flush=True)  # fmt: skip
            postfix.wait_until_delivered(120)
            wrong = []
            for subject, address in sent.items():
                local = postfix.maildir_subjects(address).count(subject)
                remote = postfix.sink_subjects(address).count(subject)
                if local + remote != 1:
                    wrong.append(f"{subject}: {local} local, {remote} at the sink")
            switched = db.execute(
                "SELECT count(*) FROM accounts WHERE scope = 'in_scope' AND cutover = 'cut-over' AND switched_at IS NOT NULL"
            ).fetchone()[0]
            code, status_s, out = cli("status", "--json")
            cut = json.loads(out[out.index("{") :])["cutover"]["totals"]
            print(f"{len(sent):,} messages sent through Postfix, {len(wrong)} not exactly once")
            print(f"accounts cut over with a switch time: {switched:,} of {sum(len(v) for v in batches.values()):,}; "
                  f"status says {cut['cut_over']:,} cut over (status {status_s:.2f} s)")  # fmt: skip
            print(f"all waves: switch steps {totals['switch']:.1f} s, final delta passes {totals['final']:.1f} s; "
                  f"whole bench {time.monotonic() - started:.0f} s")  # fmt: skip
            return 1 if wrong or switched != sum(len(v) for v in batches.values()) else 0
    finally:
        sink.stop()
        simulator.terminate()
        simulator.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
