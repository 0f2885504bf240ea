"""Postfix, the mail server a campaign moves away from: its commands, its transport map file
and its address resolver, for `migrator cutover` (commands/cutover.py)."""

from migrator.adapters.postfix.instance import Postfix
from migrator.adapters.postfix.map_file import (
    MapText,
    install_map,
    map_key_problem,
    read_map,
)
from migrator.adapters.postfix.resolver import Resolution, Resolver

__all__ = [
    "MapText",
    "Postfix",
    "Resolution",
    "Resolver",
    "install_map",
    "map_key_problem",
    "read_map",
]
