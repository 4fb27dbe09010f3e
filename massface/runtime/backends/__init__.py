"""Inference backends: a registry keyed by backend name, each declaring the model files
it runs (``suffixes``).

``--backend auto`` (the default) picks the fastest exact engine for the model file
(:func:`choose_backend`): ``.onnx`` -> OpenVINO fp32 on an x86 CPU where OpenVINO is
installed (the ``all`` extra has it; it runs the shared MobileFaceNet about 2x faster than
ONNX Runtime end to end, embeddings equal to 1e-12), ONNX Runtime otherwise (no OpenVINO,
not x86, ``--device cuda``, or an ONNX Runtime with CUDA under ``--device auto``), and ONNX
Runtime too when OpenVINO cannot run the model (a uint8 AIPP twin, several inputs): the
reason is recorded. ``.xml`` (OpenVINO IR) -> OpenVINO, ``.pb`` -> TensorFlow, ``.om`` ->
pyACL. The choice and why is :attr:`Backend.choice`, which massface-infer logs and writes
to ``meta.json``. bf16 stays an explicit ``--precision`` (it changes results). Heavy or
optional runtimes (TensorFlow, OpenVINO, pyACL) are imported only when their backend is
constructed.
"""

from __future__ import annotations

import importlib.util
import os
import platform
from pathlib import Path

from massface.errors import InputError
from massface.registry import Registry
from massface.runtime.backends.acl_backend import AclBackend
from massface.runtime.backends.base import (
    DEVICES,
    DYNAMIC,
    GEARS,
    OPTION_FLAGS,
    PRECISIONS,
    STATIC,
    Backend,
    BackendOptions,
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

__all__ = ["BACKENDS", "DEVICES", "DYNAMIC", "GEARS", "PRECISIONS", "SIMULATION_BACKEND", "STATIC",
           "Backend", "BackendOptions", "ModelInfo", "backend_for", "check_options",
           "choose_backend", "open_backend", "openvino_unfit"]

#: The engine that runs the ONNX graphs simulating device numerics (fp16 casts, int8 QDQ,
#: the AIPP twin): always named, never ``auto``, so their figures do not depend on the host.
SIMULATION_BACKEND = OnnxBackend.name

X86 = ("x86_64", "amd64", "i386", "i686", "x86")


def openvino_unfit(device: str) -> str | None:
    """Why ``auto`` should not pick OpenVINO for an ONNX model here (None: pick it); also
    the rule for MTCNN's nets (:mod:`massface.align.nets`)."""
    if device not in ("auto", "cpu"):
        return f"--device {device}"
    if platform.machine().lower() not in X86:
        return f"not an x86 CPU ({platform.machine() or 'unknown'})"
    if importlib.util.find_spec("openvino") is None:
        return "OpenVINO is not installed (pip install 'massface[openvino]')"
    if device == "auto":
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            return "ONNX Runtime has CUDA here"
    return None


def choose_backend(path: str | os.PathLike[str], backend: str = "auto",
                   device: str = "auto") -> tuple[type[Backend], str]:
    """The backend class for ``path`` and why: ``backend`` by name, or ``auto``'s choice
    (the module docstring); unknown suffixes and mismatches raise :class:`InputError`."""
    p = Path(path)
    suffix = p.suffix.lower()
    if backend != "auto":
        cls = BACKENDS.get(backend, "--backend")
        if suffix not in cls.suffixes:
            raise InputError(f"{p}: the {backend} backend runs {', '.join(cls.suffixes)} "
                             "models")
        return cls, "--backend " + backend
    runs = [BACKENDS.get(name) for name in BACKENDS if suffix in BACKENDS.get(name).suffixes]
    if not runs:
        known = sorted({s for name in BACKENDS for s in BACKENDS.get(name).suffixes})
        raise InputError(f"{p}: unknown model type {p.suffix!r}; massface-infer runs "
                         f"{', '.join(known)}")
    if len(runs) == 1:
        return runs[0], f"auto: the only backend for {suffix}"
    if OpenVinoBackend in runs:
        why_not = openvino_unfit(device)
        if why_not is None:
            return OpenVinoBackend, (f"auto: OpenVINO, the fastest exact CPU engine for "
                                     f"{suffix} on x86")
        return runs[0], f"auto: {runs[0].name} ({why_not})"
    return runs[0], f"auto: the first backend for {suffix}"


def backend_for(path: str | os.PathLike[str], backend: str = "auto",
                device: str = "auto") -> type[Backend]:
    """The backend class ``backend`` names, or the one ``auto`` picks (:func:`choose_backend`)."""
    return choose_backend(path, backend, device)[0]


def check_options(cls: type[Backend], options: BackendOptions) -> None:
    """Refuse what ``cls`` would not honour: a ``--precision`` it does not run, or an
    option (``--threads``, ``--streams``, ``--input-name``, ...) it has no use for."""
    PRECISIONS.get(options.precision, "--precision")
    DEVICES.get(options.device, "--device")
    if options.precision not in cls.precisions:
        others = [n for n in BACKENDS if options.precision in BACKENDS.get(n).precisions]
        raise InputError(f"--precision {options.precision}: the {cls.name} backend runs "
                         f"{', '.join(cls.precisions)} only"
                         + (f"; use --backend {' or '.join(others)}" if others else ""))
    for field in options.given():
        if field not in cls.options:
            takers = [n for n in BACKENDS if field in BACKENDS.get(n).options]
            raise InputError(f"{OPTION_FLAGS[field]}: the {cls.name} backend has no use for "
                             f"it (only {', '.join(takers) or 'no backend'}); leave it out")


def open_backend(
    path: str | os.PathLike[str], *, backend: str = "auto", threads: int | None = None,
    device: str = "auto", device_id: int = 0, input_name: str | None = None,
    output_name: str | None = None, precision: str = "fp32", streams: int | None = None,
    batch_size: int | None = None,
) -> Backend:
    """Load ``path`` with the backend ``backend`` names (``auto``: :func:`choose_backend`;
    ONNX Runtime, the reason in :attr:`Backend.choice`, when OpenVINO refuses the model).

    The other arguments are :class:`BackendOptions`' fields: one the backend would not
    honour is refused (:func:`check_options`), never dropped; ``batch_size`` is a hint (the
    batch the caller will feed) a backend may compile for."""
    cls, choice = choose_backend(path, backend, device)
    options = BackendOptions(threads=threads, device=device, device_id=device_id,
                             input_name=input_name, output_name=output_name,
                             precision=precision, streams=streams, batch_size=batch_size)
    check_options(cls, options)
    try:
        opened = cls(Path(path), options)
    except InputError as exc:
        fallback = _fallback(path, backend, cls, precision, streams)
        if fallback is None:
            raise
        check_options(fallback, options)
        opened = fallback(Path(path), options)  # its own error, if any, is the one to see
        choice = (f"auto: {fallback.name} (OpenVINO cannot run this model: "
                  f"{str(exc).removeprefix(f'{path}: ')})")
    opened.choice = choice
    return opened


def _fallback(path: str | os.PathLike[str], backend: str, tried: type[Backend],
              precision: str, streams: int | None) -> type[Backend] | None:
    """The backend ``auto`` falls back to when the one it picked refused the model."""
    if backend != "auto" or tried is not OpenVinoBackend or precision != "fp32" or streams:
        return None
    others = [BACKENDS.get(n) for n in BACKENDS
              if Path(path).suffix.lower() in BACKENDS.get(n).suffixes]
    return next((c for c in others if c is not OpenVinoBackend), None)
