"""Throughput of the EWS simulator on its own (run: .venv/bin/python -m bench.bench_ews_simulator).

The simulator runs in its own process (as under `migrator ews-simulator`), so client and server
do not share a GIL. Two clients:
  - exchangelib bulk_create (what the migrator does), fail-fast, 100 items per request;
  - raw HTTP with pre-built CreateItem envelopes (the server's own cost, no client XML work).
Figures: messages/s and MB/s of MIME for 10 KB and 1 MB messages.
"""

from __future__ import annotations

import argparse
import base64
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from exchangelib import BASIC, IMPERSONATION, Account, Configuration, Credentials, FailFast, Message
from exchangelib.version import Build, Version

USER, PASSWORD = "svc-migrator", "Sim-Passw0rd!"
MAILBOX = "bench@example.com"
ROOT = Path(__file__).resolve().parent.parent


def make_mime(index: int, size: int) -> bytes:
    head = (
        f"From: sender{index}@example.org\r\nTo: {MAILBOX}\r\nSubject: bench {index}\r\n"
        f"Date: Tue, 02 Jan 2024 09:30:00 +0000\r\nMessage-ID: <bench-{index}@example.org>\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog 0123456789.\r\n"
    body = (line * (size // len(line) + 1))[: max(0, size - len(head))]
    return head + body


def start_server(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    code = (
        "from migrator.simulator.ews import serve; "
        f"serve(0, {str(data_dir)!r}, mailboxes=[{MAILBOX!r}])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise SystemExit(f"simulator did not start (said {url!r})")
    return proc, url


def account_for(url: str) -> Account:
    config = Configuration(
        service_endpoint=url,
        credentials=Credentials(USER, PASSWORD),
        auth_type=BASIC,
        version=Version(Build(15, 1, 2507, 6), "Exchange2016"),
        retry_policy=FailFast(),
    )
    return Account(MAILBOX, config=config, autodiscover=False, access_type=IMPERSONATION)


def bench_exchangelib(url: str, count: int, size: int, chunk: int) -> tuple[float, float]:
    account = account_for(url)
    inbox = account.inbox
    messages = [make_mime(i, size) for i in range(count)]
    items = [Message(account=account, folder=inbox, mime_content=m, is_read=True) for m in messages]
    started = time.perf_counter()
    results = account.bulk_create(folder=inbox, items=items, chunk_size=chunk)
    elapsed = time.perf_counter() - started
    failures = [r for r in results if isinstance(r, Exception)]
    if failures:
        raise SystemExit(f"{len(failures)} items failed, first: {failures[0]!r}")
    total_mb = sum(len(m) for m in messages) / 1e6
    return count / elapsed, total_mb / elapsed


def create_item_envelope(messages: list[bytes]) -> bytes:
    items = "".join(
        "<t:Message><t:MimeContent>" + base64.b64encode(m).decode() + "</t:MimeContent>"
        '<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0xe07" PropertyType="Integer"/>'
        "<t:Value>1</t:Value></t:ExtendedProperty><t:IsRead>true</t:IsRead></t:Message>"
        for m in messages
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
        'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Header>'
        '<t:RequestServerVersion Version="Exchange2016"/><t:ExchangeImpersonation><t:ConnectingSID>'
        f"<t:PrimarySmtpAddress>{MAILBOX}</t:PrimarySmtpAddress></t:ConnectingSID>"
        "</t:ExchangeImpersonation></s:Header><s:Body>"
        '<m:CreateItem MessageDisposition="SaveOnly"><m:SavedItemFolderId>'
        '<t:DistinguishedFolderId Id="inbox"/></m:SavedItemFolderId>'
        f"<m:Items>{items}</m:Items></m:CreateItem></s:Body></s:Envelope>"
    ).encode()


def bench_raw(url: str, count: int, size: int, chunk: int) -> tuple[float, float]:
    messages = [make_mime(i, size) for i in range(count)]
    bodies = [create_item_envelope(messages[i : i + chunk]) for i in range(0, count, chunk)]
    session = requests.Session()
    session.auth = (USER, PASSWORD)
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    started = time.perf_counter()
    for body in bodies:
        answer = session.post(url, data=body, headers=headers, timeout=300)
        if answer.status_code != 200 or answer.content.count(
            b'ResponseClass="Success"'
        ) != body.count(b"<t:Message>"):
            raise SystemExit(f"raw CreateItem failed: HTTP {answer.status_code}")
    elapsed = time.perf_counter() - started
    total_mb = sum(len(m) for m in messages) / 1e6
    return count / elapsed, total_mb / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=3000, help="number of 10 KB messages")
    parser.add_argument("--large", type=int, default=60, help="number of 1 MB messages")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp))
        try:
            print(f"EWS simulator at {url} (own process); messages/s and MB/s of MIME")
            cases = [("10 KB", args.small, 10 * 1024, 100), ("1 MB", args.large, 1024 * 1024, 10)]
            for label, count, size, chunk in cases:
                rate, mbps = bench_exchangelib(url, count, size, chunk)
                print(
                    f"exchangelib bulk_create {label:>5} x{count:<5} chunk {chunk:>3}: "
                    f"{rate:8.1f} msg/s {mbps:7.2f} MB/s"
                )
                rate, mbps = bench_raw(url, count, size, chunk)
                print(
                    f"raw CreateItem (server) {label:>5} x{count:<5} chunk {chunk:>3}: "
                    f"{rate:8.1f} msg/s {mbps:7.2f} MB/s"
                )
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
