"""A campaign into Mexican mailboxes: the target mailboxes were created for es-MX (their Inbox is
"Bandeja de entrada", their calendar "Calendario"), the source folders have Spanish names
(Enviados, Borradores, Papelera, Calendario, Notas, Archivo, ...). Role folders land in the
mailbox's own well-known folders, "Archivo" in its Archive folder (archive_folder = "Archivo"),
and the folders whose names a calendar, the notes, the contacts, the tasks, the journal or the
Outbox hold land in mail folders beside them with " (migrated)": not one message ends up inside
a folder that does not hold mail. Every message once, verify agrees, a second run sends nothing."""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from migrator.model.mail import Flags
from migrator.samples.kinds import kind_messages
from migrator.samples.mail import Mailbox, SampleMessage, date_header, write_maildir
from tests.fixtures.campaign import build_campaign

SOURCE_FOLDERS = {
    ("INBOX",): None,
    ("Enviados",): "sentitems",
    ("Borradores",): "drafts",
    ("Papelera",): "deleteditems",
    ("Correo no deseado",): "junkemail",
    ("Archivo",): ("Archivo",),
    ("Archivo", "2019"): ("Archivo", "2019"),
    ("Calendario",): ("Calendario (migrated)",),
    ("Notas",): ("Notas (migrated)",),
    ("Contactos",): ("Contactos (migrated)",),
    ("Tareas",): ("Tareas (migrated)",),
    ("Diario",): ("Diario (migrated)",),
    ("Bandeja de salida",): ("Bandeja de salida (migrated)",),
    ("Proyectos", "Padrón 2024"): ("Proyectos", "Padrón 2024"),
}
BASE = datetime(2024, 2, 1, 10, 0, tzinfo=UTC)


def spanish_mailbox(seed: int) -> Mailbox:
    box: Mailbox = {}
    for n, folder in enumerate(SOURCE_FOLDERS):
        messages = []
        for i in range(2):
            when = BASE + timedelta(hours=seed * 100 + n * 10 + i)
            name = "/".join(folder)
            raw = (
                f"From: Ana <ana@ife.org.mx>\nTo: Efrain <efrain@ife.org.mx>\n"
                f"Subject: {name} {i} ({seed})\nDate: {date_header(when, -360).decode()}\n"
                f"Message-ID: <{seed}.{n}.{i}@ife.org.mx>\nMIME-Version: 1.0\n"
                "Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\n"
                f"Mensaje {i} de la carpeta {name}.\n"
            ).encode()
            messages.append(SampleMessage(f"{name}#{i}", raw, Flags(seen=i == 0), when))
        box[folder] = messages
    # people file invitations in a folder called "Calendario": they stay mail, in a mail folder
    box[("Calendario",)].append(kind_messages()[1].message)
    return box


def test_a_campaign_into_mexican_mailboxes(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "c", accounts=2, workers=2, chunk=4, culture="es-MX") as c:
        c.plan_path.write_text(
            c.plan_path.read_text().replace("[run]", 'archive_folder = "Archivo"\n[run]')
        )
        for seed, address in enumerate(c.accounts):
            shutil.rmtree(c.maildir(address))
            write_maildir(c.maildir(address), spanish_mailbox(seed))
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        first = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert first.returncode == 0, first.stderr + first.stdout

        for seed, address in enumerate(c.accounts):
            c.compare(address)
            folders = {f.id: f for f in c.sim.folders(address)}
            by_distinguished = {f.distinguished: f.id for f in folders.values() if f.distinguished}
            assert folders[by_distinguished["inbox"]].name == "Bandeja de entrada"
            placed: Counter[object] = Counter()
            for item in c.sim.items(address):
                folder = folders[item.folder_id]
                assert folder.folder_class == "IPF.Note", (folder.path, item.subject)
                assert folder.distinguished not in {
                    "calendar",
                    "contacts",
                    "tasks",
                    "notes",
                    "journal",
                    "outbox",
                }, (folder.path, item.subject)
                placed[folder.distinguished or folder.path] += 1
            want: Counter[object] = Counter()
            for source, target in SOURCE_FOLDERS.items():
                want["inbox" if target is None else target] += len(spanish_mailbox(seed)[source])
            assert placed == want
            # the mailbox's own Archive folder took the archive: no second one was made
            assert [f.path for f in folders.values() if f.name in ("Archive", "Archivo")] == [
                ("Archivo",)
            ]

        again = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert again.returncode == 0, again.stderr
        before = sum(len(c.sim.items(a)) for a in c.accounts)
        verify = c.cli("verify", "--plan", str(c.plan_path))
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert sum(len(c.sim.items(a)) for a in c.accounts) == before
