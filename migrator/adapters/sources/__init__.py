"""Mailbox sources (Maildir, mbox, IMAP) behind one contract; see base.Source and docs/sources.md.

`open_source` is the one entry point the engine uses: it picks the reader the plan names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from migrator.adapters.sources.base import Listing, Renumbers, Source, SourceBase
from migrator.model.errors import SourceError
from migrator.model.plan import SourceSettings
from migrator.model.reasons import Reason

__all__ = ["Listing", "Renumbers", "Source", "SourceBase", "open_account_source", "open_source"]


def _resolve(settings: SourceSettings, path: str | None, what: str) -> str:
    if not path:
        raise SourceError(
            f"no {what} path given for a {settings.kind} source",
            reason=Reason.NO_MAILBOX,
            hint="set [source] path in the plan (a template such as /var/mail/{uid})",
        )
    path = os.path.expanduser(path)
    if not os.path.isabs(path) and settings.root:
        path = os.path.join(settings.root, path)
    return path


def open_source(
    settings: SourceSettings,
    *,
    mailbox_path: str | None,
    login: str | None = None,
    password: str | None = None,
    folders_path: str | None = None,
) -> Source:
    """Open one account's mailbox.

    `mailbox_path` is the account's resolved [source] path (Maildir root or mbox spool; relative
    paths are taken under [source] root). `folders_path` is the account's resolved mbox folders
    directory; when not given, a [source] folders_path without template fields is used as is.
    `login`/`password` are for IMAP. Raises SourceError(Reason.NO_MAILBOX) naming the path when
    the mailbox does not exist.
    """
    kind = settings.kind
    if kind == "maildir":
        from migrator.adapters.sources.maildir import MaildirSource

        return MaildirSource(
            _resolve(settings, mailbox_path, "Maildir"), layout=settings.maildir_layout
        )
    if kind == "mbox":
        from migrator.adapters.sources.mbox import MboxSource

        if folders_path is None and settings.folders_path and "{" not in settings.folders_path:
            folders_path = settings.folders_path
        return MboxSource(
            _resolve(settings, mailbox_path, "mbox spool"),
            folders_dir=_resolve(settings, folders_path, "mbox folders") if folders_path else None,
            variant=settings.mbox_variant,
        )
    if kind == "imap":
        from migrator.adapters.sources.imap import ImapSource

        return ImapSource.from_settings(settings, login, password)
    raise SourceError(
        f"unknown source kind {kind!r}",
        reason=Reason.CONFIG,
        hint="set [source] kind to maildir, mbox or imap",
    )


def open_account_source(
    settings: SourceSettings,
    source_path: str | None,
    attributes: Mapping[str, Any],
    password: str | None,
) -> Source:
    """One discovered account's mailbox: its resolved path, and the IMAP login and mbox
    folders directory discovery kept in its attributes."""
    return open_source(
        settings,
        mailbox_path=source_path,
        login=attributes.get("login"),
        password=password,
        folders_path=attributes.get("folders_path"),
    )
