"""Run massface commands in-process (typer's CliRunner) in tests."""

from __future__ import annotations


def invoke_ok(*args: object):
    """Run ``massface-infer`` in-process with ``args``; it must succeed."""
    from typer.testing import CliRunner

    from massface.infer.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result
