"""The folders a new Exchange mailbox has, named in the mailbox's language.

Exchange creates a mailbox's default folders in the language of its regional configuration
(`New-Mailbox`/`Set-MailboxRegionalConfiguration -Language es-MX -LocalizeDefaultFolderName`,
Microsoft Learn): a Mexican user's Inbox is "Bandeja de entrada", and a folder called
"Calendario" at the top of that mailbox is the calendar. Clients must therefore find the
well-known folders by DistinguishedFolderId, never by name.

Besides the folders every EWS client knows (Inbox ... Journal), a real mailbox holds the ones
Exchange and Outlook add: Conversation History (Skype/Lync), Sync Issues with Conflicts, Local
Failures and Server Failures, RSS Feeds, and the Archive folder of Outlook's one-click archive
(which has no DistinguishedFolderId in the Exchange 2016 schema). The names per language are
those Outlook and Outlook on the web show for English and Spanish mailboxes; a real es-MX
mailbox may differ in a word or an accent (docs/targets.md lists them as unverified).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_CULTURE = "en-US"


@dataclass(frozen=True)
class DefaultFolder:
    distinguished: str | None  # DistinguishedFolderId; None for folders the schema has no id for
    key: str  # our own name for it, to look its localized name up
    folder_class: str | None
    parent: str  # key of the parent folder ("" for none)
    element: str  # the EWS element it is answered as


# In the order a new mailbox lists them (depth first, mail folders first).
LAYOUT: tuple[DefaultFolder, ...] = (
    DefaultFolder("root", "root", None, "", "Folder"),
    DefaultFolder("msgfolderroot", "msgfolderroot", "IPF.Note", "root", "Folder"),
    DefaultFolder("inbox", "inbox", "IPF.Note", "msgfolderroot", "Folder"),
    DefaultFolder("sentitems", "sentitems", "IPF.Note", "msgfolderroot", "Folder"),
    DefaultFolder("drafts", "drafts", "IPF.Note", "msgfolderroot", "Folder"),
    DefaultFolder("deleteditems", "deleteditems", "IPF.Note", "msgfolderroot", "Folder"),
    DefaultFolder("junkemail", "junkemail", "IPF.Note", "msgfolderroot", "Folder"),
    DefaultFolder("outbox", "outbox", "IPF.Note", "msgfolderroot", "Folder"),
    DefaultFolder(None, "archive", "IPF.Note", "msgfolderroot", "Folder"),
    DefaultFolder(
        "conversationhistory", "conversationhistory", "IPF.Note", "msgfolderroot", "Folder"
    ),
    DefaultFolder(None, "rssfeeds", "IPF.Note.OutlookHomepage", "msgfolderroot", "Folder"),
    DefaultFolder("syncissues", "syncissues", "IPF.Note", "msgfolderroot", "Folder"),
    DefaultFolder("conflicts", "conflicts", "IPF.Note", "syncissues", "Folder"),
    DefaultFolder("localfailures", "localfailures", "IPF.Note", "syncissues", "Folder"),
    DefaultFolder("serverfailures", "serverfailures", "IPF.Note", "syncissues", "Folder"),
    DefaultFolder("calendar", "calendar", "IPF.Appointment", "msgfolderroot", "CalendarFolder"),
    DefaultFolder("contacts", "contacts", "IPF.Contact", "msgfolderroot", "ContactsFolder"),
    DefaultFolder("tasks", "tasks", "IPF.Task", "msgfolderroot", "TasksFolder"),
    DefaultFolder("notes", "notes", "IPF.StickyNote", "msgfolderroot", "Folder"),
    DefaultFolder("journal", "journal", "IPF.Journal", "msgfolderroot", "Folder"),
)

# The root folders keep their English names in every language.
_COMMON = {"root": "Root", "msgfolderroot": "Top of Information Store"}
NAMES: dict[str, dict[str, str]] = {
    "en": {
        **_COMMON,
        "inbox": "Inbox",
        "sentitems": "Sent Items",
        "drafts": "Drafts",
        "deleteditems": "Deleted Items",
        "junkemail": "Junk Email",
        "outbox": "Outbox",
        "archive": "Archive",
        "conversationhistory": "Conversation History",
        "rssfeeds": "RSS Feeds",
        "syncissues": "Sync Issues",
        "conflicts": "Conflicts",
        "localfailures": "Local Failures",
        "serverfailures": "Server Failures",
        "calendar": "Calendar",
        "contacts": "Contacts",
        "tasks": "Tasks",
        "notes": "Notes",
        "journal": "Journal",
    },
    "es": {
        **_COMMON,
        "inbox": "Bandeja de entrada",
        "sentitems": "Elementos enviados",
        "drafts": "Borradores",
        "deleteditems": "Elementos eliminados",
        "junkemail": "Correo no deseado",
        "outbox": "Bandeja de salida",
        "archive": "Archivo",
        "conversationhistory": "Historial de conversaciones",
        "rssfeeds": "Fuentes RSS",
        "syncissues": "Problemas de sincronización",
        "conflicts": "Conflictos",
        "localfailures": "Errores locales",
        "serverfailures": "Errores del servidor",
        "calendar": "Calendario",
        "contacts": "Contactos",
        "tasks": "Tareas",
        "notes": "Notas",
        "journal": "Diario",
    },
}

ELEMENT_BY_DISTINGUISHED = {f.distinguished: f.element for f in LAYOUT if f.distinguished}
ELEMENT_BY_CLASS = {
    "IPF.Appointment": "CalendarFolder",
    "IPF.Contact": "ContactsFolder",
    "IPF.Task": "TasksFolder",
}


def folder_names(culture: str) -> dict[str, str]:
    """Localized names of the default folders for a culture such as "es-MX" (its language
    decides; a language the simulator has no names for is refused)."""
    language = culture.split("-", 1)[0].lower()
    if language not in NAMES:
        raise ValueError(
            f"no folder names for culture {culture!r}: use one of "
            + ", ".join(f"{lang}-*" for lang in NAMES)
        )
    return NAMES[language]
