"""`massface-infer`: not built yet (see the project's issues)."""

from __future__ import annotations

import sys


def main() -> None:
    """Say plainly that this command does not exist yet, and exit non-zero."""
    print("massface-infer: not implemented yet in this version of massface", file=sys.stderr)
    sys.exit(2)
