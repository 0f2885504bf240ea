"""The IMAP source against a real Dovecot: folders, keys, flags, dates, bytes, logins, failures."""

from __future__ import annotations

import hashlib
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest
from imapclient import IMAPClient

from migrator.adapters.sources import open_source
from migrator.adapters.sources.imap import (
    ImapSource,
    UidValidityChanged,
    content_fingerprint,
)
from migrator.adapters.sources.imap_connection import ImapAccess
from migrator.model.errors import SourceError, TransientError
from migrator.model.mail import FolderInfo, FolderRole, MessageRecord
from migrator.model.plan import SourceSettings
from migrator.model.reasons import Reason
from tests.fixtures.dovecot import (
    MASTER_PASSWORD,
    MASTER_USER,
    DovecotServer,
    free_port,
)
from tests.fixtures.imap_case import FetchCountingProxy

pytestmark = pytest.mark.dovecot

MTIME = datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC).timestamp()


def message(subject: str, body: str = "hello", message_id: str | None = None) -> bytes:
    mid = message_id or f"<{subject.replace(' ', '.')}@example.test>"
    return (
        f"From: a@example.test\r\nTo: b@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID: {mid}\r\nDate: Thu, 4 Mar 2021 05:06:07 +0000\r\n\r\n{body}\r\n"
    ).encode()


class Account:
    """A fresh Dovecot user with its own Maildir, and ways to read it through the source."""

    def __init__(self, server: DovecotServer) -> None:
        self.server = server
        self.name, self.password = server.new_user()

    def deliver(self, folder: tuple[str, ...], raw: bytes, **kwargs: object) -> Path:
        return self.server.deliver(self.name, folder, raw, **kwargs)  # type: ignore[arg-type]

    def ready(self) -> None:
        self.server.chown_tree(self.name)

    def access(self, **overrides: object) -> ImapAccess:
        values: dict[str, object] = {
            "host": self.server.host,
            "port": self.server.port,
            "user": self.name,
            "password": self.password,
            "tls": "none",
            "timeout": 10.0,
        }
        values.update(overrides)
        return ImapAccess(**values)  # type: ignore[arg-type]

    def source(self, **overrides: object) -> ImapSource:
        options = {
            k: overrides.pop(k)
            for k in ("batch_size", "range_size", "message_ids")
            if k in overrides
        }
        return ImapSource(self.access(**overrides), **options)  # type: ignore[arg-type]

    def raw_client(self) -> IMAPClient:
        client = IMAPClient(self.server.host, port=self.server.port, ssl=False, timeout=10)
        client.login(self.name, self.password)
        return client


@pytest.fixture
def account(dovecot: DovecotServer) -> Account:
    return Account(dovecot)


@pytest.fixture
def fs_account(dovecot_fs: DovecotServer) -> Account:
    return Account(dovecot_fs)


def folder_named(source: ImapSource, *path: str) -> FolderInfo:
    return next(f for f in source.folders() if f.path == path)


def read_all(record: MessageRecord) -> bytes:
    with record.open() as stream:
        return stream.read()


def records(source: ImapSource, folder: FolderInfo) -> list[MessageRecord]:
    found = list(source.messages(folder))
    assert all(isinstance(r, MessageRecord) for r in found)
    return found  # type: ignore[return-value]


# -- folders ---------------------------------------------------------------------------------------
def test_folders_have_decoded_paths_roles_counts_and_byte_totals(account: Account) -> None:
    account.deliver(("INBOX",), message("one"))
    account.deliver(("INBOX",), message("two"))
    account.deliver(("Sent",), message("sent one"))
    account.deliver(("Drafts",), message("draft"))
    account.deliver(("Papelera",), message("binned"))  # no SPECIAL-USE: role from the name
    account.deliver(("Projects", "Entwürfe"), message("nested"))  # ".Projects.Entw&APw-rfe"
    account.deliver(("Orphan", "Child"), message("parent missing on disk"))
    account.deliver(("Empty",), message("x"))
    for path in account.server.folder_dir(account.name, ("Empty",)).glob("cur/*"):
        path.unlink()
    account.ready()
    expected_sizes = {
        ("INBOX",): len(message("one")) + len(message("two")),
        ("Sent",): len(message("sent one")),
    }

    with account.source() as source:
        folders = {f.path: f for f in source.folders()}

    assert set(folders) == {
        ("INBOX",),
        ("Sent",),
        ("Drafts",),
        ("Papelera",),
        ("Projects", "Entwürfe"),
        ("Orphan", "Child"),
        ("Empty",),
    }  # "Projects" and "Orphan" exist only as hierarchy levels: \NonExistent, skipped
    roles = {path: f.role for path, f in folders.items()}
    assert roles[("INBOX",)] is FolderRole.INBOX
    assert roles[("Sent",)] is FolderRole.SENT
    assert roles[("Drafts",)] is FolderRole.DRAFTS
    assert roles[("Papelera",)] is FolderRole.TRASH
    assert roles[("Projects", "Entwürfe")] is FolderRole.NONE
    assert folders[("Projects", "Entwürfe")].native == "Projects.Entw&APw-rfe"
    assert folders[("INBOX",)].message_count == 2
    assert folders[("Empty",)].message_count == 0
    assert folders[("Empty",)].byte_total == 0
    for path, size in expected_sizes.items():
        assert folders[path].byte_total == size


def test_fs_layout_without_status_size_or_namespace(fs_account: Account) -> None:
    fs_account.deliver(("INBOX",), message("one"))
    fs_account.deliver(("Archive", "2020"), message("old"))
    fs_account.deliver(("Archive", "2020"), message("older", body="x" * 5000))
    fs_account.deliver(("Enviados",), message("sent"))
    fs_account.ready()

    with fs_account.source(port=fs_account.server.port) as source:
        folders = {f.path: f for f in source.folders()}

    assert set(folders) == {("INBOX",), ("Archive", "2020"), ("Enviados",)}
    assert folders[("Archive", "2020")].native == "Archive/2020"
    # no STATUS=SIZE advertised: the total comes from summing RFC822.SIZE
    assert folders[("Archive", "2020")].byte_total == len(message("old")) + len(
        message("older", body="x" * 5000)
    )
    assert folders[("Enviados",)].role is FolderRole.SENT


# -- messages --------------------------------------------------------------------------------------
def test_messages_have_keys_flags_keywords_dates_and_exact_bytes(account: Account) -> None:
    plain = message("plain")
    flagged = message("flagged", body="x" * 3000)
    account.deliver(("INBOX",), plain, mtime=MTIME)
    account.deliver(
        ("INBOX",), flagged, flags="SRFT", keywords=("$Forwarded", "project-x"), mtime=MTIME + 60
    )
    account.deliver(("INBOX",), plain, flags="D", mtime=MTIME + 120)  # a byte-identical copy
    account.ready()

    with account.source() as source:
        inbox = folder_named(source, "INBOX")
        found = records(source, inbox)
        validity = source.uidvalidity(inbox)
        bodies = [read_all(r) for r in found]
        assert source.slow_batches == 0  # Dovecot's answers fit the fast listing parser
    with account.source(message_ids=False) as quick:  # the cheaper delta-pass listing
        quick_found = records(quick, folder_named(quick, "INBOX"))
        assert quick.slow_batches == 0
    assert [(r.key, r.size, r.flags, r.internal_date) for r in quick_found] == [
        (r.key, r.size, r.flags, r.internal_date) for r in found
    ]
    assert {r.extra["message_id"] for r in quick_found} == {""}

    assert [r.key for r in found] == [f"{validity}:1", f"{validity}:2", f"{validity}:3"]
    assert bodies == [plain, flagged, plain]
    assert [r.size for r in found] == [len(plain), len(flagged), len(plain)]
    assert [r.internal_date for r in found] == [
        datetime.fromtimestamp(MTIME + offset, UTC) for offset in (0, 60, 120)
    ]
    first, second, third = (r.flags for r in found)
    assert not (first.seen or first.answered or first.flagged or first.deleted or first.draft)
    assert first.keywords == ()
    assert (second.seen, second.answered, second.flagged, second.deleted) == (
        True,
        True,
        True,
        True,
    )
    assert second.keywords == ("$Forwarded", "project-x")
    assert third.draft and not third.seen
    assert found[1].extra["message_id"] == "<flagged@example.test>"
    assert found[0].extra["uidvalidity"] == str(validity)


def test_reading_never_sets_seen(account: Account) -> None:
    account.deliver(("INBOX",), message("unread"))
    account.deliver(("INBOX",), message("unread too"), flags="")
    account.ready()

    with account.source() as source:
        inbox = folder_named(source, "INBOX")
        for record in records(source, inbox):
            assert read_all(record).startswith(b"From: ")
        again = records(source, inbox)

    assert [r.flags.seen for r in again] == [False, False]
    client = account.raw_client()  # a second, independent look at the server's flags
    try:
        client.select_folder("INBOX", readonly=True)
        flags = client.fetch(client.search("ALL"), ["FLAGS"])
    finally:
        client.logout()
    assert all(b"\\Seen" not in item[b"FLAGS"] for item in flags.values())


def test_large_message_is_streamed_with_bounded_memory(account: Account) -> None:
    range_size = 256 * 1024  # small ranges make "bounded by the range" measurable
    line = b"0123456789abcdef" * 4 + b"\r\n"
    big = message("big", body="") + line * (5 * 1024 * 1024 // len(line))
    account.deliver(("INBOX",), big)
    account.ready()
    expected = hashlib.sha256(big).hexdigest()

    with account.source(range_size=range_size) as source:
        (record,) = records(source, folder_named(source, "INBOX"))
        digest = hashlib.sha256()
        tracemalloc.start()
        try:
            with record.open() as stream:
                while chunk := stream.read(64 * 1024):
                    digest.update(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

    assert record.size == len(big) > 5_000_000
    assert digest.hexdigest() == expected
    # a few copies of one range at a time (the IMAP library's among them), never the message
    assert peak < 4 * range_size < len(big) / 5, (
        f"peak {peak} bytes while streaming {len(big)} bytes"
    )


# -- logins ----------------------------------------------------------------------------------------
def test_master_user_login_reads_the_users_mailbox(account: Account) -> None:
    account.deliver(("INBOX",), message("for the admin"))
    account.ready()
    with account.source(password=MASTER_PASSWORD, master_user=MASTER_USER) as source:
        (record,) = records(source, folder_named(source, "INBOX"))
        assert read_all(record) == message("for the admin")


def test_sasl_plain_with_authorization_identity(account: Account) -> None:
    account.deliver(("INBOX",), message("authzid"))
    account.ready()
    with account.source(password=MASTER_PASSWORD, master_user=MASTER_USER, authzid=True) as source:
        (record,) = records(source, folder_named(source, "INBOX"))
        assert read_all(record) == message("authzid")


@pytest.mark.parametrize("how", ["user", "master", "authzid"])
def test_wrong_password_is_an_auth_error_without_the_password(account: Account, how: str) -> None:
    wrong = "Wr0ng-S3cret-xyz"
    extra: dict[str, object] = {"master_user": MASTER_USER} if how != "user" else {}
    with (
        pytest.raises(SourceError) as caught,
        account.source(password=wrong, authzid=how == "authzid", **extra) as source,
    ):
        source.folders()
    err = caught.value
    assert err.reason == "auth"
    assert f"{account.server.host}:{account.server.port}" in str(err)
    assert (MASTER_USER if how != "user" else account.name) in str(err)
    assert wrong not in str(err) and wrong not in (err.hint or "")


def test_unreachable_server_is_transient(account: Account) -> None:
    with (
        pytest.raises(TransientError) as caught,
        account.source(port=free_port(), timeout=3.0) as source,
    ):
        source.folders()
    assert "unreachable" in str(caught.value)


# -- TLS -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["ssl", "starttls"])
def test_tls_with_a_private_ca(account: Account, mode: str) -> None:
    account.deliver(("INBOX",), message("over tls"))
    account.ready()
    port = account.server.tls_port if mode == "ssl" else account.server.port
    with account.source(tls=mode, port=port, ca_file=str(account.server.ca_file)) as source:
        assert [f.path for f in source.folders()] == [("INBOX",)]


@pytest.mark.parametrize("mode", ["ssl", "starttls"])
def test_untrusted_certificate_is_a_tls_error_with_a_hint(account: Account, mode: str) -> None:
    port = account.server.tls_port if mode == "ssl" else account.server.port
    with pytest.raises(SourceError) as caught, account.source(tls=mode, port=port) as source:
        source.folders()  # certificate checks are on by default; the test CA is not trusted
    assert caught.value.reason == "tls"
    assert "certificate" in str(caught.value)
    assert "ca_file" in (caught.value.hint or "")


# -- renumbering and dropped connections ----------------------------------------------------------
def test_changed_uidvalidity_is_detected_and_content_fingerprints_survive(account: Account) -> None:
    for n in range(3):
        account.deliver(("Work",), message(f"work {n}"), mtime=MTIME + n)
    account.ready()

    with account.source() as source:  # the first pass records keys and UIDVALIDITY
        work = folder_named(source, "Work")
        before = records(source, work)
        old_validity = source.uidvalidity(work)

    # between two passes the user deletes the folder and restores it: same mail, new UIDs
    client = account.raw_client()
    try:
        client.delete_folder("Work")
        client.create_folder("Work")
        for n in reversed(range(3)):
            when = datetime.fromtimestamp(MTIME + n, UTC)
            client.append("Work", message(f"work {n}"), msg_time=when)
    finally:
        client.logout()

    with account.source() as source:  # the next pass
        work = folder_named(source, "Work")
        new_validity = source.uidvalidity(work)
        assert new_validity != old_validity
        with pytest.raises(UidValidityChanged) as caught:
            next(iter(source.messages(work, expected_uidvalidity=old_validity)))
        assert caught.value.reason == Reason.UIDVALIDITY_CHANGED
        assert (caught.value.old, caught.value.new) == (old_validity, new_validity)
        after = records(source, work)

    assert {r.key for r in before}.isdisjoint({r.key for r in after})
    assert sorted(content_fingerprint(r) for r in before) == sorted(
        content_fingerprint(r) for r in after
    )


def test_dropped_connection_mid_listing_resumes_where_it_was(account: Account) -> None:
    total = 250  # three batches of 100: the same paging as 1,000-message batches, faster
    for n in range(total):
        account.deliver(("INBOX",), message(f"bulk {n}"))
    account.ready()

    with account.source(batch_size=100) as source:
        inbox = folder_named(source, "INBOX")
        listing = source.messages(inbox)
        first_batch = [next(listing) for _ in range(100)]
        account.server.kick(account.name)  # an admin kicks the session between two batches
        _wait_until_disconnected(account)
        rest = list(listing)
        assert source.reconnects == 1
        keys = [r.key for r in [*first_batch, *rest]]  # type: ignore[union-attr]
        fresh = [r.key for r in records(source, inbox)]

    assert len(keys) == total == len(set(keys))
    assert keys == fresh


def test_dropped_connection_while_streaming_a_message_resumes(account: Account) -> None:
    body = b"".join(b"line %07d\r\n" % n for n in range(300_000))  # ~3.6 MB: several ranges
    raw = message("streamed", body="") + body
    account.deliver(("INBOX",), raw)
    account.ready()

    with account.source() as source:
        (record,) = records(source, folder_named(source, "INBOX"))
        with record.open() as stream:
            head = stream.read(1024 * 1024 + 10)
            account.server.kick(account.name)
            _wait_until_disconnected(account)
            tail = stream.read()
        assert source.reconnects == 1
    assert head + tail == raw


def _wait_until_disconnected(account: Account, deadline: float = 10.0) -> None:
    """`doveadm kick` returns before the session is gone; wait until `doveadm who` agrees."""
    until = time.monotonic() + deadline
    while account.name in account.server.doveadm("who").stdout:
        if time.monotonic() > until:
            raise AssertionError(f"{account.name} still connected after doveadm kick")
        time.sleep(0.02)  # poll interval


def test_a_folder_the_server_cannot_open_is_a_problem_not_a_failure(account: Account) -> None:
    account.deliver(("INBOX",), message("fine"))
    account.deliver(("Locked",), message("behind a permission error"))
    account.ready()
    account.server.folder_dir(account.name, ("Locked",)).chmod(0)  # the server gets EACCES

    with account.source() as source:
        folders = {f.path: f for f in source.folders()}
        locked = folders[("Locked",)]
        assert folders[("INBOX",)].message_count == 1 and folders[("INBOX",)].problems == ()
        assert locked.message_count is None
        assert "Locked" in locked.problems[0]
        with pytest.raises(SourceError) as caught:
            list(source.messages(locked))
        assert "Locked" in str(caught.value)
        (record,) = records(source, folders[("INBOX",)])  # the connection is still usable
        assert read_all(record) == message("fine")


# -- the plan's [source] ---------------------------------------------------------------------------
def test_open_source_builds_an_imap_source_from_the_plan(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    account.deliver(("INBOX",), message("via the plan"))
    account.ready()
    monkeypatch.setenv("TEST_IMAP_MASTER_PW", MASTER_PASSWORD)
    settings = SourceSettings(
        kind="imap",
        host=account.server.host,
        port=account.server.tls_port,
        tls="ssl",
        ca_file=str(account.server.ca_file),
        master_user=MASTER_USER,
        password_env="TEST_IMAP_MASTER_PW",
    )
    with open_source(settings, mailbox_path=None, login=account.name) as source:
        (inbox,) = source.folders()
        (record,) = [r for r in source.messages(inbox) if isinstance(r, MessageRecord)]
        assert read_all(record) == message("via the plan")


def test_a_message_expunged_after_listing_is_reported_as_vanished(account: Account) -> None:
    account.deliver(("INBOX",), message("keep"))
    account.deliver(("INBOX",), message("gone soon"))
    account.ready()

    with account.source() as source:
        keep, gone = records(source, folder_named(source, "INBOX"))
        client = account.raw_client()  # the user deletes a message while we migrate
        try:
            client.select_folder("INBOX")
            client.delete_messages([int(gone.extra["uid"])])
            client.expunge()
        finally:
            client.logout()
        # until this session hears of the expunge Dovecot answers with an empty body, which
        # must not pass for the message
        with pytest.raises(SourceError) as caught:
            read_all(gone)
        assert caught.value.reason in ("changed", "vanished")
        with pytest.raises(SourceError) as caught:
            read_all(gone)  # now it has: the UID is gone
        assert caught.value.reason == "vanished"
        assert gone.key in str(caught.value)
        assert read_all(keep) == message("keep")


def test_a_server_gone_mid_run_is_transient(account: Account) -> None:
    account.deliver(("INBOX",), message("one"))
    account.ready()
    relay = FetchCountingProxy((account.server.host, account.server.port))
    try:
        with account.source(port=relay.port) as source:
            inbox = folder_named(source, "INBOX")
            (record,) = records(source, inbox)
            relay.close()  # the connection drops and nothing answers on that port any more
            with pytest.raises(TransientError) as caught:
                read_all(record)
            assert f"127.0.0.1:{relay.port}" in str(caught.value)
    finally:
        relay.close()


@pytest.mark.parametrize("wrong", ["o", "i", "Authentication failed"])
def test_a_wrong_password_found_in_the_servers_words_garbles_nothing(
    account: Account, wrong: str
) -> None:
    """The server's answer to LOGIN is shown whole, or not at all when the password occurs in
    it; never with the password starred out of its words."""
    with pytest.raises(SourceError) as caught, account.source(password=wrong) as source:
        source.folders()
    err = caught.value
    assert err.reason == "auth"
    assert str(err).startswith(
        f"IMAP login refused at {account.server.host}:{account.server.port} for {account.name}: "
    )
    assert "***" not in f"{err} {err.hint}"
    assert str(err).endswith("the reply is not shown because the password or secret occurs in it")
