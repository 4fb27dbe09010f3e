"""The engine that runs MTCNN's three nets: ONNX Runtime or OpenVINO (registry :data:`ENGINES`).

Both take the same ONNX files (:mod:`massface.align.weights`) and offer the call MTCNN
makes, ``net.run(output_names, {input_name: x})``. ``auto`` (the default) picks OpenVINO
on an x86 CPU where it is installed, as ``massface-infer --backend auto`` does for the face
model, and ONNX Runtime elsewhere: on this project's CPUs OpenVINO runs R-net and O-net
about 2x faster and the larger pyramid levels of P-net 1.2-1.5x, in float32 (its outputs
differ from ONNX Runtime's by about 1e-6; the landmark parity is tested). The engine used is
part of the detector's settings (``align.json``, ``meta.json``), because float rounding
may move a candidate across a threshold.

Thread safety: ONNX Runtime sessions are thread-safe; for OpenVINO each calling thread
gets its own infer request, and the model is compiled with one stream per caller
(``streams``) so that the workers' calls run side by side instead of queueing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from massface.registry import Registry


class Net(Protocol):
    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


def _onnxruntime(path: Path, threads: int, streams: int) -> Net:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, threads)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    # Idle threads sleep: detection shares the cores with decoding and the face model.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class _OpenVinoNet:
    """One net compiled for OpenVINO's CPU plugin in float32; a request per thread."""

    def __init__(self, path: Path, threads: int, streams: int) -> None:
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints

        core = ov.Core()
        config = {hints.inference_precision: ov.Type.f32,  # never bf16 by default
                  props.num_streams: max(1, streams),
                  props.inference_num_threads: max(1, threads) * max(1, streams)}
        self._compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self._ports: dict[str, Any] = {}
        self._local = threading.local()

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        (x,) = feeds.values()
        request.infer({0: x}, share_inputs=True)
        return [request.get_tensor(self._port(name)).data.copy() for name in outputs]

    def _port(self, name: str) -> Any:
        if name not in self._ports:
            self._ports[name] = self._compiled.output(name)
        return self._ports[name]


ENGINES: Registry[Callable[[Path, int, int], Net]] = Registry("MTCNN engine")
ENGINES.register("onnxruntime", _onnxruntime, description="ONNX Runtime (CPU)")
ENGINES.register("openvino", _OpenVinoNet, description="OpenVINO (CPU, float32)")


def resolve_engine(engine: str) -> tuple[str, str]:
    """(engine name, why) for ``engine`` (``auto`` or an :data:`ENGINES` name)."""
    if engine != "auto":
        ENGINES.get(engine, "detector engine")
        return engine, "given"
    from massface.runtime.backends import openvino_unfit

    why_not = openvino_unfit("cpu")
    if why_not is None:
        return "openvino", "auto: OpenVINO on x86"
    return "onnxruntime", f"auto: onnxruntime ({why_not})"


def open_nets(paths: dict[str, Path], engine: str, threads: int, streams: int
              ) -> dict[str, Net]:
    """The nets of ``paths`` on ``engine`` (a resolved :data:`ENGINES` name)."""
    make = ENGINES.get(engine, "detector engine")
    return {net: make(p, threads, streams) for net, p in paths.items()}
