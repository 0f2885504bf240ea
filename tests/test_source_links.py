"""Symbolic links inside a mailbox are never followed: a user who can write into
their own Maildir or mbox folders must not make the migrator, usually root, read a file of
the host or another user's mail. A link is reported with reason "symlink" where it was found:
a message file as a skipped message, a folder or a directory in INBOX's listing under the key
"./<path>/", cur/ or new/ as "cur/" or "new/", a name swapped for a link after listing when
it is read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from migrator.adapters.sources.maildir import MaildirSource
from migrator.adapters.sources.mbox import MboxSource
from migrator.model.errors import SourceError
from migrator.model.mail import FolderInfo, MessageRecord, SkippedMessage

SECRET = b"From: boss@example.org\nSubject: payroll\n\nconfidential\n"
MAIL = b"From: a@example.org\nSubject: mine\n\nhello\n"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """What lies outside the user's mailbox: a readable file and another user's Maildir."""
    out = tmp_path / "outside"
    for sub in ("cur", "new", "tmp"):
        (out / "Maildir" / sub).mkdir(parents=True)
    (out / "Maildir" / "cur" / "1700000000.M1P1.other:2,S").write_bytes(SECRET)
    (out / "Maildir" / "dovecot-keywords").write_bytes(b"0 Payroll\n")
    (out / "shadow").write_bytes(SECRET)
    return out


def _maildir(root: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


def _everything(
    src: MaildirSource | MboxSource,
) -> dict[tuple[str, ...], list[MessageRecord | SkippedMessage]]:
    return {f.path: list(src.messages(f)) for f in src.folders()}


def _read_all(items: dict[tuple[str, ...], list[MessageRecord | SkippedMessage]]) -> list[bytes]:
    out = []
    for listed in items.values():
        for item in listed:
            if isinstance(item, MessageRecord):
                try:
                    with item.open() as fh:
                        out.append(fh.read())
                except SourceError:
                    pass
    return out


def _skips(items: list[MessageRecord | SkippedMessage]) -> dict[str, SkippedMessage]:
    return {i.key: i for i in items if isinstance(i, SkippedMessage)}


def test_a_linked_message_file_is_skipped_not_read(tmp_path: Path, outside: Path) -> None:
    box = _maildir(tmp_path / "Maildir")
    (box / "cur" / "1700000001.M1P1.mx:2,S").write_bytes(MAIL)
    (box / "cur" / "1700000002.M2P2.mx:2,S").symlink_to(outside / "shadow")
    (box / "new" / "1700000003.M3P3.mx").symlink_to("../../outside/shadow")  # relative too
    with MaildirSource(str(box)) as src:
        items = _everything(src)
        skips = _skips(items[("INBOX",)])
        assert {k: s.reason for k, s in skips.items()} == {
            "1700000002.M2P2.mx": "symlink",
            "1700000003.M3P3.mx": "symlink",
        }
        assert str(outside / "shadow") in skips["1700000002.M2P2.mx"].detail
        assert "not followed" in skips["1700000002.M2P2.mx"].detail
        assert _read_all(items) == [MAIL]


@pytest.mark.parametrize("layout", ["maildir++", "fs"])
def test_a_linked_folder_is_reported_in_inbox_and_not_migrated(
    tmp_path: Path, outside: Path, layout: str
) -> None:
    box = _maildir(tmp_path / "Maildir")
    (box / "cur" / "1700000001.M1P1.mx:2,S").write_bytes(MAIL)
    real = ".Sent" if layout == "maildir++" else "Sent"
    _maildir(box / real)
    link = ".Leak" if layout == "maildir++" else "Leak"
    (box / link).symlink_to(outside / "Maildir")
    with MaildirSource(str(box)) as src:
        assert src.layout == layout
        folders = {f.path: f for f in src.folders()}
        assert set(folders) == {("INBOX",), ("Sent",)}
        inbox = list(src.messages(folders[("INBOX",)]))
        skip = _skips(inbox)[f"./{link}/"]
        assert skip.reason == "symlink" and str(outside / "Maildir") in skip.detail
        # the operator's count of INBOX includes what could not be read
        assert folders[("INBOX",)].message_count == 2
        assert _read_all(_everything(src)) == [MAIL]


def test_a_folder_in_a_subdirectory_reached_through_a_link_is_not_read(
    tmp_path: Path, outside: Path
) -> None:
    box = _maildir(tmp_path / "Maildir")
    _maildir(box / "Projects" / "2019")
    (box / "Projects" / "Old").symlink_to(outside / "Maildir")  # LAYOUT=fs, one level down
    with MaildirSource(str(box)) as src:
        items = _everything(src)
        assert set(items) == {("INBOX",), ("Projects", "2019")}
        assert _skips(items[("INBOX",)])["./Projects/Old/"].reason == "symlink"
        assert _read_all(items) == []


def test_cur_or_new_being_links_is_reported_not_followed(tmp_path: Path, outside: Path) -> None:
    box = _maildir(tmp_path / "Maildir")
    (box / "cur" / "1700000001.M1P1.mx:2,S").write_bytes(MAIL)
    (box / "new").rmdir()
    (box / "new").symlink_to(outside / "Maildir" / "cur")
    sent = box / ".Sent"
    sent.mkdir()
    (sent / "cur").symlink_to(outside / "Maildir" / "cur")
    (sent / "dovecot-keywords").symlink_to(outside / "Maildir" / "dovecot-keywords")
    with MaildirSource(str(box)) as src:
        folders = {f.path: f for f in src.folders()}
        assert folders[("INBOX",)].message_count == 1  # the link's files are not even counted
        assert any("new is a symbolic link" in p for p in folders[("INBOX",)].problems)
        items = _everything(src)
        assert _skips(items[("INBOX",)])["new/"].reason == "symlink"
        assert _skips(items[("Sent",)])["cur/"].reason == "symlink"
        assert str(outside / "Maildir" / "cur") in _skips(items[("Sent",)])["cur/"].detail
        assert _read_all(items) == [MAIL]


def test_names_swapped_for_links_after_listing_are_not_followed(
    tmp_path: Path, outside: Path
) -> None:
    """The race: the folder is listed while everything is real; then the user replaces a
    message file, a whole cur/ and a whole folder by links before they are read."""
    box = _maildir(tmp_path / "Maildir")
    first = box / "cur" / "1700000001.M1P1.mx:2,S"
    first.write_bytes(MAIL)
    sent = _maildir(box / ".Sent")
    (sent / "cur" / "1700000002.M2P2.mx:2,S").write_bytes(MAIL)
    arch = _maildir(box / ".Archive")
    (arch / "cur" / "1700000003.M3P3.mx:2,S").write_bytes(MAIL)
    with MaildirSource(str(box)) as src:
        folders = {f.path: f for f in src.folders()}
        [inbox_record] = list(src.messages(folders[("INBOX",)]))
        [sent_record] = list(src.messages(folders[("Sent",)]))
        assert isinstance(inbox_record, MessageRecord) and isinstance(sent_record, MessageRecord)

        first.unlink()
        first.symlink_to(outside / "shadow")
        with pytest.raises(SourceError) as err:
            inbox_record.open()
        assert err.value.reason == "symlink" and str(outside / "shadow") in err.value.message

        os.rename(sent / "cur", tmp_path / "moved-away")
        (sent / "cur").symlink_to(outside / "Maildir" / "cur")
        src.close()  # a fresh descriptor: what is read is what the name now is
        with pytest.raises(SourceError) as err:
            sent_record.open()
        assert err.value.reason == "symlink"

        os.rename(arch, tmp_path / "archive-away")
        arch.symlink_to(outside / "Maildir")
        archived = list(src.messages(folders[("Archive",)]))
        assert [(i.key, i.reason) for i in archived if isinstance(i, SkippedMessage)] == [
            ("folder/", "symlink")
        ]
        assert not [i for i in archived if isinstance(i, MessageRecord)]


def test_a_mailbox_path_that_became_a_link_is_refused(tmp_path: Path, outside: Path) -> None:
    # discovery recorded the path with its links resolved: a link there now was put there since
    (tmp_path / "home" / "alice").mkdir(parents=True)
    (tmp_path / "home" / "alice" / "Maildir").symlink_to(outside / "Maildir")
    with pytest.raises(SourceError) as err:
        MaildirSource(str(tmp_path / "home" / "alice" / "Maildir"))
    assert err.value.reason == "symlink" and err.value.hint and "discover" in err.value.hint
    (tmp_path / "home" / "bob").symlink_to(outside)
    with pytest.raises(SourceError) as err:
        MaildirSource(str(tmp_path / "home" / "bob" / "Maildir"))  # a link higher up
    assert err.value.reason == "symlink"
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "alice").symlink_to(outside / "shadow")
    with pytest.raises(SourceError) as err:
        MboxSource(str(tmp_path / "spool" / "alice"))
    assert err.value.reason == "symlink"


# ---------------------------------------------------------------- mbox folders_path


def _mbox(*subjects: bytes) -> bytes:
    return b"".join(
        b"From a@example.org Mon Jan  1 00:00:00 2024\nSubject: " + s + b"\n\nbody\n\n"
        for s in subjects
    )


def test_links_in_the_mbox_folders_directory_are_reported_not_followed(
    tmp_path: Path, outside: Path
) -> None:
    spool = tmp_path / "spool"
    spool.write_bytes(_mbox(b"inbox"))
    mail = tmp_path / "mail"
    (mail / "Projects").mkdir(parents=True)
    (mail / "Sent").write_bytes(_mbox(b"sent"))
    (outside / "mbox").write_bytes(b"From boss Mon Jan  1 00:00:00 2024\n" + SECRET)
    (mail / "Leak").symlink_to(outside / "mbox")  # a folder file that is a link
    (mail / "Projects" / "Other").symlink_to(outside)  # a directory of folders that is a link
    with MboxSource(str(spool), folders_dir=str(mail)) as src:
        folders = {f.path: f for f in src.folders()}
        assert set(folders) == {("INBOX",), ("Sent",)}
        items = _everything(src)
        skips = _skips(items[("INBOX",)])
        assert {k: s.reason for k, s in skips.items()} == {
            "./Leak/": "symlink",
            "./Projects/Other/": "symlink",
        }
        assert str(outside / "mbox") in skips["./Leak/"].detail
        assert folders[("INBOX",)].message_count == 3
        assert b"confidential" not in b"".join(_read_all(items))


def test_an_mbox_folder_file_swapped_for_a_link_is_not_read(tmp_path: Path, outside: Path) -> None:
    spool = tmp_path / "spool"
    spool.write_bytes(_mbox(b"inbox"))
    mail = tmp_path / "mail"
    mail.mkdir()
    (mail / "Sent").write_bytes(_mbox(b"sent"))
    with MboxSource(str(spool), folders_dir=str(mail)) as src:
        sent = next(f for f in src.folders() if f.path == ("Sent",))
        [record] = list(src.messages(sent))
        assert isinstance(record, MessageRecord)
        (outside / "mbox").write_bytes(
            _mbox(b"sent") + b"From boss Mon Jan  1 00:00:00 2024\n" + SECRET
        )
        (mail / "Sent").unlink()
        (mail / "Sent").symlink_to(outside / "mbox")
        with pytest.raises(SourceError) as err:
            record.open()
        assert err.value.reason == "symlink"
        fresh = FolderInfo(path=("Sent",), role=sent.role, native="Sent")
        assert [
            (i.key, i.reason) for i in src.messages(fresh) if isinstance(i, SkippedMessage)
        ] == [("folder/", "symlink")]
