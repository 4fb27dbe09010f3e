"""The evaluator on REAL embeddings: the shared pretrained MobileFaceNet over the shared LFW.

The embeddings come from a plain ONNX Runtime loop written here (PIL decode, RGB,
(x - 127.5) / 128, batch 32, each distinct pair image once), independent of
massface.infer, and are computed once for this module.
Measured on this project's machine: accuracy 99.267% (publisher: 99.25%).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from massface.evaluate import verify
from massface.evaluate.cli import app
from massface.formats import embedding_dir, msame
from massface.formats.pairs import pair_references, read_pairs, resolve_reference
from tests.helpers.naive_reference import assert_matches, naive_evaluate

PUBLISHED_ACCURACY = 0.9925
BATCH = 32


def _embed(model_path, files):
    import onnxruntime as ort
    from PIL import Image

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = []
    for start in range(0, len(files), BATCH):
        batch = np.stack([
            (np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) - 127.5) / 128.0
            for f in files[start:start + BATCH]])
        out.append(session.run(None, {name: batch})[0])
    return np.concatenate(out).astype(np.float32)


@pytest.fixture(scope="module")
def lfw(lfw_dir, lfw_pairs, pretrained_onnx):
    """Distinct-image embeddings, their references, the pairs, and pair-ordered rows."""
    pairs = read_pairs(lfw_pairs)
    refs = pair_references(pairs)
    files = [resolve_reference(lfw_dir, r) for r in refs]
    assert all(files), "an LFW pair image is missing"
    distinct = _embed(pretrained_onnx, files)
    row = {r: i for i, r in enumerate(refs)}
    order = np.array([row[ref] for p in pairs for ref in (p.a, p.b)])
    issame = np.array([p.issame for p in pairs])
    paths = [str(f.relative_to(lfw_dir)) for f in files]
    return {"distinct": distinct, "paths": paths, "pairs": pairs, "pairs_file": lfw_pairs,
            "embeddings": distinct[order], "issame": issame}


@pytest.mark.slow
def test_pretrained_model_reaches_published_lfw_accuracy(lfw):
    result = verify(lfw["embeddings"], lfw["issame"])
    print(f"\nreal LFW: accuracy {result.accuracy:.5f} +- {result.accuracy_std:.5f}, "
          f"VAL {result.val:.5f} @ FAR {result.far:.5f}, AUC {result.auc:.5f}, "
          f"EER {result.eer:.5f}")
    assert result.n_pairs == 6000 and result.n_same == 3000
    assert abs(result.accuracy - PUBLISHED_ACCURACY) <= 0.001
    assert result.val > 0.9


@pytest.mark.slow
@pytest.mark.parametrize("kw", [{}, {"subtract_mean": True, "distance": "cosine"},
                                {"normalization": "massface"}])
def test_real_embeddings_match_naive_reference(lfw, kw):
    result = verify(lfw["embeddings"], lfw["issame"], **kw)
    assert_matches(result, naive_evaluate(lfw["embeddings"], lfw["issame"], counting="numpy",
                                          **kw))


@pytest.mark.slow
def test_cli_on_real_embedding_folder_and_msame_outputs(lfw, tmp_path):
    """The same real numbers through massface-eval: an embedding folder (with LFW pairs.txt)
    and a calAcc-style msame output folder (fp32) must give the API's figures exactly."""
    expected = verify(lfw["embeddings"], lfw["issame"])
    emb_dir = embedding_dir.write_embedding_dir(tmp_path / "emb", lfw["distinct"], lfw["paths"],
                                                pairs_file=lfw["pairs_file"])
    run = tmp_path / "msame" / "20250101_000000"
    run.mkdir(parents=True)
    for i, row in enumerate(lfw["embeddings"]):
        (run / msame.msame_output_name(i)).write_bytes(row.astype(np.float32).tobytes())
    labels = tmp_path / msame.LABELS_FILE
    msame.write_labels_file(labels, lfw["issame"])
    report = tmp_path / "eval.json"
    res = CliRunner().invoke(app, [str(emb_dir), str(tmp_path / "msame"), "--labels",
                                   str(labels), "--dtype", "float32", "--json", str(report)])
    # --labels applies to inputs without their own: the embedding folder keeps its pairs.txt
    assert res.exit_code == 0, res.output
    runs = json.loads(report.read_text())["runs"]
    assert [r["input"]["kind"] for r in runs] == ["embeddings", "outputs"]
    for r in runs:
        assert r["accuracy"] == expected.accuracy
        assert r["fold_threshold"] == list(expected.fold_threshold)
        assert r["val"] == pytest.approx(expected.val, abs=1e-12)
