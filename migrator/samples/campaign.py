"""A sample campaign on disk, as a context manager: tests, benchmarks and `make demo` share it.

A `Campaign` is a folder with a plan file, the secrets its plan names (given to every command
through the environment, never written anywhere), and the servers started for it (an EWS
simulator, a proxy, ...). `cli()` and `start()` run `python -m migrator` the way an operator
does; leaving the `with` block stops what `on_close()` registered, last first, also when the
block fails. Subclasses add what they know of their servers (tests/fixtures/campaign.py
compares the target with the source).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self


@dataclass
class Campaign:
    root: Path
    plan_path: Path
    secrets: dict[str, str] = field(default_factory=dict, kw_only=True)
    _closing: ExitStack = field(default_factory=ExitStack, init=False, repr=False, compare=False)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **self.secrets}

    @staticmethod
    def argv(*args: str) -> list[str]:
        return [sys.executable, "-m", "migrator", *args]

    def cli(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float | None = 300,
        capture: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run one migrator command in the campaign's folder and wait for it; `capture=False`
        leaves its output on the terminal (the demo)."""
        return subprocess.run(
            self.argv(*args),
            cwd=self.root,
            env=env or self.env,
            capture_output=capture,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start one migrator command in the campaign's folder, its output on pipes."""
        return subprocess.Popen(
            self.argv(*args),
            cwd=self.root,
            env=env or self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def on_close(self, stop: Callable[..., Any], *args: Any) -> None:
        """Call `stop(*args)` when the campaign closes (after what was registered later)."""
        self._closing.callback(stop, *args)

    def close(self) -> None:
        self._closing.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
