"""Maildir specifics: keys, flags, layouts and what real trees hold (tmp/ leftovers, index
files, stray files, missing parents, renames by a live server, unreadable files)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from migrator.adapters.sources import open_source
from migrator.adapters.sources.base import looks_like_mail
from migrator.adapters.sources.maildir import MaildirSource, message_key, parse_flags
from migrator.model.errors import SourceError
from migrator.model.mail import (
    Flags,
    FolderInfo,
    FolderRole,
    KnownMessage,
    MessageRecord,
    SkippedMessage,
)
from migrator.model.plan import SourceSettings
from migrator.samples.mail import (
    SampleMessage,
    hard_case_messages,
    is_mail,
    sample_mailbox,
    write_maildir,
)
from tests.fixtures.sources import run_unprivileged  # shared_dir: a fixture of that plugin

NAME = "1709285400.M7P4242.host,S=5,W=6"


def _folders(src: MaildirSource) -> dict[tuple[str, ...], FolderInfo]:
    return {f.path: f for f in src.folders()}


def _items(
    src: MaildirSource, path: tuple[str, ...] = ("INBOX",)
) -> list[MessageRecord | SkippedMessage]:
    return list(src.messages(_folders(src)[path]))


def _records(src: MaildirSource, path: tuple[str, ...] = ("INBOX",)) -> list[MessageRecord]:
    return [i for i in _items(src, path) if isinstance(i, MessageRecord)]


def _maildir(root: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


def _put(
    root: Path, sub: str, name: str, data: bytes = b"Subject: x\n\nbody\n", mtime: int = 1709285400
) -> Path:
    path = root / sub / name
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


# ---------------------------------------------------------------- keys and flags


def test_key_ignores_flags_and_size_fields() -> None:
    assert message_key(NAME + ":2,RS") == "1709285400.M7P4242.host"
    assert message_key(NAME) == "1709285400.M7P4242.host"
    assert message_key("1709285400.M7P4242.host,U=17,FMD5=ab:2,S") == "1709285400.M7P4242.host"
    assert message_key("plainname") == "plainname"


def test_flags_from_info_and_dovecot_keywords() -> None:
    kws = {"a": "$Label1", "b": "Work"}
    assert parse_flags(NAME + ":2,DFRSTab", kws) == Flags(
        seen=True,
        answered=True,
        flagged=True,
        deleted=True,
        draft=True,
        keywords=("$Label1", "Work"),
    )
    assert parse_flags(NAME + ":2,", kws) == Flags()
    assert parse_flags(NAME, kws) == Flags()
    assert parse_flags(NAME + ":2,Sz", kws) == Flags(seen=True)  # letter without a keyword
    assert parse_flags(NAME + ":1,S", kws) == Flags()  # experimental info: no flags


def test_flag_change_by_a_live_server_keeps_key_and_updates_flags(tmp_path: Path) -> None:
    root = _maildir(tmp_path)
    (root / "dovecot-keywords").write_text("0 Work\n")
    path = _put(root, "new", NAME)
    src = MaildirSource(str(root))
    [before] = _records(src)
    path.rename(root / "cur" / (NAME + ":2,RSa"))  # seen, answered, keyword: new/ -> cur/
    [after] = _records(MaildirSource(str(root)))
    assert after.key == before.key
    assert after.flags == Flags(seen=True, answered=True, keywords=("Work",))
    assert after.size == 17 and after.internal_date == datetime.fromtimestamp(1709285400, UTC)


def test_renamed_after_listing_is_found_again_by_key(tmp_path: Path) -> None:
    root = _maildir(tmp_path)
    path = _put(root, "new", NAME, b"Subject: payload\n\n")
    [record] = _records(MaildirSource(str(root)))
    path.rename(root / "cur" / (NAME + ":2,S"))
    with record.open() as fh:
        assert fh.read() == b"Subject: payload\n\n"


def test_deleted_after_listing_is_vanished(tmp_path: Path) -> None:
    root = _maildir(tmp_path)
    path = _put(root, "cur", NAME + ":2,S")
    [record] = _records(MaildirSource(str(root)))
    path.unlink()
    with pytest.raises(SourceError) as err:
        record.open()
    assert err.value.reason == "vanished" and record.key in err.value.message


def test_file_in_both_new_and_cur_during_a_rename_is_listed_once(tmp_path: Path) -> None:
    root = _maildir(tmp_path)
    first = _put(root, "new", NAME)
    os.link(first, root / "cur" / (NAME + ":2,S"))  # what a scan racing a rename can see
    items = _items(MaildirSource(str(root)))
    assert [i.key for i in items] == ["1709285400.M7P4242.host"]


def test_two_files_sharing_a_unique_part_are_both_kept(tmp_path: Path) -> None:
    root = _maildir(tmp_path)
    _put(root, "new", NAME, b"Subject: one\n")
    _put(root, "cur", "1709285400.M7P4242.host,S=4:2,S", b"Subject: two\n")
    records = _records(MaildirSource(str(root)))
    assert sorted(r.open().read() for r in records) == [b"Subject: one\n", b"Subject: two\n"]
    assert len({r.key for r in records}) == 2


# ---------------------------------------------------------------- layouts and folders


@pytest.mark.parametrize("layout", ["maildir++", "fs"])
def test_layout_is_detected_and_can_be_forced(tmp_path: Path, layout: str) -> None:
    write_maildir(tmp_path, sample_mailbox(messages_per_folder=1), layout)
    assert MaildirSource(str(tmp_path)).layout == layout
    forced = MaildirSource(str(tmp_path), layout=layout)
    assert ("Projects", "Entwürfe") in _folders(forced)


def test_unknown_layout_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="'mh'") as err:
        MaildirSource(str(tmp_path), layout="mh")
    assert err.value.hint and "maildir_layout" in err.value.hint


def test_courier_style_folders_under_inbox_get_roles(tmp_path: Path) -> None:
    root = _maildir(tmp_path)
    _maildir(root / ".INBOX.Sent Messages")
    _maildir(root / ".INBOX.Papelera")
    folders = _folders(MaildirSource(str(root)))
    assert folders[("INBOX", "Sent Messages")].role == FolderRole.SENT
    assert folders[("INBOX", "Papelera")].role == FolderRole.TRASH


def test_missing_parent_empty_folder_and_undecodable_name(tmp_path: Path) -> None:
    root = _maildir(tmp_path)
    _maildir(root / ".a.b.c")  # neither .a nor .a.b exist
    _maildir(root / ".Empty")
    _maildir(root / ".R&D")  # written as UTF-8 by some tool: '&D' is not modified UTF-7
    folders = _folders(MaildirSource(str(root)))
    assert set(folders) == {("INBOX",), ("a", "b", "c"), ("Empty",), ("R&D",)}
    assert folders[("Empty",)].message_count == 0
    assert folders[("R&D",)].problems and "not modified UTF-7" in folders[("R&D",)].problems[0]


def test_inbox_named_folders_and_nameless_folders_are_migrated_not_dropped(tmp_path: Path) -> None:
    root = _maildir(tmp_path)
    _put(root, "cur", NAME + ":2,S")
    for name in (".INBOX", ".Inbox", "...", ".INBOX.Sub"):
        _put(_maildir(root / name), "cur", f"1709285401.M1P1.{name.strip('.') or 'dots'}:2,S")
    src = MaildirSource(str(root))
    folders = _folders(src)
    # ".INBOX" beside the inbox is a folder of its own below the inbox (as Courier shows it),
    # never merged into the inbox; a name of dots only keeps its name as stored
    assert set(folders) == {
        ("INBOX",),
        ("INBOX", "INBOX"),
        ("INBOX", "Inbox"),
        ("...",),
        ("INBOX", "Sub"),
    }
    assert folders[("INBOX",)].role == FolderRole.INBOX
    assert folders[("INBOX", "INBOX")].role == FolderRole.NONE
    for path, folder in folders.items():
        assert folder.message_count == 1, path
        assert len(_records(src, path)) == 1, path


def test_directories_that_are_no_folder_are_reported_in_inbox(tmp_path: Path) -> None:
    root = _maildir(tmp_path)
    (root / ".Broken").mkdir()  # a folder whose cur/ and new/ were lost: its mail lies loose
    _put(root / ".Broken", ".", "1709285401.M1P1.host:2,S")
    (root / "Archiv" / "cur").mkdir(parents=True)  # a LAYOUT=fs folder in a Maildir++ mailbox
    _maildir(root / ".Sent")
    (root / ".Sent" / "2019" / "cur").mkdir(parents=True)  # Maildir++ folders do not nest
    # nothing to report: empty directories, tmp/ only, what Dovecot and Courier keep
    (root / ".Empty").mkdir()
    (root / ".Parent" / "tmp").mkdir(parents=True)
    (root / "courierimapkeywords").mkdir()
    (root / "courierimapkeywords" / "1").write_text("x")
    (root / "sieve").mkdir()
    (root / "sieve" / "managesieve.sieve").write_text("keep;")
    (root / ".dovecot.sieve").symlink_to("sieve/managesieve.sieve")
    src = MaildirSource(str(root))
    assert src.layout == "maildir++"
    folders = _folders(src)
    assert set(folders) == {("INBOX",), ("Sent",)}
    skipped = {i.key: i for i in _items(src) if isinstance(i, SkippedMessage)}
    assert {k: s.reason for k, s in skipped.items()} == {
        "./.Broken/": "not-a-folder",
        "./Archiv/": "not-a-folder",
        "./.Sent/2019/": "not-a-folder",
    }
    assert "no cur/ or new/" in skipped["./.Broken/"].detail
    assert "LAYOUT=fs" in skipped["./Archiv/"].detail
    assert folders[("INBOX",)].message_count == 3


def test_fs_layout_levels_holding_files_and_hidden_directories_are_reported(tmp_path: Path) -> None:
    root = _maildir(tmp_path)
    _maildir(root / "Projects" / "2019")  # Projects: a level above a folder, fine
    (root / "Restored").mkdir()
    _put(root / "Restored", ".", "1709285401.M1P1.host:2,S")  # mail outside any cur/ or new/
    (root / ".notmuch" / "xapian").mkdir(parents=True)  # hidden: fs folder names have no dot
    src = MaildirSource(str(root))
    assert src.layout == "fs"
    assert set(_folders(src)) == {("INBOX",), ("Projects", "2019")}
    skipped = {i.key: i.reason for i in _items(src) if isinstance(i, SkippedMessage)}
    assert skipped == {"./Restored/": "not-a-folder", "./.notmuch/": "not-a-folder"}


def test_index_files_tmp_leftovers_and_stray_files_are_ignored(tmp_path: Path) -> None:
    root = _maildir(tmp_path)
    _put(root, "cur", NAME + ":2,S", b"Subject: real\n\n")
    _put(root, "tmp", "1709285999.M1P1.host", b"half-delivered")
    for junk in (
        "dovecot.index",
        "dovecot.index.log",
        "dovecot-uidlist",
        "dovecot-uidvalidity",
        "courierimapuiddb",
        "courierimapkeywords",
        "maildirsize",
        "subscriptions",
        "README.txt",
    ):
        (root / junk).write_bytes(b"not mail")
    (root / "courierimapkeywords.d").mkdir()
    (root / "cur" / ".hidden-editor-swap").write_bytes(b"x")
    (root / "stray-dir").mkdir()
    src = MaildirSource(str(root))
    assert set(_folders(src)) == {("INBOX",)}
    assert [r.open().read() for r in _records(src)] == [b"Subject: real\n\n"]


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))


def test_a_file_that_is_not_mail_is_listed_then_refused_with_a_reason(tmp_path: Path) -> None:
    # listing reads no file, so a file's bytes are judged when it is read (the first line only)
    root = _maildir(tmp_path)
    _put(root, "cur", "1709285401.M1P1.host:2,S", PNG)
    _put(root, "new", "notes.txt", b"just some notes\n")
    _put(root, "cur", NAME + ":2,S")
    src = MaildirSource(str(root))
    assert _folders(src)[("INBOX",)].message_count == 3
    records = {r.key: r for r in _records(src)}
    for key in ("1709285401.M1P1.host", "notes.txt"):
        with pytest.raises(SourceError) as err:
            records[key].open()
        assert err.value.reason == "not-mail" and key in err.value.message and err.value.hint
    with records["1709285400.M7P4242.host"].open() as fh:
        assert fh.read() == b"Subject: x\n\nbody\n"


@pytest.mark.parametrize(
    "raw",
    [
        b"Return-Path: <a@example.org>\nSubject: x\n\nbody\n",
        b"From a@example.org Mon Jan  1 00:00:00 2024\nSubject: left by a converter\n\nbody\n",
        b">From a@example.org Mon Jan  1 00:00:00 2024\nSubject: quoted\n\n",
        b"\xef\xbb\xbfSubject: a byte order mark first\n\nbody\n",
        b"Subject: Gr\xc3\xbc\xc3\x9fe, 8-bit\n\n\xe4\xf6\n",
        b"X-Only-Headers: yes\nSubject: nothing else",
        b"Subject: CRLF\r\nFrom: a@example.org\r\n\r\nbody\r\n",
        b"Received: from mx1\n\tby mx2 with ESMTP\nSubject: folded\n\n",
        b"Subject : obsolete blank before the colon\n\n",
        b"\n",  # an empty header block: a body only (a lone line end is a message, see real mail)
        b"\r\nbody after an empty header block\r\n",
        b"\tfolded line first: a header block whose first line was lost\n\n",
    ],
)
def test_real_mail_with_odd_first_lines_is_mail(tmp_path: Path, raw: bytes) -> None:
    assert looks_like_mail(raw)
    root = _maildir(tmp_path)
    _put(root, "cur", NAME + ":2,S", raw)
    [record] = _records(MaildirSource(str(root)))
    with record.open() as fh:
        assert fh.read() == raw


@pytest.mark.parametrize(
    "raw",
    [
        PNG,
        b"PK\x03\x04\x14\x00\x06\x00",  # a zip (an .odt, a .docx)
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
        b"\x7fELF\x02\x01\x01\x00",
        b"\x00" * 4096,  # blocks a crash left zeroed
        b"just some notes\n",
        b"X",
    ],
)
def test_what_is_not_mail(raw: bytes) -> None:
    assert not looks_like_mail(raw)


def test_non_regular_files_are_skipped_without_blocking(tmp_path: Path) -> None:
    root = _maildir(tmp_path)
    os.mkfifo(root / "cur" / "fifo:2,S")  # opening a FIFO would block forever
    (root / "new" / "adir").mkdir()
    (root / "new" / "dangling").symlink_to(root / "nowhere")
    _put(root, "cur", NAME + ":2,S")
    items = _items(MaildirSource(str(root)))
    skipped = {i.key: i.reason for i in items if isinstance(i, SkippedMessage)}
    # a link, even to a missing file, is reported as a link: it is never followed
    assert skipped == {"fifo": "not-a-file", "adir": "not-a-file", "dangling": "symlink"}
    assert [i.key for i in items if isinstance(i, MessageRecord)] == ["1709285400.M7P4242.host"]


def test_empty_mailbox_has_an_empty_inbox(tmp_path: Path) -> None:
    assert [(f.path, f.message_count) for f in MaildirSource(str(tmp_path)).folders()] == [
        (("INBOX",), 0)
    ]


def test_missing_mailbox_names_the_path(tmp_path: Path) -> None:
    settings = SourceSettings(kind="maildir")
    with pytest.raises(SourceError) as err:
        open_source(settings, mailbox_path=str(tmp_path / "nope"))
    assert err.value.reason == "no-mailbox" and str(tmp_path / "nope") in str(err.value)
    assert err.value.hint


def test_open_source_resolves_relative_paths_under_root(tmp_path: Path) -> None:
    write_maildir(tmp_path / "users" / "alice" / "Maildir", sample_mailbox(messages_per_folder=1))
    settings = SourceSettings(kind="maildir", root=str(tmp_path / "users"))
    with open_source(settings, mailbox_path="alice/Maildir") as src:
        assert ("Vacía",) in {f.path for f in src.folders()}


def test_bytes_sizes_and_dates_come_from_the_files(tmp_path: Path) -> None:
    box: dict[tuple[str, ...], list[SampleMessage]] = {("INBOX",): hard_case_messages()}
    write_maildir(tmp_path, box)
    records = _records(MaildirSource(str(tmp_path)))
    got = []
    refused = []
    for r in records:
        try:
            got.append((r.open().read(), r.size, r.internal_date))
        except SourceError as exc:
            refused.append((exc.reason, r.size))
    want = sorted((m.raw, len(m.raw), m.internal_date) for m in box[("INBOX",)] if is_mail(m))
    assert sorted(got) == want
    # the PNG and the lone "X" of the hard cases are no mail: listed, refused when read
    assert sorted(refused) == sorted(
        ("not-mail", len(m.raw)) for m in box[("INBOX",)] if not is_mail(m)
    )
    assert len(refused) == 2


# ---------------------------------------------------------------- permissions


def test_unreadable_file_and_folder_are_reported_not_fatal(shared_dir: Path) -> None:
    root = _maildir(shared_dir / "Maildir")
    _put(root, "cur", NAME + ":2,S", b"Subject: readable\n")
    _put(root, "cur", "1709285401.M8P1.host:2,S", b"Subject: secret\n").chmod(0o000)
    _put(_maildir(root / ".Locked"), "cur", "1709285402.M9P1.host:2,S")
    for p in [shared_dir, *shared_dir.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
    (root / ".Locked" / "cur").chmod(0o000)
    out = run_unprivileged("maildir", root)
    opens = out["opens"]
    assert opens["1709285400.M7P4242.host"] == "Subject: readable\n"
    refused = opens["1709285401.M8P1.host"]
    assert isinstance(refused, list) and refused[0] == "unreadable"
    assert "1709285401.M8P1.host" in refused[1]
    assert opens["cur/"] == ["skipped", "unreadable"]
    assert any("permission denied" in p.lower() for p in out["folders"]["Locked"])  # type: ignore[attr-defined]


def _age(root: Path, seconds: int = 60) -> None:
    """Make new/ and cur/ look last changed a while ago (a mailbox nobody touched lately)."""
    past = int(datetime.now(UTC).timestamp()) - seconds
    for sub in ("new", "cur"):
        os.utime(root / sub, (past, past))


def test_delta_listing_reuses_an_unchanged_folder_and_sees_a_changed_one(tmp_path: Path) -> None:
    """folders() lists each folder; a delta pass's messages(known=...) reuses that listing when
    the directory has not changed since, and lists again when a live server renamed or
    delivered something in between: a message moved new/ -> cur/ is neither lost nor doubled."""
    root = _maildir(tmp_path / "m")
    _put(root, "new", "1700000001.M1P1.h,S=17")
    _put(root, "cur", "1700000002.M2P2.h,S=17:2,S")
    _put(root, "cur", "1700000003.M3P3.h,S=17:2,S")
    _age(root)
    known = {"1700000003.M3P3.h"}

    src = MaildirSource(str(root))
    inbox = _folders(src)[("INBOX",)]
    assert (inbox.message_count, inbox.byte_total) == (3, 51)
    listed: list[object] = []
    real_listdir = os.listdir

    def counting_listdir(path: object) -> list[str]:
        listed.append(path)
        return real_listdir(path)  # type: ignore[arg-type]

    try:
        os.listdir = counting_listdir  # type: ignore[assignment]
        found = src.messages(inbox, known=known)
        listing = list(found)
    finally:
        os.listdir = real_listdir
    # a known key comes with the flags its file name carries, and nothing else
    assert [(r.key, r.flags) for r in listing if isinstance(r, KnownMessage)] == [
        ("1700000003.M3P3.h", Flags(seen=True))
    ]
    assert [r.key for r in listing if isinstance(r, MessageRecord)] == [
        "1700000001.M1P1.h",
        "1700000002.M2P2.h",
    ]
    assert listed == []  # both directories reused from folders()
    assert found.known_seen == 1  # what the listing learned: one key neither stat'ed nor offered

    src = MaildirSource(str(root))
    inbox = _folders(src)[("INBOX",)]
    # between the folder listing and the message listing the server reads the new message
    # (new/ -> cur/ with flags) and a message arrives
    os.rename(root / "new" / "1700000001.M1P1.h,S=17", root / "cur" / "1700000001.M1P1.h,S=17:2,S")
    _put(root, "new", "1700000004.M4P4.h,S=17")
    records = {r.key: r for r in src.messages(inbox, known=known) if isinstance(r, MessageRecord)}
    assert sorted(records) == ["1700000001.M1P1.h", "1700000002.M2P2.h", "1700000004.M4P4.h"]
    assert records["1700000001.M1P1.h"].flags.seen is True
