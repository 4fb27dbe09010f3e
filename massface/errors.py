"""The one exception type every stage raises for bad input.

Commands catch :class:`InputError`, print its message (which names the file and what is
wrong) and exit non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Input that massface refuses: the message names the file and the problem."""
