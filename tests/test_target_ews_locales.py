"""Localized mailboxes: a mailbox created for es-MX has "Bandeja de entrada", "Calendario",
"Notas"... and the folders a real mailbox has (Conversation History, Sync Issues, RSS Feeds,
Archive). The EWS target finds the well-known folders by DistinguishedFolderId, never by name,
and a source folder called "Calendario" or "Notas" lands in a mail folder, never inside the
calendar or the notes: a name a folder that holds no mail has gets " (migrated)" (then
" (migrated 2)", ...), as docs/targets.md says."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from exchangelib import IMPERSONATION, Account, Configuration, Credentials, FailFast
from exchangelib.folders import Calendar, Folder

from migrator.adapters.targets.ews import EwsTarget
from migrator.model.mail import Flags, FolderRole, UploadItem
from migrator.simulator.ews import EwsSimulator, ExchangeLimits, Faults
from tests.fixtures.targets import *  # noqa: F403
from tests.fixtures.targets import SERVICE_PASSWORD, SERVICE_USER, TargetHarness, ews_harness

_serial = itertools.count(1)
SPANISH_DEFAULTS = {
    "inbox": "Bandeja de entrada",
    "sentitems": "Elementos enviados",
    "drafts": "Borradores",
    "deleteditems": "Elementos eliminados",
    "junkemail": "Correo no deseado",
    "outbox": "Bandeja de salida",
    "calendar": "Calendario",
    "contacts": "Contactos",
    "tasks": "Tareas",
    "notes": "Notas",
    "journal": "Diario",
    "conversationhistory": "Historial de conversaciones",
    "syncissues": "Problemas de sincronización",
    "conflicts": "Conflictos",
    "localfailures": "Errores locales",
    "serverfailures": "Errores del servidor",
}


@pytest.fixture
def harness(ews_simulator: EwsSimulator) -> Iterator[TargetHarness]:
    ews_simulator.set_faults(Faults())
    ews_simulator.set_limits(ExchangeLimits())
    h = ews_harness(ews_simulator)
    try:
        yield h
    finally:
        h.close_all()


def mexican_mailbox(sim: EwsSimulator) -> str:
    address = f"usuario{next(_serial)}@ife.example"
    sim.add_mailbox(address, culture="es-MX")
    return address


def reader(sim: EwsSimulator, mailbox: str) -> Account:
    config = Configuration(
        service_endpoint=sim.url,
        credentials=Credentials(SERVICE_USER, SERVICE_PASSWORD),
        auth_type="basic",
        retry_policy=FailFast(),
    )
    return Account(mailbox, config=config, autodiscover=False, access_type=IMPERSONATION)


def item(key: str) -> UploadItem:
    return UploadItem(key, f"Subject: {key}\r\n\r\nhola\r\n".encode(), Flags(seen=True), None)


def test_a_mexican_mailbox_has_its_folders_in_spanish(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    mailbox = mexican_mailbox(sim)
    folders = {f.distinguished: f for f in sim.folders(mailbox) if f.distinguished}
    assert {d: folders[d].name for d in SPANISH_DEFAULTS} == SPANISH_DEFAULTS
    by_path = {f.path: f for f in sim.folders(mailbox)}
    assert by_path[("Archivo",)].folder_class == "IPF.Note"  # Outlook's one-click archive
    assert by_path[("Fuentes RSS",)].folder_class == "IPF.Note.OutlookHomepage"
    assert by_path[("Problemas de sincronización", "Conflictos")].distinguished == "conflicts"
    # exchangelib finds them by DistinguishedFolderId, whatever their names
    account = reader(sim, mailbox)
    assert account.inbox.name == "Bandeja de entrada"
    assert isinstance(account.calendar, Calendar) and account.calendar.name == "Calendario"


def test_role_folders_are_found_by_id_and_same_names_land_in_mail_folders(
    harness: TargetHarness,
) -> None:
    sim: EwsSimulator = harness.server
    target = harness.open(archive_folder="Archivo")
    assert isinstance(target, EwsTarget)
    mailbox = mexican_mailbox(sim)
    ids = {f.distinguished: f.id for f in sim.folders(mailbox) if f.distinguished}
    roles = {
        ("INBOX",): (FolderRole.INBOX, "inbox"),
        ("Enviados",): (FolderRole.SENT, "sentitems"),
        ("Borradores",): (FolderRole.DRAFTS, "drafts"),
        ("Papelera",): (FolderRole.TRASH, "deleteditems"),
        ("Correo no deseado",): (FolderRole.JUNK, "junkemail"),
    }
    for path, (role, distinguished) in roles.items():
        assert target.ensure_folder(mailbox, path, role).id == ids[distinguished], path
    archive = target.ensure_folder(mailbox, ("Archivo",), FolderRole.ARCHIVE)
    assert archive.path == ("Archivo",)
    assert (
        archive.id == {f.path: f.id for f in sim.folders(mailbox)}[("Archivo",)]
    )  # the mailbox's own

    placed = {
        path: target.ensure_folder(mailbox, path, FolderRole.NONE)
        for path in (
            ("Calendario",),
            ("Notas",),
            ("Contactos",),
            ("Tareas",),
            ("Diario",),
            ("Bandeja de salida",),
            ("Calendario", "2019"),
            ("Proyectos",),
        )
    }
    assert {p: f.path for p, f in placed.items()} == {
        ("Calendario",): ("Calendario (migrated)",),
        ("Notas",): ("Notas (migrated)",),
        ("Contactos",): ("Contactos (migrated)",),
        ("Tareas",): ("Tareas (migrated)",),
        ("Diario",): ("Diario (migrated)",),
        ("Bandeja de salida",): ("Bandeja de salida (migrated)",),
        ("Calendario", "2019"): ("Calendario (migrated)", "2019"),
        ("Proyectos",): ("Proyectos",),
    }
    stored = {f.id: f for f in sim.folders(mailbox)}
    for source, folder in placed.items():
        assert stored[folder.id].folder_class == "IPF.Note", source
        assert folder.id not in ids.values(), source  # never a calendar, the notes, the outbox
    results = target.upload(mailbox, placed[("Calendario",)], [item("cal-1")])
    assert results[0].ok
    assert not sim.items(mailbox, ids["calendar"])
    assert [i.folder_id for i in sim.items(mailbox)] == [placed[("Calendario",)].id]

    # a later run (another Target object) places them again in the same folders
    again = harness.open(archive_folder="Archivo")
    assert {p: again.ensure_folder(mailbox, p, FolderRole.NONE).id for p in placed} == {
        p: f.id for p, f in placed.items()
    }


def test_a_taken_suffixed_name_gets_the_next_number(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    mailbox = harness.new_mailbox()  # English names
    account = reader(sim, mailbox)
    top = account.root / "Top of Information Store"
    Folder(parent=top, name="Calendar (migrated)", folder_class="IPF.Appointment").save()
    Folder(parent=top, name="Notes (migrated)", folder_class="IPF.StickyNote").save()
    target = harness.open()
    shown = {
        name: target.ensure_folder(mailbox, (name,), FolderRole.NONE).path
        for name in (
            "Calendar",
            "notes",
            "Journal",
            "Sync Issues",
            "Conversation History",
            "Outbox",
        )
    }
    assert shown == {
        "Calendar": ("Calendar (migrated 2)",),
        "notes": ("notes (migrated 2)",),
        "Journal": ("Journal (migrated)",),
        "Sync Issues": ("Sync Issues (migrated)",),
        "Conversation History": ("Conversation History (migrated)",),
        "Outbox": ("Outbox (migrated)",),
    }
    # an existing mail folder of the user's keeps receiving (no suffix, no second folder)
    Folder(parent=top, name="Proyectos", folder_class="IPF.Note").save()
    assert target.ensure_folder(mailbox, ("proyectos",), FolderRole.NONE).path == ("Proyectos",)
