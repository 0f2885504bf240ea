"""The container recipe and the systemd unit in docs/multihost.md stay right: the unit passes
`systemd-analyze verify`, and both start migrator with options it has.

No container engine runs where this project is tested, so the Dockerfile cannot be built
here; what can be checked is that it is made of Dockerfile instructions, that its exec-form
lines are valid JSON, and that the command it runs is one migrator accepts. The containers'
behaviour is tested in tests/test_multihost.py (PID and UTS namespaces of their own).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

DOC = (Path(__file__).resolve().parent.parent / "docs" / "multihost.md").read_text(encoding="utf-8")
MIGRATOR = Path(sys.executable).parent / "migrator"
DOCUMENTED = "/opt/migrator/venv/bin/migrator"


def _block(language: str) -> str:
    [block] = re.findall(rf"^```{language}\n(.*?)^```", DOC, re.M | re.S)
    return str(block)


def _assert_migrator_accepts(argv: list[str]) -> None:
    """`argv` (migrator's arguments) names a command and options that exist."""
    command, *rest = argv
    help_text = subprocess.run(
        [str(MIGRATOR), command, "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    for option in (a for a in rest if a.startswith("--")):
        assert re.search(rf"(^|\s){re.escape(option)}\b", help_text), (
            f"`migrator {command}` has no {option}"
        )


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, (
        "systemd-analyze is missing: scripts/test-services.sh installs the systemd package"
    )
    unit = _block("ini")
    assert DOCUMENTED in unit
    # the documented install path does not exist here: point it at this test's migrator
    (tmp_path / "migrator-worker@.service").write_text(
        unit.replace(DOCUMENTED, str(MIGRATOR)), encoding="utf-8"
    )
    instance = tmp_path / "migrator-worker@ife.service"
    instance.write_text(unit.replace(DOCUMENTED, str(MIGRATOR)), encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", str(instance)], capture_output=True, text=True, timeout=120
    )
    # a key systemd does not know or a value it cannot parse is only a warning: none allowed
    complaints = [
        line for line in (result.stdout + result.stderr).splitlines() if "migrator-worker" in line
    ]
    assert result.returncode == 0 and complaints == [], result.stdout + result.stderr
    [exec_start] = re.findall(r"^ExecStart=(.*)$", unit, re.M)
    program, *argv = shlex.split(exec_start.replace("%i", "ife"))
    assert program == DOCUMENTED
    _assert_migrator_accepts(argv)


def test_a_broken_unit_is_caught(tmp_path: Path) -> None:
    """The check above would see a mistake: a misspelt key, a value systemd cannot parse."""
    analyze = shutil.which("systemd-analyze")
    assert analyze
    unit = (
        _block("ini")
        .replace(DOCUMENTED, str(MIGRATOR))
        .replace("Restart=always", "Restart=sometimes")
    )
    broken = tmp_path / "migrator-worker@ife.service"
    broken.write_text(unit.replace("KillSignal=", "KilSignal="), encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", str(broken)], capture_output=True, text=True, timeout=120
    )
    output = result.stdout + result.stderr
    assert "KilSignal" in output and "sometimes" in output


INSTRUCTIONS = {"FROM", "RUN", "COPY", "ADD", "USER", "WORKDIR", "ENV", "EXPOSE", "ENTRYPOINT", "CMD",
                "STOPSIGNAL", "LABEL", "ARG", "VOLUME", "HEALTHCHECK", "SHELL", "ONBUILD"}  # fmt: skip


def test_the_container_recipe_runs_a_command_migrator_has() -> None:
    recipe = _block("dockerfile")
    lines = re.sub(r"\\\n\s*", " ", recipe).splitlines()  # continuation lines joined
    instructions = [
        line.split(None, 1) for line in lines if line.strip() and not line.lstrip().startswith("#")
    ]
    assert {word for word, _ in instructions} <= INSTRUCTIONS, instructions
    assert instructions[0][0] == "FROM"
    exec_form = {
        word: json.loads(rest) for word, rest in instructions if word in ("ENTRYPOINT", "CMD")
    }
    assert exec_form["ENTRYPOINT"] == ["migrator"]
    _assert_migrator_accepts(exec_form["CMD"])
    assert (
        "USER migrator" in recipe and "PGPASSWORD" not in recipe
    )  # no root, no secret in the image
