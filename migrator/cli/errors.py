"""The one error handler: every command's failure ends here, with a message and an exit code."""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable
from typing import Any, TypeVar

import click

from migrator.model.errors import EXIT_FATAL, EXIT_PARTIAL, EXIT_SIGINT, EXIT_SIGTERM, MigratorError
from migrator.report.console import error_console, safe
from migrator.store.urls import mask_url

F = TypeVar("F", bound=Callable[..., Any])


class _Terminated(Exception):
    pass


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated()


def handle_errors(func: F) -> F:
    """Turn our exceptions into `error: ...` / `hint: ...` on stderr and the right exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        err = error_console()
        try:
            return func(*args, **kwargs)
        except MigratorError as exc:
            err.print(f"[red]error:[/red] {safe(exc.message, 2000)}")
            if exc.hint:
                err.print(f"hint: {safe(exc.hint, 2000)}")
            raise SystemExit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted; the state is consistent, run the command again to resume")
            raise SystemExit(EXIT_SIGINT) from None
        except _Terminated:
            err.print("terminated; the state is consistent, run the command again to resume")
            raise SystemExit(EXIT_SIGTERM) from None
        except click.exceptions.Abort:  # Ctrl-C or end of input at a prompt: nothing was done
            err.print("aborted; nothing changed")
            raise SystemExit(EXIT_PARTIAL) from None
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # a bug: say so plainly, without a secret-bearing repr
            err.print(
                f"[red]internal error:[/red] {type(exc).__name__}: {safe(mask_url(str(exc)), 500)}\n"
                "hint: this is a bug in migrator; run with MIGRATOR_DEBUG=1 for the traceback "
                "and report it"
            )
            import os

            if os.environ.get("MIGRATOR_DEBUG"):
                raise
            raise SystemExit(EXIT_FATAL) from None
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]
