"""`show ADDR`: one account for the help desk — directory data, history, folders, skipped
messages (with subject/date read from the source where possible), last error and advice."""

from __future__ import annotations

from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from typing import Any

from migrator.adapters.sources import open_account_source
from migrator.commands.report import iso
from migrator.commands.secrets import source_password
from migrator.commands.state import plan_store
from migrator.engine.delta import describe
from migrator.model.errors import MigratorError, UsageError
from migrator.model.events import EventKind
from migrator.model.mail import MessageRecord
from migrator.model.plan import Plan
from migrator.model.reasons import advice as advice_for
from migrator.model.scope import advice as scope_advice
from migrator.model.status import PASS_COMPLETED
from migrator.store.filters import recorded as recorded_filters
from migrator.store.reporting import queries

MESSAGE_CAP = 50
_HEADER_BYTES = 64 * 1024


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


def read_subjects(
    plan: Plan, account: dict[str, Any], messages: list[dict[str, Any]]
) -> str | None:
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
        with open_account_source(
            plan.source, account.get("source_path"), attributes, password
        ) as source:
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
        history = queries.events(
            store, plan_id, account_id=account["id"], limit=events_limit, newest_first=True
        )
        folder_rows = queries.folders(store, account["id"])
        problems, problem_total = queries.problem_messages(store, account["id"], MESSAGE_CAP)
        sieve = recorded_filters(store, account["id"])
    shown = account["address"] or account["key"]
    source_note = read_subjects(plan, account, problems) if read_source else None
    # what the newest completed pass carried of the user's changes (its `released` event)
    released = next(
        (e for e in history if e["kind"] == EventKind.RELEASED and e["to_state"] in PASS_COMPLETED),
        None,
    )
    carried = (
        dict((released["detail"] or {}).get("changes") or {}) if released is not None else None
    )
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
            "last_pass_changes_text": None
            if carried is None
            else (describe(carried) or "no changes"),
        },
        "last_error": {
            "reason": reason,
            "message": account["last_error"],
            "advice": advice_for(reason, address=shown, plan_file=str(plan.file)),
        }
        if account["last_error"]
        else None,
        "events": [
            {
                "id": e["id"],
                "at": iso(e["at"]),
                "kind": e["kind"],
                "from": e["from_state"],
                "to": e["to_state"],
                "worker": e["worker"],
                "detail": e["detail"],
            }
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
                else {
                    "source": f["verify_source"],
                    "ledger": f["verify_ledger"],
                    "target": f["verify_target"],
                    "ok": f["verify_ok"],
                    "at": iso(f["verified_at"]),
                },
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
        "filters": None
        if sieve is None
        else {
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
