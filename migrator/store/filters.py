"""What `migrator filters` recorded per account: outcome, counts, rule ids, refused statements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select

from migrator.store.schema import AccountDbRow, SieveFilterRow, SieveRefusalRow
from migrator.store.types import utcnow

if TYPE_CHECKING:
    from migrator.store.store import Store


@dataclass
class FilterRecord:
    """One account's outcome, as written and read back."""

    outcome: str  # applied | reported | none | checked | failed
    script: str | None = None
    script_sha256: str | None = None
    statements: int = 0
    translated: int = 0
    approximate: int = 0
    refused: int = 0
    rules: int = 0
    rule_ids: list[str] = field(default_factory=list)
    auto_reply: str | None = None
    auto_reply_sha256: str | None = None
    error: str | None = None
    refusals: list[dict[str, Any]] = field(default_factory=list)  # statement, line, reason, text
    updated_at: Any = None


def record(store: Store, account_id: int, rec: FilterRecord) -> None:
    """Replace the account's record and refusals in one transaction."""
    with store.session(write=True) as s:
        s.execute(delete(SieveRefusalRow).where(SieveRefusalRow.account_id == account_id))
        row = s.get(SieveFilterRow, account_id)
        if row is None:
            row = SieveFilterRow(account_id=account_id)
            s.add(row)
        row.outcome = rec.outcome
        row.script = rec.script
        row.script_sha256 = rec.script_sha256
        row.statements = rec.statements
        row.translated = rec.translated
        row.approximate = rec.approximate
        row.refused = rec.refused
        row.rules = rec.rules
        row.rule_ids = list(rec.rule_ids) or None
        row.auto_reply = rec.auto_reply
        row.auto_reply_sha256 = rec.auto_reply_sha256
        row.error = rec.error
        row.updated_at = utcnow()
        for refusal in rec.refusals:
            s.add(SieveRefusalRow(account_id=account_id, **refusal))


def recorded(store: Store, account_id: int) -> FilterRecord | None:
    with store.session() as s:
        row = s.get(SieveFilterRow, account_id)
        if row is None:
            return None
        refusals = s.execute(
            select(SieveRefusalRow.statement, SieveRefusalRow.line, SieveRefusalRow.reason,
                   SieveRefusalRow.text)
            .where(SieveRefusalRow.account_id == account_id)
            .order_by(SieveRefusalRow.id)
        ).all()
        return FilterRecord(
            outcome=row.outcome, script=row.script, script_sha256=row.script_sha256,
            statements=row.statements, translated=row.translated, approximate=row.approximate,
            refused=row.refused, rules=row.rules, rule_ids=list(row.rule_ids or []),
            auto_reply=row.auto_reply, auto_reply_sha256=row.auto_reply_sha256, error=row.error,
            refusals=[dict(statement=r[0], line=r[1], reason=r[2], text=r[3]) for r in refusals],
            updated_at=row.updated_at,
        )


def totals(store: Store, plan_id: int, account_ids: Sequence[int] | None = None) -> dict[str, int]:
    """Per plan: accounts by outcome and the statements carried/refused (for status)."""
    with store.session() as s:
        query = (
            select(SieveFilterRow.outcome, func.count(), func.sum(SieveFilterRow.statements),
                   func.sum(SieveFilterRow.translated), func.sum(SieveFilterRow.approximate),
                   func.sum(SieveFilterRow.refused), func.sum(SieveFilterRow.rules))
            .join(AccountDbRow, AccountDbRow.id == SieveFilterRow.account_id)
            .where(AccountDbRow.plan_id == plan_id)
            .group_by(SieveFilterRow.outcome)
        )
        if account_ids is not None:
            query = query.where(SieveFilterRow.account_id.in_(list(account_ids)))
        out: dict[str, int] = {"accounts": 0, "statements": 0, "translated": 0, "approximate": 0,
                               "refused": 0, "rules": 0, "accounts_with_refusals": 0}
        for outcome, count, statements, translated, approximate, refused, rules in s.execute(query):
            out[f"outcome_{outcome}"] = int(count)
            out["accounts"] += int(count)
            out["statements"] += int(statements or 0)
            out["translated"] += int(translated or 0)
            out["approximate"] += int(approximate or 0)
            out["refused"] += int(refused or 0)
            out["rules"] += int(rules or 0)
        with_refusals = select(func.count()).select_from(SieveFilterRow).join(
            AccountDbRow, AccountDbRow.id == SieveFilterRow.account_id
        ).where(AccountDbRow.plan_id == plan_id, SieveFilterRow.refused > 0)
        out["accounts_with_refusals"] = int(s.execute(with_refusals).scalar() or 0)
        return out
