"""XOAUTH2 end to end: app-only tokens from a local identity provider, checked by Dovecot.

The identity provider (a small HTTP server here) issues client-credentials tokens, as Microsoft's
token endpoint does, and answers Dovecot's token-info lookups (Dovecot's oauth2 passdb), so
a token the target did not fetch, or one the provider revoked, does not log in.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from migrator.adapters.targets.imap import ImapTarget
from migrator.model.errors import PermanentError
from migrator.model.mail import Flags, FolderRole, UploadItem
from migrator.model.plan import TargetSettings
from tests.fixtures.dovecot import DovecotServer

CLIENT_ID, CLIENT_SECRET = "migrator-app", "s3cret-Value"
LIFETIME = 3600


class IdentityProvider:
    """Client-credentials token endpoint plus the token-info endpoint Dovecot asks."""

    def __init__(self) -> None:
        self.issued: list[str] = []
        self.mailbox = ""  # the mailbox token-info vouches for
        self.revoked: set[str] = set()
        self.forms: list[dict[str, list[str]]] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                provider.forms.append(form)
                if form.get("client_id") != [CLIENT_ID] or form.get("client_secret") != [
                    CLIENT_SECRET
                ]:
                    self._json(401, {"error": "invalid_client"})
                    return
                token = f"token-{len(provider.issued) + 1}"
                provider.issued.append(token)
                self._json(
                    200, {"access_token": token, "token_type": "Bearer", "expires_in": LIFETIME}
                )

            def do_GET(self) -> None:  # noqa: N802
                token = parse_qs(urlsplit(self.path).query).get("access_token", [""])[0]
                if token in provider.issued and token not in provider.revoked:
                    # Dovecot wants the user a token is for; Exchange Online accepts an app
                    # token for every mailbox the app may access, which this cannot model
                    self._json(200, {"active": True, "username": provider.mailbox})
                else:
                    self._json(401, {"error": "invalid_token"})

            def _json(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.token_url = f"{self.base}/tenant-1/oauth2/v2.0/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class OAuthDovecot(DovecotServer):
    """The test Dovecot with XOAUTH2 enabled and tokens checked at `tokeninfo_url`."""

    tokeninfo_url: str = ""

    def write_config(self) -> None:
        super().write_config()
        ext = self.root / "oauth2.conf.ext"
        ext.write_text(f"tokeninfo_url = {self.tokeninfo_url}\nusername_attribute = username\n")
        ext.chmod(0o644)
        conf = self.conf.read_text().replace(
            "auth_mechanisms = plain login", "auth_mechanisms = plain login xoauth2"
        )
        conf += f"""
passdb {{
  driver = oauth2
  mechanisms = xoauth2
  args = {ext}
}}
"""
        self.conf.write_text(conf)


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    yield provider
    provider.close()


@pytest.fixture(scope="module")
def oauth_dovecot(idp: IdentityProvider) -> Iterator[OAuthDovecot]:
    root = Path(tempfile.mkdtemp(prefix="migrator-oauth-dovecot-"))
    root.chmod(0o711)
    server = OAuthDovecot(root=root)
    server.tokeninfo_url = f"{idp.base}/tokeninfo?access_token="
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def settings(server: DovecotServer, idp: IdentityProvider) -> TargetSettings:
    return TargetSettings(
        kind="imap",
        host=server.host,
        port=server.port,
        tls="starttls",
        ca_file=str(server.ca_file),
        auth="xoauth2",
        client_id=CLIENT_ID,
        tenant_id="tenant-1",
        client_secret_env="UNUSED",
        token_url=idp.token_url,
        timeout=30.0,
    )


def test_app_only_token_logs_in_and_is_renewed_when_it_expires(
    oauth_dovecot: OAuthDovecot, idp: IdentityProvider
) -> None:
    now = [0.0]
    target = ImapTarget(
        settings(oauth_dovecot, idp),
        secrets={"client_secret": CLIENT_SECRET},
        max_connections=2,
        clock=lambda: now[0],
    )
    try:
        first = idp.mailbox = oauth_dovecot.new_user()[0]
        before = len(idp.issued)
        target.preflight(first)
        folder = target.ensure_folder(first, ("INBOX",), FolderRole.INBOX)
        when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
        batch = [
            UploadItem(f"o{n}", b"Subject: oauth %d\r\n\r\nbody\r\n" % n, Flags(), when)
            for n in range(3)
        ]
        assert all(r.ok for r in target.upload(first, folder, batch))
        assert len(idp.issued) == before + 1  # fetched once, then reused
        assert idp.forms[-1]["scope"] == ["https://outlook.office365.com/.default"]

        # an hour later the token has expired (the provider no longer accepts it): pooled
        # sessions logged in with it are replaced, with a new token
        now[0] += LIFETIME
        idp.revoked.add(idp.issued[-1])
        opened = target.pool.opened
        more = [UploadItem("late", b"Subject: late\r\n\r\nbody\r\n", Flags(), when)]
        assert all(r.ok for r in target.upload(first, folder, more))
        assert len(idp.issued) == before + 2 and target.pool.opened == opened + 1
        assert target.count(first, folder) == 4
    finally:
        target.close()


def test_refused_client_secret_is_an_auth_error_without_the_secret(
    oauth_dovecot: OAuthDovecot, idp: IdentityProvider
) -> None:
    target = ImapTarget(settings(oauth_dovecot, idp), secrets={"client_secret": "wrong-secret"})
    try:
        with pytest.raises(PermanentError) as refused:
            target.preflight(oauth_dovecot.new_user()[0])
    finally:
        target.close()
    assert refused.value.reason == "auth"
    assert "invalid_client" in str(refused.value) and "wrong-secret" not in str(refused.value)
    assert refused.value.hint and "IMAP.AccessAsApp" in refused.value.hint


def test_a_token_endpoint_that_echoes_the_secret_is_not_quoted() -> None:
    """Only an OAuth2 error code (invalid_client...) is taken from a refusal, never its free text;
    the HTTP reason phrase is shown only without the secret in it."""
    from migrator.adapters.targets.imap.oauth import TokenSource

    class Echo(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            secret = form["client_secret"][0]
            body = json.dumps({"error": f"secret {secret} refused"}).encode()
            self.send_response(400, f"Secret {secret} refused")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        source = TokenSource(
            token_url=f"http://127.0.0.1:{server.server_port}/token",
            client_id="app",
            client_secret="Leaky-Secret-9",
            scope="s",
        )
        with pytest.raises(PermanentError) as refused:
            source.token()
    finally:
        server.shutdown()
        server.server_close()
    message = f"{refused.value} {refused.value.hint}"
    assert refused.value.reason == "auth" and "HTTP 400" in message
    assert "Leaky-Secret-9" not in message and "***" not in message
