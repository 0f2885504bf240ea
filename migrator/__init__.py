"""migrator: move mailboxes from Postfix (Maildir, mbox, IMAP) to Microsoft Exchange, resumably."""

__version__ = "0.1.0"
