"""Shared fixtures: real servers (slapd, Dovecot, PostgreSQL) and the EWS simulator."""

pytest_plugins = [
    "tests.fixtures.slapd",
    "tests.fixtures.ews",
    "tests.fixtures.store",
    "tests.fixtures.sources",
    "tests.fixtures.dovecot",
    "tests.fixtures.targets",
    "tests.fixtures.campaign",
    "tests.fixtures.reports",
]
