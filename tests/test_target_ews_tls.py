"""TLS checks of the EWS target, through a real TLS front end (stdlib ssl, a certificate made by
openssl) that forwards to the simulator — as IIS terminates TLS in front of Exchange."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrator.model.errors import PermanentError
from migrator.simulator.ews import EWS_PATH, EwsSimulator
from tests.fixtures.targets import *  # noqa: F403
from tests.fixtures.targets import ews_harness


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class TlsFrontEnd:
    """Accepts TLS on a free port and relays the plain bytes to the simulator."""

    def __init__(self, cert: Path, key: Path, backend_port: int) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.backend_port = backend_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()  # the client refused our certificate: what the test wants to see
            return
        backend = socket.create_connection(("127.0.0.1", self.backend_port))
        threading.Thread(target=_pipe, args=(backend, client), daemon=True).start()
        _pipe(client, backend)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}{EWS_PATH}"

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make a test certificate (Debian package openssl)"
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def front_end(ews_simulator: EwsSimulator, certificate: tuple[Path, Path]) -> Iterator[TlsFrontEnd]:
    front = TlsFrontEnd(*certificate, backend_port=ews_simulator.port)
    try:
        yield front
    finally:
        front.close()


def test_untrusted_certificate_is_refused_by_default(
    ews_simulator: EwsSimulator, front_end: TlsFrontEnd, tmp_path: Path
) -> None:
    harness = ews_harness(ews_simulator)
    target = harness.open(url=front_end.url)
    with pytest.raises(PermanentError) as refused:
        target.preflight(harness.new_mailbox())
    assert refused.value.reason == "tls"
    assert "ca_file" in (refused.value.hint or "")
    harness.close_all()


def test_ca_file_makes_the_certificate_trusted(
    ews_simulator: EwsSimulator,
    front_end: TlsFrontEnd,
    certificate: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    harness = ews_harness(ews_simulator)
    harness.open(url=front_end.url, ca_file=str(certificate[0])).preflight(harness.new_mailbox())
    harness.close_all()


def test_tls_verify_off_accepts_any_certificate(
    ews_simulator: EwsSimulator, front_end: TlsFrontEnd, tmp_path: Path
) -> None:
    harness = ews_harness(ews_simulator)
    harness.open(url=front_end.url, tls_verify=False).preflight(harness.new_mailbox())
    harness.close_all()
