"""ONNX Runtime backend (``.onnx``): CPU, or CUDA where the installed runtime has it."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from massface.errors import InputError
from massface.runtime.backends.base import (
    DEVICES,
    Backend,
    BackendOptions,
    ModelInfo,
    batch_kind,
    image_input,
    model_path,
)

_ONNX_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16",
                "tensor(double)": "float64", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


def _dim(d: object) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    DEVICES.get(device, "--device")
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise InputError("--device cuda: this onnxruntime has no CUDAExecutionProvider "
                         f"(available: {', '.join(available)}); install onnxruntime-gpu")
    return ["CPUExecutionProvider"]



def _named(nodes: list[Any], name: str, kind: str, path: Any) -> Any:
    """The model input/output called ``name``; an error listing the real names otherwise."""
    for node in nodes:
        if node.name == name:
            return node
    raise InputError(f"{path}: no {kind} named {name!r} "
                     f"({kind}s: {', '.join(n.name for n in nodes)})")

class OnnxBackend(Backend):
    """One ``onnxruntime.InferenceSession``; ``threads`` sets intra-op parallelism."""

    name = "onnxruntime"
    suffixes = (".onnx",)
    options = frozenset({"threads", "device", "input_name", "output_name"})

    def __init__(self, path: str | os.PathLike[str], options: BackendOptions | None = None
                 ) -> None:
        o = options or BackendOptions()
        threads, device, input_name, output_name = (o.threads, o.device, o.input_name,
                                                    o.output_name)
        import onnxruntime as ort
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

        p = model_path(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or 0)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # Idle intra-op threads sleep instead of spinning: the decode pool shares the cores,
        # and on a busy 2-core machine spinning starved it (measured in bench_infer.py).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        load_errors = (ort_state.InvalidProtobuf, ort_state.InvalidGraph, ort_state.Fail,
                       ort_state.NoSuchFile, ort_state.InvalidArgument,
                       ort_state.NotImplemented, ort_state.RuntimeException)
        try:
            self.session = ort.InferenceSession(str(p), opts, providers=_providers(device))
        except load_errors as exc:
            raise InputError(f"{p}: not a loadable ONNX model: {exc}") from exc
        inputs = self.session.get_inputs()
        if input_name is None:
            if len(inputs) != 1:
                raise InputError(f"{p}: model has {len(inputs)} inputs "
                                 f"({', '.join(i.name for i in inputs)}); name the image one "
                                 "with --input-name")
            inp = inputs[0]
        else:
            inp = _named(inputs, input_name, "input", p)
            if len(inputs) != 1:
                raise InputError(f"{p}: model has {len(inputs)} inputs; massface-infer feeds "
                                 "only single-input image models")
        outputs = self.session.get_outputs()
        out = outputs[0] if output_name is None else _named(outputs, output_name, "output", p)
        if inp.type not in ("tensor(float)", "tensor(uint8)"):
            raise InputError(f"{p}: input {inp.name!r} is {inp.type}: massface-infer feeds "
                             "float32 images, or uint8 pixels to a model that normalises "
                             "them itself (an AIPP twin)")
        shape = [_dim(d) for d in inp.shape]
        layout, h, w, c = image_input(p, inp.name, shape)
        batch, sizes = batch_kind(shape[0])
        out_shape = [_dim(d) for d in (out.shape or [])]
        dim = None
        if len(out_shape) >= 2 and all(d is not None for d in out_shape[1:]):
            dim = int(np.prod(out_shape[1:]))
        self.info = ModelInfo(
            backend=self.name, path=str(p), input_name=inp.name, input_shape=shape,
            layout=layout, height=h, width=w, channels=c, batch=batch, batch_sizes=sizes,
            output_name=out.name, output_dtype=_ONNX_DTYPES.get(out.type, out.type),
            output_dim=dim, input_dtype=_ONNX_DTYPES[inp.type],
            extra={"providers": self.session.get_providers(),
                   "intra_op_threads": int(threads or 0)},
        )
        self._output_names = [out.name]

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(self._output_names, {self.info.input_name: batch})[0]

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
