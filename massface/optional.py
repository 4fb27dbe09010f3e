"""Optional packages, imported only on the path that needs them.

``require("matplotlib", extra="report", purpose="--roc")`` returns the module, or raises
an :class:`InputError` (exit 2) saying which extra installs it, instead of a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from massface.errors import InputError


def require(module: str, *, extra: str, purpose: str, package: str | None = None) -> ModuleType:
    """Import ``module``; if it is missing, say how to install it for ``purpose``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        name = package or module.split(".")[0]
        raise InputError(f"{purpose} needs the Python package '{name}', which is not "
                         f"installed: pip install 'massface[{extra}]' (or pip install {name})"
                         ) from exc
