"""Issue 19 benchmark: `migrator discover` of 100,000 people behind a stock OpenLDAP size limit
(`sizelimit 500`, which caps paged searches too), in three shapes:

  ous       100,000 people in 2,000 OUs (split by subtree)
  flat      100,000 people in one OU, no sorting/VLV on offer (split by prefix)
  flat-vlv  the same with Debian's sssvlv overlay loaded (read through a virtual list view)

Each: generate, slapadd into a private slapd, then time `migrator discover --json` (wall, peak
RSS) in a child process, and one population search through the reader for its strategy
(subtree searches, VLV windows, prefix parts, requests). Target: each under 60 s.
Usage: python -m bench.bench_discovery_limits [PEOPLE] [SHAPE ...]   (default 100000, all three)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_discovery import PLAN
from migrator.adapters.directory import open_directory
from migrator.samples.directory import DEFAULT_FILTER, POPULATION_FILTER, generate_people
from tests.fixtures.slapd import running_slapd


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, int]:
    """Wall seconds, CPU seconds (user + system), peak RSS in MB of one child, exit code.
    CPU says what the machine's load hides: other sessions share its two cores."""
    script = (
        "import resource,subprocess,sys,time;t=time.monotonic();"
        "r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL).returncode;"
        "u=resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(time.monotonic()-t, u.ru_utime+u.ru_stime, u.ru_maxrss/1024, r)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, *cmd], env=env, capture_output=True, text=True, check=True
    )
    wall, cpu, rss, code = out.stdout.split()
    return float(wall), float(cpu), float(rss), int(code)


SHAPES = {"ous": (2000, False), "flat": (1, False), "flat-vlv": (1, True)}


def main() -> int:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    shapes = sys.argv[2:] or list(SHAPES)
    for shape in shapes:
        offices, vlv = SHAPES[shape]
        started = time.monotonic()
        people = generate_people(total, in_scope=total * 2 // 5, offices=offices, seed=3)
        with (
            running_slapd(people, tls=False, stock_limits=True, sort_vlv=vlv) as slapd,
            tempfile.TemporaryDirectory() as tmp,
        ):
            print(f"[{shape}] {total:,} people in {offices:,} OU(s), slapd (sizelimit 500{', sssvlv' if vlv else ''}) "
                  f"ready in {time.monotonic() - started:.1f} s; load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
            plan = Path(tmp) / "plan.toml"
            plan.write_text(
                PLAN.format(
                    url=slapd.url,
                    bind_dn=slapd.bind_dn,
                    base=slapd.base,
                    filter=DEFAULT_FILTER,
                    state=Path(tmp) / "state.db",
                )
            )
            env = {**os.environ, "BENCH_LDAP_PASSWORD": slapd.password}
            cmd = [sys.executable, "-m", "migrator", "discover", "--plan", str(plan), "--json"]
            wall, cpu, rss, code = measure(cmd, env)
            print(f"[{shape}] discover: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {rss:.0f} MB, exit {code}; "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
            with open_directory(slapd.settings(page_size=500), slapd.password) as reader:
                t0, c0 = time.monotonic(), time.process_time()
                count = sum(1 for _ in reader.search(POPULATION_FILTER, ["uid"]))
                print(f"[{shape}] population search: {count:,} entries in {time.monotonic() - t0:.1f} s "
                      f"({time.process_time() - c0:.1f} s CPU here): "
                      f"{reader.subtree_searches} subtree searches, {reader.vlv_windows} VLV windows, "
                      f"{reader.split_parts} prefix parts, {reader.pages_fetched} requests; "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
            if code != 0:
                return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
