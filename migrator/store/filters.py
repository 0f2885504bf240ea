"""What `migrator filters` recorded per account: outcome, counts, rule ids, refused statements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select

from migrator.store.schema import sieve_filters as SF
from migrator.store.schema import sieve_refusals as R
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
        s.execute(delete(R).where(R.c.account_id == account_id))
        s.execute(delete(SF).where(SF.c.account_id == account_id))
        s.execute(
            insert(SF).values(
                account_id=account_id,
                outcome=rec.outcome,
                script=rec.script,
                script_sha256=rec.script_sha256,
                statements=rec.statements,
                translated=rec.translated,
                approximate=rec.approximate,
                refused=rec.refused,
                rules=rec.rules,
                rule_ids=list(rec.rule_ids) or None,
                auto_reply=rec.auto_reply,
                auto_reply_sha256=rec.auto_reply_sha256,
                error=rec.error,
                updated_at=utcnow(),
            )
        )
        if rec.refusals:
            s.execute(insert(R), [dict(refusal, account_id=account_id) for refusal in rec.refusals])


def recorded(store: Store, account_id: int) -> FilterRecord | None:
    with store.session() as s:
        row = s.execute(select(SF).where(SF.c.account_id == account_id)).one_or_none()
        if row is None:
            return None
        refusals = s.execute(
            select(R.c.statement, R.c.line, R.c.reason, R.c.text)
            .where(R.c.account_id == account_id)
            .order_by(R.c.id)
        ).all()
        return FilterRecord(
            outcome=row.outcome,
            script=row.script,
            script_sha256=row.script_sha256,
            statements=row.statements,
            translated=row.translated,
            approximate=row.approximate,
            refused=row.refused,
            rules=row.rules,
            rule_ids=list(row.rule_ids or []),
            auto_reply=row.auto_reply,
            auto_reply_sha256=row.auto_reply_sha256,
            error=row.error,
            refusals=[dict(statement=r[0], line=r[1], reason=r[2], text=r[3]) for r in refusals],
            updated_at=row.updated_at,
        )
