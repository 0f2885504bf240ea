"""Any IMAP server as a target (Dovecot, Exchange's IMAP4, Exchange Online with XOAUTH2)."""

from .target import ImapTarget, open_imap_target

__all__ = ["ImapTarget", "open_imap_target"]
