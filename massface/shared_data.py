"""The shared real data (aligned LFW, ORL, the pretrained MobileFaceNet), when configured.

The library never guesses where it is (a wheel install has no checkout beside it): it is
the folder named by ``MASSFACE_SHARED``. Defaults that need it (the export's parity and
calibration faces) say so clearly when it is not set; the command-line options
(``--parity-images``, ``--calibration-images``) avoid it altogether. The test suite and
the benchmarks point ``MASSFACE_SHARED`` at ``../shared`` beside the checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

from massface.errors import InputError

ENV_VAR = "MASSFACE_SHARED"


def shared_root(needed_for: str = "the shared data") -> Path:
    """``$MASSFACE_SHARED``; :class:`InputError` naming ``needed_for`` when unset/missing."""
    env = os.environ.get(ENV_VAR)
    if not env:
        raise InputError(f"{needed_for}: {ENV_VAR} is not set; set it to the shared data "
                         "folder (holding data/lfw/...) or pass the files explicitly")
    root = Path(env)
    if not root.is_dir():
        raise InputError(f"{needed_for}: {ENV_VAR}={env} is not a folder")
    return root


def lfw_dir(needed_for: str = "aligned LFW") -> Path:
    """Aligned 112x112 LFW images, ``<name>/<name>_NNNN.jpg``."""
    return shared_root(needed_for) / "data" / "lfw" / "lfw-112x112"


def lfw_pairs(needed_for: str = "LFW pairs.txt") -> Path:
    """The standard LFW View-2 ``pairs.txt`` (6,000 pairs in 10 folds)."""
    return shared_root(needed_for) / "data" / "lfw" / "pairs.txt"
