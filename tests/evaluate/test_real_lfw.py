"""The evaluator on REAL embeddings: the shared pretrained MobileFaceNet over the shared LFW.

The embeddings are ``massface-infer``'s over the 7,701 pair images (the ``lfw_onnx_run``
fixture, computed once per test run; tests/infer/test_lfw_full.py pins them to a plain
ONNX Runtime loop written there). Measured on this project's machine: accuracy 99.267%
(publisher: 99.25%).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from massface.evaluate.cli import app
from massface.formats import embedding_dir, msame
from massface.formats.pairs import pair_references, read_pairs
from massface.scoring import verify
from tests.helpers.cli import run_cli
from tests.helpers.naive_reference import assert_matches, naive_evaluate

PUBLISHED_ACCURACY = 0.9925


@pytest.fixture(scope="module")
def lfw(lfw_onnx_run, lfw_pairs):
    """Distinct-image embeddings, their references, the pairs, and pair-ordered rows."""
    es = embedding_dir.read_embedding_dir(lfw_onnx_run)
    pairs = read_pairs(lfw_pairs)
    refs = pair_references(pairs)
    rows = es.row_of()
    distinct = es.embeddings[[rows[r] for r in refs]].astype(np.float32)
    row = {r: i for i, r in enumerate(refs)}
    order = np.array([row[ref] for p in pairs for ref in (p.a, p.b)])
    issame = np.array([p.issame for p in pairs])
    paths = [es.paths[rows[r]] for r in refs]
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
    res = run_cli(app, [str(emb_dir), str(tmp_path / "msame"), "--labels",
                                   str(labels), "--dtype", "float32", "--json", str(report)])
    # --labels applies to inputs without their own: the embedding folder keeps its pairs.txt
    assert res.exit_code == 0, res.output
    runs = json.loads(report.read_text())["runs"]
    assert [r["input"]["kind"] for r in runs] == ["embeddings", "outputs"]
    for r in runs:
        assert r["accuracy"] == expected.accuracy
        assert r["fold_threshold"] == list(expected.fold_threshold)
        assert r["val"] == pytest.approx(expected.val, abs=1e-12)
