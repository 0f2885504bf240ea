"""Each injected fault reaches exchangelib as the error class a real Exchange fault produces."""

from __future__ import annotations

import base64
import threading
import time

import pytest
import requests
from exchangelib import FaultTolerance, Message
from exchangelib.errors import (
    ErrorMessageSizeExceeded,
    ErrorServerBusy,
    ErrorTimeoutExpired,
    MalformedResponseError,
    RateLimitError,
)

from migrator.simulator.ews import EwsSimulator, Faults
from tests.fixtures.ews import (
    EXCHANGE_2016,
    SIM_MAILBOX,
    SIM_PASSWORD,
    SIM_USER,
    forget_protocols,
    make_account,
    mime_content,
)


def mime(subject: str, size: int = 0) -> bytes:
    body = b"x" * size
    return f"Subject: {subject}\r\nFrom: a@example.org\r\n\r\n".encode() + body + b"\r\n"


def outcome(call: object) -> str:
    try:
        call()  # type: ignore[operator]
    except ErrorServerBusy:
        return "busy"
    return "ok"


def raw_get_inbox(sim: EwsSimulator) -> requests.Response:
    envelope = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
        'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Header>'
        '<t:RequestServerVersion Version="Exchange2016"/></s:Header><s:Body><m:GetFolder>'
        "<m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape><m:FolderIds>"
        f'<t:DistinguishedFolderId Id="inbox"><t:Mailbox><t:EmailAddress>{SIM_MAILBOX}'
        "</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId></m:FolderIds></m:GetFolder>"
        "</s:Body></s:Envelope>"
    )
    auth = base64.b64encode(f"{SIM_USER}:{SIM_PASSWORD}".encode()).decode()
    return requests.post(
        sim.url,
        data=envelope.encode(),
        timeout=10,
        headers={"Content-Type": "text/xml; charset=utf-8", "Authorization": f"Basic {auth}"},
    )


def test_server_busy_carries_back_off_and_clears_at_runtime(ews_sim: EwsSimulator) -> None:
    account = make_account(ews_sim, version=EXCHANGE_2016)
    inbox = account.inbox
    ews_sim.set_faults(Faults(server_busy_rate=1.0, backoff_ms=2500))
    with pytest.raises(ErrorServerBusy) as busy:
        inbox.refresh()
    assert busy.value.back_off == 2.5
    raw = raw_get_inbox(ews_sim)
    assert raw.status_code == 500
    assert b'<t:Value Name="BackOffMilliseconds">2500</t:Value>' in raw.content
    ews_sim.set_faults(Faults())
    assert inbox.refresh().name == "Inbox"
    stats = ews_sim.stats()
    assert stats.faults == {"server_busy": 2}
    assert stats.busy_backoff_ms == [2500, 2500]


def test_seeded_busy_rate_is_reproducible(ews_sim: EwsSimulator) -> None:
    inbox = make_account(ews_sim, version=EXCHANGE_2016).inbox
    runs = []
    for _ in range(2):
        ews_sim.set_faults(Faults(server_busy_rate=0.5, seed=42))
        runs.append([outcome(inbox.refresh) for _ in range(30)])
    assert runs[0] == runs[1]
    assert 0 < runs[0].count("busy") < 30


def test_http_503_with_retry_after(ews_sim: EwsSimulator) -> None:
    inbox = make_account(ews_sim, version=EXCHANGE_2016).inbox
    ews_sim.set_faults(Faults(http503_rate=1.0, retry_after_s=7))
    raw = raw_get_inbox(ews_sim)
    assert (raw.status_code, raw.headers["Retry-After"]) == (503, "7")
    # Fail-fast exchangelib turns a 503 into ErrorServerBusy (without the header's value) ...
    with pytest.raises(ErrorServerBusy, match="503"):
        inbox.refresh()
    # ... while its fault-tolerant policy reads Retry-After and gives up past max_wait.
    forget_protocols(ews_sim.url)  # exchangelib caches one Protocol (and its policy) per endpoint
    patient = make_account(ews_sim, version=EXCHANGE_2016, retry_policy=FaultTolerance(max_wait=1))
    with pytest.raises(RateLimitError) as limited:
        patient.inbox  # noqa: B018
    assert limited.value.wait == 7
    assert ews_sim.stats().faults["http503"] == 3


def test_connection_reset_without_answer(ews_sim: EwsSimulator) -> None:
    account = make_account(ews_sim, version=EXCHANGE_2016)
    inbox = account.inbox
    ews_sim.set_faults(Faults(reset_rate=1.0))
    with pytest.raises(requests.exceptions.ConnectionError):
        raw_get_inbox(ews_sim)
    # exchangelib wraps the requests ConnectionError in ErrorTimeoutExpired.
    with pytest.raises(ErrorTimeoutExpired, match="ConnectionError"):
        account.bulk_create(
            folder=inbox, items=[Message(account=account, mime_content=mime("lost"))]
        )
    assert ews_sim.items(SIM_MAILBOX) == []  # the request was read, then dropped unanswered
    assert ews_sim.stats().faults["reset"] == 2


def test_delay_slows_answers(ews_sim: EwsSimulator) -> None:
    inbox = make_account(ews_sim, version=EXCHANGE_2016).inbox
    ews_sim.set_faults(Faults(delay_s=0.3))
    started = time.monotonic()
    inbox.refresh()
    assert time.monotonic() - started >= 0.3


def test_concurrency_ceiling_answers_server_busy(ews_sim: EwsSimulator) -> None:
    account = make_account(ews_sim, version=EXCHANGE_2016, max_connections=4)
    inbox = account.inbox
    # Each request is held 0.5 s, so all four released together are in flight at once.
    ews_sim.set_faults(Faults(max_concurrency=2, delay_s=0.5, backoff_ms=300))
    barrier = threading.Barrier(4)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        result = outcome(lambda: inbox.refresh())
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sorted(outcomes) == ["busy", "busy", "ok", "ok"]
    stats = ews_sim.stats()
    assert stats.max_concurrency == 4
    assert stats.faults["concurrency"] == 2


def test_request_over_max_bytes_gets_iis_404(ews_sim: EwsSimulator) -> None:
    """IIS request filtering answers an over-size request with 404.13, shown to a remote
    client as IIS's plain 404 page (not 413)."""
    account = make_account(ews_sim, version=EXCHANGE_2016)
    inbox = account.inbox
    ews_sim.set_faults(Faults(max_request_bytes=64_000))
    small = account.bulk_create(
        folder=inbox, items=[Message(account=account, mime_content=mime("s", 1_000))]
    )
    assert small[0].id
    with pytest.raises(
        MalformedResponseError, match="(?s)Code: 404 .*404 - File or directory not found"
    ):
        account.bulk_create(
            folder=inbox, items=[Message(account=account, mime_content=mime("b", 100_000))]
        )
    assert [i.subject for i in ews_sim.items(SIM_MAILBOX)] == ["s"]
    assert ews_sim.stats().faults["request_too_large"] == 1


def test_message_over_limit_fails_alone(ews_sim: EwsSimulator) -> None:
    account = make_account(ews_sim, version=EXCHANGE_2016)
    inbox = account.inbox
    ews_sim.set_faults(Faults(max_message_bytes=10_000))
    results = account.bulk_create(
        folder=inbox,
        items=[
            Message(account=account, mime_content=mime(s, n))
            for s, n in (("a", 10), ("huge", 20_000), ("b", 10))
        ],
    )
    assert results[0].id and results[2].id
    assert isinstance(results[1], ErrorMessageSizeExceeded)
    assert sorted(i.subject for i in ews_sim.items(SIM_MAILBOX)) == ["a", "b"]


def test_large_messages_are_stored_exactly(ews_sim: EwsSimulator) -> None:
    account = make_account(ews_sim, version=EXCHANGE_2016)
    inbox = account.inbox
    big = mime("forty megabytes", 40 * 1024 * 1024)
    one_mb = mime("one megabyte", 1024 * 1024)
    created = account.bulk_create(
        folder=inbox,
        items=[Message(account=account, mime_content=m) for m in (big, one_mb)],
        chunk_size=1,
    )
    assert [i.mime for i in ews_sim.items(SIM_MAILBOX)] == [big, one_mb]
    # exchangelib reads responses a byte at a time (about 1 s per MB here), so the GetItem
    # round trip is checked on the smaller message.
    (fetched,) = account.fetch(ids=[created[1]], only_fields=["mime_content"])
    # Exchange writes MIME anew (CRLF, its own headers): the content is the message's
    assert mime_content(fetched.mime_content) == mime_content(one_mb)
