"""How fast discovery can read a big directory: generation, slapd load, paged search, LDIF mock.

    .venv/bin/python -m bench.bench_directory_search [--people 100000] [--mock-people 20000]
    .venv/bin/python -m bench.bench_directory_search --people 9000 --stock-limits

Starts a private slapd (size limit 500, paging allowed) holding --people generated people,
searches it with the campaign filter and the population filter at a few page sizes while
tracking peak Python memory (streaming keeps it flat), then does the same through `ldif:`.
--stock-limits instead keeps slapd's stock limits (500 caps paged searches too), so searches
are read in parts (see docs/discovery.md), and reports how many parts and how long.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
import tracemalloc
from pathlib import Path

from migrator.adapters.directory import open_directory
from migrator.model.plan import DirectorySettings
from migrator.samples.directory import (
    DEFAULT_BASE,
    DEFAULT_FILTER,
    POPULATION_FILTER,
    generate_people,
    selected_uids,
    write_ldif,
)
from tests.fixtures.slapd import running_slapd

ATTRIBUTES = ["mail", "uid", "cn", "ou"]


def timed_search(settings: DirectorySettings, password: str | None, search_filter: str) -> str:
    with open_directory(settings, password) as reader:
        started = time.perf_counter()
        count = sum(1 for _ in reader.search(search_filter, ATTRIBUTES))
        elapsed = time.perf_counter() - started
        return (
            f"{count:>7,} entries in {elapsed:6.2f} s ({count / elapsed:>6,.0f}/s), "
            f"{reader.pages_fetched:>4} requests, {reader.split_parts} parts"
        )


def streaming_peak(settings: DirectorySettings, password: str | None, entries: int) -> str:
    """Peak Python memory while consuming `entries` results (tracemalloc is slow: a sample)."""
    with open_directory(settings, password) as reader:
        results = reader.search(POPULATION_FILTER, ATTRIBUTES)
        tracemalloc.start()
        consumed = sum(1 for _ in itertools.islice(results, entries))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return f"peak {peak / 1e6:.1f} MB over {consumed:,} entries (page {settings.page_size})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--mock-people", type=int, default=20_000)
    parser.add_argument("--stock-limits", action="store_true", help="slapd's stock size limit only")
    args = parser.parse_args()

    in_scope = args.people * 2 // 5
    started = time.perf_counter()
    people = generate_people(args.people, in_scope=in_scope, offices=332, seed=1)
    print(f"generate {args.people:,} people: {time.perf_counter() - started:.2f} s")
    assert len(selected_uids(people)) == in_scope

    if args.stock_limits:
        with running_slapd(people, tls=False, stock_limits=True) as server:
            for name, search_filter in (
                ("campaign", DEFAULT_FILTER),
                ("population", POPULATION_FILTER),
            ):
                line = timed_search(server.settings(page_size=200), server.password, search_filter)
                print(f"slapd stock limit 500, page 200 {name:<10} {line}")
        return

    with running_slapd(people, tls=False) as server:
        print(
            f"slapadd: {server.load_seconds:.2f} s (incl. LDIF), start: {server.start_seconds:.2f} s"
        )
        for page_size in (200, 1000):
            settings = server.settings(page_size=page_size)
            for name, search_filter in (
                ("campaign", DEFAULT_FILTER),
                ("population", POPULATION_FILTER),
            ):
                line = timed_search(settings, server.password, search_filter)
                print(f"slapd page {page_size:>4} {name:<10} {line}")
        for page_size in (200, 1000):
            sample = min(20_000, args.people)
            print(
                f"slapd memory: {streaming_peak(server.settings(page_size=page_size), server.password, sample)}"
            )

    mock_people = generate_people(args.mock_people, in_scope=args.mock_people * 2 // 5, offices=332)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_ldif(Path(tmp) / "people.ldif", DEFAULT_BASE, mock_people)
        settings = DirectorySettings(url=f"ldif:{path}", base=DEFAULT_BASE)
        started = time.perf_counter()
        with open_directory(settings, None):
            pass
        print(f"ldif: load {args.mock_people:,} people: {time.perf_counter() - started:.2f} s")
        for name, search_filter in (
            ("campaign", DEFAULT_FILTER),
            ("population", POPULATION_FILTER),
        ):
            print(f"ldif  page  200 {name:<10} {timed_search(settings, None, search_filter)}")


if __name__ == "__main__":
    main()
