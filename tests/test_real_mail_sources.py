"""Oddities found by running public mail corpora through migrator (bench/real_mail.py), each
reproduced with a message written here:

- mailboxes hold messages of 0 bytes (a failed delivery in a Maildir, two From_ lines with
  nothing between them in an mbox, the same file served over IMAP): every source reports them
  as skipped with reason "empty", found from the size alone, instead of handing the target
  something it must refuse (which the report then blamed on Exchange); a message of a lone
  line end is a message like any other and is migrated as it is;
- an mbox message whose header block is longer than what the indexer reads for its key
  (a mail to thousands of recipients) kept its Status/X-Status flags at the end of the block
  unread: it arrived unread and unflagged.
"""

from __future__ import annotations

import os
from pathlib import Path

from migrator.adapters.sources.imap import ImapSource
from migrator.adapters.sources.imap_connection import ImapAccess
from migrator.adapters.sources.maildir import MaildirSource
from migrator.adapters.sources.mbox import MboxSource
from migrator.model.mail import Flags, KnownMessage, MessageRecord, SkippedMessage
from migrator.model.reasons import Reason
from tests.fixtures.dovecot import DovecotServer

GOOD = (
    b"From: Ana <ana@ife.org.mx>\nTo: luis@ife.org.mx\nSubject: informe\n"
    b"Date: Tue, 2 Jun 2020 09:15:00 -0500\nMessage-ID: <informe.1@ife.org.mx>\n\nAdjunto el informe.\n"
)


def _listing(
    source: MaildirSource | MboxSource | ImapSource,
) -> list[MessageRecord | SkippedMessage]:
    return [item for folder in source.folders() for item in source.messages(folder)]


def _maildir(root: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


def test_maildir_files_without_a_message_are_skipped_as_empty(tmp_path: Path) -> None:
    box = _maildir(tmp_path / "Maildir")
    (box / "cur" / "1591000000.M1P7.mx1:2,S").write_bytes(GOOD)
    (box / "cur" / "1591000001.M2P7.mx1:2,S").write_bytes(b"")  # delivery died after creat()
    (box / "new" / "1591000002.M3P7.mx1").write_bytes(b"\n")  # odd, but bytes to keep as they are
    with MaildirSource(str(box)) as source:
        items = _listing(source)
    skipped = {i.key: i for i in items if isinstance(i, SkippedMessage)}
    assert set(skipped) == {"1591000001.M2P7.mx1"}
    assert skipped["1591000001.M2P7.mx1"].reason == Reason.EMPTY
    assert "is empty (0 bytes)" in skipped["1591000001.M2P7.mx1"].detail
    records = {i.key: i for i in items if isinstance(i, MessageRecord)}
    assert set(records) == {"1591000000.M1P7.mx1", "1591000002.M3P7.mx1"}
    with records["1591000000.M1P7.mx1"].open() as stream:
        assert stream.read() == GOOD
    with records["1591000002.M3P7.mx1"].open() as stream:
        assert stream.read() == b"\n"


def test_an_empty_mbox_message_is_skipped_and_its_neighbours_are_intact(tmp_path: Path) -> None:
    spool = tmp_path / "inbox"
    spool.write_bytes(
        b"From ana@ife.org.mx Tue Jun  2 14:15:00 2020\n" + GOOD + b"\n"
        b"From MAILER-DAEMON Tue Jun  2 14:16:00 2020\n\n"  # nothing but the separator line
        b"From MAILER-DAEMON Tue Jun  2 14:16:30 2020\n\n\n"  # a message of one blank line
        b"From luis@ife.org.mx Tue Jun  2 14:17:00 2020\nSubject: otro\n\n>From here on\n"
    )
    with MboxSource(str(spool)) as source:
        items = _listing(source)
        assert [type(i).__name__ for i in items] == [
            "MessageRecord",
            "SkippedMessage",
            "MessageRecord",
            "MessageRecord",
        ]
        empty = items[1]
        assert isinstance(empty, SkippedMessage) and empty.reason == Reason.EMPTY
        first, blank, last = items[0], items[2], items[3]
        assert isinstance(first, MessageRecord) and isinstance(blank, MessageRecord)
        assert isinstance(last, MessageRecord)
        for record, raw in (
            (first, GOOD),
            (blank, b"\n"),
            (last, b"Subject: otro\n\nFrom here on\n"),
        ):
            with record.open() as stream:
                assert stream.read() == raw


def test_an_empty_message_on_an_imap_server_is_skipped(dovecot: DovecotServer) -> None:
    user, password = dovecot.new_user()
    dovecot.deliver(user, ("INBOX",), GOOD, flags="S")
    dovecot.deliver(user, ("INBOX",), b"")
    dovecot.chown_tree(user)
    access = ImapAccess(
        host=dovecot.host, port=dovecot.port, user=user, password=password, tls="none"
    )
    with ImapSource(access) as source:
        items = _listing(source)
        records = [i for i in items if isinstance(i, MessageRecord)]
        skipped = [i for i in items if isinstance(i, SkippedMessage)]
        assert [s.reason for s in skipped] == [Reason.EMPTY]
        assert len(records) == 1 and records[0].flags.seen
        with records[0].open() as stream:
            assert stream.read() == GOOD.replace(b"\n", b"\r\n")


def _huge_header_message(status: bytes) -> bytes:
    # a mail to 4,000 recipients: 90 KB of To: before the headers a mail reader adds last
    recipients = b",\n ".join(b"persona%04d@ife.org.mx" % n for n in range(4000))
    return (
        b"From: rh@ife.org.mx\nTo: " + recipients + b"\nSubject: aviso general\n"
        b"Message-ID: <aviso@ife.org.mx>\n" + status + b"\nA todo el personal.\n"
    )


def test_mbox_flags_after_a_header_block_of_90_kb_are_kept(tmp_path: Path) -> None:
    spool = tmp_path / "inbox"
    from_line = b"From rh@ife.org.mx Wed Jun  3 08:00:00 2020\n"
    read_flagged = _huge_header_message(b"Status: RO\nX-Status: FA\nX-Keywords: $Aviso\n")
    assert len(read_flagged) > 90_000
    spool.write_bytes(
        from_line + read_flagged + b"\n" + from_line.replace(b"08:00", b"08:01") + GOOD
    )
    with MboxSource(str(spool)) as source:
        first, second = _listing(source)
        assert isinstance(first, MessageRecord) and isinstance(second, MessageRecord)
        assert first.flags.seen and first.flags.flagged and first.flags.answered
        assert first.flags.keywords == ("$Aviso",)
        assert not second.flags.seen
        with first.open() as stream:
            assert stream.read() == read_flagged
        key = first.key
    # the reader marks it unread again: Status is rewritten, the key must not change
    unread = _huge_header_message(b"Status: O\n")
    spool.write_bytes(from_line + unread + b"\n" + from_line.replace(b"08:00", b"08:01") + GOOD)
    os.utime(spool, (1_700_000_000, 1_700_000_000))
    with MboxSource(str(spool)) as source:
        first, _ = _listing(source)
        assert isinstance(first, MessageRecord)
        assert first.key == key and not first.flags.seen and not first.flags.flagged


def test_every_file_sharing_a_unique_part_is_listed_once(tmp_path: Path) -> None:
    # a backup restored twice over a live Maildir: the same delivery under three flag states,
    # plus a different message a broken tool gave the same unique part in new/
    box = _maildir(tmp_path / "Maildir")
    copies = {
        "cur/1591000000.M1P7.mx1:2,S": b"Subject: acta\n\nversion 1\n",
        "cur/1591000000.M1P7.mx1:2,RS": b"Subject: acta\n\nversion 2\n",
        "cur/1591000000.M1P7.mx1,S=26:2,FRS": b"Subject: acta\n\nversion 3\n",
        "new/1591000000.M1P7.mx1": b"Subject: otra\n\nnada que ver\n",
    }
    for name, raw in copies.items():
        (box / name).write_bytes(raw)
    with MaildirSource(str(box)) as source:
        inbox = source.folders()[0]
        records = [r for r in source.messages(inbox) if isinstance(r, MessageRecord)]
        assert len({r.key for r in records}) == len(records) == 4
        read = set()
        for record in records:
            with record.open() as stream:
                read.add(stream.read())
        assert read == set(copies.values())
        keys = {r.key for r in records}
    # a flag change renames one copy; a delta pass over the known keys finds nothing new
    os.rename(box / "cur/1591000000.M1P7.mx1:2,S", box / "cur/1591000000.M1P7.mx1:2,FS")
    with MaildirSource(str(box)) as source:
        inbox = source.folders()[0]
        listing = list(source.messages(inbox, known=keys))
        assert (
            all(isinstance(r, KnownMessage) for r in listing) and {r.key for r in listing} == keys
        )
        assert sum(1 for r in listing if r.flags == Flags(flagged=True, seen=True)) == 1
        assert len([r for r in source.messages(inbox) if isinstance(r, MessageRecord)]) == 4
