"""`show ADDR`: one account for the help desk — directory data, history, folders, skipped
messages (with subject/date read from the source where possible), last error and advice."""

from __future__ import annotations

from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from typing import Any

from migrator.adapters.sources import open_account_source
from migrator.commands.report import iso
from migrator.commands.secrets import source_password
from migrator.commands.state import plan_store, scope_advice
from migrator.engine.delta import describe
from migrator.model.errors import MigratorError, UsageError
from migrator.model.mail import MessageRecord
from migrator.model.plan import Plan
from migrator.store import queries
from migrator.store.filters import recorded as recorded_filters

MESSAGE_CAP = 50
_HEADER_BYTES = 64 * 1024

# reason code -> what the operator does about it ({addr} and {plan} are filled in)
ADVICE: dict[str, str] = {
    "no-mailbox": "create the mailbox in Exchange or fix the [target] address, then "
    "`migrator retry --plan {plan} --account {addr}`",
    "auth": "check the target service account's password and its impersonation right, then "
    "`migrator retry --plan {plan} --failed`",
    "no-permission": "grant the service account ApplicationImpersonation (or FullAccess) on the mailbox, "
    "then `migrator retry --plan {plan} --account {addr}`",
    "quota": "raise the Exchange mailbox quota, then `migrator retry --plan {plan} --account {addr}`",
    "too-large": "the message is over the target's size limit: raise [target] max_message_size and the "
    "Exchange limit, or deliver it by hand; then `migrator retry --plan {plan} --account {addr} --skipped`",
    "rejected": "the target server refused the message: inspect it (see the key), then "
    "`migrator retry --plan {plan} --account {addr} --skipped`",
    "empty": "the source holds a 0-byte message (a failed delivery or a broken copy): there is "
    "nothing to migrate; delete the file if you like",
    "unreadable": "fix the file permissions in the source mailbox, then "
    "`migrator retry --plan {plan} --account {addr} --skipped`",
    "vanished": "the message was moved or deleted while being migrated; if it is back, the next pass sends it",
    "not-a-file": "something other than a message file sits in the Maildir; remove or fix it",
    "not-mail": "the file holds no message (binary data or text without a header block, or bytes before the "
    "first From_ line of an mbox): nothing to migrate; look at it and remove it if you like",
    "symlink": "a symbolic link inside the source mailbox is never followed (it could point at any file): if "
    "it is legitimate, replace it by the real file or folder, then "
    "`migrator retry --plan {plan} --account {addr} --skipped`",
    "not-a-folder": "a directory in the source mailbox is not a folder of its layout (no cur/ or new/) but holds "
    "something: look at it; make it a folder or move the mail into one, then "
    "`migrator retry --plan {plan} --account {addr} --skipped`",
    "changed": "the folder was rewritten during the pass; run again: "
    "`migrator run --plan {plan} --account {addr}`",
    "config": "fix the plan ([source]/[target]), check it with `migrator check-plan --plan {plan}`, then retry",
    "tls": "fix the server certificate or the plan's CA setting, then retry",
    "not-found": "a folder or item vanished on the target; run again: `migrator run --plan {plan} --account {addr}`",
    "deletion-limit": "the pass would have deleted more of the mailbox than [run] deletion_limit allows, so it "
    "deleted nothing: check the source (a disk not mounted? folders removed by hand?); if the deletions are "
    "right, `migrator run --plan {plan} --account {addr} --allow-deletions`",
    "move-failed": "the target refused to move some messages: run again: `migrator run --plan {plan} --account {addr}`",
    "ews-error": "an unexpected Exchange answer: see the error, then "
    "`migrator retry --plan {plan} --account {addr}`",
}
DEFAULT_ADVICE = "read the error, fix its cause, then `migrator retry --plan {plan} --account {addr}`"


def advice_for(reason: str | None, *, address: str, plan_file: str) -> str:
    text = ADVICE.get(reason or "", DEFAULT_ADVICE)
    return text.format(addr=address, plan=plan_file)


def _decoded(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value


def _headers(record: MessageRecord) -> tuple[str | None, str | None]:
    with record.open() as stream:
        head = stream.read(_HEADER_BYTES)
    # only the header block: a body is never parsed (or held beyond the first 64 KiB)
    end = head.find(b"\r\n\r\n")
    end = head.find(b"\n\n") if end < 0 else end
    msg = BytesHeaderParser().parsebytes(head[: end if end >= 0 else len(head)])
    return _decoded(msg.get("Subject")), msg.get("Date")


def read_subjects(plan: Plan, account: dict[str, Any], messages: list[dict[str, Any]]) -> str | None:
    """Fill subject/date of `messages` from the source, read-only. Returns a note when the
    source (or part of it) could not be read; never raises for a source problem."""
    wanted: dict[str, dict[str, dict[str, Any]]] = {}
    for m in messages:
        wanted.setdefault(m["native"], {})[m["source_key"]] = m
    if not wanted:
        return None
    attributes = account.get("attributes") or {}
    try:
        password = source_password(plan) if plan.source.kind == "imap" else None
        with open_account_source(plan.source, account.get("source_path"), attributes, password) as source:
            for folder in source.folders():
                keys = wanted.get(folder.native)
                if not keys:
                    continue
                left = len(keys)
                for record in source.messages(folder):
                    entry = keys.get(record.key)
                    if entry is None:
                        continue
                    if isinstance(record, MessageRecord):
                        try:
                            entry["subject"], entry["date"] = _headers(record)
                        except (OSError, MigratorError) as exc:
                            entry["source_note"] = f"not readable: {exc}"
                    else:  # skipped at the source (empty, not a file...): its detail says why
                        entry["source_note"] = "no message to read"
                    left -= 1
                    if not left:
                        break
        for m in messages:
            if "subject" not in m and "source_note" not in m:
                m["source_note"] = "no longer in the source"
        return None
    except (MigratorError, OSError) as exc:
        message = exc.message if isinstance(exc, MigratorError) else str(exc)
        return f"the source mailbox could not be read ({message}); subjects and dates are not shown"


def show_account(
    plan: Plan,
    address: str,
    *,
    state_url: str | None = None,
    events_limit: int = 50,
    read_source: bool = True,
) -> dict[str, Any]:
    with plan_store(plan, state_url, access="read") as (store, plan_id):
        account = queries.find_account(store, plan_id, address)
        if account is None:
            raise UsageError(
                f"no account {address!r} in plan {plan.name!r}",
                hint=f"check the address; `migrator accounts --plan {plan.file}` lists them",
            )
        history = queries.events(store, plan_id, account_id=account["id"], limit=events_limit, newest_first=True)
        folder_rows = queries.folders(store, account["id"])
        problems, problem_total = queries.problem_messages(store, account["id"], MESSAGE_CAP)
        sieve = recorded_filters(store, account["id"])
    shown = account["address"] or account["key"]
    source_note = read_subjects(plan, account, problems) if read_source else None
    # what the newest completed pass carried of the user's changes (its `released` event)
    released = next((e for e in history if e["kind"] == "released" and e["to_state"] in ("synced", "verified")), None)
    carried = dict((released["detail"] or {}).get("changes") or {}) if released is not None else None
    reason = account["last_error_reason"]
    return {
        "address": shown,
        # first: an account discovery left out of scope is not migrated, whatever its progress says
        "scope": {
            "scope": account["scope"],
            "reason": account["reason"],
            "detail": account["detail"],
            "advice": scope_advice(account["scope"], str(plan.file)),
        },
        "directory": {
            "dn": account["dn"],
            "name": account["name"],
            "uid": account["uid"],
            "target_address": account["target_address"],
            "aliases": account["aliases"] or [],
            "batch": account["batch"],
            "source_path": account["source_path"],
            "scope": account["scope"],
            "scope_reason": account["reason"],
            "scope_detail": account["detail"],
            "discovered_at": iso(account["discovered_at"]),
            "last_seen_at": iso(account["last_seen_at"]),
        },
        "state": {
            "status": account["status"],
            "passes": account["passes"],
            "attempts": account["attempts"],
            "first_pass": iso(account["first_pass_at"]),
            "last_pass": iso(account["last_pass_at"]),
            "messages_done": account["messages_done"],
            "messages_skipped": account["messages_skipped"],
            "messages_failed": account["messages_failed"],
            "bytes": account["bytes_done"],
            "lease_owner": account["lease_owner"],
            # None before a pass (or when the pass is older than the events shown)
            "last_pass_changes": carried,
            "last_pass_changes_text": None if carried is None else (describe(carried) or "no changes"),
        },
        "last_error": {
            "reason": reason,
            "message": account["last_error"],
            "advice": advice_for(reason, address=shown, plan_file=str(plan.file)),
        }
        if account["last_error"]
        else None,
        "events": [
            {"id": e["id"], "at": iso(e["at"]), "kind": e["kind"], "from": e["from_state"], "to": e["to_state"],
             "worker": e["worker"], "detail": e["detail"]}
            for e in history
        ],
        "events_limit": events_limit,
        "folders": [
            {
                "folder": f["display"],
                "target": f["target_path"],
                "source": f["source_count"],
                "done": f["done_count"],
                "skipped": f["skipped_count"],
                "failed": f["failed_count"],
                "last_synced": iso(f["last_synced_at"]),
                "verify": None
                if f["verified_at"] is None
                else {"source": f["verify_source"], "ledger": f["verify_ledger"], "target": f["verify_target"],
                      "ok": f["verify_ok"], "at": iso(f["verified_at"])},
            }
            for f in folder_rows
        ],
        "skipped_messages": [
            {
                "folder": m["display"],
                "key": m["source_key"],
                "state": m["state"],
                "reason": m["reason"],
                "detail": m["detail"],
                "size": m["size"],
                "subject": m.get("subject"),
                "date": m.get("date"),
                "source_note": m.get("source_note"),
                "advice": advice_for(m["reason"], address=shown, plan_file=str(plan.file)),
            }
            for m in problems
        ],
        "skipped_total": problem_total,
        "source_note": source_note,
        "filters": None if sieve is None else {
            "outcome": sieve.outcome,
            "script": sieve.script,
            "statements": sieve.statements,
            "translated": sieve.translated,
            "approximate": sieve.approximate,
            "refused": sieve.refused,
            "rules": sieve.rules,
            "auto_reply": sieve.auto_reply,
            "error": sieve.error,
            "at": iso(sieve.updated_at),
            "not_carried": sieve.refusals,
        },
    }
