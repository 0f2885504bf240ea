"""Which state database a command uses, and opening it."""

from __future__ import annotations

import os

from migrator.model.plan import Plan
from migrator.store import Store, open_store

DEFAULT_STATE_URL = "sqlite:///state/migrator.db"


def state_url_for(plan: Plan | None, explicit: str | None = None) -> str:
    """--state wins, then $MIGRATOR_STATE, then the plan's [state] url, then the default."""
    if explicit:
        return explicit
    env = os.environ.get("MIGRATOR_STATE")
    if env:
        return env
    if plan is not None and plan.state_url:
        return plan.state_url
    return DEFAULT_STATE_URL


def open_state(plan: Plan | None, explicit: str | None = None) -> Store:
    return open_store(state_url_for(plan, explicit))
