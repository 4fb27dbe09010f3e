"""Fixtures for massface.infer tests: small real subsets, tiny ONNX models, a frozen .pb."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def invoke_ok(*args: object):
    """Run ``massface-infer`` in-process with ``args``; it must succeed."""
    from typer.testing import CliRunner

    from massface.infer.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def make_linear_onnx(path: Path, *, layout: str = "NHWC", batch: int | None = None,
                     size: tuple[int, int] = (112, 112), channels: int = 3, dim: int = 16,
                     seed: int = 0, input_shape: list | None = None) -> np.ndarray:
    """Write ``embeddings = flatten(input) @ W`` as ONNX; returns W (for a numpy reference)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, w = size
    shape = input_shape or ([batch or "N", h, w, channels] if layout == "NHWC"
                            else [batch or "N", channels, h, w])
    flat = int(np.prod([d for d in shape[1:] if isinstance(d, int)]))
    weight = np.random.default_rng(seed).standard_normal((flat, dim)).astype(np.float32) / 50
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "W"], ["embeddings"])]
    graph = helper.make_graph(
        nodes, "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, [shape[0], dim])],
        [numpy_helper.from_array(weight, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return weight


@pytest.fixture(scope="session")
def subset_pairs(tmp_path_factory: pytest.TempPathFactory, lfw_pairs: Path) -> Path:
    """60 LFW pairs in 10 folds: from each official set, its first 3 same + 3 different."""
    lines = lfw_pairs.read_text().splitlines()[1:]
    chosen = [line for s in range(10)
              for line in lines[600 * s:600 * s + 3] + lines[600 * s + 300:600 * s + 303]]
    path = tmp_path_factory.mktemp("pairs") / "pairs60.txt"
    path.write_text("\n".join(chosen) + "\n")
    return path


@pytest.fixture(scope="session")
def frozen_pb(tmp_path_factory: pytest.TempPathFactory, pretrained_onnx: Path) -> Path:
    """The shared ONNX model rebuilt as a frozen TensorFlow GraphDef."""
    pytest.importorskip("tensorflow")
    from onnx_to_pb import write_frozen_pb

    return write_frozen_pb(pretrained_onnx, tmp_path_factory.mktemp("pb") / "mobilefacenet.pb")


def lfw_accuracy_of(out: Path) -> float:
    """LFW accuracy of an embedding folder through massface.evaluate.verify when it exists,
    else through the reference in lfw_reference.py (the two are compared elsewhere)."""
    from massface.tools.embedding_dir import read_embedding_dir
    from massface.tools.pairs import read_pairs

    es = read_embedding_dir(out)
    rows = es.row_of()
    pairs = read_pairs(es.pairs_file)
    emb = es.embeddings[[rows[r] for p in pairs for r in (p.a, p.b)]]
    issame = np.array([p.issame for p in pairs])
    return accuracy(emb, issame)


def accuracy(emb: np.ndarray, issame: np.ndarray) -> float:
    try:
        from massface.evaluate import verify
    except ImportError:
        from lfw_reference import lfw_accuracy

        return lfw_accuracy(emb, issame)
    return float(verify(emb, issame).accuracy)
