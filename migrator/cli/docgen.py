"""Print the CLI reference (docs/cli.md) from the commands' own --help: `make docs`."""

from __future__ import annotations

import click

from migrator.cli.main import cli
from migrator.cli.reports import register

_WIDTH = 100  # fixed, so the text does not depend on the terminal it is generated in


def _help(
    command: click.Command, name: str, parent: click.Context | None
) -> tuple[str, click.Context]:
    # the command's own context_settings (e.g. -h for --help); subcommands inherit the rest
    settings = {**command.context_settings, "terminal_width": _WIDTH, "max_content_width": _WIDTH}
    ctx = click.Context(command, info_name=name, parent=parent, **settings)
    return command.get_help(ctx), ctx


def generate(group: click.Group = cli) -> str:
    register(group)
    top, ctx = _help(group, "migrator", None)
    out = [
        "# CLI reference",
        "",
        "Generated from `migrator --help` by `make docs` (`python -m migrator.cli.docgen`); do "
        "not edit.",
        "A test fails when this file is stale.",
        "",
        "```text",
        top.rstrip(),
        "```",
        "",
    ]
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        text, _ = _help(command, name, ctx)
        out += [f"## migrator {name}", "", "```text", text.rstrip(), "```", ""]
    return "\n".join(out)


def main() -> None:
    click.echo(generate(), nl=False)


if __name__ == "__main__":
    main()
