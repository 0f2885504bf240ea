"""The words the state database stores are model/'s enums: a database made by the migrations
accepts exactly their values, and every reason an operator can meet comes with what to do."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from migrator.model import reasons, scope, status
from migrator.model.reasons import Reason
from migrator.model.scope import DiscoveryReason, Scope
from migrator.model.status import MessageState, RunStatus, Status
from migrator.store import open_store


def _allowed(tmp_path: Path) -> dict[str, set[str]]:
    """column -> the values its CHECK constraint allows, in a database the migrations made."""
    path = tmp_path / "state.db"
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as db:
        tables = " ".join(
            sql for (sql,) in db.execute("SELECT sql FROM sqlite_master WHERE type = 'table'")
        )
    return {
        column: set(re.findall(r"'([^']*)'", values))
        for column, values in re.findall(r"CHECK \((\w+) IN \(([^)]*)\)\)", tables)
    }


def test_the_database_accepts_exactly_the_enums_values(tmp_path: Path) -> None:
    allowed = _allowed(tmp_path)
    assert allowed["scope"] == {s.value for s in Scope}
    assert allowed["status"] == {s.value for s in Status}
    assert allowed["state"] == {s.value for s in MessageState}


def test_members_are_the_strings_stored_and_shown() -> None:
    # what the database, JSON outputs and the CLI's choices keep: never renamed
    assert [s.value for s in Status] == ["pending", "running", "synced", "failed", "verified"]
    assert [s.value for s in Scope] == ["in_scope", "excluded", "invalid", "vanished"]
    assert [s.value for s in RunStatus] == ["running", "done", "partial", "failed", "interrupted"]
    assert (
        Status.SYNCED == "synced"
        and f"{Status.SYNCED}" == "synced"
        and str(Reason.TOO_LARGE) == "too-large"
    )


@pytest.mark.parametrize("reason", list(Reason), ids=str)
def test_every_reasons_advice_names_the_account_and_plan_it_is_given(reason: Reason) -> None:
    text = reasons.advice(reason, address="ana@ife.org.mx", plan_file="plans/ife.toml")
    assert "{" not in text and "}" not in text, text
    assert reasons.advice(str(reason), address="ana@ife.org.mx", plan_file="plans/ife.toml") == text
    if "migrator " in text and "--plan" in text:
        assert "--plan plans/ife.toml" in text


def test_what_sources_and_targets_skip_has_advice_of_its_own() -> None:
    # the reasons a run summary groups skipped messages by: none falls back to the generic text
    skips = {
        Reason.TOO_LARGE,
        Reason.REJECTED,
        Reason.UNREADABLE,
        Reason.VANISHED,
        Reason.NOT_A_FILE,
        Reason.CHANGED,
        Reason.SYMLINK,
        Reason.NOT_A_FOLDER,
        Reason.NOT_MAIL,
        Reason.EMPTY,
    }
    for reason in skips:
        assert reason.advice != reasons.DEFAULT_ADVICE, reason


def test_an_unknown_reason_gets_the_generic_advice() -> None:
    # a reason written by a newer migrator, or none at all
    for reason in ("sent-by-a-newer-version", None, ""):
        assert reasons.advice(
            reason, address="a@x", plan_file="p.toml"
        ) == reasons.DEFAULT_ADVICE.format(addr="a@x", plan="p.toml")


def test_only_an_account_out_of_scope_gets_scope_advice() -> None:
    assert scope.advice(Scope.IN_SCOPE, "p.toml") is None
    assert scope.advice("gone-somewhere", "p.toml") is None
    for out in (Scope.EXCLUDED, Scope.INVALID, Scope.VANISHED):
        assert "migrator discover --plan p.toml" in (scope.advice(out, "p.toml") or "")
    assert set(status.PASS_COMPLETED) == {"synced", "verified"}


def test_the_discovery_guide_explains_every_reason_discovery_gives() -> None:
    guide = (Path(__file__).resolve().parents[1] / "docs" / "discovery.md").read_text()
    for reason in DiscoveryReason:
        assert f"| `{reason}` |" in guide, reason
