"""One Postfix instance, driven through its own commands (postconf, postmap, postfix, postqueue).

Every command gets `-c DIR` when the plan names a config directory, so one of several
instances (postmulti) is addressed and never the default one by mistake. The command words
come from the plan ([cutover] postmap = "sudo -n /usr/sbin/postmap", ...). A command that
fails is a PostfixError naming the command line and what Postfix printed.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from migrator.model.errors import PostfixError
from migrator.model.plan import CutoverSettings

COMMAND_TIMEOUT = 120.0  # one postmap of a large map, or a reload, takes well under this
_SHOWN = 1500  # characters of a command's output quoted in an error


class Postfix:
    def __init__(self, settings: CutoverSettings) -> None:
        self.settings = settings
        self.config_directory = settings.config_directory

    @property
    def instance(self) -> str:
        """How the instance is named in messages."""
        return f"Postfix instance {self.config_directory}" if self.config_directory else "Postfix"

    def _words(self, command: Sequence[str], *args: str) -> list[str]:
        config = ["-c", self.config_directory] if self.config_directory else []
        return [*command, *config, *args]

    def _run(
        self,
        command: Sequence[str],
        *args: str,
        stdin: str | None = None,
        what: str,
        ok: tuple[int, ...] = (0,),
    ) -> str:
        words = self._words(command, *args)
        shown = " ".join(words)
        try:
            done = subprocess.run(
                words,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                env={**os.environ, "LC_ALL": "C"},
                check=False,
            )
        except FileNotFoundError:
            raise PostfixError(
                f"{what}: {words[0]} not found",
                hint="install Postfix here, or name the command in the plan's [cutover] (e.g. "
                f"{command[-1]} = "
                f'"/usr/sbin/{command[-1]}")',
            ) from None
        except subprocess.TimeoutExpired:
            raise PostfixError(
                f"{what}: `{shown}` did not finish within {COMMAND_TIMEOUT:.0f} s"
            ) from None
        except OSError as exc:
            raise PostfixError(f"{what}: `{shown}` could not run: {exc.strerror}") from None
        if done.returncode not in ok or (done.returncode != 0 and done.stderr.strip()):
            said = (done.stderr.strip() or done.stdout.strip() or "(nothing)")[-_SHOWN:]
            raise PostfixError(
                f"{what}: `{shown}` failed (exit {done.returncode}): {said}",
                hint="fix what Postfix says, then run the same migrator command again",
            )
        return done.stdout

    # --- configuration -----------------------------------------------------------------------
    def parameters(self, *names: str) -> dict[str, str]:
        """Parameter values as the instance reads them, with $names expanded (postconf -x)."""
        out = self._run(
            self.settings.postconf, "-x", *names, what=f"reading {self.instance}'s main.cf"
        )
        values: dict[str, str] = {}
        for line in out.splitlines():
            name, sep, value = line.partition(" = ")
            if sep:
                values[name.strip()] = value.strip()
            elif line.endswith(" ="):
                values[line[:-2].strip()] = ""
        return values

    # --- maps --------------------------------------------------------------------------------
    def postmap(self, map_type: str, path: Path) -> None:
        """Build the indexed file (path.db) from the text file `path`."""
        self._run(
            self.settings.postmap, f"{map_type}:{path}", what=f"building the transport map {path}"
        )

    def lookup(self, map_type: str, path: Path, keys: Iterable[str]) -> dict[str, str]:
        """What the built map answers for each key (postmap -q - reads keys from stdin and
        prints `key<TAB>value` for those it finds); one process for any number of keys."""
        wanted = list(keys)
        if not wanted:
            return {}
        out = self._run(
            self.settings.postmap, "-q", "-", f"{map_type}:{path}",
            stdin="".join(f"{k}\n" for k in wanted),
            what=f"looking addresses up in {path}", ok=(0, 1),  # 1: none of them is in the map
        )  # fmt: skip
        found: dict[str, str] = {}
        for line in out.splitlines():
            key, sep, value = line.partition("\t")
            if sep:
                found[key] = value
        return found

    # --- the running system ------------------------------------------------------------------
    def reload(self) -> None:
        self._run(self.settings.postfix, "reload", what=f"reloading {self.instance}")

    def queued_recipients(self, queues: Sequence[str] = ("active",)) -> dict[str, int]:
        """Messages per recipient address in these queues (postqueue -j, Postfix 3.1 and later)."""
        out = self._run(self.settings.postqueue, "-j", what=f"listing {self.instance}'s queue")
        counts: dict[str, int] = {}
        for line in out.splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                raise PostfixError(
                    f"postqueue -j printed a line that is not JSON: {line[:200]!r}"
                ) from None
            if entry.get("queue_name") not in queues:
                continue
            for recipient in entry.get("recipients") or []:
                address = str(recipient.get("address", "")).lower()
                counts[address] = counts.get(address, 0) + 1
        return counts
