"""The one error handler: every command's failure ends here, with a message and an exit code."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import select
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from migrator.model.errors import (
    EXIT_FATAL,
    EXIT_PARTIAL,
    EXIT_SIGINT,
    EXIT_SIGPIPE,
    EXIT_SIGTERM,
    MigratorError,
)
from migrator.report.console import error_console, safe
from migrator.store.database.urls import mask_url

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
            return _call_and_flush(func, args, kwargs)
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
        except OSError as exc:
            if exc.errno == errno.EPIPE and output_closed():
                end_quietly_on_closed_pipe()
            _internal_error(err, exc)
        except Exception as exc:
            _internal_error(err, exc)
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]


def _call_and_flush(func: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """Run the command and flush what it printed while a closed pipe can still be handled here
    (at interpreter exit it would only be reported as an ignored exception)."""
    try:
        result = func(*args, **kwargs)
    except SystemExit:
        sys.stdout.flush()
        raise
    sys.stdout.flush()
    return result


def output_closed() -> bool:
    """True when the reader of standard output or error went away (`migrator status | head`):
    the pipe then reports an error condition to poll(2)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
        except (AttributeError, ValueError, OSError):  # not a real file (tests capture output)
            continue
        poller = select.poll()
        poller.register(fd, 0)  # POLLERR and POLLHUP are always reported
        if any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0)):
            return True
    return False


def end_quietly_on_closed_pipe() -> NoReturn:
    """Exit as a Unix tool killed by SIGPIPE looks to its shell (141), saying nothing: whoever
    reads the output has all they wanted. Both streams go to /dev/null first, so that the
    interpreter's own final flush finds nothing to complain about."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            os.dup2(devnull, stream.fileno())
    raise SystemExit(EXIT_SIGPIPE) from None


def _internal_error(err: Any, exc: Exception) -> NoReturn:
    # a bug: say so plainly, without a secret-bearing repr
    err.print(
        f"[red]internal error:[/red] {type(exc).__name__}: {safe(mask_url(str(exc)), 500)}\n"
        "hint: this is a bug in migrator; run with MIGRATOR_DEBUG=1 for the traceback "
        "and report it"
    )
    if os.environ.get("MIGRATOR_DEBUG"):
        raise exc
    raise SystemExit(EXIT_FATAL) from None
