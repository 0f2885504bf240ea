"""The engine with an IMAP source (real Dovecot, master-user login) into the EWS simulator:
migration, then the server renumbers a folder (UIDVALIDITY changes: every key is new) and the
next pass recognises what was migrated by content instead of sending it again."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from imapclient import IMAPClient

from tests.fixtures.dovecot import MASTER_PASSWORD, MASTER_USER, DovecotServer
from tests.fixtures.ews import SIM_PASSWORD, SIM_USER, start_simulator

MTIME = 1_600_000_000

PLAN = """\
[plan]
name = "imap-src"
[directory]
url = "ldif:{ldif}"
base = "ou=people,dc=ife,dc=org,dc=mx"
filter = "(mail=*)"
[source]
kind = "imap"
host = "127.0.0.1"
port = {port}
tls = "none"
login = "{{uid}}"
master_user = "{master}"
password_env = "MIGRATOR_TEST_IMAP_MASTER"
[target]
kind = "ews"
url = "{url}"
auth = "basic"
username = "{user}"
password_env = "MIGRATOR_TEST_EWS_PASSWORD"
[run]
workers = 1
chunk_messages = 2
[state]
url = "sqlite:///{state}"
"""


def message(n: int) -> bytes:
    return (
        f"From: a{n}@ife.org.mx\r\nTo: b@ife.org.mx\r\nSubject: work {n}\r\n"
        f"Message-ID: <work.{n}@ife.org.mx>\r\nDate: Mon, 1 Jun 2020 10:00:0{n} +0000\r\n\r\nbody {n}\r\n"
    ).encode()


def test_a_renumbered_imap_folder_is_not_migrated_twice(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    user, password = dovecot.new_user()
    address = f"{user}@ife.org.mx"
    for n in range(5):
        dovecot.deliver(user, ("Work",), message(n), flags="S" if n % 2 else "", mtime=MTIME + n)
    dovecot.deliver(user, ("INBOX",), message(7), mtime=MTIME + 7)
    dovecot.chown_tree(user)
    ldif = tmp_path / "people.ldif"
    ldif.write_text(
        "dn: ou=people,dc=ife,dc=org,dc=mx\nobjectClass: organizationalUnit\nou: people\n\n"
        f"dn: uid={user},ou=people,dc=ife,dc=org,dc=mx\nobjectClass: inetOrgPerson\n"
        f"uid: {user}\ncn: Test User\nsn: User\nmail: {address}\n\n"
    )
    with start_simulator(tmp_path / "ews") as sim:
        sim.add_mailbox(address)
        plan = tmp_path / "plan.toml"
        plan.write_text(
            PLAN.format(
                ldif=ldif,
                port=dovecot.port,
                master=MASTER_USER,
                url=sim.url,
                user=SIM_USER,
                state=tmp_path / "state.db",
            )
        )
        env = {
            **os.environ,
            "MIGRATOR_TEST_IMAP_MASTER": MASTER_PASSWORD,
            "MIGRATOR_TEST_EWS_PASSWORD": SIM_PASSWORD,
        }

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "migrator", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )

        assert cli("discover", "--plan", str(plan)).returncode == 0
        first = cli("run", "--plan", str(plan), "--json")
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["messages"]["done"] == 6
        assert len(sim.items(address)) == 6

        # the user deletes and restores the folder: same mail, new UIDVALIDITY and UIDs
        client = IMAPClient("127.0.0.1", port=dovecot.port, ssl=False)
        client.login(user, password)
        client.delete_folder("Work")
        client.create_folder("Work")
        for n in range(5):
            client.append(
                "Work",
                message(n),
                flags=[b"\\Seen"] if n % 2 else [],
                msg_time=datetime.fromtimestamp(MTIME + n, UTC),
            )
        client.logout()

        second = cli("run", "--plan", str(plan), "--json")
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout)["messages"]["done"] == 0
        assert len(sim.items(address)) == 6  # nothing sent twice
        with sqlite3.connect(tmp_path / "state.db") as db:
            validity = db.execute(
                "select uidvalidity from folders where display = 'Work'"
            ).fetchone()[0]
            keys = [
                k
                for (k,) in db.execute(
                    "select source_key from messages m join folders f on f.id = m.folder_id where f.display = 'Work'"
                )
            ]
        assert len(keys) == 5 and all(k.startswith(f"{validity}:") for k in keys)
        verified = cli("verify", "--plan", str(plan), "--json")
        assert verified.returncode == 0, verified.stdout + verified.stderr
