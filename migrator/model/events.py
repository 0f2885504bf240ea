"""What an event of the state's log records: `events.kind`.

The values are what the state database stores and what `events`, `show` and reports print:
never change one. Store code writes them (store/events.py); commands read them back.
"""

from __future__ import annotations

import enum


class EventKind(enum.StrEnum):
    # --- discovery (store/discovery.py): one per discovery, plan-wide, its counts in detail
    DISCOVERY = "discovery"
    SCOPE_CHANGED = "scope_changed"  # in scope, excluded or invalid, now another of them
    VANISHED = "vanished"  # no longer in the directory
    REAPPEARED = "reappeared"  # back in the directory after it vanished
    # --- a worker's lease on an account (store/claims.py)
    CLAIMED = "claimed"
    TAKEN_OVER = "taken-over"  # claimed from a worker whose lease had expired
    RELEASED = "released"  # a pass ended: synced, failed or back to pending
    INTERRUPTED = "interrupted"  # stopped mid-pass, or a claim whose commit went unanswered
    RESET = "reset"  # `migrator reset`: everything migrated for it forgotten
    # --- other commands
    VERIFIED = "verified"  # `verify` found every folder complete
    VERIFY_MISMATCH = "verify-mismatch"  # `verify` found a folder that disagrees
    DEDUPE = "dedupe"  # `dedupe --apply` deleted duplicate copies (counts in detail)
    # --- cut-over (store/cutover.py): the account's route moved
    SWITCHED = "switched"  # its mail goes to the target
    CUT_OVER = "cut-over"  # the final delta pass after the switch is done
    SWITCHED_BACK = "switched-back"  # a rollback took it out of the transport map
