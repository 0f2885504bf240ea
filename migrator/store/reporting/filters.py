"""Read-only aggregates of `migrator filters` for `status` (plain SQL through Raw, like
aggregates.py: the same text on SQLite and PostgreSQL, no SQLAlchemy needed)."""

from __future__ import annotations

from typing import Any

from migrator.model.filters import FilterOutcome
from migrator.store.database.raw import Raw

OUTCOMES = tuple(o.value for o in FilterOutcome)


def totals(db: Raw, plan_id: int) -> dict[str, Any]:
    """Accounts by outcome of their last `filters` pass, and Sieve statements carried, carried
    with a note and not carried, over the plan's accounts in scope."""
    out: dict[str, Any] = {
        "accounts": 0,
        **dict.fromkeys(OUTCOMES, 0),
        "statements": 0,
        "translated": 0,
        "approximate": 0,
        "refused": 0,
        "rules": 0,
        "accounts_with_refusals": 0,
    }
    rows = db.all(
        "SELECT f.outcome, COUNT(*), SUM(f.statements), SUM(f.translated), SUM(f.approximate), "
        "SUM(f.refused), SUM(f.rules), SUM(CASE WHEN f.refused > 0 THEN 1 ELSE 0 END) "
        "FROM sieve_filters f JOIN accounts a ON a.id = f.account_id "
        "WHERE a.plan_id = ? AND a.scope = 'in_scope' GROUP BY f.outcome",
        (plan_id,),
    )
    for outcome, count, statements, translated, approximate, refused, rules, with_refusals in rows:
        out[str(outcome)] = int(count)
        out["accounts"] += int(count)
        out["statements"] += int(statements or 0)
        out["translated"] += int(translated or 0)
        out["approximate"] += int(approximate or 0)
        out["refused"] += int(refused or 0)
        out["rules"] += int(rules or 0)
        out["accounts_with_refusals"] += int(with_refusals or 0)
    return out
