"""mbox specifics: variants and quoting, flags headers, From_ dates, keys while the spool grows
or is rewritten, rewrite detection, tolerances, and bounded memory on a 40 MB message."""

from __future__ import annotations

import os
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from migrator.adapters.sources import mbox_index, open_source
from migrator.adapters.sources.mbox import MboxSource
from migrator.model.errors import SourceError
from migrator.model.mail import Flags, FolderInfo, FolderRole, MessageRecord, SkippedMessage
from migrator.model.plan import SourceSettings
from migrator.samples.mail import (
    MBOX_VARIANTS,
    SampleMessage,
    carried_by,
    hard_case_messages,
    mbox_bytes,
    mbox_stored,
    sample_mailbox,
    write_mbox,
)
from tests.fixtures.sources import run_unprivileged  # shared_dir: a fixture of that plugin


def _inbox(src: MboxSource) -> FolderInfo:
    return src.folders()[0]


def _records(src: MboxSource, folder: FolderInfo | None = None) -> list[MessageRecord]:
    items = list(src.messages(folder or _inbox(src)))
    return [i for i in items if isinstance(i, MessageRecord)]


def _read(r: MessageRecord) -> bytes:
    with r.open() as fh:
        return fh.read()


def _msg(name: str, body: bytes, when: int = 0) -> SampleMessage:
    raw = b"From: a@example.org\nSubject: " + name.encode() + b"\n\n" + body
    return SampleMessage(name, raw, Flags(), datetime.fromtimestamp(1709285400 + when, UTC))


def _spool(tmp_path: Path, messages: list[SampleMessage], variant: str = "mboxrd") -> Path:
    path = tmp_path / "spool"
    path.write_bytes(mbox_bytes(messages, variant))
    return path


# ---------------------------------------------------------------- variants and quoting


@pytest.mark.parametrize("variant", MBOX_VARIANTS)
@pytest.mark.parametrize("forced", [True, False])
def test_every_variant_gives_back_what_it_carries(
    tmp_path: Path, variant: str, forced: bool
) -> None:
    msgs = [m for m in hard_case_messages() if carried_by(m, variant)]
    src = MboxSource(str(_spool(tmp_path, msgs, variant)), variant=variant if forced else "auto")
    records = _records(src)
    assert sorted(_read(r) for r in records) == sorted(mbox_stored(m, variant) for m in msgs)
    assert all(r.size == len(_read(r)) for r in records)


def test_mboxrd_unquotes_exactly_one_level(tmp_path: Path) -> None:
    body = b"From a\n>From b\n>>From c\n>>>From d\n> From e\nFrom\n"
    [r] = _records(MboxSource(str(_spool(tmp_path, [_msg("q", body)], "mboxrd"))))
    assert _read(r).endswith(b"\n\n" + body)
    assert b">From a" in (tmp_path / "spool").read_bytes()  # it really was quoted on disk


def test_mboxo_loses_the_difference_between_quoted_and_real_gt_from(tmp_path: Path) -> None:
    body = b"From a\n>From b\n>>From c\n"
    [r] = _records(MboxSource(str(_spool(tmp_path, [_msg("q", body)], "mboxo")), variant="mboxo"))
    assert _read(r).endswith(b"\n\nFrom a\nFrom b\n>>From c\n")


def test_without_final_newline_mboxrd_adds_one_and_mboxcl2_keeps_it_exact(tmp_path: Path) -> None:
    msg = _msg("nl", b"no newline at the end")
    [rd, _] = _records(MboxSource(str(_spool(tmp_path, [msg, msg], "mboxrd"))))
    assert _read(rd) == mbox_stored(msg, "mboxrd") + b"\n"
    cl2 = tmp_path / "cl2"
    cl2.mkdir()
    [first, second] = _records(MboxSource(str(_spool(cl2, [msg, msg], "mboxcl2"))))
    assert _read(first) == _read(second) == mbox_stored(msg, "mboxcl2")
    assert first.key != second.key


def test_mboxcl2_body_with_unquoted_from_lines_is_delimited_by_content_length(
    tmp_path: Path,
) -> None:
    body = b"From me Thu Nov  7 03:04:05 2024\nlooks like a separator\n"
    msgs = [_msg("a", body), _msg("b", b"second\n", 1)]
    records = _records(MboxSource(str(_spool(tmp_path, msgs, "mboxcl2"))))
    assert [_read(r) for r in records] == [mbox_stored(m, "mboxcl2") for m in msgs]


def test_wrong_content_length_falls_back_to_from_lines(tmp_path: Path) -> None:
    data = (
        b"From a@b Thu Nov  7 03:04:05 2024\nContent-Length: 3\nSubject: one\n\nbody one\n\n"
        b"From a@b Thu Nov  7 03:04:06 2024\nContent-Length: 99999\nSubject: two\n\nbody two\n\n"
    )
    path = tmp_path / "spool"
    path.write_bytes(data)
    records = _records(MboxSource(str(path)))
    assert [_read(r) for r in records] == [
        b"Content-Length: 3\nSubject: one\n\nbody one\n",
        b"Content-Length: 99999\nSubject: two\n\nbody two\n",
    ]


# ---------------------------------------------------------------- flags and dates


def test_flags_from_status_x_status_and_x_keywords(tmp_path: Path) -> None:
    data = (
        b"From a@b Thu Nov  7 03:04:05 2024\nStatus: RO\nX-Status: AFTD\n"
        b"X-Keywords: $Label1, Work\nSubject: s\n\nb\n\n"
        b"From a@b Thu Nov  7 03:04:05 2024\nStatus: O\nSubject: s2\n\nb\n\n"
        b"From a@b Thu Nov  7 03:04:05 2024\nSubject: s3\n\nStatus: R\n"
    )
    path = tmp_path / "spool"
    path.write_bytes(data)
    flags = [r.flags for r in _records(MboxSource(str(path)))]
    assert flags == [
        Flags(
            seen=True,
            answered=True,
            flagged=True,
            deleted=True,
            draft=True,
            keywords=("$Label1", "Work"),
        ),
        Flags(),
        Flags(),  # a Status line in the body is not a header
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"From a@b Thu Nov  7 03:04:05 2024", datetime(2024, 11, 7, 3, 4, 5, tzinfo=UTC)),
        (b"From a@b Thu Nov 7 03:04:05 2024 +0200", datetime(2024, 11, 7, 1, 4, 5, tzinfo=UTC)),
        (b"From a@b Mon Jan  1 00:00 2024", datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC)),
        (b"From  Thu Nov  7 03:04:05 UTC 2024", datetime(2024, 11, 7, 3, 4, 5, tzinfo=UTC)),
        (b"From a@b sometime 12:00", None),
    ],
)
def test_internal_date_from_the_from_line(line: bytes, expected: datetime | None) -> None:
    assert mbox_index.is_from_line(line)
    assert mbox_index.from_line_date(line) == expected


# ---------------------------------------------------------------- keys


def _keys(path: Path) -> dict[str, bytes]:
    return {r.key: _read(r) for r in _records(MboxSource(str(path)))}


def test_keys_stay_while_the_spool_grows(tmp_path: Path) -> None:
    first = [_msg(f"m{i}", b"body\n", i) for i in range(5)]
    path = _spool(tmp_path, first)
    before = _keys(path)
    with path.open("ab") as fh:
        fh.write(mbox_bytes([_msg("new", b"late\n", 99)], "mboxrd"))
    after = _keys(path)
    assert len(after) == 6 and all(after[k] == v for k, v in before.items())


def test_keys_survive_a_mail_client_rewrite(tmp_path: Path) -> None:
    original = [_msg(f"m{i}", b"body %d\n" % i, i) for i in range(5)]
    path = _spool(tmp_path, original)
    key_of = {v: k for k, v in _keys(path).items()}
    # the client marks m3 read and flagged (its Status header grows, later offsets shift)
    # and deletes m0 (every offset shifts)
    rewritten = [
        *original[1:3],
        replace(original[3], flags=Flags(seen=True, flagged=True)),
        original[4],
    ]
    path.write_bytes(mbox_bytes(rewritten, "mboxrd"))
    after = _records(MboxSource(str(path)))
    assert [r.key for r in after] == [key_of[mbox_stored(m, "mboxrd")] for m in original[1:]]
    assert after[2].flags == Flags(seen=True, flagged=True)


def test_open_after_a_rewrite_finds_the_message_again_or_says_vanished(tmp_path: Path) -> None:
    msgs = [_msg(f"m{i}", b"body %d\n" % i, i) for i in range(4)]
    path = _spool(tmp_path, msgs)
    records = _records(MboxSource(str(path)))
    path.write_bytes(mbox_bytes(msgs[1:], "mboxrd"))  # m0 deleted: every offset moved
    assert _read(records[3]) == mbox_stored(msgs[3], "mboxrd")
    with pytest.raises(SourceError) as err:
        records[0].open()
    assert err.value.reason == "vanished"


# ---------------------------------------------------------------- rewrites during a pass


class _Rewriter:
    """Rewrites the spool (as a mail client would) while a pass is indexing it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, path: Path, contents: list[bytes]) -> None:
        self.passes = 0
        self.contents = contents
        original = mbox_index.Indexer.entries

        def entries(indexer: mbox_index.Indexer, *, strict: bool = False) -> list[mbox_index.Entry]:
            found = original(indexer, strict=strict)
            self.passes += 1
            if self.contents:
                path.write_bytes(self.contents.pop(0))
            return found

        monkeypatch.setattr(mbox_index.Indexer, "entries", entries)


def test_spool_rewritten_mid_pass_restarts_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    msgs = [_msg(f"m{i}", b"body\n", i) for i in range(4)]
    path = _spool(tmp_path, msgs)
    shorter = mbox_bytes([msgs[0], msgs[2]], "mboxrd")
    rewriter = _Rewriter(monkeypatch, path, [shorter])
    records = _records(MboxSource(str(path)))
    assert rewriter.passes == 2
    assert [_read(r) for r in records] == [mbox_stored(msgs[i], "mboxrd") for i in (0, 2)]


def test_spool_that_keeps_changing_is_an_error_not_half_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    msgs = [_msg(f"m{i}", b"body\n", i) for i in range(4)]
    path = _spool(tmp_path, msgs)
    # a client that rewrites the spool during every pass (not an append: m0 comes and goes)
    _Rewriter(
        monkeypatch, path, [mbox_bytes(msgs[i % 2 : 2 + i % 2 * 2], "mboxrd") for i in range(6)]
    )
    src = MboxSource(str(path))
    inbox = _inbox(src)
    assert "kept changing" in inbox.problems[0] and inbox.message_count == 0
    [skipped] = list(src.messages(FolderInfo(("INBOX",), FolderRole.INBOX, "")))
    assert isinstance(skipped, SkippedMessage)
    assert (skipped.key, skipped.reason) == ("folder/", "changed") and str(path) in skipped.detail


def test_append_during_a_pass_keeps_the_pass_and_drops_a_half_written_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    msgs = [_msg(f"m{i}", b"body\n", i) for i in range(3)]
    whole = mbox_bytes(msgs, "mboxrd")
    half = whole[: len(whole) - 4]  # the last message is still being delivered
    path = tmp_path / "spool"
    path.write_bytes(half)
    late = _msg("m3", b"x\n", 3)
    rewriter = _Rewriter(monkeypatch, path, [whole + mbox_bytes([late], "mboxrd")])
    src = MboxSource(str(path))
    inbox = _inbox(src)  # the pass that saw the delivery in progress
    assert rewriter.passes == 1
    assert inbox.message_count == 2
    assert inbox.byte_total == sum(len(mbox_stored(m, "mboxrd")) for m in msgs[:2])
    records = _records(src, inbox)  # the file changed since: a new pass sees everything
    assert [_read(r) for r in records] == [mbox_stored(m, "mboxrd") for m in [*msgs, late]]


def test_spool_shrinking_while_a_message_streams_is_reported(tmp_path: Path) -> None:
    msgs = [_msg("big", b"x" * 3_000_000 + b"\n")]
    path = _spool(tmp_path, msgs)
    [record] = _records(MboxSource(str(path)))
    with record.open() as fh:
        fh.read(10)
        os.truncate(path, 1000)
        with pytest.raises(SourceError) as err:
            fh.read()
    assert err.value.reason == "changed"


# ---------------------------------------------------------------- tolerances and folders


def test_garbage_before_the_first_from_line_is_skipped_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    path.write_bytes(b"leftover junk\n\n" + mbox_bytes([_msg("m", b"ok\n")], "mboxrd"))
    src = MboxSource(str(path))
    inbox = _inbox(src)
    assert inbox.message_count == 1 and "15 bytes" in inbox.problems[0]
    items = list(src.messages(inbox))
    assert isinstance(items[0], SkippedMessage) and items[0].reason == "not-mail"
    assert isinstance(items[1], MessageRecord)


# ---------------------------------------------------------------- From_ line styles
# Shapes seen in real exports (MimeKit's test data among them): Thunderbird writes "From - "
# with or without a date and does not quote "From " in bodies; Google exports write
# "From <id>@xxx", with or without a date; some files begin with a byte order mark.


def _msg_bytes(subject: bytes, body: bytes = b"body\n") -> bytes:
    return b"From: a@example.org\nSubject: " + subject + b"\n\n" + body


@pytest.mark.parametrize(
    ("separators", "body"),
    [
        ([b"From - ", b"From - ", b"From - "], b"body\n"),
        ([b"From -", b"From - Mon Jun  3 12:50:27 1996", b"From - "], b"body\n"),
        (
            [b"From - Mon Jan  1 00:00:00 2024", b"From - ", b"From - Tue Jan  2 00:00:00 2024"],
            b"body\n",
        ),
        # Thunderbird leaves body lines unquoted: a line that looks classic must not split
        (
            [b"From - ", b"From - "],
            b"From Russia with love\nFrom me Thu Nov  7 03:04:05 2024 to you\n",
        ),
        ([b"From 1844347792267117879@xxx"] * 4, b"From here on\n"),
        (
            [
                b"From 1844347792267117879@xxx Thu Jan 01 00:00:00 +0000 2024",
                b"From 1844347839636459560@xxx Fri Jan 02 00:00:00 +0000 2024",
                b"From 1844347853750471882@xxx",
            ],
            b"body\n",
        ),
        ([b"From MAILER-DAEMON", b"From MAILER-DAEMON"], b"body\n"),
    ],
)
def test_every_from_line_style_gives_every_message(
    tmp_path: Path, separators: list[bytes], body: bytes
) -> None:
    msgs = [_msg_bytes(b"m%d" % i, body) for i in range(len(separators))]
    data = b"".join(sep + b"\n" + m + b"\n" for sep, m in zip(separators, msgs, strict=True))
    for where in ("spool", "mail/Folder"):  # the spool, and a file in the folders directory
        (tmp_path / "mail").mkdir(exist_ok=True)
        (tmp_path / where).write_bytes(data)
    (tmp_path / "other").write_bytes(b"")
    src = MboxSource(str(tmp_path / "spool"), folders_dir=str(tmp_path / "mail"))
    folders = {f.path: f for f in src.folders()}
    assert set(folders) == {("INBOX",), ("Folder",)}  # the folder file is an mbox, not "notes"
    for folder in folders.values():
        items = list(src.messages(folder))
        assert not [i for i in items if isinstance(i, SkippedMessage)], items
        assert [_read(r) for r in items if isinstance(r, MessageRecord)] == msgs
        assert folder.message_count == len(msgs)


def test_thunderbird_dates_are_internal_dates_and_undated_lines_have_none(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    path.write_bytes(
        b"From - \n" + _msg_bytes(b"a") + b"\nFrom - Mon Jun  3 12:50:27 1996\n" + _msg_bytes(b"b")
    )
    first, second = _records(MboxSource(str(path)))
    assert first.internal_date is None
    assert second.internal_date == datetime(1996, 6, 3, 12, 50, 27, tzinfo=UTC)


def test_a_byte_order_mark_before_the_first_from_line_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    path.write_bytes(b"\xef\xbb\xbfFrom -\n" + _msg_bytes(b"a") + b"\nFrom -\n" + _msg_bytes(b"b"))
    src = MboxSource(str(path))
    items = list(src.messages(_inbox(src)))
    assert [_read(r) for r in items if isinstance(r, MessageRecord)] == [
        _msg_bytes(b"a"),
        _msg_bytes(b"b"),
    ]
    assert not [i for i in items if isinstance(i, SkippedMessage)]


def test_junk_then_a_thunderbird_mbox_skips_only_the_junk(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    path.write_bytes(
        b"leftover junk\n\nFrom - Mon Jan  1 00:00:00 2024\n"
        + _msg_bytes(b"a")
        + b"\nFrom - \n"
        + _msg_bytes(b"b")
    )
    src = MboxSource(str(path))
    items = list(src.messages(_inbox(src)))
    assert [(i.key, i.reason) for i in items if isinstance(i, SkippedMessage)] == [
        ("offset-0", "not-mail")
    ]
    assert [_read(r) for r in items if isinstance(r, MessageRecord)] == [
        _msg_bytes(b"a"),
        _msg_bytes(b"b"),
    ]


def test_missing_spool_or_folders_dir_is_no_mailbox_and_empty_spool_is_fine(tmp_path: Path) -> None:
    settings = SourceSettings(kind="mbox")
    with pytest.raises(SourceError) as err:
        open_source(settings, mailbox_path=str(tmp_path / "nobody"))
    assert err.value.reason == "no-mailbox" and str(tmp_path / "nobody") in err.value.message
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(SourceError) as err:
        open_source(
            settings, mailbox_path=str(tmp_path / "empty"), folders_path=str(tmp_path / "x")
        )
    assert err.value.reason == "no-mailbox" and "folders" in err.value.message
    with open_source(settings, mailbox_path=str(tmp_path / "empty")) as src:
        assert [(f.path, f.message_count) for f in src.folders()] == [(("INBOX",), 0)]


def test_folders_directory_nesting_names_and_what_is_ignored(tmp_path: Path) -> None:
    mail = tmp_path / "mail"
    write_mbox(tmp_path / "spool", sample_mailbox(messages_per_folder=1), "mboxrd", mail)
    (mail / ".imap").mkdir()
    (mail / ".imap" / "INBOX").write_bytes(b"dovecot index")
    (mail / ".subscriptions").write_text("Sent\n")
    (mail / "notes.txt").write_bytes(b"not an mbox\n")
    (mail / "inbox").write_bytes(mbox_bytes([_msg("dup", b"x\n")], "mboxrd"))
    (mail / "Entwürfe-utf8").write_bytes(b"")
    settings = SourceSettings(kind="mbox", folders_path=str(mail))
    with open_source(settings, mailbox_path=str(tmp_path / "spool")) as src:
        paths = [f.path for f in src.folders()]
    assert paths[0] == ("INBOX",)
    assert ("Projects", "Entwürfe") in paths and ("Vacía",) in paths
    assert ("Entwürfe-utf8",) in paths
    assert not {("notes.txt",), ("inbox",), (".imap",), ("Projects",)} & set(paths)


# ---------------------------------------------------------------- memory


def test_streaming_a_40_mb_message_keeps_memory_bounded(tmp_path: Path) -> None:
    big = next(m for m in hard_case_messages(big_mb=40) if m.name == "big-attachment")
    small = _msg("after", b"small\n", 5)
    path = tmp_path / "spool"
    with path.open("wb") as fh:
        fh.write(mbox_bytes([big], "mboxrd"))
        fh.write(mbox_bytes([small], "mboxrd"))
    expected_size = len(mbox_stored(big, "mboxrd"))
    del big
    tracemalloc.start()
    try:
        src = MboxSource(str(path))
        records = _records(src)
        total = 0
        with records[0].open() as fh:
            while chunk := fh.read(256 * 1024):
                total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == records[0].size == expected_size > 40 * 1024 * 1024
    assert _read(records[1]) == mbox_stored(small, "mboxrd")
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes while indexing and streaming"


def test_open_after_the_message_own_status_was_rewritten_reads_the_new_bytes(
    tmp_path: Path,
) -> None:
    msgs = [_msg(f"m{i}", b"body %d\n" % i, i) for i in range(3)]
    path = _spool(tmp_path, msgs)
    records = _records(MboxSource(str(path)))
    # the client marks m0 answered: its X-Status line appears, m0 grows, its From_ line stays
    msgs[0] = replace(msgs[0], flags=Flags(answered=True))
    path.write_bytes(mbox_bytes(msgs, "mboxrd"))
    assert _read(records[0]) == mbox_stored(msgs[0], "mboxrd")
    assert _read(records[2]) == mbox_stored(msgs[2], "mboxrd")


def test_open_while_the_spool_grows_needs_no_new_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    msgs = [_msg(f"m{i}", b"body %d\n" % i, i) for i in range(3)]
    path = _spool(tmp_path, msgs)
    src = MboxSource(str(path))
    records = _records(src)
    with path.open("ab") as fh:
        fh.write(mbox_bytes([_msg("late", b"x\n", 9)], "mboxrd"))
    passes: list[int] = []
    original = mbox_index.Indexer.entries

    def counted(ix: mbox_index.Indexer, *, strict: bool = False) -> list[mbox_index.Entry]:
        passes.append(1)
        return original(ix, strict=strict)

    monkeypatch.setattr(mbox_index.Indexer, "entries", counted)
    assert [_read(r) for r in records] == [mbox_stored(m, "mboxrd") for m in msgs]
    assert passes == []


def test_unreadable_spool_is_a_skipped_folder_not_a_crash(shared_dir: Path) -> None:
    spool = shared_dir / "alice"
    spool.write_bytes(mbox_bytes([_msg("m", b"x\n")], "mboxrd"))
    spool.chmod(0o000)
    out = run_unprivileged("mbox", spool)
    assert any("Permission denied" in p for p in out["folders"]["INBOX"])  # type: ignore[attr-defined]
    assert out["opens"] == {"folder/": ["skipped", "unreadable"]}


def test_a_folder_file_deleted_while_it_is_indexed_holds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = _spool(tmp_path, [_msg("inbox", b"x\n")])
    mail = tmp_path / "mail"
    mail.mkdir()
    (mail / "Old").write_bytes(mbox_bytes([_msg("old", b"y\n")], "mboxrd"))
    src = MboxSource(str(spool), folders_dir=str(mail))
    old = next(f for f in src.folders() if f.path == ("Old",))
    (mail / "Old").write_bytes(mbox_bytes([_msg("old", b"y\n"), _msg("new", b"z\n", 1)], "mboxrd"))
    original = mbox_index.Indexer.entries

    def deleting(ix: mbox_index.Indexer, *, strict: bool = False) -> list[mbox_index.Entry]:
        (mail / "Old").unlink(missing_ok=True)  # the user deletes the folder mid-pass
        return original(ix, strict=strict)

    monkeypatch.setattr(mbox_index.Indexer, "entries", deleting)
    assert list(src.messages(old)) == []
