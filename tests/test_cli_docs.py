"""docs/cli.md is generated from --help (`make docs`); this fails when it is stale."""

from __future__ import annotations

from pathlib import Path

from migrator.cli.docgen import generate
from migrator.cli.main import cli

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_cli_reference_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == generate(), (
        "docs/cli.md is stale: run `make docs` and commit it"
    )


def test_cli_reference_covers_every_command() -> None:
    text = generate()
    for name, command in cli.commands.items():
        if not command.hidden:
            assert f"## migrator {name}\n" in text
    for name in ("report", "show", "events", "routing"):
        assert f"## migrator {name}\n" in text
