"""docs/state.md stays true: every column is documented and every example query runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import text

from migrator.model.account import DiscoveredAccount, Scope
from migrator.model.events import EventKind
from migrator.store import open_store
from migrator.store.schema import metadata
from tests.fixtures.store import *  # noqa: F403

DOC = (Path(__file__).resolve().parent.parent / "docs" / "state.md").read_text(encoding="utf-8")


def _section(table: str) -> str:
    match = re.search(rf"^### {re.escape(table)}\b.*?(?=^### |^## )", DOC, re.M | re.S)
    assert match, f"docs/state.md has no section '### {table}'"
    return match.group(0)


@pytest.mark.parametrize("table", sorted(metadata.tables))
def test_every_column_is_documented(table: str) -> None:
    documented: set[str] = set()
    for line in _section(table).splitlines():
        if line.startswith("| ") and not line.startswith(("| column", "| ---")):
            documented.update(name.strip() for name in line.split("|")[1].split(","))
    assert documented == {column.name for column in metadata.tables[table].columns}


def test_every_event_kind_is_documented() -> None:
    [kinds] = [line for line in _section("events").splitlines() if line.startswith("| kind |")]
    # every `word` of the row names a kind, but for the command `verify`
    assert set(re.findall(r"`([a-z_-]+)`", kinds)) - {"verify"} == {k.value for k in EventKind}


def test_example_queries_run_and_answer(store_url: str) -> None:
    queries = re.findall(r"```sql\n(.*?)```", DOC, re.S)
    assert len(queries) >= 10
    store = open_store(store_url)
    try:
        plan_id = store.ensure_plan("ife", "maildir", "ews")
        people = [
            DiscoveredAccount(
                key=f"{name}@example.org",
                dn=f"uid={name},ou={ou},dc=example,dc=org",
                scope=Scope.IN_SCOPE,
                address=f"{name}@example.org",
                batch=ou,
            )  # fmt: skip
            for name, ou in [("anna.schmidt", "sales"), ("bo.li", "sales"), ("cy.ng", "it")]
        ]
        store.record_discovery(plan_id, None, people)
        with store.engine.connect() as conn:
            results = [conn.execute(text(query)).fetchall() for query in queries]
        progress = [tuple(row) for row in results[0]]
        assert [(b, int(t), int(m)) for b, t, m, *_ in progress] == [("it", 1, 0), ("sales", 2, 0)]
        assert tuple(int(v) for v in results[1][0]) == (0, 3)
    finally:
        store.close()
