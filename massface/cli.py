"""The harness every command shares: one error path, one exit-status help text.

    @app.command(epilog=exit_help(InputError, ToolError))
    @command("massface-infer")
    def infer(...): ...

A :class:`~massface.errors.MassfaceError` raised inside the command is printed as
``prog: message`` on stderr and ends the process with the error's ``exit_code``. So are
an output that cannot be written (full disk, read-only or forbidden folder: exit 2) and
Ctrl-C / SIGTERM (exit 130, saying what was kept and how to resume). Every other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

from massface.errors import InputError, MassfaceError, RunInterruptedError, WriteError

F = TypeVar("F", bound=Callable[..., Any])


def fail(prog: str, exc: MassfaceError) -> NoReturn:
    """Print ``prog: message`` in red on stderr and exit with ``exc.exit_code``."""
    import typer
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(f"{prog}: {exc}", style="red", markup=False,
                                               highlight=False)
    raise typer.Exit(exc.exit_code) from None


#: OSErrors that mean "this output cannot be written here" (a full disk, a read-only or
#: forbidden folder, a path under a file), not a bug: reported as one line, exit 2.
WRITE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
                errno.EROFS: "read-only file system", errno.ENOTDIR: "a parent is not a folder",
                errno.EISDIR: "is a folder", errno.EFBIG: "file too large",
                errno.ENAMETOOLONG: "file name too long"}

DEFAULT_RESUME = "rerun the same command to continue"


def _os_error(exc: OSError, resume: str) -> InputError:
    """One line for an OSError of :data:`WRITE_ERRNOS`: the path, the problem, the fix."""
    where = exc.filename if exc.filename is not None else "output"
    if exc.filename2 is not None:
        where = f"{where} -> {exc.filename2}"
    what = WRITE_ERRNOS[exc.errno]  # type: ignore[index]
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = (f"free some space and {resume} (nothing complete-looking was left; finished "
               "parts are kept)")
    else:
        fix = "choose a place you can write to (an existing folder, writable by you)"
    return WriteError(f"{where}: {what}; {fix}")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the command as Ctrl-C does (``KeyboardInterrupt``: the same clean-up,
    the same message, exit 130); only in the main thread and over the default handler."""
    installed, old = False, None
    if threading.current_thread() is threading.main_thread():
        old = signal.getsignal(signal.SIGTERM)
        if old is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _raise_interrupt)
            installed = True
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGTERM, old)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def command(prog: str, resume: str = DEFAULT_RESUME) -> Callable[[F], F]:
    """Decorate a typer command (or callback) so that errors end as :func:`fail` says.

    Also: an OSError of :data:`WRITE_ERRNOS` (full disk, unwritable output) is a one-line
    exit 2, and Ctrl-C / SIGTERM a one-line exit 130 that says ``resume``: what was kept
    and how to go on (``OUT`` in it is replaced by the command's ``out`` option).
    """
    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            out = kwargs.get("out")
            hint = resume if out is None else resume.replace("OUT", str(out))
            try:
                with _sigterm_as_interrupt():
                    return fn(*args, **kwargs)
            except MassfaceError as exc:
                fail(prog, exc)
            except OSError as exc:
                if exc.errno not in WRITE_ERRNOS:
                    raise
                fail(prog, _os_error(exc, hint))
            except KeyboardInterrupt:
                fail(prog, RunInterruptedError(f"interrupted; {hint}"))

        return wrapper  # type: ignore[return-value]

    return decorate


def exit_help(*errors: type[MassfaceError], done: str = "done") -> str:
    """``Exit status: 0 done; 2 bad input ...`` from the error classes a command raises."""
    by_code: dict[int, str] = {}
    for err in errors:
        by_code.setdefault(err.exit_code, err.meaning)
    parts = [f"0 {done}"] + [f"{code} {text}" for code, text in sorted(by_code.items())]
    return "\b\nExit status: " + "; ".join(parts) + "."
