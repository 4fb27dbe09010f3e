"""TensorFlow backend for frozen GraphDefs (``.pb``); TensorFlow is imported only here.

The GraphDef is imported into a ``tf.compat.v1.wrap_function`` graph and pruned to a
concrete function from the image placeholder to the embedding tensor, so it runs eagerly
in TF 2 without a session.
"""

from __future__ import annotations

import os

import numpy as np

from massface.errors import InputError
from massface.runtime.backends.base import (
    Backend,
    BackendOptions,
    ModelInfo,
    batch_kind,
    image_input,
    model_path,
)

_SKIP_SINK_OPS = {"NoOp", "Placeholder", "Const", "Assert", "SaveV2", "RestoreV2"}


def _import_tf():
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def _tensor_name(name: str) -> str:
    return name if ":" in name else f"{name}:0"


def _placeholder_shape(node) -> list[int | None] | None:
    if "shape" not in node.attr:
        return None
    shape = node.attr["shape"].shape
    if shape.unknown_rank:
        return None
    return [d.size if d.size > 0 else None for d in shape.dim]


class TensorFlowBackend(Backend):
    """A frozen ``GraphDef`` run through TensorFlow 2 (``threads`` = intra-op threads)."""

    name = "tensorflow"
    suffixes = (".pb",)
    options = frozenset({"threads", "input_name", "output_name"})

    def __init__(self, path: str | os.PathLike[str], options: BackendOptions | None = None
                 ) -> None:
        o = options or BackendOptions()
        threads, input_name, output_name = o.threads, o.input_name, o.output_name
        p = model_path(path)
        tf = _import_tf()
        from google.protobuf.message import DecodeError

        if threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(int(threads))
                tf.config.threading.set_inter_op_parallelism_threads(1)
            except RuntimeError:
                pass  # TensorFlow already started in this process: keep its settings
        graph_def = tf.compat.v1.GraphDef()
        try:
            graph_def.ParseFromString(p.read_bytes())
        except (DecodeError, RuntimeWarning, ValueError) as exc:
            raise InputError(f"{p}: not a frozen TensorFlow GraphDef: {exc}") from exc
        if not graph_def.node:
            raise InputError(f"{p}: not a frozen TensorFlow GraphDef (no nodes)")
        placeholders = [n for n in graph_def.node if n.op == "Placeholder"]
        if input_name is not None:
            inp = [n for n in placeholders if n.name == input_name.split(":")[0]]
            if not inp:
                raise InputError(f"{p}: no placeholder named {input_name!r} (placeholders: "
                                 f"{', '.join(n.name for n in placeholders) or 'none'})")
            inp_node = inp[0]
        elif len(placeholders) == 1:
            inp_node = placeholders[0]
        else:
            raise InputError(f"{p}: {len(placeholders)} placeholders "
                             f"({', '.join(n.name for n in placeholders) or 'none'}): a frozen "
                             "image model has one; name it with --input-name")
        out_name = output_name or self._guess_output(p, graph_def)
        shape = _placeholder_shape(inp_node)
        if shape is None:
            raise InputError(f"{p}: placeholder {inp_node.name!r} has no known rank: not a "
                             "4-D image input")
        layout, h, w, c = image_input(p, inp_node.name, shape)
        batch, sizes = batch_kind(shape[0])

        def _imports() -> None:
            tf.compat.v1.import_graph_def(graph_def, name="")

        try:
            wrapped = tf.compat.v1.wrap_function(_imports, [])
            graph = wrapped.graph
            x = graph.get_tensor_by_name(_tensor_name(inp_node.name))
            y = graph.get_tensor_by_name(_tensor_name(out_name))
            self._fn = wrapped.prune(x, y)
        except (ValueError, KeyError, TypeError, tf.errors.OpError) as exc:
            raise InputError(f"{p}: cannot import the GraphDef from {inp_node.name} to "
                             f"{out_name}: {exc}") from exc
        if x.dtype != tf.float32:
            raise InputError(f"{p}: input {inp_node.name!r} is {x.dtype.name}, not float32")
        out_shape = y.shape.as_list() if y.shape.rank is not None else []
        dim = None
        if len(out_shape) >= 2 and all(d is not None for d in out_shape[1:]):
            dim = int(np.prod(out_shape[1:]))
        self._tf = tf
        self.info = ModelInfo(
            backend=self.name, path=str(p), input_name=inp_node.name, input_shape=shape,
            layout=layout, height=h, width=w, channels=c, batch=batch, batch_sizes=sizes,
            output_name=out_name[:-2] if out_name.endswith(":0") else out_name,
            output_dtype=y.dtype.name, output_dim=dim,
            extra={"tensorflow": tf.__version__, "intra_op_threads": int(threads or 0)},
        )

    @staticmethod
    def _guess_output(p: os.PathLike[str], graph_def) -> str:
        names = {n.name for n in graph_def.node}
        if "embeddings" in names:
            return "embeddings"
        consumed = {i.lstrip("^").split(":")[0] for n in graph_def.node for i in n.input}
        sinks = [n.name for n in graph_def.node
                 if n.name not in consumed and n.op not in _SKIP_SINK_OPS]
        if len(sinks) != 1:
            raise InputError(f"{p}: cannot tell the output ({len(sinks)} candidate sinks: "
                             f"{', '.join(sinks[:8]) or 'none'}); name it with --output-name")
        return sinks[0]

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self._fn(self._tf.constant(batch)).numpy()

    def close(self) -> None:
        self._fn = None
