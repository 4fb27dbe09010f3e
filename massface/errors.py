"""The one error model: every failure massface reports is a :class:`MassfaceError`.

Each class carries the exit status its commands end with and a short phrase for the
commands' ``--help`` (see :func:`massface.cli.exit_help`). Commands catch
:class:`MassfaceError` in one place (:func:`massface.cli.command`), print
``prog: message`` (the message names the file and what is wrong) and exit with the
class's status; anything else is a bug and keeps its traceback.

- :class:`InputError` (exit 2): bad input: a file, option or config massface refuses;
- :class:`VerificationError` (3): an artifact failed its proof (parity, conversion,
  freezing), a training run's loss went non-finite, or a model's embeddings did;
- :class:`ToolError` (4): an external tool or runtime failed (ATC, pyACL);
- :class:`ToolMissingError` (5): a required external tool is not installed;
- :class:`RunInterruptedError` (130): stopped by Ctrl-C / SIGTERM (work saved).
"""

from __future__ import annotations

from typing import ClassVar

EXCERPT_CHARS = 80


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``repr(text)``, cut to ``limit`` characters with the full length said: a message
    quotes a bad line or token, never a whole (possibly huge, one-line) file."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


class MassfaceError(Exception):
    """Base of every error massface reports to its user (never a bug)."""

    exit_code: ClassVar[int] = 1
    meaning: ClassVar[str] = "failed"


class InputError(MassfaceError, ValueError):
    """Input that massface refuses: the message names the file and the problem."""

    exit_code = 2
    meaning = "bad input (the message names the file and what is wrong)"


class WriteError(InputError):
    """An output that cannot be written: a full disk, a read-only or forbidden folder, a
    path under a file. The message names the path and the fix."""

    meaning = "bad input, or an output that cannot be written (full disk, permissions)"


class VerificationError(MassfaceError):
    """A produced artifact did not pass its check; nothing that looks finished is left."""

    exit_code = 3
    meaning = "an artifact failed verification (conversion, freezing, parity); nothing is kept"


class FreezeError(VerificationError):
    """The frozen graph is not a clean inference graph."""


class ConversionError(VerificationError):
    """tf2onnx could not convert the graph, or the result is not valid standard ONNX."""


class ParityError(VerificationError):
    """An exported artifact's outputs differ from the reference beyond the bound."""


class NonFiniteLossError(VerificationError):
    """A training run stopped on a NaN/Inf loss (the last good checkpoint is kept)."""

    meaning = "the loss became NaN/Inf (the last good checkpoint is kept)"


class NonFiniteEmbeddingError(VerificationError):
    """A model produced NaN/Inf embeddings (without ``--skip-bad``): nothing is written."""

    meaning = ("the model produced NaN/Inf embeddings (the message names the images; "
               "--skip-bad lists and skips them)")


class ToolError(MassfaceError):
    """An external tool or runtime ran and failed."""

    exit_code = 4
    meaning = "an external tool or runtime failed (ATC, pyACL)"


class AtcError(ToolError):
    """ATC ran and did not produce a model (non-zero exit, or no ``.om`` written)."""

    meaning = ("ATC failed (the verified .pb/.onnx are kept, export.json records it, ATC's "
               "output is in atc.log)")


class AclError(ToolError):
    """A pyACL call returned a failure status; the message names the call and the status."""


class ToolMissingError(MassfaceError):
    """A required external tool is not installed or not on PATH."""

    exit_code = 5
    meaning = "a required external tool is missing"


class AtcMissingError(ToolMissingError):
    """``--require-om`` was given and no ``atc`` is on PATH."""

    meaning = "--require-om and no atc on PATH"


class RunInterruptedError(MassfaceError):
    """The user stopped the run (Ctrl-C / SIGTERM); what was done is saved."""

    exit_code = 130
    meaning = "interrupted by Ctrl-C / SIGTERM (a checkpoint is saved)"
