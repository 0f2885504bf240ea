"""The metrics endpoint (`run --metrics-port`, `workers --metrics-port`) tells what `status`
and `workers` tell, in Prometheus' format: scraped during a real run into the EWS simulator,
with the target throttling, and compared number by number with `status --json`."""

from __future__ import annotations

import json
import re
import signal
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from migrator.simulator.ews import Faults
from tests.fixtures.campaign import Campaign, build_campaign
from tests.fixtures.dovecot import free_port

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (
            s.name,
            tuple(sorted((k, v) for k, v in s.labels.items() if k not in ("plan", "target"))),
        ): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _status(c: Campaign) -> dict[str, Any]:
    out = c.cli("status", "--plan", str(c.plan_path), "--json")
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def _poll(what: str, condition: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except OSError:  # the endpoint is not up yet
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# what stays still while the target answers every request "busy" (throttling answers and
# back-off time keep growing, the ledger does not)
STILL = ("migrator_accounts", "migrator_accounts_migrated", "migrator_campaign_messages_done",
         "migrator_campaign_bytes_done", "migrator_messages_done_total", "migrator_bytes_done_total",
         "migrator_accounts_finished_total")  # fmt: skip


def _still(samples: Samples) -> Samples:
    return {k: v for k, v in samples.items() if k[0] in STILL}


def test_the_endpoint_agrees_with_status_during_a_run(tmp_path: Path) -> None:
    with build_campaign(
        tmp_path / "c",
        accounts=6,
        messages_per_folder=4,
        workers=2,
        chunk=2,
        faults=Faults(delay_s=0.05),
    ) as c:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        port = free_port()
        run = c.start("run", "--plan", str(c.plan_path), "--json", "--worker-name", "mig-a",
                      "--metrics-port", str(port), "--metrics-address", "127.0.0.1")  # fmt: skip
        try:
            _poll(
                "an account to be finished",
                lambda: (
                    ("migrator_accounts_finished_total", (("outcome", "synced"),)) in _scrape(port)
                ),
            )
            # the target now throttles every request: the run waits, and the ledger stands still
            c.sim.set_faults(Faults(server_busy_rate=1.0, backoff_ms=1500))

            def steady() -> tuple[Samples, dict[str, Any]] | None:
                before = _scrape(port)
                status = _status(c)
                after = _scrape(port)
                still = (
                    _still(before) == _still(after)
                    and _value(after, "migrator_target_throttled_total") > 0
                )
                return (after, status) if still else None

            metrics, status = _poll("a scrape, `status` and a scrape that agree", steady)
            c.sim.set_faults(Faults())
        finally:
            out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-3000:]
        summary = json.loads(out)
        final = _status(c)

    accounts, messages = status["accounts"], status["messages"]
    for state in (
        "pending",
        "running",
        "synced",
        "verified",
        "failed",
        "excluded",
        "invalid",
        "vanished",
    ):
        assert _value(metrics, "migrator_accounts", state=state) == accounts[state], state
    assert _value(metrics, "migrator_accounts_in_scope") == accounts["total"] == 6
    assert _value(metrics, "migrator_accounts_migrated") == accounts["migrated"]
    assert _value(metrics, "migrator_accounts_interrupted") == accounts["interrupted"]
    assert _value(metrics, "migrator_campaign_messages_done") == messages["done"] > 0
    assert _value(metrics, "migrator_campaign_bytes_done") == messages["bytes"] > 0
    # what this process counted as it went equals what the ledger holds (the first run)
    assert _value(metrics, "migrator_messages_done_total") == messages["done"]
    assert _value(metrics, "migrator_bytes_done_total") == messages["bytes"]
    finished = sum(
        v for (name, _), v in metrics.items() if name == "migrator_accounts_finished_total"
    )
    assert (
        finished
        == _value(metrics, "migrator_accounts_finished_total", outcome="synced")
        == accounts["synced"]
        > 0
    )
    assert accounts["running"] > 0  # scraped in the middle of the run
    assert _value(metrics, "migrator_state_up") == 1
    # the target's side: requests timed, throttling answered, back-off waited, the ceiling
    assert _value(metrics, "migrator_target_request_seconds_count") > messages["done"] / 2
    assert 0 < _value(metrics, "migrator_target_throttled_total") <= summary["throttled"]
    assert (
        _value(metrics, "migrator_target_backoff_seconds_total") >= 1.5
    )  # at least one hinted wait
    # alone under the plan's ceiling of 16, a process of two threads takes the two it can use
    assert _value(metrics, "migrator_limiter_ceiling") == 2
    assert _value(metrics, "migrator_limiter_limit") == 1  # halved by the throttling
    assert 0 <= _value(metrics, "migrator_target_requests_in_flight") <= 1
    assert _value(metrics, "migrator_lease_takeovers_total") == 0
    [info] = [
        dict(labels)
        for (name, labels), v in metrics.items()
        if name == "migrator_worker_info" and v == 1
    ]
    assert (
        info["name"] == "mig-a"
        and info["worker"].startswith("mig-a#")
        and info["host"] == socket.gethostname()
    )
    # and the run, throttled for a while, finished everything
    assert (
        summary["accounts"]["synced"] == 6
        and summary["messages"]["done"] == final["messages"]["done"]
    )


def test_workers_serves_the_fleet_until_stopped(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "c", accounts=2, messages_per_folder=1) as c:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        assert c.cli("run", "--plan", str(c.plan_path), "--quiet").returncode == 0
        status = _status(c)
        fleet = json.loads(c.cli("workers", "--plan", str(c.plan_path), "--json").stdout)
        port = free_port()
        exporter = c.start(
            "workers",
            "--plan",
            str(c.plan_path),
            "--metrics-port",
            str(port),
            "--metrics-address",
            "127.0.0.1",
        )
        try:
            metrics = _poll("the exporter to answer", lambda: _scrape(port))
            assert (
                _value(metrics, "migrator_workers", state="stopped")
                == fleet["totals"]["stopped"]
                == 1
            )
            assert _value(metrics, "migrator_workers", state="running") == 0
            assert _value(metrics, "migrator_target_ceiling") == fleet["ceiling"] == 16
            assert (
                _value(metrics, "migrator_accounts_migrated") == status["accounts"]["migrated"] == 2
            )
            assert (
                _value(metrics, "migrator_campaign_messages_done") == status["messages"]["done"] > 0
            )
            # another command cannot take the port
            taken = c.cli(
                "run",
                "--plan",
                str(c.plan_path),
                "--metrics-port",
                str(port),
                "--metrics-address",
                "127.0.0.1",
            )
            assert (
                taken.returncode == 2
                and f"cannot serve metrics on 127.0.0.1:{port}" in taken.stderr
            ), taken.stderr
            assert "choose another --metrics-port" in taken.stderr
        finally:
            exporter.send_signal(signal.SIGTERM)
            out, err = exporter.communicate(timeout=30)
        assert exporter.returncode == 143, err
        assert f"at http://127.0.0.1:{port}/metrics" in err
        with (
            socket.socket() as s
        ):  # nobody listens on the port any more (closed scrapes may linger)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()


def test_a_run_without_the_option_serves_nothing(tmp_path: Path) -> None:
    """No port is opened unless asked: the option is opt-in (and prometheus_client is not even
    imported then, tests/test_layers.py)."""
    with build_campaign(tmp_path / "c", accounts=1, messages_per_folder=1) as c:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        out = c.cli("run", "--plan", str(c.plan_path), "--quiet")
        assert out.returncode == 0 and "metrics" not in out.stderr, out.stderr


def test_the_grafana_dashboard_shows_only_metrics_that_exist() -> None:
    """docs/grafana-dashboard.json is valid JSON whose queries name metrics documented in
    docs/metrics.md, and every metric documented there is one the code defines."""
    root = Path(__file__).resolve().parent.parent
    dashboard = json.loads((root / "docs" / "grafana-dashboard.json").read_text(encoding="utf-8"))
    doc = (root / "docs" / "metrics.md").read_text(encoding="utf-8")
    source = (root / "migrator" / "report" / "metrics.py").read_text(encoding="utf-8")

    documented = set(re.findall(r"^\| `(migrator_[a-z_]+)`", doc, re.M))
    assert len(documented) >= 20
    for name in documented:
        base = re.sub(r"_(total|count|sum|bucket)$", "", name)
        assert f'"{base}"' in source, (
            f"docs/metrics.md documents {name}, which the code does not define"
        )
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    for expr in exprs:
        for name in re.findall(r"\b(migrator_[a-z_]+)", expr):
            assert name in documented or re.sub(r"_(count|sum|bucket)$", "", name) in documented, (
                name,
                expr,
            )
