"""The IMAP target against an Exchange-Online-like front (tests/fixtures/exo_front.py).

App-only XOAUTH2 tokens from a local identity platform, EXO's capability set (no MULTIAPPEND,
no SPECIAL-USE, no APPENDLIMIT), its message size limit and wording, tokens that run out in the
middle of a chunk, throttling that closes the connection, and its limit of connections per
mailbox. Each message is read back from the Dovecot behind the front with FETCH BODY.PEEK[],
FLAGS and INTERNALDATE.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from imapclient import IMAPClient

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
from tests.fixtures.imap_proxy import Rule, exchange_throttled

WHEN = datetime(2022, 6, 14, 8, 15, 0, tzinfo=timezone(timedelta(hours=-5)))
_serial = iter(range(1, 10_000))


def raw(n: int, body: bytes = b"Saludos.\r\n") -> bytes:
    return (b"From: Ana <ana@ife.org.mx>\r\nTo: luis@ife.org.mx\r\nSubject: exo " + str(n).encode()
            + b"\r\nDate: Tue, 14 Jun 2022 08:15:00 -0500\r\nMessage-ID: <exo-" + str(n).encode()
            + b"@ife.org.mx>\r\n\r\n" + body)


def item(key: str, data: bytes, flags: Flags | None = None) -> UploadItem:
    return UploadItem(key=key, data=data, flags=flags or Flags(), internal_date=WHEN)


def settings(stack: ExoStack, **changes: object) -> TargetSettings:
    base = TargetSettings(kind="imap", host=stack.front.host, port=stack.front.port, tls="ssl",
                          ca_file=str(stack.store.ca_file), auth="xoauth2", client_id=CLIENT_ID,
                          tenant_id=TENANT, client_secret_env="UNUSED",
                          token_url=stack.platform.token_url, timeout=20.0)
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

    def make_target(*, clock: Callable[[], float] | None = None, max_connections: int = 2,
                    **changes: object) -> ImapTarget:
        extra = {"clock": clock} if clock is not None else {}
        target = ImapTarget(settings(stack, **changes), secrets={"client_secret": CLIENT_SECRET},
                            max_connections=max_connections, **extra)  # type: ignore[arg-type]
        opened.append(target)
        return target

    yield make_target
    for target in opened:
        target.close()


@pytest.fixture
def mailbox() -> str:
    return f"exo{next(_serial)}@contoso.onmicrosoft.test"


def stored(stack: ExoStack, mailbox: str, folder: str) -> dict[bytes, tuple[frozenset[bytes], datetime]]:
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
        return {d[b"BODY[]"]: (frozenset(d[b"FLAGS"]) - {b"\\Recent"}, d[b"INTERNALDATE"])
                for d in data.values()}
    finally:
        client.logout()


def refused_commands(stack: ExoStack) -> list[tuple[str, bytes]]:
    return [(e.name, e.text) for e in stack.front.timeline if e.action == "refused"]


# --- what works as it is ---------------------------------------------------------------------


def test_a_mailbox_is_filled_through_the_front_as_exchange_online_shows_it(
        make: Make, stack: ExoStack, mailbox: str) -> None:
    target = make()
    target.preflight(mailbox)
    roles = {role: target.ensure_folder(mailbox, (name,), role).id for name, role in (
        ("Sent", FolderRole.SENT), ("Drafts", FolderRole.DRAFTS), ("Trash", FolderRole.TRASH),
        ("Junk", FolderRole.JUNK), ("Archive", FolderRole.ARCHIVE))}
    # found by name: the front shows no SPECIAL-USE attributes, and nothing was created twice
    assert roles == {FolderRole.SENT: "Sent Items", FolderRole.DRAFTS: "Drafts",
                     FolderRole.TRASH: "Deleted Items", FolderRole.JUNK: "Junk Email",
                     FolderRole.ARCHIVE: "Archive"}
    files = target.ensure_folder(mailbox, ("Files",), FolderRole.NONE)
    assert files.id == "Files (migrated)"  # "Files" is reserved in Exchange Online
    nested = target.ensure_folder(mailbox, ("Proyectos", "Informes 2022"), FolderRole.NONE)
    assert nested.id == "Proyectos/Informes 2022"
    items = [item("a", raw(1), Flags(seen=True, flagged=True, keywords=("$label1",))),
             item("b", raw(2), Flags(answered=True)),
             item("c", raw(3, b"no final newline"), Flags(seen=True, draft=True))]
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
        make: Make, stack: ExoStack, mailbox: str) -> None:
    stack.front.max_message_size = 64 * 1024
    target = make()
    folder = target.ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX)
    big = raw(2, b"x" * 100 * 1024 + b"\r\n")
    results = target.upload(mailbox, folder, [item("s1", raw(1)), item("big", big),
                                              item("s3", raw(3))])
    assert [r.ok for r in results] == [True, False, True]
    error = results[1].error
    assert isinstance(error, PermanentError) and error.reason == "too-large"
    assert "big" in str(error) and "Maximum size of appendable message" in str(error)
    assert set(stored(stack, mailbox, "INBOX")) == {raw(1), raw(3)}


def test_flagged_is_set_on_copies_found_after_a_lost_answer(
        make: Make, stack: ExoStack, mailbox: str) -> None:
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
        frozenset({b"\\Seen", b"\\Flagged"})}


def test_flagged_is_set_on_copies_a_killed_process_left_behind(
        make: Make, stack: ExoStack, mailbox: str) -> None:
    target = make()
    folder = target.ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX)
    # a process APPENDed these and was killed before its STORE (\Flagged is not applied by
    # APPEND on Exchange); the next process recognises them by content
    client = IMAPClient(stack.front.host, port=stack.front.port, ssl=True, timeout=20,
                        ssl_context=_trusting(stack))
    client.oauth2_login(mailbox, stack.platform.token())
    items = [item("k1", raw(1), Flags(flagged=True)), item("k2", raw(2), Flags(seen=True))]
    for one in items:
        client.append("INBOX", one.data, flags=[b"\\Flagged"] if one.flags.flagged else [b"\\Seen"],
                      msg_time=WHEN)
    client.logout()
    found = make().find_uploads(mailbox, folder, items)
    assert set(found) == {"k1", "k2"}
    assert {body: flags for body, (flags, _) in stored(stack, mailbox, "INBOX").items()} == {
        raw(1): frozenset({b"\\Flagged"}), raw(2): frozenset({b"\\Seen"})}


# --- token expiry ---------------------------------------------------------------------------


def test_a_token_that_runs_out_in_the_middle_of_a_chunk_is_renewed_and_nothing_is_sent_twice(
        make: Make, stack: ExoStack, mailbox: str) -> None:
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
        make: Make, stack: ExoStack, mailbox: str) -> None:
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
        source = TokenSource(token_url=platform.token_url, client_id=CLIENT_ID,
                             client_secret=CLIENT_SECRET,
                             scope="https://outlook.office365.com/.default", clock=lambda: now[0])
        first = source.token()
        now[0] += 4
        assert source.token() == first  # half its life left: still good
        now[0] += 2.5
        assert source.token() != first  # the last quarter: replaced
        assert platform.fetches == 2
    finally:
        platform.close()


def test_a_cached_token_the_server_refuses_is_replaced_at_login(
        make: Make, stack: ExoStack, mailbox: str) -> None:
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
        make: Make, stack: ExoStack, mailbox: str) -> None:
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
        make: Make, stack: ExoStack, mailbox: str) -> None:
    target = make()
    folder = target.ensure_folder(mailbox, ("Busy",), FolderRole.NONE)
    stack.front.add(Rule("APPEND", "bad-bye", text=exchange_throttled(1500),
                         contains=b"Subject: exo 3\r\n"))
    items = [item(f"t{n}", raw(n)) for n in range(6)]
    results = target.upload(mailbox, folder, items)
    assert all(r.ok for r in results[:3]), results  # stored before the server hung up
    assert all(isinstance(r.error, TransientError) and r.error.retry_after == 1.5
               for r in results[3:]), results
    assert set(stored(stack, mailbox, folder.id)) == {raw(n) for n in range(3)}


def test_past_the_connections_per_mailbox_the_session_is_dropped_and_retried(
        make: Make, stack: ExoStack, mailbox: str) -> None:
    stack.front.connections_per_mailbox = 1
    # the user's own mail client holds the only connection the mailbox allows
    other = IMAPClient(stack.front.host, port=stack.front.port, ssl=True, timeout=20,
                       ssl_context=_trusting(stack))
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
