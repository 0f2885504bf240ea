"""The IMAP target against a real Dovecot: fidelity, recovery, Exchange quirks and faults.

The generic contract runs in tests/test_target_contract.py; this file checks what is specific to
IMAP. Faults come from tests/fixtures/imap_proxy.py between the target and Dovecot.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from imapclient import IMAPClient

from migrator.adapters.targets import open_target
from migrator.adapters.targets.imap import ImapTarget, connection
from migrator.adapters.targets.imap.oauth import TokenSource
from migrator.model.errors import PermanentError, TransientError
from migrator.model.mail import Flags, FolderRole, UploadItem
from migrator.plan import parse_plan
from tests.fixtures.dovecot import MASTER_PASSWORD, MASTER_USER, DovecotServer
from tests.fixtures.imap_proxy import (
    EXCHANGE_GREETING,
    EXCHANGE_THROTTLED,
    EXCHANGE_TOO_LARGE,
    ImapProxy,
    Rule,
)
from tests.fixtures.targets import AclDovecot, imap_settings

SECRETS = {"password": MASTER_PASSWORD}
WHEN = datetime(2023, 11, 5, 14, 30, 15, tzinfo=timezone(timedelta(hours=2)))


def raw(n: int, body: bytes = b"Hello.\r\n", *, msgid: bool = True) -> bytes:
    head = (
        b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: imap "
        + str(n).encode()
        + b"\r\nDate: Sun, 05 Nov 2023 14:30:00 +0200\r\n"
    )
    if msgid:
        head += b"Message-ID: <imap-" + str(n).encode() + b"@example.org>\r\n"
    return head + b"\r\n" + body


def item(
    key: str, data: bytes, flags: Flags | None = None, when: datetime | None = WHEN
) -> UploadItem:
    return UploadItem(key=key, data=data, flags=flags or Flags(), internal_date=when)


@pytest.fixture
def server(imap_target_dovecot: AclDovecot) -> AclDovecot:
    return imap_target_dovecot


@pytest.fixture
def mailbox(server: AclDovecot) -> str:
    user, _ = server.new_user()
    server.grant(user, "lrwstipekxa")
    return user


@pytest.fixture
def opened() -> Iterator[list[ImapTarget]]:
    targets: list[ImapTarget] = []
    yield targets
    for target in targets:
        target.close()


Make = Callable[..., ImapTarget]


@pytest.fixture
def make(server: AclDovecot, opened: list[ImapTarget]) -> Make:
    """make(**TargetSettings changes, secrets=..., max_connections=...) -> a new ImapTarget."""

    def make_target(
        *, secrets: dict[str, str] | None = None, max_connections: int = 4, **changes: object
    ) -> ImapTarget:
        target = open_target(
            imap_settings(server, **changes),
            secrets=SECRETS if secrets is None else secrets,
            max_connections=max_connections,
        )
        assert isinstance(target, ImapTarget)
        opened.append(target)
        return target

    return make_target


@pytest.fixture
def proxy(server: AclDovecot) -> Iterator[ImapProxy]:
    p = ImapProxy(server.host, server.port)
    yield p
    p.close()


def via(proxy: ImapProxy) -> dict[str, object]:
    return {"host": proxy.host, "port": proxy.port, "tls": "none"}


def user_client(server: AclDovecot, mailbox: str) -> IMAPClient:
    """A client logged in as the mailbox's user would see it (names as on the wire)."""
    client = IMAPClient(server.host, port=server.port, ssl=False)
    client.folder_encode = False
    client.normalise_times = False  # keep the zone the server states
    client.login(f"{mailbox}*{MASTER_USER}", MASTER_PASSWORD)
    return client


# --- fidelity ---------------------------------------------------------------------------------


def test_bytes_flags_keywords_and_internaldate_arrive_unchanged(
    make: Make, server: AclDovecot, mailbox: str
) -> None:
    target = make()
    folder = target.ensure_folder(mailbox, ("Projekte", "Entwürfe"), FolderRole.NONE)
    assert folder.id == "Projekte.Entw&APw-rfe"
    items = [
        item("k1", raw(1), Flags(seen=True, answered=True, keywords=("$label1", "Work"))),
        item("k2", raw(2, b"\xe4\xf6\xfc 8bit body\r\n" * 50), Flags(flagged=True, draft=True)),
        item("k3", raw(3), Flags(deleted=True, keywords=("bad keyword(", "ok"))),
    ]
    results = target.upload(mailbox, folder, items)
    assert all(r.ok for r in results), results
    by_uid = {int(r.target_id.split(":")[1]): r.key for r in results if r.target_id}
    stored = _uid_map(server, mailbox, folder.id)
    assert len(stored) == 3
    seen = {by_uid[int(uid)]: data for uid, data in stored.items()}
    assert [seen[k][b"BODY[]"] for k in ("k1", "k2", "k3")] == [i.data for i in items]
    assert _flags(seen["k1"]) == {b"\\Seen", b"\\Answered", b"$label1", b"Work"}
    assert _flags(seen["k2"]) == {b"\\Flagged", b"\\Draft"}
    # \Deleted is never carried (a client's EXPUNGE would erase it); invalid keywords dropped
    assert _flags(seen["k3"]) == {b"ok"}
    for key in ("k1", "k2", "k3"):
        assert seen[key][b"INTERNALDATE"] == WHEN  # the same instant (aware datetimes)


def _str(name: bytes | str) -> str:
    return name.decode() if isinstance(name, bytes) else name


def _flags(data: dict[bytes, object]) -> set[bytes]:
    """The message's flags as a user keeps them (\\Recent is session state, not a flag)."""
    return set(data[b"FLAGS"]) - {b"\\Recent"}  # type: ignore[call-overload]


def _uid_map(server: AclDovecot, mailbox: str, folder: str) -> dict[int, dict[bytes, object]]:
    client = user_client(server, mailbox)
    try:
        client.select_folder(folder, readonly=True)
        return dict(client.fetch(client.search(["ALL"]), ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"]))
    finally:
        client.logout()


def test_without_an_internal_date_the_date_header_is_kept_not_now(
    make: Make, server: AclDovecot, mailbox: str
) -> None:
    # an mbox From_ line with no readable date gives no internal date; the server would stamp
    # the upload "now", and a 2023 message would sort as today's mail
    target = make()
    folder = target.ensure_folder(mailbox, ("Archivo",), FolderRole.NONE)
    [result] = target.upload(mailbox, folder, [item("k1", raw(1), when=None)])
    assert result.ok, result
    [stored] = _uid_map(server, mailbox, folder.id).values()
    assert stored[b"INTERNALDATE"] == datetime(2023, 11, 5, 12, 30, tzinfo=UTC)  # the Date header


def test_withdraw_removes_exactly_the_given_messages(
    make: Make, server: AclDovecot, mailbox: str
) -> None:
    # what a worker that lost its lease does with the copies it stored too late
    target = make()
    folder = target.ensure_folder(mailbox, ("Retirar",), FolderRole.NONE)
    results = target.upload(mailbox, folder, [item(f"k{n}", raw(n)) for n in range(3)])
    assert all(r.ok for r in results), results
    target.withdraw(mailbox, folder, [results[1].target_id or ""])
    left = _uid_map(server, mailbox, folder.id)
    assert sorted(
        int(r.target_id.split(":")[1]) for r in (results[0], results[2]) if r.target_id
    ) == sorted(left)


def test_target_ids_are_uidvalidity_and_uid(make: Make, mailbox: str) -> None:
    target = make()
    folder = target.ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX)
    results = target.upload(mailbox, folder, [item(f"u{n}", raw(n)) for n in range(4)])
    ids = [r.target_id for r in results]
    validity = {i.split(":")[0] for i in ids if i}
    assert len(validity) == 1 and [int(i.split(":")[1]) for i in ids if i] == [1, 2, 3, 4]


def test_role_folders_use_special_use_and_are_subscribed(
    make: Make, server: AclDovecot, mailbox: str
) -> None:
    target = make()
    sent = target.ensure_folder(mailbox, ("Gesendete Objekte",), FolderRole.SENT)
    trash = target.ensure_folder(mailbox, ("Papierkorb",), FolderRole.TRASH)
    assert (sent.id, trash.id) == ("Sent", "Trash")
    client = user_client(server, mailbox)
    try:
        flags = {_str(name): set(f) for f, _, name in client.list_folders()}
        subscribed = {_str(name) for _, _, name in client.list_sub_folders()}
    finally:
        client.logout()
    assert b"\\Sent" in flags["Sent"] and b"\\Trash" in flags["Trash"]
    assert {"Sent", "Trash"} <= subscribed


def test_separator_inside_a_name_does_not_split_it(make: Make, mailbox: str) -> None:
    folder = make().ensure_folder(mailbox, ("v1.2 notes",), FolderRole.NONE)
    assert folder.id == "v1_2 notes" and folder.path == ("v1.2 notes",)


# --- recovery without the message bytes ----------------------------------------------------------


def test_tag_header_lets_a_fresh_process_find_keys(make: Make, mailbox: str) -> None:
    first = make(tag_header=True)
    folder = first.ensure_folder(mailbox, ("Tagged",), FolderRole.NONE)
    results = first.upload(mailbox, folder, [item(f"key-{n}", raw(n)) for n in range(12)])
    fresh = make(tag_header=True)
    found = fresh.find(mailbox, folder, ["key-1", "key-11", "key-12", "other"])
    by_key = {r.key: r.target_id for r in results}
    # "key-1" is a substring of "key-11": only exact header values count
    assert found == {"key-1": by_key["key-1"], "key-11": by_key["key-11"]}


def test_find_uploads_recognises_messages_after_a_restart(make: Make, mailbox: str) -> None:
    first = make()
    folder = first.ensure_folder(mailbox, ("Recover",), FolderRole.NONE)
    twin = raw(7)
    sent = [
        item("a", raw(1)),
        item("b", raw(2, msgid=False)),
        item("twin-1", twin),
        item("lf", raw(3).replace(b"\r\n", b"\n")),
    ]
    results = first.upload(mailbox, folder, sent)
    assert all(r.ok for r in results)
    fresh = make()
    assert fresh.find(mailbox, folder, ["a"]) == {}  # without the header keys alone say nothing
    asked = [*sent, item("twin-2", twin), item("never", raw(9))]
    found = fresh.find_uploads(mailbox, folder, asked)
    ids = {r.key: r.target_id for r in results}
    assert found == ids  # the second copy of the twin is not taken for the first
    # a copy the caller already knows about is never matched again
    assert (
        fresh.find_uploads(mailbox, folder, [item("twin-2", twin)], known_ids=[ids["twin-1"]]) == {}
    )


def test_find_uploads_recognises_a_message_dovecot_serves_changed(make: Make, mailbox: str) -> None:
    # no Message-ID, so only the content can tell; Dovecot hands it back with CRLF line ends
    # and NUL as 0x80, so the content is compared in that form on both sides
    first = make()
    folder = first.ensure_folder(mailbox, ("Binary",), FolderRole.NONE)
    data = b"\x89PNG\r\n\x1a\nbare lf\nnul\x00\x00 and a bare\rcr\n"
    results = first.upload(mailbox, folder, [item("png", data)])
    assert results[0].ok
    found = make().find_uploads(mailbox, folder, [item("png", data), item("other", data + b"x")])
    assert found == {"png": results[0].target_id}


# --- faults through the proxy -------------------------------------------------------------------


def test_throttling_answer_is_transient_with_the_suggested_backoff(
    make: Make, proxy: ImapProxy, mailbox: str
) -> None:
    target = make(**via(proxy))
    folder = target.ensure_folder(mailbox, ("Busy",), FolderRole.NONE)
    proxy.add(Rule("APPEND", "no", EXCHANGE_THROTTLED))
    results = target.upload(mailbox, folder, [item(f"t{n}", raw(n)) for n in range(3)])
    assert all(isinstance(r.error, TransientError) for r in results)
    assert {r.error.retry_after for r in results} == {2.5}  # type: ignore[union-attr]
    assert target.count(mailbox, folder) == 0
    assert all(r.ok for r in target.upload(mailbox, folder, [item("t0", raw(0))]))


def test_throttling_later_in_a_chunk_keeps_what_was_stored(
    make: Make, proxy: ImapProxy, mailbox: str
) -> None:
    target = make(**via(proxy))
    folder = target.ensure_folder(mailbox, ("Half",), FolderRole.NONE)
    proxy.add(Rule("APPEND", "no", EXCHANGE_THROTTLED, contains=b"LAST-ONE"))
    items = [item(f"h{n}", raw(n)) for n in range(100)] + [item("last", raw(100, b"LAST-ONE\r\n"))]
    results = target.upload(mailbox, folder, items)  # MULTIAPPEND of 100, then the last alone
    assert all(r.ok for r in results[:100])
    assert isinstance(results[100].error, TransientError)
    assert results[100].error.retry_after == 2.5
    assert target.count(mailbox, folder) == 100


def test_too_large_answer_fails_only_that_message(
    make: Make, proxy: ImapProxy, mailbox: str
) -> None:
    target = make(**via(proxy))
    folder = target.ensure_folder(mailbox, ("Sizes",), FolderRole.NONE)
    proxy.add(Rule("APPEND", "no", EXCHANGE_TOO_LARGE, contains=b"HUGE", times=None))
    items = [item("s1", raw(1)), item("huge", raw(2, b"HUGE\r\n")), item("s3", raw(3))]
    results = target.upload(mailbox, folder, items)
    assert [r.ok for r in results] == [True, False, True]
    error = results[1].error
    assert isinstance(error, PermanentError) and error.reason == "too-large"
    assert "huge" in str(error) and "Maximum size" in str(error)
    assert target.count(mailbox, folder) == 2


def test_drop_after_the_server_stored_is_settled_by_looking(
    make: Make, proxy: ImapProxy, mailbox: str
) -> None:
    # one connection: the lookup must wait until the broken one is given back
    target = make(max_connections=1, **via(proxy))
    folder = target.ensure_folder(mailbox, ("Dropped",), FolderRole.NONE)
    proxy.add(Rule("APPEND", "drop-after"))
    items = [item(f"d{n}", raw(n)) for n in range(3)]
    results = target.upload(mailbox, folder, items)
    assert proxy.cuts == 1
    assert all(r.ok and r.target_id for r in results), results
    assert target.count(mailbox, folder) == 3  # stored once, not sent again
    assert make().find_uploads(mailbox, folder, items) == {r.key: r.target_id for r in results}


def test_drop_before_the_server_stored_is_transient_and_absent(
    make: Make, proxy: ImapProxy, mailbox: str
) -> None:
    target = make(**via(proxy))
    folder = target.ensure_folder(mailbox, ("Lost",), FolderRole.NONE)
    proxy.add(Rule("APPEND", "drop-before"))
    items = [item(f"x{n}", raw(n)) for n in range(3)]
    results = target.upload(mailbox, folder, items)
    assert all(isinstance(r.error, TransientError) for r in results)
    assert "connection lost" in str(results[0].error)
    assert target.find_uploads(mailbox, folder, items) == {}
    assert all(r.ok for r in target.upload(mailbox, folder, items))  # the retry stores them
    assert target.count(mailbox, folder) == 3


def test_a_lost_copy_is_not_taken_for_an_identical_one_stored_before(
    make: Make, proxy: ImapProxy, mailbox: str
) -> None:
    # two identical messages in the source; the first was stored by an earlier process. The
    # second's APPEND breaks off before the server stored it: only messages the broken APPEND
    # could have stored (UID from the folder's UIDNEXT before it on) may settle it
    folder = make().ensure_folder(mailbox, ("Twins",), FolderRole.NONE)
    twin = raw(5)
    first = make().upload(mailbox, folder, [item("twin-1", twin)])
    assert first[0].ok
    target = make(**via(proxy))
    proxy.add(Rule("APPEND", "drop-before"))
    second = target.upload(mailbox, folder, [item("twin-2", twin)])
    assert isinstance(second[0].error, TransientError), second
    assert target.count(mailbox, folder) == 1
    # and when the server did store it, the new copy is found, not the old one
    proxy.add(Rule("APPEND", "drop-after"))
    third = target.upload(mailbox, folder, [item("twin-2", twin)])
    assert third[0].ok and third[0].target_id != first[0].target_id, (first, third)
    assert target.count(mailbox, folder) == 2


def test_a_lost_answer_with_the_tag_header_is_not_settled_by_a_namesake(
    make: Make, proxy: ImapProxy, mailbox: str
) -> None:
    # "Sent" and "Elementos enviados" both hold key K and both land in one target folder: the
    # first K is stored; the answer to the second K's APPEND is lost after the server stored
    # it. Its own copy settles it, never the first (which stands for the other message)
    folder = make(tag_header=True).ensure_folder(mailbox, ("Sent",), FolderRole.SENT)
    first = make(tag_header=True).upload(mailbox, folder, [item("K", raw(1))])
    assert first[0].ok
    target = make(tag_header=True, **via(proxy))
    proxy.add(Rule("APPEND", "drop-after"))
    second = target.upload(mailbox, folder, [item("K", raw(2))])
    assert second[0].ok and second[0].target_id != first[0].target_id, (first, second)
    assert target.count(mailbox, folder) == 2
    # and a fresh process looking for K, knowing the first copy is the other message's,
    # finds the second
    fresh = make(tag_header=True)
    assert fresh.find_uploads(
        mailbox, folder, [item("K", raw(2))], known_ids=[first[0].target_id]
    ) == {"K": second[0].target_id}


def test_without_literal_plus_and_multiappend(
    make: Make, proxy: ImapProxy, server: AclDovecot, mailbox: str
) -> None:
    proxy.hide_capabilities = {b"LITERAL+", b"MULTIAPPEND"}
    target = make(**via(proxy))
    folder = target.ensure_folder(mailbox, ("Plain",), FolderRole.NONE)
    items = [item(f"p{n}", raw(n), Flags(seen=True)) for n in range(5)]
    results = target.upload(mailbox, folder, items)
    assert all(r.ok for r in results)
    assert proxy.seen["APPEND"] == 5
    assert sorted(d[b"BODY[]"] for d in _uid_map(server, mailbox, folder.id).values()) == sorted(
        i.data for i in items
    )


def test_exchange_flagged_is_set_after_append_and_files_renamed(
    make: Make, proxy: ImapProxy, server: AclDovecot, mailbox: str
) -> None:
    proxy.greeting = EXCHANGE_GREETING
    proxy.strip_flagged = True  # like Exchange, the server ignores \Flagged in APPEND
    target = make(**via(proxy))
    files = target.ensure_folder(mailbox, ("Files",), FolderRole.NONE)
    assert files.id == "Files (migrated)"
    sent = target.ensure_folder(mailbox, ("Sent",), FolderRole.SENT)
    assert sent.id == "Sent Items"
    results = target.upload(
        mailbox,
        files,
        [item("f", raw(1), Flags(flagged=True)), item("n", raw(2), Flags(seen=True))],
    )
    assert all(r.ok for r in results)
    flags = {d[b"BODY[]"]: _flags(d) for d in _uid_map(server, mailbox, files.id).values()}
    assert flags[raw(1)] == {b"\\Flagged"} and flags[raw(2)] == {b"\\Seen"}


def test_mailbox_name_with_administrator_proxy_template(make: Make, mailbox: str) -> None:
    target = make(proxy_login="{local}*{username}")
    target.preflight(mailbox + "@example.org")  # {local} drops the domain


def test_sasl_plain_with_authorization_identity(make: Make, mailbox: str) -> None:
    target = make(auth="plain")
    target.preflight(mailbox)
    with pytest.raises(PermanentError) as missing:
        target.preflight("nobody")
    assert missing.value.reason == "no-mailbox"


def test_pool_reuses_connections_per_mailbox(make: Make, mailbox: str, server: AclDovecot) -> None:
    target = make()
    other, _ = server.new_user()
    server.grant(other, "lrwstipekxa")
    for _ in range(3):
        target.preflight(mailbox)
    assert target.pool.opened == 1
    target.preflight(other)
    assert target.pool.opened == 2


# --- XOAUTH2 tokens ---------------------------------------------------------------------------


class _TokenServer:
    def __init__(self, lifetime: int) -> None:
        self.requests: list[dict[str, list[str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                outer.requests.append(form)
                if form.get("client_secret") != ["s3cret"]:
                    self.send_response(401)
                    body = json.dumps({"error": "invalid_client"}).encode()
                else:
                    self.send_response(200)
                    body = json.dumps(
                        {
                            "access_token": f"tok{len(outer.requests)}",
                            "expires_in": lifetime,
                            "token_type": "Bearer",
                        }
                    ).encode()
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/tenant/oauth2/v2.0/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_token_is_fetched_once_and_refreshed_before_expiry() -> None:
    server = _TokenServer(lifetime=3600)
    now = [1000.0]
    try:
        source = TokenSource(
            token_url=server.url,
            client_id="app",
            client_secret="s3cret",
            scope="https://outlook.office365.com/.default",
            clock=lambda: now[0],
        )
        assert source.token().value == "tok1"
        now[0] += 3000  # 10 minutes left: still fine
        assert source.token().value == "tok1"
        now[0] += 400  # within the 5-minute margin: replaced
        assert source.token().value == "tok2"
        form = server.requests[0]
        assert form["grant_type"] == ["client_credentials"]
        assert form["scope"] == ["https://outlook.office365.com/.default"]
        wrong = TokenSource(token_url=server.url, client_id="app", client_secret="nope", scope="x")
        with pytest.raises(PermanentError) as refused:
            wrong.token()
        assert refused.value.reason == "auth" and "nope" not in str(refused.value)
    finally:
        server.close()


def test_a_connection_dropped_while_idle_is_replaced(
    make: Make, proxy: ImapProxy, mailbox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "IDLE_CHECK_SECONDS", 0.0)
    target = make(max_connections=1, **via(proxy))
    folder = target.ensure_folder(mailbox, ("Idle",), FolderRole.NONE)
    proxy.cut_all()  # e.g. the server's autologout timer
    assert all(r.ok for r in target.upload(mailbox, folder, [item("i", raw(1))]))
    assert target.pool.opened == 2


def test_threads_share_the_pool(make: Make, server: AclDovecot, mailbox: str) -> None:
    target = make(max_connections=3)
    other, _ = server.new_user()
    server.grant(other, "lrwstipekxa")
    errors: list[BaseException] = []

    def work(box: str, name: str) -> None:
        try:
            folder = target.ensure_folder(box, (name,), FolderRole.NONE)
            for start in range(0, 40, 10):
                chunk = [item(f"{name}-{n}", raw(n)) for n in range(start, start + 10)]
                assert all(r.ok for r in target.upload(box, folder, chunk))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(box, f"T{n}"))
        for n in range(3)
        for box in (mailbox, other)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    for box in (mailbox, other):
        for n in range(3):
            folder = target.ensure_folder(box, (f"T{n}",), FolderRole.NONE)
            assert target.count(box, folder) == 40
    assert target.pool.peak == 3  # never more connections than allowed


# --- plan keys --------------------------------------------------------------------------------


def test_plan_keys_of_the_imap_target() -> None:
    from tests.test_plan import GOOD

    text = GOOD.replace(
        '[target]\nkind = "ews"\n',
        """[target]
kind = "imap"
host = "outlook.office365.com"
auth = "xoauth2"
client_id = "app"
tenant_id = "tenant"
client_secret_env = "MIGRATOR_IMAP_SECRET"
tag_header = true
token_url = "https://login.example.org/token"
proxy_login = "EXAMPLE\\\\{username}\\\\{local}"
""",
    )
    target = parse_plan(text, "p.toml").target
    assert (target.kind, target.port, target.tls, target.auth) == ("imap", 993, "ssl", "xoauth2")
    assert target.tag_header and target.token_url == "https://login.example.org/token"
    assert target.proxy_login == "EXAMPLE\\{username}\\{local}"
    assert target.oauth_scope == "https://outlook.office365.com/.default"
    defaults = parse_plan(
        GOOD.replace('kind = "ews"', 'kind = "imap"\nhost = "h"\npassword_env = "P"'), "p.toml"
    ).target
    assert defaults.proxy_login == "{address}*{username}" and not defaults.tag_header


def test_a_slow_answer_times_out_as_transient_and_the_target_recovers(
    make: Make, proxy: ImapProxy, mailbox: str
) -> None:
    target = make(timeout=1.0, **via(proxy))
    folder = target.ensure_folder(mailbox, ("Slow",), FolderRole.NONE)
    proxy.add(Rule("APPEND", "delay", delay=0.3))  # slow but within the timeout: fine
    assert all(r.ok for r in target.upload(mailbox, folder, [item("quick", raw(1))]))
    proxy.add(Rule("APPEND", "delay", delay=2.5))
    results = target.upload(mailbox, folder, [item("slow", raw(2)), item("slow2", raw(3))])
    assert all(isinstance(r.error, TransientError) for r in results)
    assert "timed out" in str(results[0].error)
    # whether the late command was stored is for find_uploads to tell before resending; the
    # target itself carries on with a fresh connection
    assert all(r.ok for r in target.upload(mailbox, folder, [item("next", raw(4))]))
    assert target.pool.opened == 2


def test_tls_problems_are_permanent_and_say_what_to_fix(
    make: Make, server: AclDovecot, mailbox: str
) -> None:
    untrusted = make(ca_file=None)  # the test CA is not in the system store
    with pytest.raises(PermanentError) as unverified:
        untrusted.preflight(mailbox)
    assert unverified.value.reason == "tls" and "certificate" in str(unverified.value)
    plain_port = make(port=server.port)  # implicit TLS spoken to the plain IMAP port
    with pytest.raises(PermanentError) as handshake:
        plain_port.preflight(mailbox)
    assert handshake.value.reason == "tls" and handshake.value.hint
    make(port=server.port, tls="starttls").preflight(mailbox)  # STARTTLS there is fine


def test_appendlimit_lowers_the_maximum_size(make: Make, proxy: ImapProxy, mailbox: str) -> None:
    proxy.add_capabilities = [b"APPENDLIMIT=3000"]
    target = make(**via(proxy))
    assert target.max_message_size > 3000  # not connected yet: the plan's limit
    folder = target.ensure_folder(mailbox, ("Limit",), FolderRole.NONE)
    # connected: the server's limit, which the engine asks before each chunk (a larger
    # message is skipped there, never sent: test_engine_imap_target)
    assert target.max_message_size == 3000
    assert target.upload(mailbox, folder, [item("small", raw(2))])[0].ok


def test_an_older_server_without_namespace_special_use_or_multiappend(
    dovecot_fs: DovecotServer,
) -> None:
    user, _ = dovecot_fs.new_user()
    target = ImapTarget(
        imap_settings(dovecot_fs, port=dovecot_fs.port, tls="none"), secrets=SECRETS
    )
    try:
        target.preflight(user)  # no ACL extension: a STATUS of the inbox instead
        nested = target.ensure_folder(user, ("Projekte", "Entwürfe"), FolderRole.NONE)
        assert nested.id == "Projekte/Entw&APw-rfe"  # separator "/" learnt from LIST
        sent = target.ensure_folder(user, ("Enviados",), FolderRole.SENT)
        assert sent.id == "Sent"  # no SPECIAL-USE: the usual name, created
        results = target.upload(user, nested, [item(f"o{n}", raw(n)) for n in range(5)])
        assert all(r.ok for r in results) and target.count(user, nested) == 5
        assert len({r.target_id for r in results}) == 5
    finally:
        target.close()


# --- secrets in messages ------------------------------------------------------------------------


@pytest.mark.parametrize("wrong", ["o", "e", "127.0.0.1", MASTER_USER])
def test_a_wrong_password_found_in_other_words_garbles_nothing(
    make: Make, server: AclDovecot, mailbox: str, wrong: str
) -> None:
    """Masking the password inside the message turned every "o" of the host, the login and the
    server's words into ***. The message is built from what may be shown and left whole."""
    target = make(secrets={"password": wrong})
    with pytest.raises(PermanentError) as caught:
        target.preflight(mailbox)
    err = caught.value
    assert err.reason == "auth"
    head = f"mailbox {mailbox}: IMAP server {server.host}:{server.tls_port} refused the credentials of {mailbox}*{MASTER_USER} ("
    assert str(err).startswith(head), str(err)
    assert "***" not in f"{err} {err.hint}"
    assert "[AUTHENTICATIONFAILED]" in str(err)  # the server's response code, always shown


def test_a_server_that_echoes_the_password_is_not_quoted(
    make: Make, proxy: ImapProxy, mailbox: str
) -> None:
    secret = "Echo-Me-77"
    target = make(secrets={"password": secret}, **via(proxy))
    proxy.add(Rule("LOGIN", "no", b"[AUTHENTICATIONFAILED] password Echo-Me-77 is wrong"))
    with pytest.raises(PermanentError) as caught:
        target.preflight(mailbox)
    err = caught.value
    assert err.reason == "auth" and secret not in f"{err} {err.hint}" and "***" not in str(err)
    assert "[AUTHENTICATIONFAILED] the reply is not shown" in str(err)
