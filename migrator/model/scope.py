"""Where discovery puts an account: in the campaign's scope, or out of it and why.

`accounts.scope` stores the value; `accounts.reason` the discovery's reason code for one out of
scope (see commands/classify.py). Each scope holds what the operator does about an account in it;
{plan} (the plan file) is filled in by `advice()`.
"""

from __future__ import annotations

import enum


class Scope(enum.StrEnum):
    """A scope and its advice: `Scope.EXCLUDED == "excluded"`, `Scope.EXCLUDED.advice`."""

    _value_: str
    advice: str | None

    def __new__(cls, value: str, advice: str | None = None) -> Scope:
        member = str.__new__(cls, value)
        member._value_ = value
        member.advice = advice
        return member

    IN_SCOPE = "in_scope"  # migrated by `run`
    EXCLUDED = (
        "excluded",
        "the plan's [directory] filter leaves it out: change the filter (or the entry), "
        "then `migrator discover --plan {plan}`",
    )
    INVALID = (
        "invalid",
        "fix its directory entry (the reason says what is wrong), then `migrator discover --plan "
        "{plan}`",
    )
    # discovered before, no longer in the directory: its progress and ledger are kept
    VANISHED = (
        "vanished",
        "it is no longer found in the directory; `migrator discover --plan {plan}` brings it back "
        "once it is",
    )


def advice(scope: str, plan_file: str) -> str | None:
    """What to do about an account in `scope` (None for one in scope, or a scope this version
    does not know)."""
    try:
        text = Scope(scope).advice
    except ValueError:
        return None
    return text.format(plan=plan_file) if text else None


class DiscoveryReason(enum.StrEnum):
    """`accounts.reason`: why discovery left an entry out of scope. docs/discovery.md explains
    each one and what to do; keep it in step."""

    # excluded
    NOT_SELECTED = "not-selected"  # the plan's filter does not select the person
    NO_ADDRESS = "no-address"  # no value in the address attribute
    # invalid
    UNPARSABLE_ADDRESS = "unparsable-address"
    UNPARSABLE_TARGET = "unparsable-target-address"
    DUPLICATE_ADDRESS = "duplicate-address"  # shared with other selected entries: all held back
    UNSAFE_PATH = "unsafe-path"  # a value would lead the mailbox path out of the source root
    UNSAFE_LOGIN = "unsafe-login"
    MISSING_ATTRIBUTE = "missing-attribute"  # a template needs an attribute the entry lacks
    TOO_LONG = "too-long"  # the batch name
