"""The migration engine end to end: `migrator run` (a real CLI process) from real Maildirs into
the EWS simulator (a process of its own), against a bare exchangelib `bulk_create` loop.

1. first pass, 8 workers, 40 mailboxes x 250 messages (mostly 2-20 KB, ~3 % 200 KB-1 MB):
   messages/s, MB/s, CPU seconds per 1,000 messages and peak RSS of the migrator process;
2. the same messages through bare `bulk_create` (8 threads, a mailbox per thread at a time,
   MIME content and read state only, chunks of the engine's `chunk_messages`) into a fresh
   simulator: the engine's throughput as a % of it (issue 5: within 15 %);
3. a delta pass with nothing new over 100 mailboxes x 10,000 messages (ledger seeded in SQL
   after `discover`): wall time (target under 10 s) and a py-spy profile of where it goes;
4. peak RSS of `migrator run` with a 40 MB message in flight, minus the same run without it.

CPU and peak RSS of each child come from wait4(), so the simulator's never mix in.

    nice -n 5 .venv/bin/python -m bench.bench_engine [--rounds 1] [--only 1234]
Figures go to stdout and bench/results/engine.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import queue
import random
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench._engine_campaign import (
    PASSWORD,
    REPO,
    USER,
    Campaign,
    Simulator,
    message,
    mixed_mailbox,
    people,
    seed_ledger,
    write_link_maildirs,
    write_mailboxes,
    write_plan,
)
from migrator.model.plan import RunSettings

RESULTS = REPO / "bench" / "results" / "engine.json"
PY_SPY = REPO / ".venv" / "bin" / "py-spy"
FIGURES: dict[str, Any] = {}


def say(key: str, text: str, value: Any) -> None:
    FIGURES[key] = value
    print(text, flush=True)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --------------------------------------------------------------------------- 1 + 2: throughput


def run_engine(
    campaign: Campaign, sim: Simulator, workers: int, profile: Path | None = None
) -> dict[str, Any]:
    prefix = (
        [str(PY_SPY), "record", "-f", "raw", "-r", "100", "-o", str(profile), "--"]
        if profile
        else None
    )
    result = campaign.cli(
        "run",
        "--plan",
        str(campaign.plan),
        "--workers",
        str(workers),
        "--quiet",
        "--json",
        prefix=prefix,
    )
    summary = result.json()
    if result.code != 0 or summary["accounts"]["failed"] or summary["messages"]["skipped"]:
        raise RuntimeError(f"engine run failed (exit {result.code}): {json.dumps(summary)[:2000]}")
    return {
        "wall": result.wall,
        "runner_seconds": summary["seconds"],
        "cpu": result.cpu,
        "maxrss_mb": result.maxrss_mb,
        "messages": summary["messages"]["done"],
        "bytes": summary["bytes_done"],
    }


def run_bare(
    url: str,
    maildirs: list[tuple[str, Path]],
    threads: int,
    chunk: int,
    *,
    same_properties: bool = False,
) -> dict[str, Any]:
    """bulk_create loop, one mailbox per thread at a time: MIME content and is_read only, or
    also the extended properties our adapter sets (source key, message flags, dates, flag)."""
    from datetime import UTC, datetime

    from exchangelib import IMPERSONATION, Account, Configuration, Credentials, EWSDateTime, Message
    from exchangelib.folders import Folder

    from migrator.adapters.targets.ews.properties import MSGFLAG_READ, register_properties

    register_properties()

    todo: queue.Queue[tuple[str, Path]] = queue.Queue()
    for entry in maildirs:
        todo.put(entry)
    counts = collections.Counter[str]()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def read_folder(fdir: Path) -> list[tuple[bytes, str, float]]:
        out = []
        for sub in ("new", "cur"):
            for name in sorted(os.listdir(fdir / sub)):
                with open(fdir / sub / name, "rb") as fh:
                    out.append((fh.read(), name, os.fstat(fh.fileno()).st_mtime))
        return out

    def make(account: Account, data: bytes, name: str, mtime: float) -> Message:
        info = name.partition(":2,")[2]
        if not same_properties:
            return Message(account=account, mime_content=data, is_read="S" in info)
        when = EWSDateTime.from_datetime(datetime.fromtimestamp(mtime, UTC))
        extra = {"migrator_flag_status": 2} if "F" in info else {}
        return Message(
            account=account,
            mime_content=data,
            is_read="S" in info,
            migrator_message_flags=MSGFLAG_READ if "S" in info else 0,
            migrator_source_key=name.split(":")[0].split(",")[0],
            migrator_delivery_time=when,
            migrator_submit_time=when,
            **extra,
        )

    def work() -> None:
        try:
            while True:
                try:
                    address, root = todo.get_nowait()
                except queue.Empty:
                    return
                account = Account(
                    address, config=config, autodiscover=False, access_type=IMPERSONATION
                )
                projects = Folder(
                    parent=account.msg_folder_root, name="Projects", folder_class="IPF.Note"
                )
                projects.save()
                for fdir, folder in ((root, account.inbox), (root / ".Projects", projects)):
                    msgs = read_folder(fdir)
                    for start in range(0, len(msgs), chunk):
                        part = msgs[start : start + chunk]
                        created = account.bulk_create(
                            folder=folder,
                            message_disposition="SaveOnly",
                            items=[make(account, *m) for m in part],
                        )
                        bad = [c for c in created if isinstance(c, Exception)]
                        if bad:
                            raise RuntimeError(f"{address}: {bad[0]}")
                        with lock:
                            counts["messages"] += len(part)
                            counts["bytes"] += sum(len(m[0]) for m in part)
        except BaseException as exc:  # surfaced after join
            errors.append(exc)

    config = Configuration(
        service_endpoint=url,
        credentials=Credentials(USER, PASSWORD),
        auth_type="basic",
        max_connections=threads,
    )
    cpu = time.process_time()
    started = time.perf_counter()
    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"bare loop failed: {errors[0]!r}")
    return {
        "wall": wall,
        "cpu": time.process_time() - cpu,
        "messages": counts["messages"],
        "bytes": counts["bytes"],
    }


def throughput(work: Path, args: argparse.Namespace) -> None:
    ldif, addresses = people(work, args.mailboxes, seed=11)
    shared = write_plan(work, ldif, "http://unused")
    shared.addresses = addresses
    boxes = {a: mixed_mailbox(seed=n, count=args.messages) for n, a in enumerate(addresses)}
    n, nbytes = write_mailboxes(shared, boxes)
    del boxes
    chunk = RunSettings().chunk_messages
    print(
        f"[1+2] {len(addresses)} mailboxes, {n} messages, {nbytes / 1e6:.1f} MB; {args.workers} workers; "
        f"chunks of {chunk}; {args.rounds} round(s); load {load()}",
        flush=True,
    )
    engine_rounds: list[dict[str, Any]] = []
    bare_rounds: list[dict[str, Any]] = []
    props_rounds: list[dict[str, Any]] = []
    kinds = ["engine", "bare"] + ([] if args.no_props else ["props"])
    for r in range(args.rounds):
        order = kinds if r % 2 == 0 else kinds[::-1]
        for kind in order:
            rdir = work / f"{kind}-{r}"
            rdir.mkdir()
            with Simulator(rdir / "ews", addresses) as sim:
                if kind == "engine":
                    # the round's own state and simulator, the shared Maildirs
                    campaign = write_plan(
                        rdir, ldif, sim.url, workers=args.workers, vmail=shared.vmail
                    )
                    campaign.discover()
                    profile = work / "engine.pyspy.txt" if args.profile_engine else None
                    res = run_engine(campaign, sim, args.workers, profile)
                    if profile:
                        show_profile(
                            "first pass (under py-spy: throughput figures are not valid)",
                            profile,
                            "engine-first-pass.pyspy.txt",
                            res["wall"],
                        )
                else:
                    res = run_bare(
                        sim.url,
                        [(a, shared.maildir(a)) for a in addresses],
                        args.workers,
                        chunk,
                        same_properties=kind == "props",
                    )
            res["server_cpu"] = sim.cpu
            if res["messages"] != n:
                raise RuntimeError(f"{kind}: {res['messages']} messages moved, expected {n}")
            {"engine": engine_rounds, "bare": bare_rounds, "props": props_rounds}[kind].append(res)
            print(
                f"  round {r} {kind:6s}: {res['wall']:.2f} s wall, client CPU {res['cpu']:.2f} s, "
                f"server CPU {res['server_cpu']:.2f} s, load {load()}",
                flush=True,
            )
            shutil.rmtree(rdir / "ews", ignore_errors=True)

    def best(rounds: list[dict[str, Any]]) -> dict[str, Any]:
        return sorted(rounds, key=lambda x: x["wall"])[len(rounds) // 2]  # the median round

    e, b = best(engine_rounds), best(bare_rounds)
    mb = nbytes / 1e6
    say(
        "engine_msgs_per_s",
        f"engine: {n / e['wall']:.1f} msg/s, {mb / e['wall']:.2f} MB/s "
        f"(process wall {e['wall']:.2f} s incl. start-up; runner {e['runner_seconds']:.2f} s = "
        f"{n / e['runner_seconds']:.1f} msg/s)",
        round(n / e["wall"], 1),
    )
    FIGURES.update(
        engine_mb_per_s=round(mb / e["wall"], 2),
        engine_wall_s=round(e["wall"], 2),
        engine_runner_s=e["runner_seconds"],
        messages=n,
        megabytes=round(mb, 1),
    )
    say(
        "engine_cpu_s_per_1000",
        f"engine CPU: {e['cpu'] / n * 1000:.2f} s per 1,000 messages "
        f"({e['cpu']:.2f} s total; simulator {e['server_cpu']:.2f} s)",
        round(e["cpu"] / n * 1000, 2),
    )
    say("engine_peak_rss_mb", f"engine peak RSS: {e['maxrss_mb']:.0f} MB", round(e["maxrss_mb"], 1))
    say(
        "bare_msgs_per_s",
        f"bare bulk_create: {n / b['wall']:.1f} msg/s, {mb / b['wall']:.2f} MB/s "
        f"(wall {b['wall']:.2f} s; client CPU {b['cpu'] / n * 1000:.2f} s per 1,000 messages; "
        f"simulator {b['server_cpu']:.2f} s)",
        round(n / b["wall"], 1),
    )
    FIGURES.update(
        bare_mb_per_s=round(mb / b["wall"], 2),
        bare_wall_s=round(b["wall"], 2),
        bare_cpu_s_per_1000=round(b["cpu"] / n * 1000, 2),
    )
    say(
        "engine_pct_of_bare",
        f"engine throughput = {b['wall'] / e['wall'] * 100:.1f} % of bare "
        f"(runner time only: {b['wall'] / e['runner_seconds'] * 100:.1f} %; target >= 85 %)",
        round(b["wall"] / e["wall"] * 100, 1),
    )
    FIGURES["engine_pct_of_bare_runner"] = round(b["wall"] / e["runner_seconds"] * 100, 1)
    if props_rounds:
        p = best(props_rounds)
        say(
            "bare_props_msgs_per_s",
            f"bare bulk_create with the adapter's extended properties: "
            f"{n / p['wall']:.1f} msg/s, {mb / p['wall']:.2f} MB/s (wall {p['wall']:.2f} s; client CPU "
            f"{p['cpu'] / n * 1000:.2f} s per 1,000 messages); engine = {p['wall'] / e['wall'] * 100:.1f} % of it",
            round(n / p["wall"], 1),
        )
        FIGURES.update(
            bare_props_cpu_s_per_1000=round(p["cpu"] / n * 1000, 2),
            engine_pct_of_bare_props=round(p["wall"] / e["wall"] * 100, 1),
        )
    FIGURES["rounds"] = {"engine": engine_rounds, "bare": bare_rounds, "bare_props": props_rounds}


# --------------------------------------------------------------------------- 3: delta pass

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _short(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m["file"]
    for marker in ("site-packages/", "/migrator/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m['func']} ({path})"


def profile_summary(raw: Path, top: int = 12) -> dict[str, Any]:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_short(f) for f in stack.split(";") if f]
        if frames:
            own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n

    def pct(c: collections.Counter[str]) -> dict[str, float]:
        return {k: round(v / max(total, 1) * 100, 1) for k, v in c.most_common(top)}

    ours = collections.Counter(
        {
            k: v
            for k, v in inclusive.items()
            if "(" in k
            and not k.split("(")[1].startswith(("threading", "concurrent", "<frozen"))
            and ".py" in k
        }
    )
    return {"samples": total, "self_pct": pct(own), "inclusive_pct": pct(ours)}


def show_profile(name: str, raw: Path, keep_as: str, wall: float) -> None:
    summary = profile_summary(raw)
    keep = REPO / "bench" / "results" / keep_as
    keep.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(raw, keep)
    FIGURES[f"{name.split()[0]}_profile"] = {"wall_under_py_spy_s": round(wall, 2), **summary}
    print(
        f"  profile of the {name} run: {wall:.2f} s wall, {summary['samples']} samples "
        f"(raw stacks: {keep.relative_to(REPO)}); self time:",
        flush=True,
    )
    for k, v in summary["self_pct"].items():
        print(f"    {v:5.1f} %  {k}")
    print("  inclusive time:")
    for k, v in summary["inclusive_pct"].items():
        print(f"    {v:5.1f} %  {k}")


def delta(work: Path, args: argparse.Namespace) -> None:
    from migrator.adapters.sources.maildir import MaildirSource

    cache = Path(args.delta_dir) if args.delta_dir else work / "delta"
    marker = cache / f"ready-{args.delta_mailboxes}x{args.delta_messages}"
    cache.mkdir(parents=True, exist_ok=True)
    ldif, addresses = people(cache, args.delta_mailboxes, seed=23)
    with Simulator(work / "delta-ews", addresses) as sim:
        campaign = write_plan(cache, ldif, sim.url, workers=args.workers)
        campaign.addresses = addresses
        if not marker.exists():
            t = time.perf_counter()
            for stale in (cache / "vmail", cache / "state.db"):
                shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(
                    missing_ok=True
                )
            names = write_link_maildirs(campaign, args.delta_messages)
            made = time.perf_counter() - t
            campaign.discover()
            with MaildirSource(str(campaign.maildir(addresses[0]))) as source:
                natives = {
                    ("." + f.native.lstrip(".")) if f.native else "": (
                        f.native,
                        f.display,
                        str(f.role),
                    )
                    for f in source.folders()
                }
            t = time.perf_counter()
            rows = seed_ledger(campaign, names, natives)
            print(
                f"[3] wrote {len(addresses)} x {len(names)} Maildir entries in {made:.1f} s, "
                f"seeded {rows:,} ledger rows in {time.perf_counter() - t:.1f} s",
                flush=True,
            )
            marker.touch()
        else:
            print(f"[3] reusing {cache}", flush=True)
        total = args.delta_mailboxes * args.delta_messages
        argv = [
            "run",
            "--plan",
            str(campaign.plan),
            "--workers",
            str(args.workers),
            "--quiet",
            "--json",
        ]
        print(
            f"[3] delta pass over {args.delta_mailboxes} mailboxes x {args.delta_messages} messages; "
            f"load {load()}",
            flush=True,
        )
        timed = campaign.cli(*argv)
        summary = timed.json()
        if (
            timed.code != 0
            or summary["messages"]["done"]
            or summary["accounts"]["synced"] != len(addresses)
        ):
            raise RuntimeError(
                f"delta pass did not find nothing to do (exit {timed.code}): {json.dumps(summary)[:1500]}"
            )
        say(
            "delta_wall_s",
            f"delta pass, nothing new, {total:,} messages: {timed.wall:.2f} s wall "
            f"(runner {summary['seconds']:.2f} s), CPU {timed.cpu:.2f} s, peak RSS {timed.maxrss_mb:.0f} MB; "
            f"target < 10 s",
            round(timed.wall, 2),
        )
        FIGURES.update(
            delta_runner_s=summary["seconds"],
            delta_cpu_s=round(timed.cpu, 2),
            delta_peak_rss_mb=round(timed.maxrss_mb, 1),
            delta_messages=total,
        )
        if PY_SPY.exists() and not args.no_profile:
            raw = work / "delta.pyspy.txt"
            prof = campaign.cli(
                *argv,
                prefix=[str(PY_SPY), "record", "-f", "raw", "-r", "100", "-o", str(raw), "--"],
            )
            if prof.code != 0 or not raw.exists():
                print(f"  py-spy failed (exit {prof.code}): {prof.stderr[-500:]}", flush=True)
            else:
                show_profile("delta", raw, "engine-delta.pyspy.txt", prof.wall)


# --------------------------------------------------------------------------- 4: big message


def big_message(work: Path, args: argparse.Namespace) -> None:
    root = work / "big"
    root.mkdir()
    ldif, addresses = people(root, 2, seed=31)
    base_box, big_box = addresses
    with Simulator(root / "ews", addresses) as sim:
        campaign = write_plan(root, ldif, sim.url, workers=args.workers, max_size=64 * 1024 * 1024)
        campaign.addresses = addresses
        rnd = random.Random(5)
        small = [message(i, 8 * 1024, rnd, "s") for i in range(5)]
        big = message(99, args.big_mb * 1024 * 1024, rnd, "big")
        write_mailboxes(
            campaign, {base_box: {("INBOX",): small}, big_box: {("INBOX",): [*small, big]}}
        )
        campaign.discover()
        runs = {}
        for name, address in (("baseline", base_box), ("big", big_box)):
            result = campaign.cli(
                "run", "--plan", str(campaign.plan), "--account", address, "--quiet", "--json"
            )
            summary = result.json()
            want = 5 if name == "baseline" else 6
            if result.code != 0 or summary["messages"]["done"] != want:
                raise RuntimeError(f"{name} run: exit {result.code}, {json.dumps(summary)[:1500]}")
            runs[name] = result
        extra = runs["big"].maxrss_mb - runs["baseline"].maxrss_mb
        say(
            "big_message_extra_rss_mb",
            f"{len(big.raw) / 2**20:.0f} MB message in flight: peak RSS "
            f"{runs['big'].maxrss_mb:.0f} MB vs {runs['baseline'].maxrss_mb:.0f} MB without it: "
            f"+{extra:.0f} MB ({extra / (len(big.raw) / 2**20):.1f} x the message)",
            round(extra, 1),
        )
        FIGURES.update(
            big_message_mb=round(len(big.raw) / 2**20, 1),
            big_peak_rss_mb=round(runs["big"].maxrss_mb, 1),
            baseline_peak_rss_mb=round(runs["baseline"].maxrss_mb, 1),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=40)
    parser.add_argument("--messages", type=int, default=250, help="per mailbox")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--rounds", type=int, default=1, help="engine/bare rounds, alternating (median)"
    )
    parser.add_argument("--delta-mailboxes", type=int, default=100)
    parser.add_argument("--delta-messages", type=int, default=10_000)
    parser.add_argument(
        "--delta-dir", help="keep the delta-pass Maildirs and state here and reuse them"
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="skip the py-spy run of the delta pass"
    )
    parser.add_argument(
        "--no-props",
        action="store_true",
        help="skip the bare loop that also sets the adapter's extended properties",
    )
    parser.add_argument(
        "--profile-engine",
        action="store_true",
        help="run the first pass under py-spy (for attribution; its figures are then not valid)",
    )
    parser.add_argument("--big-mb", type=int, default=40)
    parser.add_argument("--only", default="1234", help="which parts to run, e.g. 13")
    args = parser.parse_args()

    started = time.perf_counter()
    FIGURES["load_at_start"] = load()
    FIGURES["cpus"] = os.cpu_count()
    print(f"load average at start: {load()} ({os.cpu_count()} CPUs)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        work = Path(tmp)
        if "1" in args.only or "2" in args.only:
            throughput(work, args)
        if "3" in args.only:
            delta(work, args)
        if "4" in args.only:
            big_message(work, args)
    FIGURES["load_at_end"] = load()
    FIGURES["bench_seconds"] = round(time.perf_counter() - started, 1)
    print(f"load average at end: {load()}; benchmark took {FIGURES['bench_seconds']} s", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(FIGURES, indent=2, default=str) + "\n")
    print(f"figures written to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
