"""`massface-export --onnx ... --precision-preview fp16,int8 --aipp`: the accuracy budget.

One export of the shared model on a 40-pair LFW subset (the README's figures come from
all 6,000 pairs); its numbers are recomputed here the slow way, through massface-infer
and massface-eval on the same pairs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from massface.export.budget import select_pairs
from massface.export.cli import app
from massface.formats.embedding_dir import read_embedding_dir
from massface.formats.pairs import Pair, read_pairs, write_path_pairs
from massface.infer.cli import app as infer_app
from massface.scoring import verify
from tests.helpers.cli import invoke_ok, run_cli

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")

PAIRS = 40


@pytest.fixture(scope="module")
def exported(pretrained_onnx, lfw_dir, lfw_pairs, tmp_path_factory):
    out = tmp_path_factory.mktemp("preview") / "sirius"
    with pytest.MonkeyPatch.context() as mp:
        empty = out.parent / "no-atc"
        empty.mkdir()
        mp.setenv("PATH", str(empty))  # no atc: the .om step is scripted
        result = run_cli(app, [
            "--onnx", str(pretrained_onnx), "--out", str(out), "--precision-preview",
            "fp16,int8", "--aipp", "--precision-pairs", str(PAIRS), "--calibration-count",
            "16"])
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "export.json").read_text())


@pytest.fixture(scope="module")
def subset(exported, lfw_pairs):
    """The pairs the budget scored, as a path-pairs file for massface-infer."""
    out, _ = exported
    pairs, _ = select_pairs(read_pairs(lfw_pairs), PAIRS)
    path = out.parent / "subset-pairs.txt"
    write_path_pairs(path, pairs)
    return path, pairs


@pytest.fixture(scope="module")
def fp32_run(exported, subset, lfw_dir):
    """The fp32 model through massface-infer on the subset: (embeddings, image keys)."""
    out, _ = exported
    emb = _infer(out / "model.onnx", lfw_dir, subset[0], out.parent / "e-fp32")
    return emb, read_embedding_dir(out.parent / "e-fp32").paths


def _infer(model: Path, lfw_dir: Path, pairs_file: Path, out: Path) -> np.ndarray:
    # The budget is computed on ONNX Runtime (the engine that runs the simulation graphs);
    # --backend auto would run the fp32 model on OpenVINO, 1e-6 away in cosine.
    invoke_ok("--model", model, "--lfw", lfw_dir, "--pairs", pairs_file, "--out", out,
              "--backend", "onnxruntime", "--quiet")
    return read_embedding_dir(out).embeddings


def _accuracy(emb: np.ndarray, keys: list[str], pairs: list[Pair]) -> float:
    row = {k.rsplit(".", 1)[0]: i for i, k in enumerate(keys)}
    order = [row[r] for p in pairs for r in (p.a, p.b)]
    return float(verify(emb[order], [p.issame for p in pairs]).accuracy)


def test_select_pairs_keeps_each_fold_balanced(lfw_pairs):
    pairs = read_pairs(lfw_pairs)
    chosen, folds = select_pairs(pairs, 60)
    assert len(chosen) == 60
    for f in range(10):  # naive reference: count per fold and label
        in_fold = [p for p, g in zip(chosen, folds, strict=True) if g == f]
        assert sum(p.issame for p in in_fold) == 3 and len(in_fold) == 6
    first_diff = next(p for p in pairs[300:] if not p.issame)  # LFW fold 1: 300 same first
    assert chosen[:3] == pairs[:3] and chosen[3] == first_diff


@pytest.mark.slow
def test_export_json_records_each_target_and_the_budget(exported):
    out, m = exported
    for target, file in (("fp16", "model.fp16sim.onnx"), ("int8", "model.int8.onnx")):
        entry = m["precision"][target]
        assert entry["artifact"] == file and (out / file).is_file()
        for key in ("min_cosine", "median_cosine", "lfw_accuracy", "lfw_accuracy_fp32",
                    "images", "images_per_s", "images_per_s_fp32"):
            assert entry[key] is not None, key
        assert entry["min_cosine"] <= entry["median_cosine"] <= 1.0
    rows = {r["variant"]: r for r in m["accuracy_budget"]["rows"]}
    assert list(rows) == ["fp32", "aipp", "fp16", "int8"]
    assert m["accuracy_budget"]["evaluation"]["pairs"] == PAIRS
    assert all(r["images_per_s"] > 0 for r in rows.values())
    # fp16 differs from fp32 only in float16 rounding; int8 far more
    assert m["precision"]["fp16"]["min_cosine"] > 0.9999
    assert m["precision"]["int8"]["median_cosine"] < m["precision"]["fp16"]["min_cosine"]


@pytest.mark.slow
def test_budget_figures_equal_massface_infer_and_eval(exported, subset, fp32_run, lfw_dir):
    out, m = exported
    pairs_file, pairs = subset
    fp32, keys = fp32_run
    assert len(keys) == m["precision"]["fp16"]["images"]
    for target, file in (("fp16", "model.fp16sim.onnx"), ("int8", "model.int8.onnx")):
        emb = _infer(out / file, lfw_dir, pairs_file, out.parent / f"e-{target}")
        entry = m["precision"][target]
        assert _accuracy(emb, keys, pairs) == entry["lfw_accuracy"]
        a, b = fp32.astype(np.float64), emb.astype(np.float64)
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert abs(cos.min() - entry["min_cosine"]) < 1e-9
        assert abs(np.median(cos) - entry["median_cosine"]) < 1e-9
    assert _accuracy(fp32, keys, pairs) == m["precision"]["fp16"]["lfw_accuracy_fp32"]


@pytest.mark.slow
def test_aipp_twin_through_massface_infer_matches_the_float_model(exported, subset, fp32_run,
                                                                  lfw_dir):
    out, m = exported
    pairs_file, pairs = subset
    fp32, _ = fp32_run
    twin = _infer(out / "model.aipp.onnx", lfw_dir, pairs_file, out.parent / "e-aipp")
    meta = json.loads((out.parent / "e-aipp" / "meta.json").read_text())
    assert meta["model"]["input_dtype"] == "uint8"  # fed raw pixels
    assert np.abs(twin - fp32).max() <= 1e-4
    keys = read_embedding_dir(out.parent / "e-aipp").paths
    assert _accuracy(twin, keys, pairs) == _accuracy(fp32, keys, pairs)
    assert m["aipp"]["twin"]["lfw"]["max_abs_diff"] <= 1e-4


@pytest.mark.slow
def test_msame_input_bins_for_an_aipp_model_are_raw_pixels(exported, subset, lfw_dir):
    """prepare-bins for the AIPP contract (--model the twin): uint8 RGB pixels as decoded,
    which the twin reads back (--input-bins) to the embeddings of the image path."""
    from PIL import Image

    from massface.formats.pairs import resolve_reference

    out, _ = exported
    pairs_file, pairs = subset
    twin, bins = out / "model.aipp.onnx", out.parent / "aipp-bins"
    invoke_ok("prepare-bins", "--lfw", lfw_dir, "--pairs", pairs_file, "--model", twin,
              "--out", bins)
    info = json.loads((bins / "inputs.json").read_text())
    assert info["dtype"] == "uint8" and info["files"] == 2 * len(pairs)
    first = np.asarray(Image.open(resolve_reference(lfw_dir, pairs[0].a)).convert("RGB"))
    np.testing.assert_array_equal(
        np.fromfile(bins / "inputs" / "0.bin", np.uint8).reshape(first.shape), first)
    invoke_ok("--model", twin, "--input-bins", bins, "--out", out.parent / "e-bins", "--quiet")
    from_bins = read_embedding_dir(out.parent / "e-bins").embeddings
    from_images = _infer(twin, lfw_dir, pairs_file, out.parent / "e-aipp-images")
    keys = read_embedding_dir(out.parent / "e-aipp-images").paths
    row = {k.rsplit(".", 1)[0]: i for i, k in enumerate(keys)}
    slots = [row[r] for p in pairs for r in (p.a, p.b)]
    np.testing.assert_array_equal(from_bins, from_images[slots])
    # the float model refuses pixel bins, naming both and the fix
    wrong = run_cli(infer_app, ["--model", str(out / "model.onnx"), "--input-bins",
                                           str(bins), "--out", str(out.parent / "e-wrong")])
    assert wrong.exit_code == 2
    assert "holds uint8 input bins" in " ".join(wrong.output.split())


@pytest.mark.slow
def test_int8_graph_is_qdq_per_channel_with_first_and_last_in_float(exported):
    out, m = exported
    model = onnx.load(str(out / "model.int8.onnx"))
    produced = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 52
    weight_from_dq = [produced.get(c.input[1]) is not None
                      and produced[c.input[1]].op_type == "DequantizeLinear" for c in convs]
    assert not weight_from_dq[0] and not weight_from_dq[-1]  # kept in float
    assert all(weight_from_dq[1:-1])
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    dq = produced[convs[1].input[1]]
    scales = inits[dq.input[1]]
    assert scales.ndim == 1 and scales.size == inits[dq.input[0]].shape[0]  # per channel
    assert inits[dq.input[0]].dtype == np.int8
    assert m["precision"]["int8"]["kept_float"] == [convs[0].name, convs[-1].name]


@pytest.mark.slow
def test_aipp_contract_and_atc_command(exported):
    out, m = exported
    assert m["aipp"]["input"]["dtype"] == "uint8" and m["aipp"]["input"]["color"] == "RGB"
    assert m["aipp"]["om_file"] == "model.om"
    assert (out / "aipp.cfg").read_text().count("aipp_mode: static") == 1
    script = (out / "atc.sh").read_text()
    assert "--insert_op_conf=aipp.cfg" in script and "--model=model.nchw.onnx" in script
    assert "--input_format=NCHW" in script
    assert m["parity"]["onnx_nchw"]["passed"]


@pytest.mark.slow
def test_config_file_and_overrides(pretrained_onnx, lfw_dir, tmp_path, no_atc):
    cfg = tmp_path / "export.yaml"
    cfg.write_text("precision_preview: [fp16]\nprecision_pairs: 0\naipp: true\n")
    out = tmp_path / "x"
    result = run_cli(app, ["--onnx", str(pretrained_onnx), "--out", str(out),
                                      "--config", str(cfg), "--no-aipp", "--no-om"])
    assert result.exit_code == 0, result.output
    m = json.loads((out / "export.json").read_text())
    assert list(m["precision"]) == ["fp16"] and "aipp" not in m  # --no-aipp wins
    assert m["precision"]["fp16"]["lfw_accuracy"] is None  # precision_pairs: 0
    assert m["precision"]["fp16"]["images"] == 16  # the parity faces
    cfg.write_text("precision_preview: [fp16]\nbogus: 1\n")
    bad = run_cli(app, ["--onnx", str(pretrained_onnx), "--out",
                                   str(tmp_path / "y"), "--config", str(cfg)])
    assert bad.exit_code == 2 and "bogus" in bad.output


def test_unknown_target_is_refused_before_any_work(pretrained_onnx, tmp_path):
    result = run_cli(app, ["--onnx", str(pretrained_onnx), "--out",
                                      str(tmp_path / "x"), "--precision-preview", "fp8"])
    assert result.exit_code == 2
    assert "fp8" in result.output and "fp16" in result.output and "int8" in result.output
    assert not (tmp_path / "x").exists()
