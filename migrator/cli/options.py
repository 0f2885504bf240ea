"""Options several commands share, defined once so their wording stays the same everywhere."""

from __future__ import annotations

from pathlib import Path

import click

from migrator.model import limits
from migrator.model.limits import Bound


def bounded(bound: Bound) -> click.IntRange:
    """A whole-number option with the same bounds as the plan key it overrides."""
    return click.IntRange(int(bound.low), int(bound.high))


workers_type = bounded(limits.WORKERS)

plan_option = click.option(
    "--plan",
    "plan_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The plan file (TOML), e.g. plans/example.toml.",
)
state_option = click.option(
    "--state",
    "state_url",
    metavar="URL",
    help="State database URL; a relative sqlite:/// path starts at the current directory "
    "(default: $MIGRATOR_STATE, else the plan's [state] url, else state/migrator.db in the plan's "
    "folder).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
log_format_option = click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help=(
        "json: one JSON object per line on stdout (for log shippers), the last one the "
        "run_finished summary."
    ),
)
worker_name_option = click.option(
    "--worker-name",
    envvar="MIGRATOR_WORKER_NAME",
    metavar="NAME",
    help=(
        "Show this worker as NAME instead of host:pid ($MIGRATOR_WORKER_NAME); its id stays unique."
    ),
)
metrics_port_option = click.option(
    "--metrics-port",
    type=bounded(limits.PORT),
    metavar="PORT",
    help="Serve Prometheus metrics on this port (/metrics; docs/metrics.md).",
)
metrics_address_option = click.option(
    "--metrics-address",
    default="",
    metavar="ADDR",
    help="Serve the metrics on this address only (default: all interfaces).",
)
