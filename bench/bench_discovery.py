"""Issue 2 benchmark: `migrator discover` of 100,000 directory entries from a real slapd
(size limit 500, so every page counts) into a SQLite state database; then the same again
with nothing changed. Wall time and peak memory of the migrator process.

Targets: under 60 s and under 300 MB; the re-run faster still.
Usage: python -m bench.bench_discovery [PEOPLE]   (default 100000)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from migrator.samples.directory import DEFAULT_FILTER, generate_people
from tests.fixtures.slapd import running_slapd

PLAN = """\
[plan]
name = "bench"
[directory]
url = "{url}"
bind_dn = "{bind_dn}"
password_env = "BENCH_LDAP_PASSWORD"
base = "{base}"
filter = "{filter}"
page_size = 500
[source]
kind = "maildir"
root = "/var/vmail"
path = "{{root}}/{{domain}}/{{local}}/Maildir"
[target]
kind = "ews"
[state]
url = "sqlite:///{state}"
"""


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB of the child, exit code (one child per call)."""
    script = (
        "import resource,subprocess,sys,time;t=time.monotonic();"
        "r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL).returncode;"
        "print(time.monotonic()-t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024, r)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, *cmd], env=env, capture_output=True, text=True, check=True
    )
    wall, rss, code = out.stdout.split()
    return float(wall), float(rss), int(code)


def main() -> int:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    in_scope = int(total * 0.4)
    started = time.monotonic()
    people = generate_people(total, in_scope=in_scope, offices=max(1, total // 27), seed=3)
    print(f"generated {total:,} people in {time.monotonic() - started:.1f} s", flush=True)
    started = time.monotonic()
    with running_slapd(people) as slapd, tempfile.TemporaryDirectory() as tmp:
        print(f"slapd loaded in {time.monotonic() - started:.1f} s (size limit 500)", flush=True)
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
        for label in ("first discovery", "re-run, nothing changed"):
            wall, rss, code = measure(cmd, env)
            print(f"{label}: {wall:.1f} s wall, peak RSS {rss:.0f} MB, exit {code}", flush=True)
            if code != 0:
                return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
