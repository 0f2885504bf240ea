"""--account and --batch name something the plan has, or the command stops with exit 2 and says
what was not found: `run --account nobody@…`, `run --batch NoSuchBatch` and
`routing --batch NoSuchBatch` never print "0 accounts" and exit 0.

The state is written through the store (no server is contacted: every command stops before it
would open the target)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from migrator.model.account import DiscoveredAccount, Scope
from migrator.store import open_store
from tests.fixtures.reports import group, synthetic_state

ENV = {"MIGRATOR_TEST_EWS_PASSWORD": "unused"}
EXCLUDED = "pedro@ife.org.mx"
INVALID = "rota@ife.org.mx"


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve accounts in scope (batches Office000..Office011), one excluded, one invalid; the
    last two alone in batch Office900."""
    synthetic = synthetic_state(tmp_path_factory.mktemp("selections"), 12)
    store = open_store(f"sqlite:///{synthetic.state_path}")
    try:
        plan_id = store.plan_id("synthetic")
        assert plan_id is not None
        store.record_discovery(
            plan_id,
            None,
            [
                *[
                    DiscoveredAccount(
                        key=r.key,
                        dn=r.dn,
                        scope=Scope.IN_SCOPE,
                        address=r.address,
                        target_address=r.target_address,
                        uid=r.uid,
                        name=r.name,
                        batch=r.batch,
                    )
                    for r in store.list_accounts(plan_id)
                ],
                DiscoveredAccount(
                    key=EXCLUDED,
                    dn="uid=pedro,ou=Office900,ou=people,dc=ife,dc=org,dc=mx",
                    scope=Scope.EXCLUDED,
                    reason="not-selected",
                    detail="the plan's filter does not select this person",
                    address=EXCLUDED,
                    uid="pedro",
                    batch="Office900",
                ),
                DiscoveredAccount(
                    key=INVALID,
                    dn="uid=../rota,ou=Office900,ou=people,dc=ife,dc=org,dc=mx",
                    scope=Scope.INVALID,
                    reason="unsafe-path",
                    detail="uid '../rota' would leave the source root",
                    address=INVALID,
                    uid="../rota",
                    batch="Office900",
                ),
            ],
        )
    finally:
        store.close()
    return synthetic.plan_path


def cli(plan: Path, *args: str) -> Result:
    return CliRunner().invoke(
        group(), [*args, "--plan", str(plan)], env=ENV, catch_exceptions=False
    )


def said(result: Result) -> str:
    return " ".join(result.output.split())


@pytest.mark.parametrize("command", [["run"], ["run", "--dry-run"], ["verify"], ["retry"]])
def test_an_unknown_account_is_a_usage_error_that_names_it(plan: Path, command: list[str]) -> None:
    result = cli(
        plan, *command, "--account", "nobody@ife.org.mx", "--account", "user00001@ife.org.mx"
    )
    assert result.exit_code == 2, result.output
    assert "no account 'nobody@ife.org.mx' in plan 'synthetic'" in said(result)
    assert "user00001" not in said(result)  # the one that exists is not blamed
    assert "migrator accounts --plan" in said(result)


@pytest.mark.parametrize("command", [["run"], ["run", "--dry-run"], ["verify"], ["retry"]])
def test_an_account_out_of_scope_is_refused_with_the_reason(plan: Path, command: list[str]) -> None:
    result = cli(plan, *command, "--account", EXCLUDED)
    assert result.exit_code == 2, result.output
    assert (
        f"account '{EXCLUDED}' is excluded, not in scope (not-selected: the plan's filter does not select this person)"
        in said(result)
    )
    assert "[directory] filter" in said(result)
    invalid = cli(plan, *command, "--account", INVALID)
    assert invalid.exit_code == 2, invalid.output
    assert (
        "is invalid, not in scope (unsafe-path: uid '../rota' would leave the source root)"
        in said(invalid)
    )
    assert "fix its directory entry" in said(invalid)


@pytest.mark.parametrize("command", [["run"], ["run", "--dry-run"], ["verify"], ["routing"]])
def test_an_unknown_batch_is_a_usage_error_with_the_nearest_name(
    plan: Path, command: list[str]
) -> None:
    result = cli(plan, *command, "--batch", "Ofice001")
    assert result.exit_code == 2, result.output
    assert "no batch 'Ofice001' in plan 'synthetic'" in said(result)
    assert "did you mean 'Office001'?" in said(result)


def test_a_batch_with_no_account_in_scope_is_refused_for_run_but_listed(plan: Path) -> None:
    result = cli(plan, "run", "--batch", "Office900")
    assert result.exit_code == 2, result.output
    assert "batch 'Office900' has no account in scope (1 excluded, 1 invalid)" in said(result)
    listed = cli(plan, "accounts", "--batch", "Office900", "--json")
    assert listed.exit_code == 0 and EXCLUDED in listed.output
    assert cli(plan, "accounts", "--batch", "NoSuchBatch").exit_code == 2
    # routing of a batch that exists, none migrated yet: fine, and empty
    routed = cli(plan, "routing", "--batch", "Office900", "--nexthop", "exchange.ife.org.mx")
    assert routed.exit_code == 0 and "0 migrated account(s)" in routed.output
