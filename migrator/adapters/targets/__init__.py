"""Mail targets: where migrated messages go. `open_target` builds one from the plan."""

from __future__ import annotations

from collections.abc import Mapping

from migrator.model.errors import PlanError
from migrator.model.plan import TargetSettings

from .base import ExcludedFolderError, KeyedItems, Target, TargetFolder

__all__ = ["ExcludedFolderError", "KeyedItems", "Target", "TargetFolder", "open_target"]


def open_target(
    settings: TargetSettings,
    *,
    secrets: Mapping[str, str],
    max_connections: int = 4,
    plan_file: str = "plan",
) -> Target:
    """The Target for the plan's [target] section.

    `secrets` holds what the plan's *_env/*_file entries resolved to: "password" and/or
    "client_secret". `max_connections` caps concurrent requests to the server (use the run's
    target_concurrency). The target address of each mailbox is passed to every call; the
    [target] address template is applied at discovery.
    """
    kind = settings.kind.lower()
    if kind == "ews":
        from .ews import EwsTarget  # exchangelib is imported only when an EWS target is used

        return EwsTarget(
            settings, secrets=secrets, max_connections=max_connections, plan_file=plan_file
        )
    if kind == "imap":
        from .imap import open_imap_target  # imported only when an IMAP target is used

        target: Target = open_imap_target(
            settings, secrets=secrets, max_connections=max_connections
        )
        return target
    raise PlanError(
        plan_file,
        "target.kind",
        f"unknown target kind {settings.kind!r}",
        hint='use kind = "ews" or kind = "imap"',
    )
