"""OpenVINO backend (CPU): ``.onnx`` models and OpenVINO IR (``.xml`` + ``.bin``).

OpenVINO is an optional extra (``pip install 'massface[openvino]'``), imported only here,
when this backend is constructed. What massface sets, and why:

* ``INFERENCE_PRECISION_HINT`` always, from ``--precision`` (default fp32). OpenVINO's
  own default on CPUs with native bfloat16 is bf16, which would quietly change results;
  massface runs float32 unless asked. bf16/fp16 are accepted only where the CPU runs them
  natively (OpenVINO's ``OPTIMIZATION_CAPABILITIES`` lists ``BF16``/``FP16``): elsewhere
  OpenVINO would emulate them slowly or fall back to float32 without a word (it does the
  latter on AVX2 CPUs), so the run is refused with exit 2 instead.
* ``INFERENCE_NUM_THREADS`` from ``--threads``; ``NUM_STREAMS`` from ``--streams``, by
  default OpenVINO's own choice for the THROUGHPUT performance hint (an offline batch job
  is a throughput job; it picks 2 streams of 1 thread on a 2-core CPU, measured faster
  than 1 stream of 2 threads here, see ``bench/bench_infer.py``).
  :meth:`Backend.embed_many` keeps ``streams + 1`` asynchronous infer requests in flight,
  so a stream never waits while Python collects a result and hands in the next batch.
* A model with a free batch dimension is compiled for the caller's batch size
  (``batch_size``): the CPU plugin runs a static shape faster than a dynamic one, and the
  base class pads the last batch and drops the padding rows, as for any static model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from massface.errors import InputError
from massface.runtime.backends.base import (
    STATIC,
    Backend,
    BackendOptions,
    ModelInfo,
    batch_kind,
    image_input,
    model_path,
)

DEVICES = ("auto", "cpu")
#: --precision -> (OpenVINO element type, OPTIMIZATION_CAPABILITIES entry when native,
#: what hardware has it natively)
_PRECISION = {"fp32": ("f32", "FP32", "every CPU"),
              "bf16": ("bf16", "BF16", "AVX512-BF16 or AMX (x86)"),
              "fp16": ("f16", "FP16", "AVX512-FP16 or AMX-FP16 (x86), or ARMv8.2 fp16")}
_FRAMEWORKS = {".onnx": "onnx", ".xml": "ir"}
INSTALL_HINT = "pip install 'massface[openvino]' (or: pip install openvino)"


def import_openvino(path: object) -> Any:
    """The ``openvino`` module, or an :class:`InputError` saying how to install it."""
    try:
        import openvino
    except ImportError as exc:
        raise InputError(f"{path}: the openvino backend needs OpenVINO, which is not "
                         f"installed here: {INSTALL_HINT}") from exc
    return openvino


def _read_model(ov: Any, p: Path) -> Any:
    """The model through its own frontend (ONNX or IR): no guessing among other formats."""
    from openvino.frontend import (
        FrontEndManager,
        GeneralFailure,
        NotImplementedFailure,
        OpConversionFailure,
        OpValidationFailure,
    )

    if p.suffix.lower() == ".xml" and not p.with_suffix(".bin").is_file():
        raise InputError(f"{p}: OpenVINO IR needs its weights file {p.with_suffix('.bin').name} "
                         "beside it")
    fe = FrontEndManager().load_by_framework(_FRAMEWORKS[p.suffix.lower()])
    try:
        return fe.convert(fe.load(str(p)))
    except (RuntimeError, GeneralFailure, NotImplementedFailure, OpConversionFailure,
            OpValidationFailure) as exc:
        first = str(exc).strip().splitlines()
        raise InputError(f"{p}: OpenVINO cannot read this model: "
                         f"{' | '.join(first[-3:]) if first else type(exc).__name__}") from exc


def _named(ports: list[Any], name: str | None, kind: str, p: Path) -> int:
    """Index of the port called ``name`` (the first when None); error listing the names."""
    if name is None:
        return 0
    for i, port in enumerate(ports):
        if name in port.get_names():
            return i
    raise InputError(f"{p}: no {kind} named {name!r} "
                     f"({kind}s: {', '.join(port.get_any_name() for port in ports)})")


def _dims(port: Any) -> list[int | None]:
    return [None if d.is_dynamic else int(d.get_length()) for d in port.get_partial_shape()]


def check_native(core: Any, precision: str) -> list[str]:
    """The CPU's capabilities; :class:`InputError` when ``precision`` is not native there."""
    import openvino.properties as props

    caps = list(core.get_property("CPU", props.device.capabilities))
    if _PRECISION[precision][1] not in caps:
        cpu = core.get_property("CPU", props.device.full_name)
        raise InputError(
            f"--precision {precision}: this CPU ({cpu}) has no native {precision} arithmetic "
            f"(OpenVINO reports {', '.join(caps)}); OpenVINO would emulate it slowly or run "
            f"float32 instead. Native {precision} needs {_PRECISION[precision][2]}; use "
            "--precision fp32 here")
    return caps


class OpenVinoBackend(Backend):
    """One model compiled for OpenVINO's CPU plugin, with a ring of infer requests."""

    name = "openvino"
    suffixes = (".onnx", ".xml")
    precisions = ("fp32", "bf16", "fp16")
    options = frozenset({"threads", "device", "input_name", "output_name", "streams"})

    def __init__(self, path: str | os.PathLike[str], options: BackendOptions | None = None
                 ) -> None:
        o = options or BackendOptions()
        threads, device, input_name, output_name = (o.threads, o.device, o.input_name,
                                                    o.output_name)
        precision, streams, batch_size = o.precision, o.streams, o.batch_size
        p = model_path(path)
        ov = import_openvino(p)
        if device not in DEVICES:
            raise InputError(f"--device {device!r}: the openvino backend runs on the CPU "
                             f"({' | '.join(DEVICES)})")
        if streams is not None and streams < 1:
            raise InputError(f"--streams {streams}: must be at least 1")
        core = ov.Core()
        caps = check_native(core, precision)
        model = _read_model(ov, p)
        if len(model.inputs) != 1:
            names = ", ".join(i.get_any_name() for i in model.inputs)
            raise InputError(f"{p}: model has {len(model.inputs)} inputs ({names}); "
                             "massface-infer feeds only single-input image models")
        _named(model.inputs, input_name, "input", p)
        out_index = _named(model.outputs, output_name, "output", p)
        inp, out = model.inputs[0], model.outputs[out_index]
        if inp.get_element_type() != ov.Type.f32:
            raise InputError(f"{p}: input {inp.get_any_name()!r} is "
                             f"{inp.get_element_type().get_type_name()}, not float32")
        shape = _dims(inp)
        layout, h, w, c = image_input(p, inp.get_any_name(), shape)
        batch, sizes = batch_kind(shape[0])
        if shape[0] is None and batch_size:
            fixed = inp.get_partial_shape()
            fixed[0] = int(batch_size)
            model.reshape({inp.get_any_name(): fixed})
            batch, sizes = STATIC, (int(batch_size),)
        self.compiled = self._compile(ov, core, model, precision, threads, streams, p)
        self.precision = precision
        import openvino.properties as props

        n_streams = int(self.compiled.get_property(props.num_streams))
        n_threads = int(self.compiled.get_property(props.inference_num_threads))
        self._out = out_index
        self._sync = self.compiled.create_infer_request()
        self.in_flight = n_streams + 1
        self._ring = [self.compiled.create_infer_request() for _ in range(self.in_flight)]
        self._next = 0
        out_shape = _dims(out)
        dim = None
        if len(out_shape) >= 2 and all(d is not None for d in out_shape[1:]):
            dim = int(np.prod(out_shape[1:]))
        self.info = ModelInfo(
            backend=self.name, path=str(p), input_name=inp.get_any_name(), input_shape=shape,
            layout=layout, height=h, width=w, channels=c, batch=batch, batch_sizes=sizes,
            output_name=out.get_any_name(),
            output_dtype=np.dtype(out.get_element_type().to_dtype()).name, output_dim=dim,
            extra={"openvino": ov.__version__, "device": "CPU", "capabilities": caps,
                   "precision": precision, "inference_precision": _PRECISION[precision][0],
                   "streams": n_streams, "threads": n_threads,
                   "requests_in_flight": self.in_flight,
                   "model_batch": "dynamic" if shape[0] is None else "static",
                   **({"compiled_batch": int(batch_size)}
                      if shape[0] is None and batch_size else {})},
        )

    def _compile(self, ov: Any, core: Any, model: Any, precision: str, threads: int | None,
                 streams: int | None, p: Path) -> Any:
        import openvino.properties as props
        import openvino.properties.hint as hints

        wanted = _PRECISION[precision][0]
        config: dict[Any, Any] = {hints.inference_precision: getattr(ov.Type, wanted)}
        if threads:
            config[props.inference_num_threads] = int(threads)
        config[hints.performance_mode] = hints.PerformanceMode.THROUGHPUT
        if streams is not None:
            config[props.num_streams] = int(streams)
            if streams == 1:
                config[hints.performance_mode] = hints.PerformanceMode.LATENCY
        try:
            compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as exc:
            raise InputError(f"{p}: OpenVINO cannot compile this model for the CPU: "
                             f"{str(exc).strip().splitlines()[-1]}") from exc
        used = compiled.get_property(hints.inference_precision).get_type_name()
        if used != wanted:  # the capability check should have caught it; never run silently
            raise InputError(f"--precision {precision}: OpenVINO compiled the model in {used} "
                             f"instead of {wanted} on this CPU")
        return compiled

    def _run(self, batch: np.ndarray) -> np.ndarray:
        self._sync.infer({0: batch}, share_inputs=True)
        return self._sync.get_output_tensor(self._out).data.copy()

    def _start(self, batch: np.ndarray) -> Any:
        # Round robin is safe: the base class keeps at most len(ring) calls uncollected and
        # collects them in the order they started, so the next request is always idle.
        request = self._ring[self._next]
        self._next = (self._next + 1) % len(self._ring)
        request.start_async({0: batch}, share_inputs=True)
        return request, batch  # the input stays referenced while the request reads it

    def _ready(self, handle: Any) -> bool:
        return bool(handle[0].wait_for(0))

    def _collect(self, handle: Any) -> np.ndarray:
        request = handle[0]
        request.wait()
        return request.get_output_tensor(self._out).data.copy()  # the request is reused

    def close(self) -> None:
        self._ring, self._sync, self.compiled = [], None, None
