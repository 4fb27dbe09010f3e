"""The harness every command shares: one error path, one exit-status help text.

    @app.command(epilog=exit_help(InputError, ToolError))
    @command("massface-infer")
    def infer(...): ...

A :class:`~massface.errors.MassfaceError` raised inside the command is printed as
``prog: message`` on stderr and ends the process with the error's ``exit_code``; every
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

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
