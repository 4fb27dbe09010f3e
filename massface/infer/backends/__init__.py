"""Inference backends, chosen by the model file's suffix.

``BACKENDS`` maps a suffix to the backend class; heavy runtimes (TensorFlow, pyACL) are
imported only when their backend is constructed, so ``massface-infer`` on an ``.onnx``
model never pays for TensorFlow.
"""

from __future__ import annotations

import os
from pathlib import Path

from massface.errors import InputError
from massface.infer.backends.acl_backend import AclBackend
from massface.infer.backends.base import DYNAMIC, GEARS, STATIC, Backend, ModelInfo
from massface.infer.backends.onnx_backend import OnnxBackend
from massface.infer.backends.tf_backend import TensorFlowBackend

BACKENDS: dict[str, type[Backend]] = {
    ".onnx": OnnxBackend,
    ".pb": TensorFlowBackend,
    ".om": AclBackend,
}

__all__ = ["BACKENDS", "DYNAMIC", "GEARS", "STATIC", "Backend", "ModelInfo", "open_backend"]


def open_backend(
    path: str | os.PathLike[str], *, threads: int | None = None, device: str = "auto",
    device_id: int = 0, input_name: str | None = None, output_name: str | None = None,
) -> Backend:
    """Load ``path`` with the backend its suffix names."""
    p = Path(path)
    cls = BACKENDS.get(p.suffix.lower())
    if cls is None:
        raise InputError(f"{p}: unknown model type {p.suffix!r}; massface-infer runs "
                         f"{', '.join(sorted(BACKENDS))}")
    return cls(p, threads=threads, device=device, device_id=device_id, input_name=input_name,
               output_name=output_name)
