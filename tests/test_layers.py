"""The architecture holds: imports point down the layers, each library has one home."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "migrator"

# library -> the only package (prefix) allowed to import it
HOMES = {
    "ldap3": ("migrator.adapters.directory",),
    "exchangelib": ("migrator.adapters.targets.ews",),
    "sqlalchemy": ("migrator.store",),
    "alembic": ("migrator.store",),
    "click": ("migrator.cli",),
    "rich": ("migrator.report",),
    "tenacity": ("migrator.retry",),
    "imapclient": ("migrator.adapters.sources.imap", "migrator.adapters.targets.imap"),
    "sievelib": ("migrator.adapters.sieve",),
    "prometheus_client": ("migrator.report.metrics",),
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_each_library_has_one_home() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        for library in _imports(path) & HOMES.keys():
            if not module.startswith(HOMES[library]):
                offenders.append(f"{module} imports {library} (home: {HOMES[library][0]})")
    assert offenders == []


def test_import_linter_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), str(PACKAGE.parent / "pyproject.toml")],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken" in result.stdout


def test_commands_that_do_not_serve_metrics_do_not_load_prometheus_client() -> None:
    """The metrics endpoint is opt-in: without --metrics-port, `run` and `workers` start as
    fast as before (prometheus_client is imported by report/metrics.py, and only from the
    CLI's code paths for the option)."""
    code = (
        "import sys\n"
        "import migrator.cli.main, migrator.commands.run, migrator.commands.workers, migrator.engine.runner\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"
