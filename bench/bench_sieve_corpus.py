"""Real Sieve scripts through migrator's parser and translation: what share Exchange can carry.

Downloads public Sieve scripts from the package registries at run time (nothing of them enters
the repository):
- pigeonhole-examples: the example scripts Pigeonhole ships (users' real filters collected by
  its authors), from Debian's dovecot source package (its orig-pigeonhole tarball);
- pigeonhole-tests: the plain .sieve scripts of Pigeonhole's test suite (its .svtest files use
  the test suite's own commands and are left out);
- sievelib-tests: the scripts in sievelib's own tests (string literals of its test modules that
  look like Sieve, and its test files), from its PyPI sdist;
and adds ours (tests/data/sieve: scripts in the shapes Roundcube, Horde Ingo, SOGo and the
Thunderbird Sieve add-on write). Each script is parsed with sievelib and translated for an EWS
target; the table counts scripts, scripts that parse, top-level statements, and statements
carried exactly, carried with a note, and not carried, then the most common reasons.

    .venv/bin/python -m bench.bench_sieve_corpus                 # in a temp dir
    .venv/bin/python -m bench.bench_sieve_corpus --work /tmp/sc  # keep (and reuse) downloads
    .venv/bin/python -m bench.bench_sieve_corpus --json          # the figures as JSON

Needs: pip, apt-get, tar.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from migrator.adapters.sieve.parse import parse_script
from migrator.adapters.targets.naming import FolderNaming
from migrator.engine.filters import FilterOptions, translate
from migrator.model.sieve import SieveScript

ROOT = Path(__file__).resolve().parents[1]

OURS = ROOT / "tests" / "data" / "sieve"
DEB_SRC = "deb-src http://deb.debian.org/debian bookworm main\n"
_SIEVE_WORDS = re.compile(r"(^|\n)\s*(require|if|fileinto|keep|discard|redirect|vacation|stop)\b")


def run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def pigeonhole(work: Path) -> Path | None:
    """The orig-pigeonhole tarball of Debian's dovecot source package, downloaded once."""
    here = work / "debian"
    found = sorted(here.glob("*orig-pigeonhole.tar.gz")) if here.exists() else []
    if found:
        return found[0]
    (here / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (here / "src.list").write_text(DEB_SRC)
    options = [
        "-o",
        f"Dir::Etc::SourceList={here / 'src.list'}",
        "-o",
        "Dir::Etc::SourceParts=/dev/null",
        "-o",
        f"Dir::State::Lists={here / 'lists'}",
        "-o",
        "APT::Sandbox::User=root",
    ]
    run(["apt-get", *options, "update", "-qq"], here)
    r = run(["apt-get", *options, "source", "--download-only", "-qq", "dovecot"], here)
    found = sorted(here.glob("*orig-pigeonhole.tar.gz"))
    if not found:
        print(f"pigeonhole: not downloaded: {r.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return found[0]


def sievelib_sdist(work: Path) -> Path | None:
    here = work / "pypi"
    here.mkdir(parents=True, exist_ok=True)
    found = sorted(here.glob("sievelib-*.tar.gz"))
    if not found:
        r = run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--no-binary",
                ":all:",
                "sievelib",
            ],
            here,
        )
        found = sorted(here.glob("sievelib-*.tar.gz"))
        if not found:
            print(f"sievelib: not downloaded: {r.stderr.strip()[-300:]}", file=sys.stderr)
            return None
    return found[0]


def corpora(work: Path) -> dict[str, list[tuple[str, str]]]:
    """corpus -> [(name, text)]"""
    out: dict[str, list[tuple[str, str]]] = {
        "pigeonhole-examples": [],
        "pigeonhole-tests": [],
        "sievelib-tests": [],
        "migrator-samples": [],
    }
    tarball = pigeonhole(work)
    if tarball is not None:
        with tarfile.open(tarball) as tar:
            for member in tar.getmembers():
                if not member.isfile() or not member.name.endswith(".sieve"):
                    continue
                parts = member.name.split("/")
                corpus = (
                    "pigeonhole-examples"
                    if "examples" in parts
                    else "pigeonhole-tests"
                    if "tests" in parts
                    else None
                )
                stream = tar.extractfile(member)
                if corpus and stream is not None:
                    out[corpus].append(
                        ("/".join(parts[1:]), stream.read().decode("utf-8", "replace"))
                    )
    sdist = sievelib_sdist(work)
    if sdist is not None:
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                name = "/".join(member.name.split("/")[1:])
                stream = tar.extractfile(member) if member.isfile() else None
                if stream is None or "/tests/" not in f"/{name}":
                    continue
                data = stream.read().decode("utf-8", "replace")
                if name.endswith(".py"):
                    for n, text in enumerate(_sieve_literals(data)):
                        out["sievelib-tests"].append((f"{name}#{n}", text))
                elif name.endswith((".txt", ".sieve")):
                    out["sievelib-tests"].append((name, data))
    for path in sorted(OURS.glob("*.sieve")):
        out["migrator-samples"].append((path.name, path.read_text()))
    return out


def _sieve_literals(source: str) -> list[str]:
    """String constants of a test module that read as Sieve (a test's script under test)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if len(text) > 15 and (";" in text or "}" in text) and _SIEVE_WORDS.search(text):
                found.append(text)
    return list(dict.fromkeys(found))


@dataclass
class Row:
    scripts: int = 0
    parsed: int = 0
    statements: int = 0
    exact: int = 0
    approximate: int = 0
    refused: int = 0
    seconds: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)
    parse_errors: Counter[str] = field(default_factory=Counter)


def _reason_key(reason: str) -> str:
    """A reason without the script's own values (folder names, addresses, patterns)."""
    reason = re.sub(r"'[^']*'|\"[^\"]*\"", "…", reason)
    reason = re.sub(r"\b\S+@\S+\b", "…", reason)
    return reason.split(":")[0] if reason.startswith("not carried") else reason[:110]


def measure(scripts: list[tuple[str, str]]) -> Row:
    row = Row()
    options = FilterOptions(
        internal_domains=frozenset({"example.com", "example.org", "example.net"})
    )
    naming = FolderNaming()
    for name, text in scripts:
        row.scripts += 1
        started = time.perf_counter()
        parsed = parse_script(SieveScript(name, "corpus", text, len(text.encode())))
        result = translate(parsed, naming, options)
        row.seconds += time.perf_counter() - started
        if parsed.error is not None:
            row.parse_errors[re.sub(r"^line \d+: ", "", parsed.error)[:90]] += 1
            continue
        row.parsed += 1
        row.statements += result.statements
        row.exact += result.translated - result.approximate
        row.approximate += result.approximate
        row.refused += result.refused
        row.reasons.update(_reason_key(r.reason) for r in result.refusals)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, help="keep downloads here (reused by the next run)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="sieve-corpus-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = {name: measure(scripts) for name, scripts in corpora(work).items()}
    total = Row()
    for row in rows.values():
        for attr in (
            "scripts",
            "parsed",
            "statements",
            "exact",
            "approximate",
            "refused",
            "seconds",
        ):
            setattr(total, attr, getattr(total, attr) + getattr(row, attr))
        total.reasons.update(row.reasons)
        total.parse_errors.update(row.parse_errors)
    rows["all"] = total
    if args.json:
        print(
            json.dumps(
                {
                    k: {
                        **{
                            a: getattr(v, a)
                            for a in (
                                "scripts",
                                "parsed",
                                "statements",
                                "exact",
                                "approximate",
                                "refused",
                            )
                        },
                        "ms_per_script": round(1000 * v.seconds / max(1, v.scripts), 2),
                        "reasons": v.reasons.most_common(15),
                        "parse_errors": v.parse_errors.most_common(10),
                    }
                    for k, v in rows.items()
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return 0
    print(
        f"{'corpus':22} {'scripts':>8} {'parsed':>7} {'stmts':>6} {'exact':>6} {'noted':>6} "
        f"{'refused':>8} {'carried':>8} {'ms/script':>9}"
    )
    for name, row in rows.items():
        carried = (row.exact + row.approximate) / row.statements if row.statements else 0.0
        print(
            f"{name:22} {row.scripts:8} {row.parsed:7} {row.statements:6} {row.exact:6} {row.approximate:6} "
            f"{row.refused:8} {carried:8.1%} {1000 * row.seconds / max(1, row.scripts):9.2f}"
        )
    print("\nmost common reasons a statement is not carried:")
    for reason, count in total.reasons.most_common(15):
        print(f"{count:6}  {reason}")
    print("\nmost common parser messages:")
    for reason, count in total.parse_errors.most_common(10):
        print(f"{count:6}  {reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
