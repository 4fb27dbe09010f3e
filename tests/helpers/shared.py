"""Where the real data lives for tests and benchmarks: ``$MASSFACE_SHARED``, else
``../shared`` beside the checkout (the library itself never guesses: see
``massface.shared_data``)."""

from __future__ import annotations

import os
from pathlib import Path

from massface.shared_data import ENV_VAR

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_root() -> Path:
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else REPO_ROOT.parent / "shared"


def use_shared_root() -> Path:
    """Point ``MASSFACE_SHARED`` at the shared folder (for library defaults); return it."""
    root = shared_root()
    os.environ.setdefault(ENV_VAR, str(root))
    return root


def lfw_dir() -> Path:
    return shared_root() / "data" / "lfw" / "lfw-112x112"


def lfw_pairs() -> Path:
    return shared_root() / "data" / "lfw" / "pairs.txt"


def orl_dir() -> Path:
    return shared_root() / "data" / "orl"


def pretrained_onnx() -> Path:
    return shared_root() / "models" / "mobilefacenet-sirius" / "mobilefacenet_sirius.onnx"


def pretrained_tflite() -> Path:
    return shared_root() / "models" / "mobilefacenet-sirius" / "MobileFaceNet.tflite"
