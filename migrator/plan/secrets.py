"""Secrets come from an environment variable or a file named in the plan, never from the plan."""

from __future__ import annotations

import os
from pathlib import Path

from migrator.model.errors import SecretError


def read_secret(
    what: str, *, env: str | None, file: str | None, key: str = "password_env"
) -> str | None:
    """The secret named by `env` or `file` (env wins), or None when the plan names neither.

    `what` says whose secret it is ("directory password") and `key` which plan key names the
    variable ("[directory] password_env"), for the error message. Neither the secret nor the
    variable's name appears in any message: a plan may hold the secret in place of the name.
    """
    if env:
        value = os.environ.get(env)
        if value is None or value == "":
            raise SecretError(
                f"{what}: the environment variable named by {key} is not set",
                hint=f"export that variable before running, or use {key.removesuffix('_env')}_file "
                f"in the plan ({key} holds a variable's name, never the secret itself)",
            )
        return value
    if file:
        path = Path(file).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SecretError(
                f"{what}: secret file {path} does not exist",
                hint="create it (mode 0600) with the secret on its first line",
            ) from None
        except OSError as exc:
            raise SecretError(
                f"{what}: cannot read secret file {path}: {exc.strerror}",
                hint="check the file's permissions",
            ) from None
        value = text.splitlines()[0] if text else ""
        if not value:
            raise SecretError(f"{what}: secret file {path} is empty")
        return value
    return None
