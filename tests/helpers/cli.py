"""Run massface commands in-process in tests: the one CLI runner every test uses.

:func:`run_cli` is typer's ``CliRunner().invoke`` with the arguments turned into strings
(paths, numbers); :func:`invoke_ok` runs ``massface-infer`` and requires success.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def run_cli(app: Any, args: Iterable[object] = (), **kwargs: Any) -> Any:
    """Run the typer ``app`` with ``args`` in this process; typer's ``Result``
    (``exit_code``, ``output``). ``kwargs`` go to ``CliRunner.invoke`` (``input``,
    ``env``, ``prog_name``, ...)."""
    from typer.testing import CliRunner

    return CliRunner().invoke(app, [str(a) for a in args], **kwargs)


def invoke_ok(*args: object) -> Any:
    """Run ``massface-infer`` in-process with ``args``; it must succeed."""
    from massface.infer.cli import app

    result = run_cli(app, args)
    assert result.exit_code == 0, result.output
    return result
