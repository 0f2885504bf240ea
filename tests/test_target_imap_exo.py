"""The IMAP target against an Exchange-Online-like front (tests/fixtures/exo_front.py).

App-only XOAUTH2 tokens from a local identity platform, EXO's capability set (no MULTIAPPEND,
no SPECIAL-USE, no APPENDLIMIT), its message size limit and wording, tokens that run out in the
middle of a chunk, throttling that closes the connection, and its limit of connections per
mailbox. Each message is read back from the Dovecot behind the front with FETCH BODY.PEEK[],
FLAGS and INTERNALDATE.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from imapclient import IMAPClient

from migrator.adapters.targets import TargetFolder
from migrator.adapters.targets.imap import ImapTarget
from migrator.adapters.targets.imap.oauth import TokenSource
from migrator.model.errors import PermanentError, TransientError
from migrator.model.mail import Flags, FolderRole, UploadItem
from migrator.model.plan import TargetSettings
from tests.fixtures.exo_front import (
    CLIENT_ID,
    CLIENT_SECRET,
    TENANT,
    ExoDovecot,
    ExoStack,
    exo_store,  # noqa: F401 - the fixture
)
from tests.fixtures.imap_case import dovecot_wire_bytes
from tests.fixtures.imap_proxy import Rule, exchange_throttled

WHEN = datetime(2022, 6, 14, 8, 15, 0, tzinfo=timezone(timedelta(hours=-5)))
_serial = iter(range(1, 10_000))


def raw(n: int, body: bytes = b"Saludos.\r\n") -> bytes:
    return (
        b"From: Ana <ana@ife.org.mx>\r\nTo: luis@ife.org.mx\r\nSubject: exo "
        + str(n).encode()
        + b"\r\nDate: Tue, 14 Jun 2022 08:15:00 -0500\r\nMessage-ID: <exo-"
        + str(n).encode()
        + b"@ife.org.mx>\r\n\r\n"
        + body
    )


def item(key: str, data: bytes, flags: Flags | None = None) -> UploadItem:
    return UploadItem(key=key, data=data, flags=flags or Flags(), internal_date=WHEN)


def settings(stack: ExoStack, **changes: object) -> TargetSettings:
    base = TargetSettings(
        kind="imap",
        host=stack.front.host,
        port=stack.front.port,
        tls="ssl",
        ca_file=str(stack.store.ca_file),
        auth="xoauth2",
        client_id=CLIENT_ID,
        tenant_id=TENANT,
        client_secret_env="UNUSED",
        token_url=stack.platform.token_url,
        timeout=20.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def stack(exo_store: ExoDovecot) -> Iterator[ExoStack]:  # noqa: F811
    s = ExoStack(exo_store)
    yield s
    s.close()


Make = Callable[..., ImapTarget]


@pytest.fixture
def make(stack: ExoStack) -> Iterator[Make]:
    opened: list[ImapTarget] = []

    def make_target(
        *, clock: Callable[[], float] | None = None, max_connections: int = 2, **changes: object
    ) -> ImapTarget:
        extra = {"clock": clock} if clock is not None else {}
        target = ImapTarget(
            settings(stack, **changes),
            secrets={"client_secret": CLIENT_SECRET},
            max_connections=max_connections,
            **extra,
        )  # type: ignore[arg-type]
        opened.append(target)
        return target

    yield make_target
    for target in opened:
        target.close()


@pytest.fixture
def mailbox() -> str:
    return f"exo{next(_serial)}@contoso.onmicrosoft.test"


def stored(
    stack: ExoStack, mailbox: str, folder: str
) -> dict[bytes, tuple[frozenset[bytes], datetime]]:
    """Body -> (flags, INTERNALDATE) of every message in a folder, read from the store."""
    client = IMAPClient(stack.store.host, port=stack.store.port, ssl=False, timeout=20)
    client.folder_encode = False
    client.normalise_times = False
    try:
        client.login(stack.store.new_mailbox(mailbox), "-")
        client.select_folder(folder, readonly=True)
        data = client.fetch(client.search(["ALL"]), ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"])
        bodies = [d[b"BODY[]"] for d in data.values()]
        assert len(set(bodies)) == len(bodies), "a message is there twice"
        return {
            d[b"BODY[]"]: (frozenset(d[b"FLAGS"]) - {b"\\Recent"}, d[b"INTERNALDATE"])
            for d in data.values()
        }
    finally:
        client.logout()


def refused_commands(stack: ExoStack) -> list[tuple[str, bytes]]:
    return [(e.name, e.text) for e in stack.front.timeline if e.action == "refused"]


# --- what works as it is ---------------------------------------------------------------------


def test_a_mailbox_is_filled_through_the_front_as_exchange_online_shows_it(
    make: Make, stack: ExoStack, mailbox: str
) -> None:
    target = make()
    target.preflight(mailbox)
    roles = {
        role: target.ensure_folder(mailbox, (name,), role).id
        for name, role in (
            ("Sent", FolderRole.SENT),
            ("Drafts", FolderRole.DRAFTS),
            ("Trash", FolderRole.TRASH),
            ("Junk", FolderRole.JUNK),
            ("Archive", FolderRole.ARCHIVE),
        )
    }
    # found by name: the front shows no SPECIAL-USE attributes, and nothing was created twice
    assert roles == {
        FolderRole.SENT: "Sent Items",
        FolderRole.DRAFTS: "Drafts",
        FolderRole.TRASH: "Deleted Items",
        FolderRole.JUNK: "Junk Email",
        FolderRole.ARCHIVE: "Archive",
    }
    files = target.ensure_folder(mailbox, ("Files",), FolderRole.NONE)
    assert files.id == "Files (migrated)"  # "Files" is reserved in Exchange Online
    nested = target.ensure_folder(mailbox, ("Proyectos", "Informes 2022"), FolderRole.NONE)
    assert nested.id == "Proyectos/Informes 2022"
    items = [
        item("a", raw(1), Flags(seen=True, flagged=True, keywords=("$label1",))),
        item("b", raw(2), Flags(answered=True)),
        item("c", raw(3, b"no final newline"), Flags(seen=True, draft=True)),
    ]
    results = target.upload(mailbox, nested, items)
    assert all(r.ok and r.target_id for r in results), results
    got = stored(stack, mailbox, nested.id)
    assert got == {
        raw(1): (frozenset({b"\\Seen", b"\\Flagged"}), WHEN),  # \Flagged by STORE afterwards
        raw(2): (frozenset({b"\\Answered"}), WHEN),
        raw(3, b"no final newline"): (frozenset({b"\\Seen", b"\\Draft"}), WHEN),
    }
    assert stack.front.seen["APPEND"] == 3  # one per message: there is no MULTIAPPEND
    assert refused_commands(stack) == []  # nothing the front does not offer was asked for
    assert stack.platform.fetches == 1 and stack.front.logins == 1


def test_a_message_over_the_mailbox_limit_fails_alone_as_too_large(
    make: Make, stack: ExoStack, mailbox: str
) -> None:
    stack.front.max_message_size = 64 * 1024
    target = make()
    folder = target.ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX)
    big = raw(2, b"x" * 100 * 1024 + b"\r\n")
    results = target.upload(
        mailbox, folder, [item("s1", raw(1)), item("big", big), item("s3", raw(3))]
    )
    assert [r.ok for r in results] == [True, False, True]
    error = results[1].error
    assert isinstance(error, PermanentError) and error.reason == "too-large"
    assert "big" in str(error) and "Maximum size of appendable message" in str(error)
    assert set(stored(stack, mailbox, "INBOX")) == {raw(1), raw(3)}


def test_flagged_is_set_on_copies_found_after_a_lost_answer(
    make: Make, stack: ExoStack, mailbox: str
) -> None:
    target = make()
    folder = target.ensure_folder(mailbox, ("Seguimiento",), FolderRole.NONE)
    # stored, but the answers are lost with the connection: the copies are found by looking,
    # and nothing has set \Flagged on them yet
    stack.front.add(Rule("APPEND", "drop-after", contains=b"Subject: exo 2\r\n"))
    items = [item(f"f{n}", raw(n), Flags(seen=True, flagged=True)) for n in range(4)]
    results = target.upload(mailbox, folder, items)
    assert all(r.ok and r.target_id for r in results), results
    assert stack.front.cuts == 1
    assert {flags for flags, _ in stored(stack, mailbox, folder.id).values()} == {
        frozenset({b"\\Seen", b"\\Flagged"})
    }


def test_flagged_is_set_on_copies_a_killed_process_left_behind(
    make: Make, stack: ExoStack, mailbox: str
) -> None:
    target = make()
    folder = target.ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX)
    # a process APPENDed these and was killed before its STORE (\Flagged is not applied by
    # APPEND on Exchange); the next process recognises them by content
    client = IMAPClient(
        stack.front.host, port=stack.front.port, ssl=True, timeout=20, ssl_context=_trusting(stack)
    )
    client.oauth2_login(mailbox, stack.platform.token())
    items = [item("k1", raw(1), Flags(flagged=True)), item("k2", raw(2), Flags(seen=True))]
    for one in items:
        client.append(
            "INBOX",
            one.data,
            flags=[b"\\Flagged"] if one.flags.flagged else [b"\\Seen"],
            msg_time=WHEN,
        )
    client.logout()
    found = make().find_uploads(mailbox, folder, items)
    assert set(found) == {"k1", "k2"}
    assert {body: flags for body, (flags, _) in stored(stack, mailbox, "INBOX").items()} == {
        raw(1): frozenset({b"\\Flagged"}),
        raw(2): frozenset({b"\\Seen"}),
    }


# --- token expiry ---------------------------------------------------------------------------


def test_a_token_that_runs_out_in_the_middle_of_a_chunk_is_renewed_and_nothing_is_sent_twice(
    make: Make, stack: ExoStack, mailbox: str
) -> None:
    target = make()
    folder = target.ensure_folder(mailbox, ("Informes",), FolderRole.NONE)
    # the session's token runs out just as the fourth APPEND arrives: Exchange Online ends
    # the session with "* BYE Session invalidated - AccessTokenExpired"; APPENDs already
    # written behind it are lost with it. The cached token is dead too (the next login with
    # it gets "NO AUTHENTICATE failed."), though the token endpoint said it had an hour left.
    stack.front.add(Rule("APPEND", "expire", contains=b"Subject: exo 4\r\n"))
    items = [item(f"m{n}", raw(n)) for n in range(8)]
    results = target.upload(mailbox, folder, items)
    assert all(r.ok and r.target_id for r in results), results
    assert set(stored(stack, mailbox, folder.id)) == {raw(n) for n in range(8)}
    assert stack.front.expired_sessions == 1
    assert stack.platform.fetches == 2  # one fresh token, fetched once


def test_sessions_are_replaced_before_their_token_runs_out(
    make: Make, stack: ExoStack, mailbox: str
) -> None:
    now = [1000.0]
    stack.platform.clock = lambda: now[0]
    target = make(clock=lambda: now[0])
    folder = target.ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX)
    assert all(r.ok for r in target.upload(mailbox, folder, [item("e1", raw(1))]))
    # four minutes before the token runs out: a chunk started now could outlast it, so the
    # pooled session is logged out and a new one opened with a new token
    now[0] += stack.platform.lifetime - 240
    assert all(r.ok for r in target.upload(mailbox, folder, [item("e2", raw(2))]))
    assert stack.front.logins == 2 and stack.platform.fetches == 2
    assert stack.front.expired_sessions == 0


def test_a_short_lived_token_is_not_fetched_for_every_login() -> None:
    from tests.fixtures.exo_front import IdentityPlatform

    platform = IdentityPlatform(lifetime=8)
    now = [0.0]
    platform.clock = lambda: now[0]
    try:
        source = TokenSource(
            token_url=platform.token_url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            scope="https://outlook.office365.com/.default",
            clock=lambda: now[0],
        )
        first = source.token()
        now[0] += 4
        assert source.token() == first  # half its life left: still good
        now[0] += 2.5
        assert source.token() != first  # the last quarter: replaced
        assert platform.fetches == 2
    finally:
        platform.close()


def test_a_cached_token_the_server_refuses_is_replaced_at_login(
    make: Make, stack: ExoStack, mailbox: str
) -> None:
    target = make()
    target.preflight(mailbox)
    # the token dies early (its session had ended): the next login, for another mailbox,
    # gets "NO AUTHENTICATE failed." with it, although our clock gives it most of an hour
    for token in list(stack.platform.issued):
        stack.platform.expire(token)
    other = mailbox.replace("@", ".other@")
    target.preflight(other)
    assert stack.platform.fetches == 2 and stack.front.auth_failures == 1


def test_a_mailbox_the_app_may_not_open_fails_with_what_to_check(
    make: Make, stack: ExoStack, mailbox: str
) -> None:
    stack.front.no_access.add(mailbox)
    target = make()
    with pytest.raises(PermanentError) as refused:
        target.preflight(mailbox)
    assert refused.value.reason == "auth" and mailbox in str(refused.value)
    assert "AUTHENTICATE failed" in str(refused.value)
    hint = refused.value.hint or ""
    assert "FullAccess" in hint and "IMAP.AccessAsApp" in hint
    assert CLIENT_SECRET not in str(refused.value) + hint


# --- throttling and connection limits -----------------------------------------------------------


def test_throttling_that_closes_the_connection_keeps_the_suggested_backoff(
    make: Make, stack: ExoStack, mailbox: str
) -> None:
    target = make()
    folder = target.ensure_folder(mailbox, ("Busy",), FolderRole.NONE)
    stack.front.add(
        Rule("APPEND", "bad-bye", text=exchange_throttled(1500), contains=b"Subject: exo 3\r\n")
    )
    items = [item(f"t{n}", raw(n)) for n in range(6)]
    results = target.upload(mailbox, folder, items)
    assert all(r.ok for r in results[:3]), results  # stored before the server hung up
    assert all(
        isinstance(r.error, TransientError) and r.error.retry_after == 1.5 for r in results[3:]
    ), results
    assert set(stored(stack, mailbox, folder.id)) == {raw(n) for n in range(3)}


def test_past_the_connections_per_mailbox_the_session_is_dropped_and_retried(
    make: Make, stack: ExoStack, mailbox: str
) -> None:
    stack.front.connections_per_mailbox = 1
    # the user's own mail client holds the only connection the mailbox allows
    other = IMAPClient(
        stack.front.host, port=stack.front.port, ssl=True, timeout=20, ssl_context=_trusting(stack)
    )
    other.oauth2_login(mailbox, stack.platform.token())
    target = make()
    with pytest.raises(TransientError) as refused:
        target.preflight(mailbox)
    assert "not connected" in str(refused.value) and "connections" in (refused.value.hint or "")
    assert stack.front.not_connected == 1
    other.logout()
    target.preflight(mailbox)  # a new session, not the refused one again
    assert target.pool.opened == 2 and stack.front.not_connected == 1


def _trusting(stack: ExoStack) -> object:
    import ssl

    return ssl.create_default_context(cafile=str(stack.store.ca_file))


def test_times_carry_their_instant(make: Make, stack: ExoStack, mailbox: str) -> None:
    target = make()
    folder = target.ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX)
    when = datetime(2019, 12, 31, 23, 59, 59, tzinfo=UTC)
    results = target.upload(mailbox, folder, [UploadItem("z", raw(9), Flags(), when)])
    assert results[0].ok
    [(flags, date)] = stored(stack, mailbox, "INBOX").values()
    assert date == when


# --- what Exchange changes: the MIME it serves is its own ------------------------------------


def _front(stack: ExoStack, mailbox: str) -> IMAPClient:
    """A client of the front, as any mail client of the mailbox (not migrator)."""
    client = IMAPClient(
        stack.front.host, port=stack.front.port, ssl=True, timeout=20, ssl_context=_trusting(stack)
    )
    client.normalise_times = False
    client.oauth2_login(mailbox, stack.platform.token())
    return client


def _held(stack: ExoStack, mailbox: str, folder: str) -> dict[int, bytes]:
    """UID -> the bytes the store behind the front keeps."""
    client = IMAPClient(stack.store.host, port=stack.store.port, ssl=False, timeout=20)
    try:
        client.login(stack.store.new_mailbox(mailbox), "-")
        client.select_folder(folder, readonly=True)
        return {
            uid: d[b"BODY[]"]
            for uid, d in client.fetch(client.search(["ALL"]), ["BODY.PEEK[]"]).items()
        }
    finally:
        client.logout()


def _left_behind(
    make: Make, mailbox: str, folder: TargetFolder, items: list[UploadItem], **changes: object
) -> None:
    """Stored by a process that was killed before it could record them (its memory of what
    it stored dies with it)."""
    gone = make(**changes)
    assert all(r.ok for r in gone.upload(mailbox, folder, items))
    gone.close()


# two messages alike in every header Exchange keeps (Message-ID, From, Subject, Date) and in
# INTERNALDATE, different only in their bodies (a message edited and saved again, a list copy)
_ALIKE = (
    b"From: Ana <ana@ife.org.mx>\r\nTo: luis@ife.org.mx\r\nSubject: Acta\r\nDate: Tue, 14 Jun "
    b"2022 08:15:00 -0500\r\nMessage-ID: <acta@ife.org.mx>\r\n\r\n"
)


# what Exchange rebuilds most: priority headers, new boundaries, 8-bit text, re-wrapped base64
_MULTIPART = (
    b"From: =?iso-8859-1?q?Jos=E9?= <jose@ife.org.mx>\nTo: luis@ife.org.mx\nSubject: Informe "
    b"anual con anexos\nDate: Wed, 15 Jun 2022 10:00:00 -0500\nMessage-ID: <anexos@ife.org.mx>\n"
    b"X-Priority: 1 (Highest)\nKeywords: informes, 2022\nMIME-Version: 1.0 (Apple Message framework)\n"
    b'Content-Type: multipart/mixed; boundary="outer"\n\nThis is a multi-part message in MIME '
    b"format.\n--outer\nContent-Type: multipart/alternative; boundary=inner\n\n--inner\n"
    b"Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n"
    b"Se\xf1ores: el informe est\xe1 listo.\n--inner\nContent-Type: text/html; charset=utf-8\n\n"
    b"<p>Se\xc3\xb1ores: el informe est\xc3\xa1 listo.</p>\n--inner--\n--outer\n"
    b"Content-Type: application/pdf; name=informe.pdf\nContent-Transfer-Encoding: base64\n"
    b"Content-Disposition: attachment; filename=informe.pdf\n\n"
    + b"\n".join(base64.b64encode(bytes(range(256)) * 3)[i : i + 60] for i in range(0, 1024, 60))
    + b"\n--outer--\nepilogue\n"
)


def _hard_cases() -> list[UploadItem]:
    from migrator.samples.mail import hard_case_messages

    cases = [UploadItem(m.name, m.raw, m.flags, m.internal_date) for m in hard_case_messages()]
    cases += [
        item("alike-1", _ALIKE + b"Primera version.\r\n"),
        item("alike-2", _ALIKE + b"Segunda version, otra.\r\n"),
        item("multipart", _MULTIPART),
    ]
    return cases


def test_the_front_serves_what_exchange_builds_and_keeps_what_was_appended(
    make: Make, stack: ExoStack, mailbox: str
) -> None:
    from tests.fixtures.exo_mime import convert, estimated_size

    target = make()
    folder = target.ensure_folder(mailbox, ("Convertidos",), FolderRole.NONE)
    cases = _hard_cases()
    assert all(r.ok for r in target.upload(mailbox, folder, cases))
    held = _held(stack, mailbox, folder.id)
    assert sorted(held.values()) == sorted(dovecot_wire_bytes(c.data) for c in cases)
    client = _front(stack, mailbox)
    try:
        client.select_folder(folder.id, readonly=True)
        served = client.fetch(
            sorted(held),
            [
                "BODY.PEEK[]",
                "RFC822.SIZE",
                "RFC822.HEADER",
                "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID SUBJECT)]",
            ],
        )
        for uid, data in served.items():
            built = convert(held[uid])
            assert data[b"BODY[]"] == built and built != held[uid]
            # the stored size, neither what was sent nor what is served
            assert data[b"RFC822.SIZE"] == estimated_size(len(held[uid]))
            assert data[b"RFC822.HEADER"] == built[: built.index(b"\r\n\r\n") + 4]
            fields = data[b"BODY[HEADER.FIELDS (MESSAGE-ID SUBJECT)]"]
            assert all(
                line.split(b":")[0] in (b"Message-ID", b"Subject") or line[:1] == b" "
                for line in fields.split(b"\r\n")
                if line
            )
        # parts and partial fetches of what Exchange built
        [multipart] = [uid for uid, body in held.items() if b"<anexos@ife.org.mx>" in body]
        built = convert(held[multipart])
        assert b'boundary="_000_' in built and b"X-Priority: 1\r\n" in built
        assert b"Importance: high" in built and b"MIME-Version: 1.0\r\n" in built
        parts = client.fetch(
            [multipart],
            ["BODY.PEEK[1.1]", "BODY.PEEK[1.1.MIME]", "BODY.PEEK[2]", "BODY.PEEK[TEXT]<10.20>"],
        )[multipart]
        assert parts[b"BODY[1.1]"] == b"Se=F1ores: el informe est=E1 listo.\r\n"
        assert b"Content-Transfer-Encoding: quoted-printable" in parts[b"BODY[1.1.MIME]"]
        assert base64.b64decode(parts[b"BODY[2]"]) == bytes(range(256)) * 3
        text = built[built.index(b"\r\n\r\n") + 4 :]
        assert parts[b"BODY[TEXT]<10>"] == text[10:30]
        # SEARCH LARGER/SMALLER compare the same stored size
        one = sorted(held)[0]
        size = len(held[one])
        assert one not in client.search(["LARGER", str(size - 1), "SMALLER", str(size + 1)])
        estimate = estimated_size(size)
        assert one in client.search(["LARGER", str(estimate - 1), "SMALLER", str(estimate + 1)])
        client.unselect_folder()
    finally:
        client.logout()
    assert refused_commands(stack) == []


def test_the_front_keeps_bytes_or_exact_sizes_when_asked(
    exo_store: ExoDovecot,  # noqa: F811
    mailbox: str,
) -> None:
    from tests.fixtures.exo_mime import convert

    for convert_on, exact in ((False, False), (True, True)):
        mailbox = f"{convert_on}.{mailbox}"
        stack = ExoStack(exo_store, convert=convert_on, exact_size=exact)
        try:
            target = ImapTarget(settings(stack), secrets={"client_secret": CLIENT_SECRET})
            folder = target.ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX)
            assert target.upload(mailbox, folder, [item(f"k{convert_on}", raw(7))])[0].ok
            target.close()
            client = _front(stack, mailbox)
            try:
                client.select_folder("INBOX", readonly=True)
                [data] = client.fetch(
                    client.search(["ALL"]), ["BODY.PEEK[]", "RFC822.SIZE"]
                ).values()
                assert data[b"BODY[]"] == (convert(raw(7)) if convert_on else raw(7))
                assert data[b"RFC822.SIZE"] == len(data[b"BODY[]"])
            finally:
                client.logout()
        finally:
            stack.close()


@pytest.mark.parametrize("tag_header", [False, True], ids=["by-content", "by-tag-header"])
def test_what_a_killed_process_left_behind_is_recognised_once_each(
    make: Make, stack: ExoStack, mailbox: str, tag_header: bool
) -> None:
    """Every hard case, stored as Exchange stores it: found again by a fresh process, each
    target message for the one source message it is (twins stay two, a message alike in every
    header but its body is never taken for the other)."""
    target = make(tag_header=tag_header)
    folder = target.ensure_folder(mailbox, ("Recuperar",), FolderRole.NONE)
    cases = _hard_cases()
    by_key = {c.key: c for c in cases}
    stored = [
        "no-message-id",
        "dup-msgid-a",
        "identical-1",
        "latin1-subject",
        "utf8-subject",
        "nul-bytes",
        "bare-cr",
        "line-over-10000",
        "no-header-break",
        "broken-mime",
        "one-byte",
        "alike-1",
    ]
    _left_behind(make, mailbox, folder, [by_key[k] for k in stored], tag_header=tag_header)
    held = _held(stack, mailbox, folder.id)
    fresh = make(tag_header=tag_header)
    # alike-2 and dup-msgid-b first: they must not take what alike-1 and dup-msgid-a left
    asked = sorted(cases, key=lambda c: c.key not in ("alike-2", "dup-msgid-b"))
    found = fresh.find_uploads(mailbox, folder, asked)
    assert sorted(found) == sorted(stored)
    for key, target_id in found.items():
        uid = int(target_id.split(":")[1])
        assert held[uid] == dovecot_wire_bytes(target._payload(by_key[key])), key
    # the second twin is a message of its own: with the first one's id known, nothing is left
    again = fresh.find_uploads(mailbox, folder, [by_key["identical-2"]], known_ids=found.values())
    assert again == {}
    assert refused_commands(stack) == []
    assert not any(b"LARGER" in s.upper() or b"SMALLER" in s.upper() for s in stack.front.searches)


def test_a_lost_answer_for_a_message_without_message_id_is_settled_by_content(
    make: Make, stack: ExoStack, mailbox: str
) -> None:
    target = make()
    folder = target.ensure_folder(mailbox, ("Sin id",), FolderRole.NONE)
    by_key = {c.key: c for c in _hard_cases()}
    # the last one: every APPEND before it is answered
    cases = [by_key[k] for k in ("crlf", "alike-1", "alike-2", "no-message-id")]
    # stored, the answer lost with the connection: nothing but its content tells it apart
    stack.front.add(Rule("APPEND", "drop-after", contains=b"Subject: No Message-ID here"))
    results = target.upload(mailbox, folder, cases)
    assert all(r.ok and r.target_id for r in results), results
    assert stack.front.cuts == 1
    assert sorted(_held(stack, mailbox, folder.id).values()) == sorted(
        dovecot_wire_bytes(c.data) for c in cases
    )


def test_copies_are_grouped_by_what_exchange_keeps(
    make: Make, stack: ExoStack, mailbox: str
) -> None:
    """What `dedupe` looks for without the tag header: the same message more than once."""
    target = make()
    folder = target.ensure_folder(mailbox, ("Copias",), FolderRole.NONE)
    cases = _hard_cases()
    twice = [
        replace(c, key=c.key + "-again")
        for c in cases
        if c.key in ("dup-msgid-a", "no-message-id", "latin1-subject")
    ]
    _left_behind(make, mailbox, folder, cases + twice)
    held = _held(stack, mailbox, folder.id)
    groups = make().identical_items(mailbox, folder)
    contents = sorted(sorted({held[int(t.split(":")[1])] for t in group}) for group in groups)
    # the identical twins, and each message stored twice; not dup-msgid-b, not alike-2
    expected = sorted(
        [dovecot_wire_bytes(c.data)]
        for c in [*twice, next(c for c in cases if c.key == "identical-1")]
    )
    assert contents == expected
    assert all(len(group) == 2 for group in groups)


def test_the_tag_header_survives_conversion(make: Make, stack: ExoStack, mailbox: str) -> None:
    target = make(tag_header=True)
    folder = target.ensure_folder(mailbox, ("Etiquetas",), FolderRole.NONE)
    cases = _hard_cases()
    assert all(r.ok for r in target.upload(mailbox, folder, cases))
    keyed = make(tag_header=True).items_by_key(mailbox, folder)
    assert keyed is not None and keyed.total == len(cases)
    assert all(len(keyed.ids(c.key)) == 1 for c in cases)
    client = _front(stack, mailbox)
    try:
        client.select_folder(folder.id, readonly=True)
        bodies = [
            d[b"BODY[]"] for d in client.fetch(client.search(["ALL"]), ["BODY.PEEK[]"]).values()
        ]
        assert all(b.startswith(b"X-Migrator-Key: ") for b in bodies)
    finally:
        client.logout()


def test_the_folder_index_follows_what_others_delete_and_add(
    make: Make, stack: ExoStack, mailbox: str
) -> None:
    """The identities a converting server's folder holds are read once and then kept up to
    date: a message the user deleted meanwhile is never answered, one added is found."""
    target = make()
    folder = target.ensure_folder(mailbox, ("Indice",), FolderRole.NONE)
    first = [item(f"i{n}", raw(n)) for n in range(4)]
    _left_behind(make, mailbox, folder, first)
    looking = make()
    assert sorted(looking.find_uploads(mailbox, folder, first)) == ["i0", "i1", "i2", "i3"]
    client = _front(stack, mailbox)
    try:  # the user deletes two of them and files the same number of others
        client.select_folder(folder.id)
        gone = [
            uid
            for uid, d in client.fetch(client.search(["ALL"]), ["BODY.PEEK[HEADER]"]).items()
            if b"Subject: exo 1\r\n" in d[b"BODY[HEADER]"]
            or b"Subject: exo 2\r\n" in d[b"BODY[HEADER]"]
        ]
        client.delete_messages(gone)
        client.expunge()
    finally:
        client.logout()
    later = [item(f"i{n}", raw(n)) for n in (4, 5)]
    _left_behind(make, mailbox, folder, later)
    found = looking.find_uploads(mailbox, folder, first + later)
    assert sorted(found) == ["i0", "i3", "i4", "i5"]
    held = _held(stack, mailbox, folder.id)
    assert all(held[int(t.split(":")[1])] == raw(int(k[1:])) for k, t in found.items())


def test_exchange_with_another_banner_is_still_known_by_its_capabilities(
    make: Make, stack: ExoStack, mailbox: str
) -> None:
    """The greeting is a setting (Set-ImapSettings -Banner): a lost answer is settled by what
    survives conversion, and \\Flagged set by STORE, on the strength of the capabilities only
    Exchange announces."""
    stack.front.greeting = b"* OK IMAP4 service of the Instituto ready.\r\n"
    target = make()
    folder = target.ensure_folder(mailbox, ("Otro saludo",), FolderRole.NONE)
    stack.front.add(Rule("APPEND", "drop-after", contains=b"Subject: exo 3\r\n"))
    items = [item(f"b{n}", raw(n), Flags(flagged=True)) for n in range(4)]
    results = target.upload(mailbox, folder, items)
    assert all(r.ok and r.target_id for r in results), results
    assert stack.front.cuts == 1
    assert stored(stack, mailbox, folder.id) == {
        raw(n): (frozenset({b"\\Flagged"}), WHEN) for n in range(4)
    }
