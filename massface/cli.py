"""The harness every command shares: one error path, one exit-status help text, one way
to have subcommands.

    @app.command(epilog=exit_help(InputError, ToolError))
    @command("massface-infer")
    def infer(...): ...

A :class:`~massface.errors.MassfaceError` raised inside the command is printed as
``prog: message`` on stderr and ends the process with the error's ``exit_code``; every
other exception is a bug and keeps its traceback.

A command with positional arguments and subcommands (``massface-eval INPUTS...`` and
``massface-eval compare REF CANDIDATE``) is a typer app of class
:class:`MainAndSubcommands`: its subcommands are typer commands, the one named
:data:`MAIN` runs when the first argument names no other.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from typer.core import TyperGroup

from massface.errors import MassfaceError

F = TypeVar("F", bound=Callable[..., Any])


def fail(prog: str, exc: MassfaceError) -> NoReturn:
    """Print ``prog: message`` in red on stderr and exit with ``exc.exit_code``."""
    import typer
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(f"{prog}: {exc}", style="red", markup=False,
                                               highlight=False)
    raise typer.Exit(exc.exit_code) from None


def command(prog: str) -> Callable[[F], F]:
    """Decorate a typer command (or callback) so that errors end as :func:`fail` says."""
    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except MassfaceError as exc:
                fail(prog, exc)

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
