"""`migrator filters` on a campaign: accounts per second into the EWS simulator.

Every account gets the Roundcube-shaped sample script (five rules, a scheduled vacation, one
statement refused); the pass is run twice (the second replaces migrator's rules) and the
simulator's requests are counted.

    .venv/bin/python -m bench.bench_sieve_filters --accounts 300 --workers 4
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from tests.fixtures.campaign import build_campaign

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = (ROOT / "tests" / "data" / "sieve" / "roundcube.sieve").read_text()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sieve-filters-"))
    with build_campaign(work / "c", accounts=args.accounts, messages_per_folder=0) as c:
        c.plan_path.write_text(c.plan_path.read_text() + '\n[settings]\nsieve = "file"\n')
        for address in c.accounts:
            home = c.maildir(address).parent
            (home / "sieve").mkdir(parents=True, exist_ok=True)
            (home / "sieve" / "roundcube.sieve").write_text(SCRIPT)
            os.symlink("sieve/roundcube.sieve", home / ".dovecot.sieve")
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        for label in ("first pass", "second pass"):
            c.sim.reset_stats()
            started = time.perf_counter()
            done = c.cli(
                "filters", "--plan", str(c.plan_path), "--workers", str(args.workers), "--json"
            )
            seconds = time.perf_counter() - started
            summary = json.loads(done.stdout)
            requests = c.sim.stats().requests
            print(
                f"{label}: {summary['applied']} accounts in {seconds:.1f} s "
                f"({summary['applied'] / seconds:.1f} accounts/s), exit {done.returncode}; requests "
                + ", ".join(f"{k} {v}" for k, v in sorted(requests.items()))
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
