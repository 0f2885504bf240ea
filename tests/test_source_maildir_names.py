"""Folder names: IMAP modified UTF-7 (Maildir++/fs names on disk, IMAP mailbox names) and roles
from SPECIAL-USE or well-known English and Spanish names."""

from __future__ import annotations

import pytest

from migrator.adapters.sources import open_source, utf7
from migrator.adapters.sources.roles import folder_role, role_from_name, role_from_special_use
from migrator.model.errors import SourceError
from migrator.model.mail import FolderRole
from migrator.model.plan import SourceSettings


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("Entwürfe", "Entw&APw-rfe"),
        ("R&D", "R&-D"),
        ("日本語", "&ZeVnLIqe-"),
        ("Vacía", "Vac&AO0-a"),
        ("smile 😀", "smile &2D3eAA-"),
        ("plain ~ ASCII", "plain ~ ASCII"),
    ],
)
def test_modified_utf7_round_trip(text: str, encoded: str) -> None:
    assert utf7.encode(text) == encoded
    assert utf7.decode(encoded) == text


@pytest.mark.parametrize(
    "bad", ["R&D", "&AO0", "caf\u00e9", "&AGE-"]
)  # the last encodes "a", which must stay literal
def test_invalid_modified_utf7_is_refused_or_kept_as_is(bad: str) -> None:
    with pytest.raises(ValueError):
        utf7.decode(bad)
    assert utf7.decode_lenient(bad) == bad


@pytest.mark.parametrize(
    ("path", "role"),
    [
        (("INBOX",), FolderRole.INBOX),
        (("inbox",), FolderRole.INBOX),
        (("Sent",), FolderRole.SENT),
        (("Sent Messages",), FolderRole.SENT),
        (("Elementos enviados",), FolderRole.SENT),
        (("Enviados",), FolderRole.SENT),
        (("sent-mail",), FolderRole.SENT),
        (("Borradores",), FolderRole.DRAFTS),
        (("Drafts",), FolderRole.DRAFTS),
        (("Deleted Messages",), FolderRole.TRASH),
        (("Papelera",), FolderRole.TRASH),
        (("Trash",), FolderRole.TRASH),
        (("Spam",), FolderRole.JUNK),
        (("Correo no deseado",), FolderRole.JUNK),
        (("Junk",), FolderRole.JUNK),
        (("Archivo",), FolderRole.ARCHIVE),
        (("INBOX", "Sent"), FolderRole.SENT),
        (("Projects", "Sent"), FolderRole.NONE),  # only top level (or directly under INBOX)
        (("Sentimental",), FolderRole.NONE),
        (("ELEMENTOS  ENVIADOS",), FolderRole.SENT),
    ],
)
def test_roles_from_names(path: tuple[str, ...], role: FolderRole) -> None:
    assert role_from_name(path) == role


def test_special_use_wins_over_names() -> None:
    assert role_from_special_use([b"\\HasNoChildren", b"\\Sent"]) == FolderRole.SENT
    assert role_from_special_use(["\\HasChildren"]) is None
    assert folder_role(("Papelera",), ["\\Junk"]) == FolderRole.JUNK
    assert folder_role(("Papelera",), []) == FolderRole.TRASH
    assert folder_role(("INBOX",), ["\\Trash"]) == FolderRole.INBOX


def test_unknown_source_kind_is_a_clear_error() -> None:
    with pytest.raises(SourceError) as err:
        open_source(SourceSettings(kind="pop3"), mailbox_path="/x")
    assert "pop3" in err.value.message and err.value.hint and "maildir" in err.value.hint
