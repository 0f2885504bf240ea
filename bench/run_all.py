"""`make bench`: run every bench/bench_*.py in turn, as `python -m bench.NAME` from the
repository's root, and print their figures.

Each benchmark is a module of the `bench` package that prints its own figures; docs/benchmarks.md
records them. A name on the command line runs only the benchmarks whose file name contains it:
`python -m bench.run_all status`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    wanted = argv[1:]
    scripts = sorted(
        p for p in HERE.glob("bench_*.py") if not wanted or any(w in p.name for w in wanted)
    )
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", f"bench.{script.stem}"], cwd=HERE.parent)
        print(
            f"-- {script.name}: exit {result.returncode} in {time.monotonic() - started:.1f} s",
            flush=True,
        )
        if result.returncode != 0:
            failed.append(script.name)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
