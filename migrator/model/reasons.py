"""Why an account failed, or a message was skipped or failed, and what the operator does about it.

A reason is a short stable code: the state database keeps it (`accounts.last_error_reason`,
`messages.reason`), reports group by it, and `PermanentError.reason` carries it up from the
adapters. Each reason holds its advice, the one text `show`, the run summary and reports give;
{addr} (the account) and {plan} (the plan file) are filled in by `advice()`.
"""

from __future__ import annotations

import enum

_RETRY = "`migrator retry --plan {plan} --account {addr}`"
_RETRY_SKIPPED = "`migrator retry --plan {plan} --account {addr} --skipped`"
_RUN = "`migrator run --plan {plan} --account {addr}`"
DEFAULT_ADVICE = (
    "read the error (`migrator show {addr} --plan {plan}` gives it whole), fix its cause, then "
    + _RETRY
)


class Reason(enum.StrEnum):
    """A reason code and its advice: `Reason.QUOTA == "quota"`, `Reason.QUOTA.advice`."""

    _value_: str
    advice: str

    def __new__(cls, value: str, advice: str = DEFAULT_ADVICE) -> Reason:
        member = str.__new__(cls, value)
        member._value_ = value
        member.advice = advice
        return member

    # --- the target (or the plan's settings for it) refused -------------------------------
    AUTH = (
        "auth",
        "check the target service account's password and its impersonation right, then "
        "`migrator retry --plan {plan} --failed`",
    )
    # the account's mailbox does not exist: in the target, or in the source (its directory,
    # file or login)
    NO_MAILBOX = (
        "no-mailbox",
        "create the mailbox in Exchange or fix the [target] address (a source mailbox the error "
        "names: fix [source] or the account's directory entry), then " + _RETRY,
    )
    NO_PERMISSION = (
        "no-permission",
        "grant the service account ApplicationImpersonation (or FullAccess) on the mailbox, then "
        + _RETRY,
    )
    QUOTA = "quota", "raise the Exchange mailbox quota, then " + _RETRY
    TOO_LARGE = (
        "too-large",
        "over the target's size limit: raise [target] max_message_size and the mailbox's limit in "
        "Exchange (or deliver the message by hand), then " + _RETRY_SKIPPED,
    )
    REJECTED = (
        "rejected",
        "the target server refused the message for good: `migrator show {addr} --plan {plan}` "
        "gives its key and the server's words; once its cause is fixed, " + _RETRY_SKIPPED,
    )
    NOT_FOUND = "not-found", "a folder or item vanished on the target; run again: " + _RUN
    CONFIG = (
        "config",
        "fix the plan ([source]/[target]), check it with `migrator check-plan --plan {plan}`, "
        "then retry",
    )
    TLS = "tls", "fix the server certificate or the plan's CA setting, then retry"
    EWS_ERROR = "ews-error", "an unexpected Exchange answer: see the error, then " + _RETRY
    # the source IMAP server answered outside the protocol
    PROTOCOL = "protocol"
    # a mailbox was recreated under the same name: its messages got new UIDs (IMAP source)
    UIDVALIDITY_CHANGED = "uidvalidity-changed"
    # what PermanentError says when its raiser gave no reason
    ERROR = "error"

    # --- the source: a message (or a folder) that could not be read -----------------------
    # permission denied or an I/O error on a file or directory
    UNREADABLE = (
        "unreadable",
        "the source could not be read (permissions, I/O error): let the migrator's user read the "
        "mailbox, then " + _RETRY_SKIPPED,
    )
    # the message disappeared between listing and reading
    VANISHED = (
        "vanished",
        "deleted or moved in the source while the run read it (a user at work, a folder renamed): "
        "what is still in the source is migrated by the next run; nothing to do",
    )
    # a directory, FIFO, socket or dangling link where a message should be
    NOT_A_FILE = (
        "not-a-file",
        "not a message file (a directory, FIFO or dangling link in the Maildir): nothing to "
        "migrate unless it should be a message; fix it, then " + _RETRY_SKIPPED,
    )
    # the folder was rewritten under us and could not be read consistently
    CHANGED = (
        "changed",
        "the folder was being rewritten while it was read: the next run reads it again ("
        + _RUN
        + "); "
        + _RETRY_SKIPPED
        + " tries these messages again",
    )
    # A symbolic link inside a mailbox (a message file, cur/ or new/, a folder, an mbox folder
    # file): never followed, since a user who can write into their own mailbox could otherwise
    # make the migrator (often root) read any file on the host, or another user's mail.
    SYMLINK = (
        "symlink",
        "symbolic links inside the source mailbox are never followed (one could point at any "
        "file): replace a legitimate one by the real file or folder, then " + _RETRY_SKIPPED,
    )
    # A directory inside a mailbox that is not a folder of its layout (no cur/ or new/ in a
    # Maildir) yet holds something: reported, so that nothing in a mailbox is passed over in
    # silence.
    NOT_A_FOLDER = (
        "not-a-folder",
        "a directory in the source mailbox is no folder of its layout (no cur/ or new/) but holds "
        "something: make it a folder or move the mail into one, then " + _RETRY_SKIPPED,
    )
    # Bytes that are not a message: before the first From_ line of an mbox, or a Maildir file
    # that does not begin with a header block (see sources/base.py, looks_like_mail).
    NOT_MAIL = (
        "not-mail",
        "the file holds no message (binary data, text without a header block, or bytes before the "
        "first From_ line of an mbox): nothing to migrate; look at it and remove it if you like",
    )
    # A message of 0 bytes: a Maildir file a failed delivery left behind, two From_ lines with
    # nothing between them in an mbox, the same served over IMAP. No target stores it (an IMAP
    # server refuses an empty literal, Exchange has no MIME to parse), so sources report it at
    # listing time, where its size is known without reading anything.
    EMPTY = (
        "empty",
        "0-byte files a failed delivery (or a broken copy) left behind: there is nothing to "
        "migrate; nothing to do (delete them if you like)",
    )

    # --- a delta pass carrying users' changes ----------------------------------------------
    DELETION_LIMIT = (
        "deletion-limit",
        "the pass would have deleted more of the mailbox than [run] deletion_limit allows, so it "
        "deleted nothing: check the source (a disk not mounted? folders removed by hand?); if the "
        "deletions are right, `migrator run --plan {plan} --account {addr} --allow-deletions`",
    )
    MOVE_FAILED = "move-failed", "the target refused to move some messages: run again: " + _RUN


def advice(reason: str | None, *, address: str, plan_file: str) -> str:
    """What the operator does about `reason` (a Reason, or a code read from the database,
    perhaps one this version does not know) for the account `address` of `plan_file`."""
    try:
        text = Reason(reason).advice if reason else DEFAULT_ADVICE
    except ValueError:
        text = DEFAULT_ADVICE
    return text.format(addr=address, plan=plan_file)
