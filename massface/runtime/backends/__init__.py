"""Inference backends: a registry keyed by backend name, each declaring the model files
it runs (``suffixes``).

``--backend auto`` (the default) picks the first registered backend whose suffixes
include the model file's: ``.onnx`` -> ONNX Runtime (the portable default; OpenVINO runs
``.onnx`` too, when asked by name), ``.xml`` (OpenVINO IR) -> OpenVINO, ``.pb`` ->
TensorFlow, ``.om`` -> pyACL. Heavy or optional runtimes (TensorFlow, OpenVINO, pyACL) are
imported only when their backend is constructed, so ``massface-infer`` on an ``.onnx``
model never pays for them.
"""

from __future__ import annotations

import os
from pathlib import Path

from massface.errors import InputError
from massface.registry import Registry
from massface.runtime.backends.acl_backend import AclBackend
from massface.runtime.backends.base import (
    DYNAMIC,
    GEARS,
    PRECISIONS,
    STATIC,
    Backend,
    ModelInfo,
)
from massface.runtime.backends.onnx_backend import OnnxBackend
from massface.runtime.backends.openvino_backend import OpenVinoBackend
from massface.runtime.backends.tf_backend import TensorFlowBackend

BACKENDS: Registry[type[Backend]] = Registry("backend")
BACKENDS.register(OnnxBackend.name, OnnxBackend, description="ONNX Runtime (.onnx)")
BACKENDS.register(OpenVinoBackend.name, OpenVinoBackend,
                  description="OpenVINO on the CPU (.onnx, IR .xml + .bin)")
BACKENDS.register(TensorFlowBackend.name, TensorFlowBackend,
                  description="TensorFlow frozen GraphDef (.pb)")
BACKENDS.register(AclBackend.name, AclBackend, description="Ascend pyACL (.om)")

__all__ = ["BACKENDS", "DYNAMIC", "GEARS", "PRECISIONS", "STATIC", "Backend", "ModelInfo",
           "backend_for", "open_backend"]


def backend_for(path: str | os.PathLike[str], backend: str = "auto") -> type[Backend]:
    """The backend class ``backend`` names, or for ``auto`` the first that runs the suffix."""
    p = Path(path)
    if backend != "auto":
        cls = BACKENDS.get(backend, "--backend")
        if p.suffix.lower() not in cls.suffixes:
            raise InputError(f"{p}: the {backend} backend runs {', '.join(cls.suffixes)} "
                             "models")
        return cls
    for name in BACKENDS:
        cls = BACKENDS.get(name)
        if p.suffix.lower() in cls.suffixes:
            return cls
    known = sorted({s for name in BACKENDS for s in BACKENDS.get(name).suffixes})
    raise InputError(f"{p}: unknown model type {p.suffix!r}; massface-infer runs "
                     f"{', '.join(known)}")


def open_backend(
    path: str | os.PathLike[str], *, backend: str = "auto", threads: int | None = None,
    device: str = "auto", device_id: int = 0, input_name: str | None = None,
    output_name: str | None = None, precision: str = "fp32", streams: int | None = None,
    batch_size: int | None = None,
) -> Backend:
    """Load ``path`` with the backend ``backend`` names (``auto``: by the file's suffix).

    ``precision`` is one of :data:`PRECISIONS` that the backend runs; ``streams`` applies to
    backends with parallel request streams (OpenVINO) and is refused by the others;
    ``batch_size`` is the batch the caller will feed, a hint a backend may compile for."""
    cls = backend_for(path, backend)
    PRECISIONS.get(precision, "--precision")
    if precision not in cls.precisions:
        others = [n for n in BACKENDS if precision in BACKENDS.get(n).precisions]
        raise InputError(f"--precision {precision}: the {cls.name} backend runs "
                         f"{', '.join(cls.precisions)} only"
                         + (f"; use --backend {' or '.join(others)}" if others else ""))
    if streams is not None and not cls.takes_streams:
        raise InputError(f"--streams: the {cls.name} backend has no request streams (only "
                         f"{', '.join(n for n in BACKENDS if BACKENDS.get(n).takes_streams)})")
    return cls(Path(path), threads=threads, device=device, device_id=device_id,
               input_name=input_name, output_name=output_name, precision=precision,
               streams=streams, batch_size=batch_size)
