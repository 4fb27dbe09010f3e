"""The harness every command shares: one error path, one exit-status help text, one way
to have subcommands.

    @app.command(epilog=exit_help(InputError, ToolError))
    @command("massface-infer")
    def infer(...): ...

A :class:`~massface.errors.MassfaceError` raised inside the command is printed as
``prog: message`` on stderr and ends the process with the error's ``exit_code``. So are
an output that cannot be written (full disk, read-only or forbidden folder: exit 2) and
Ctrl-C / SIGTERM (exit 130, saying what was kept and how to resume). Every other
exception is a bug and keeps its traceback.

A command with positional arguments and subcommands (``massface-eval INPUTS...`` and
``massface-eval compare REF CANDIDATE``) is a typer app of class
:class:`MainAndSubcommands`: its subcommands are typer commands, the one named
:data:`MAIN` runs when the first argument names no other.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn, TypeVar

from typer.core import TyperGroup

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
        fix = ("check the path and its permissions; an output needs a folder you can "
               "write to")
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


MAIN = "main"  # the command that runs when no subcommand is named (hidden in the listing)


class MainAndSubcommands(TyperGroup):
    """A typer group whose :data:`MAIN` command is the command line itself: ``prog ARGS``
    runs it, ``prog SUB ARGS`` runs the subcommand ``SUB``. (A click group cannot take the
    main command's positional arguments itself: it would read ``SUB`` as one of them.)"""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             **extra: Any) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        if args and args[0] in self.commands and args[0] != MAIN:
            return super().main(args, prog_name=prog_name, **extra)
        prog = prog_name or os.path.basename(sys.argv[0])
        main = self.commands[MAIN]
        subs = [n for n in self.commands if n != MAIN]
        note = "Subcommands: " + "; ".join(f"{prog} {n} ... ({prog} {n} --help)" for n in subs)
        if subs and note not in (main.epilog or ""):
            main.epilog = f"{main.epilog}\n\n{note}" if main.epilog else note
        return main.main(args, prog_name=prog, **extra)
