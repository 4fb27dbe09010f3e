"""Where the project's real data lives.

The data (aligned LFW, ORL, the pretrained MobileFaceNet) is never copied into the
repository; it is found through ``MASSFACE_SHARED`` (default ``../shared`` relative to
the repository root, i.e. beside the checkout).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "MASSFACE_SHARED"
_REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_root() -> Path:
    """The shared data folder: ``$MASSFACE_SHARED`` or ``<repo>/../shared``."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else (_REPO_ROOT.parent / "shared")


def lfw_dir() -> Path:
    """Aligned 112x112 LFW images, ``<name>/<name>_NNNN.jpg``."""
    return shared_root() / "data" / "lfw" / "lfw-112x112"


def lfw_pairs() -> Path:
    """The standard LFW View-2 ``pairs.txt`` (6,000 pairs in 10 folds)."""
    return shared_root() / "data" / "lfw" / "pairs.txt"


def orl_dir() -> Path:
    """AT&T/ORL faces: ``s1..s40/1..10.pgm``."""
    return shared_root() / "data" / "orl"


def pretrained_onnx() -> Path:
    """The shared pretrained MobileFaceNet (ONNX, dynamic batch, 192-d, NHWC)."""
    return shared_root() / "models" / "mobilefacenet-sirius" / "mobilefacenet_sirius.onnx"


def pretrained_tflite() -> Path:
    """The same pretrained MobileFaceNet as shipped (TFLite, batch 2)."""
    return shared_root() / "models" / "mobilefacenet-sirius" / "MobileFaceNet.tflite"
