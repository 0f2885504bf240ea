"""The `show ADDR` screen: one account for the help desk."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from migrator.model.scope import Scope
from migrator.report.console import safe
from migrator.report.run import human_bytes


def _detail(detail: Any) -> str:
    if not detail:
        return ""
    if isinstance(detail, dict):
        return ", ".join(f"{k}={v}" for k, v in detail.items() if v not in (None, "", 0))
    return str(detail)


def render_show(con: Console, data: dict[str, Any]) -> None:
    d, s, scope = data["directory"], data["state"], data["scope"]
    con.print(f"[bold]{safe(data['address'], 200)}[/bold]  {safe(d['name'], 100)}")
    in_scope = scope["scope"] == Scope.IN_SCOPE
    if not in_scope:
        # an account out of scope is not migrated: say so first, with discovery's reason
        why = ": ".join(safe(part, 300) for part in (scope["reason"], scope["detail"]) if part)
        con.print(
            f"[bold yellow]not in scope: {safe(scope['scope'])}[/bold "
            f"yellow]{f' ({why})' if why else ''}; run, verify and retry leave it alone"
        )
        if scope["advice"]:
            con.print(f"what to do: {safe(scope['advice'], 600)}")
    if in_scope or s["passes"] or s["messages_done"]:
        label = "state" if in_scope else "progress kept from when it was in scope"
        con.print(
            f"{label}: [bold]{safe(s['status'])}[/bold], {s['passes']} pass(es), first "
            f"{safe(s['first_pass'] or '-')}, last {safe(s['last_pass'] or '-')}"
        )
        con.print(
            f"messages: {s['messages_done']:,} migrated ({human_bytes(s['bytes'])}), "
            f"{s['messages_skipped']:,} skipped, {s['messages_failed']:,} failed"
        )
        if s.get("last_pass_changes_text"):
            con.print(f"the last pass carried: {safe(s['last_pass_changes_text'], 300)}")
    con.print(
        f"directory: dn {safe(d['dn'], 200)}; uid {safe(d['uid'])}; batch {safe(d['batch'])}"
        + (f"; scope {safe(d['scope'])}" if in_scope else "")
    )
    if d["target_address"] and d["target_address"] != data["address"]:
        con.print(f"target mailbox: {safe(d['target_address'], 200)}")
    if d["aliases"]:
        con.print(f"aliases: {safe(', '.join(d['aliases']), 400)}")
    con.print(f"source: {safe(d['source_path'], 300)}")
    err = data["last_error"]
    if err:
        con.print(
            f"[red]last error[/red] ({safe(err['reason'] or 'unknown')}): "
            f"{safe(err['message'], 600)}"
        )
        con.print(f"what to do: {safe(err['advice'], 600)}")
    if data["folders"]:
        table = Table(title="Folders", title_justify="left")
        for column in (
            "folder",
            "source",
            "migrated",
            "skipped",
            "failed",
            "last synced",
            "verified (src/ledger/target)",
        ):
            table.add_column(
                column,
                justify="left"
                if column in ("folder", "last synced", "verified (src/ledger/target)")
                else "right",
            )
        for f in data["folders"]:
            v = f["verify"]
            verified = (
                "-"
                if v is None
                else (
                    f"{'ok' if v['ok'] else 'MISMATCH'} {v['source']}/{v['ledger']}/{v['target']} "
                    f"at {v['at']}"
                )
            )
            table.add_row(
                safe(f["folder"], 60),
                "-" if f["source"] is None else f"{f['source']:,}",
                f"{f['done']:,}",
                f"{f['skipped']:,}",
                f"{f['failed']:,}",
                safe(f["last_synced"] or "-"),
                safe(verified, 80),
            )
        con.print(table)
    if data["skipped_messages"]:
        con.print(f"[bold]Skipped/failed messages ({data['skipped_total']:,})[/bold]")
        # one line each: subjects are long and a table would wrap them beyond recognition
        for m in data["skipped_messages"]:
            subject = (
                f'"{safe(m["subject"], 100)}"'
                if m["subject"] is not None
                else f"({safe(m['source_note'] or 'not read', 100)})"
            )
            size = f", {human_bytes(m['size'])}" if m["size"] is not None else ""
            con.print(
                f"  {safe(m['folder'], 60)}: {safe(m['reason'])} {subject} "
                f"{safe(m['date'] or '', 40)}{size}"
                f" — {safe(m['detail'], 160)}",
                soft_wrap=True,
            )
        if data["skipped_total"] > len(data["skipped_messages"]):
            con.print(
                f"  (the first {len(data['skipped_messages'])} of {data['skipped_total']:,}; "
                "--json for details)"
            )
        reasons = {m["reason"]: m["advice"] for m in data["skipped_messages"]}
        for reason, advice in reasons.items():
            con.print(f"{safe(reason)}: {safe(advice, 600)}")
    if data["source_note"]:
        con.print(f"[yellow]note:[/yellow] {safe(data['source_note'], 600)}")
    sieve = data.get("filters")
    if sieve:
        con.print(
            f"[bold]Sieve filters[/bold] ({safe(sieve['at'] or '-')}): {safe(sieve['outcome'])}"
            + (f", script {safe(sieve['script'], 80)}" if sieve["script"] else "")
            + f"; {sieve['translated']} of {sieve['statements']} statements carried "
            f"({sieve['approximate']} with a note), {sieve['refused']} not carried; "
            f"{sieve['rules']} Exchange rules; automatic reply {safe(sieve['auto_reply'] or '-')}"
        )
        if sieve["error"]:
            con.print(f"  [red]{safe(sieve['error'], 600)}[/red]")
        for refusal in sieve["not_carried"]:
            where = f"line {refusal['line']}" if refusal["line"] else "the script"
            con.print(f"  not carried ({where}): {safe(refusal['reason'], 300)}", soft_wrap=True)
            for line in str(refusal["text"]).split("\n")[:12]:
                con.print(f"    {safe(line, 160)}", soft_wrap=True, highlight=False)
    if data["events"]:
        table = Table(
            title=f"History (newest first, at most {data['events_limit']})", title_justify="left"
        )
        for column in ("at", "event", "state", "detail"):
            table.add_column(column)
        for e in data["events"]:
            table.add_row(
                safe(e["at"]),
                safe(e["kind"]),
                safe(f"{e['from'] or ''} -> {e['to'] or ''}"),
                safe(_detail(e["detail"]), 100),
            )
        con.print(table)
