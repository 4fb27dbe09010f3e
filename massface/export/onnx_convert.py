"""TensorFlow GraphDef / TFLite -> ONNX through tf2onnx, failing loudly.

tf2onnx logs (rather than raises) most conversion problems and keeps going; this module
captures what it logs, checks the result (standard operators only, ``onnx.checker``) and
raises :class:`~massface.export.onnx_graph.ConversionError` with tf2onnx's own reason.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from massface.export.onnx_graph import (
    ConversionError,
    check_standard_ops,
    make_batch_dynamic,
    set_io,
    validate_opset,
)

if TYPE_CHECKING:
    import onnx
    import tensorflow as tf


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            msg += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        self.messages.append(msg)


@contextlib.contextmanager
def tf2onnx_errors() -> Iterator[list[str]]:
    """Collect the ERROR-level messages tf2onnx logs while converting."""
    handler = _Collect()
    logger = logging.getLogger("tf2onnx")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def _quiet_tf2onnx() -> None:
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)


def graph_def_to_onnx(
    graph_def: tf.compat.v1.GraphDef,
    *,
    input_name: str = "input",
    output_name: str = "embeddings",
    opset: int = 13,
    label: str = "frozen graph",
) -> onnx.ModelProto:
    """Convert a frozen GraphDef whose input op is ``input_name`` and output op
    ``output_name``; the ONNX tensors carry those plain names (no ``:0``)."""
    import tf2onnx

    validate_opset(opset)
    _quiet_tf2onnx()
    with tf2onnx_errors() as reasons:
        try:
            model, _ = tf2onnx.convert.from_graph_def(
                graph_def,
                name="massface",
                input_names=[f"{input_name}:0"],
                output_names=[f"{output_name}:0"],
                opset=opset,
                tensors_to_rename={f"{input_name}:0": input_name, f"{output_name}:0": output_name},
            )
        except Exception as exc:  # tf2onnx raises many types; all mean "did not convert"
            why = "\n  ".join([*reasons, f"{type(exc).__name__}: {exc}"])
            raise ConversionError(f"{label}: tf2onnx could not convert it:\n  {why}") from exc
    check_standard_ops(model, label, reasons)
    set_io(model, input_name=input_name, output_name=output_name)
    return model


def tflite_to_onnx(
    path: str | Path,
    *,
    input_name: str = "input",
    output_name: str = "embeddings",
    opset: int = 13,
) -> tuple[onnx.ModelProto, dict]:
    """Convert a single-input, single-output TFLite model and make its batch dynamic.

    Returns the model (input ``input_name``, output ``output_name``) and what the batch
    rewrite did (``{"was": 2, "reshapes_rewritten": 3}`` for the shipped MobileFaceNet).
    """
    import tf2onnx

    validate_opset(opset)
    _quiet_tf2onnx()
    path = Path(path)
    with tf2onnx_errors() as reasons:
        try:
            model, _ = tf2onnx.convert.from_tflite(str(path), opset=opset)
        except Exception as exc:
            why = "\n  ".join([*reasons, f"{type(exc).__name__}: {exc}"])
            raise ConversionError(f"{path}: tf2onnx could not convert it:\n  {why}") from exc
    check_standard_ops(model, str(path), reasons)
    set_io(model, input_name=input_name, output_name=output_name)
    batch = make_batch_dynamic(model)
    check_standard_ops(model, str(path))
    return model, batch
