"""Every input kind, through the CLI, on a 60-pair LFW subset with the shared model.

Each kind must give the same embedding for the same image (the runtime is the same), and
the outputs must be what massface-eval reads: embedding folders with their pairs, msame
folders with labels.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from massface.formats.embedding_dir import read_embedding_dir
from massface.formats.insightface_bin import write_insightface_bin
from massface.formats.pairs import pair_references, read_pairs, resolve_reference
from tests.helpers.cli import invoke_ok as invoke
from tests.helpers.cli import run_cli
from tests.helpers.scoring import accuracy, lfw_accuracy_of


@pytest.fixture(scope="module")
def lfw_run(tmp_path_factory, pretrained_onnx, lfw_dir, subset_pairs) -> Path:
    out = tmp_path_factory.mktemp("lfw") / "run"
    invoke("--model", pretrained_onnx, "--lfw", lfw_dir, "--pairs", subset_pairs, "--out", out,
           "--batch-size", 16, "--quiet")
    return out


def by_key(out: Path) -> dict[str, np.ndarray]:
    es = read_embedding_dir(out)
    return dict(zip(es.paths, es.embeddings, strict=True))


def test_lfw_pairs_each_image_once_and_eval_ready(lfw_run, subset_pairs, lfw_dir):
    es = read_embedding_dir(lfw_run)
    pairs = read_pairs(subset_pairs)
    refs = pair_references(pairs)
    assert len(es.paths) == len(refs) < 2 * len(pairs)  # duplicates embedded once
    assert [p.rsplit(".", 1)[0] for p in es.paths] == refs  # first-use order
    assert es.pairs_file is not None
    assert es.pairs_file.read_bytes() == subset_pairs.read_bytes()
    assert es.embeddings.dtype == np.float32 and es.embeddings.shape[1] == 192
    # OpenVINO (auto's choice on x86) compiles the dynamic ONNX for --batch-size: static
    batch = "static" if es.meta["backend"] == "openvino" else "dynamic"
    assert es.meta["model"]["layout"] == "NHWC" and es.meta["model"]["batch"] == batch
    summary = json.loads((lfw_run / "summary.json").read_text())
    assert summary["images"] == len(refs) and summary["batches"] == -(-len(refs) // 16)
    assert {"p50", "p95"} <= set(summary["latency_ms"])
    # the rows are the images: compare one row against a direct ONNX Runtime call
    import onnxruntime as ort
    from PIL import Image

    sess = ort.InferenceSession(str(es.meta["model"]["path"]))
    img = np.asarray(Image.open(resolve_reference(lfw_dir, refs[3])).convert("RGB"), np.float32)
    direct = sess.run(None, {"input": ((img - 127.5) / 128)[None]})[0][0]
    np.testing.assert_allclose(es.embeddings[3], direct, atol=1e-4)
    # 30 same + 30 different pairs of real faces: the model separates them
    assert lfw_accuracy_of(lfw_run) > 0.95


def test_massface_eval_reads_the_folder(lfw_run):
    pytest.importorskip("massface.evaluate")
    from massface.evaluate.cli import app as eval_app

    result = run_cli(eval_app, [str(lfw_run), "--json", str(lfw_run / "eval.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((lfw_run / "eval.json").read_text())
    text = json.dumps(report)
    assert "accuracy" in text
    assert abs(_first_accuracy(report) - lfw_accuracy_of(lfw_run)) < 1e-9


def _first_accuracy(report: object) -> float:
    stack = [report]
    while stack:
        item = stack.pop(0)
        if isinstance(item, dict):
            if isinstance(item.get("accuracy"), float):
                return item["accuracy"]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    raise AssertionError("no accuracy in report")


def test_msame_format_is_pair_slot_order(tmp_path, lfw_run, pretrained_onnx, lfw_dir,
                                         subset_pairs):
    out = tmp_path / "msame"
    invoke("--model", pretrained_onnx, "--lfw", lfw_dir, "--pairs", subset_pairs, "--out", out,
           "--batch-size", 16, "--format", "msame", "--quiet")
    pairs = read_pairs(subset_pairs)
    emb = by_key(lfw_run)
    keyed = {k.rsplit(".", 1)[0]: v for k, v in emb.items()}
    files = sorted((out / "outputs").glob("*_output_0.bin"))
    assert len(files) == 2 * len(pairs)
    slots = [r for p in pairs for r in (p.a, p.b)]
    vecs = []
    for i, ref in enumerate(slots):
        vec = np.fromfile(out / "outputs" / f"{i}_output_0.bin", dtype=np.float32)
        np.testing.assert_array_equal(vec, keyed[ref])
        vecs.append(vec)
    labels = (out / "actual_issame.txt").read_text().split()
    assert labels == ["1" if p.issame else "0" for p in pairs]
    issame = np.array([p.issame for p in pairs])
    assert accuracy(np.stack(vecs), issame) == lfw_accuracy_of(lfw_run)
    from massface.evaluate.cli import app as eval_app

    # no --dtype: massface-eval takes dtype and width from massface-infer.json
    result = run_cli(eval_app, [str(out), "--json",
                                      str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    assert _first_accuracy(json.loads((tmp_path / "e.json").read_text())) == \
        lfw_accuracy_of(lfw_run)


def _subset_images(tmp_path: Path, lfw_dir: Path, lfw_run: Path) -> tuple[Path, list[str]]:
    """A folder-per-identity copy (symlinks) of the subset's images."""
    root = tmp_path / "ds"
    keys = read_embedding_dir(lfw_run).paths
    for k in keys:
        (root / k).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(lfw_dir / k, root / k)
    return root, keys


def test_images_folder_and_list_file(tmp_path, lfw_run, pretrained_onnx, lfw_dir, subset_pairs):
    root, keys = _subset_images(tmp_path, lfw_dir, lfw_run)
    ref = by_key(lfw_run)
    out = tmp_path / "images"
    invoke("--model", pretrained_onnx, "--images", root, "--pairs", subset_pairs, "--out", out,
           "--quiet")
    got = by_key(out)
    assert sorted(got) == sorted(keys)
    es = read_embedding_dir(out)
    assert es.paths == sorted(es.paths, key=lambda p: p.split("/"))  # natural = sorted here
    for k in keys:
        np.testing.assert_allclose(got[k], ref[k], atol=1e-5)
    assert lfw_accuracy_of(out) == pytest.approx(lfw_accuracy_of(lfw_run))

    listed = list(reversed(keys[:20]))
    lst = tmp_path / "list.txt"
    lst.write_text("# some images\n" + "\n".join(listed) + "\n\n")
    out2 = tmp_path / "list"
    invoke("--model", pretrained_onnx, "--list", lst, "--root", root, "--out", out2, "--quiet")
    es2 = read_embedding_dir(out2)
    assert es2.paths == listed and es2.pairs_file is None
    for k, v in zip(es2.paths, es2.embeddings, strict=True):
        np.testing.assert_allclose(v, ref[k], atol=1e-5)


def test_insightface_bin(tmp_path, lfw_run, pretrained_onnx, lfw_dir, subset_pairs):
    pairs = read_pairs(subset_pairs)
    slots = [r for p in pairs for r in (p.a, p.b)]
    encoded = [resolve_reference(lfw_dir, r).read_bytes() for r in slots]
    binfile = tmp_path / "lfw.bin"
    write_insightface_bin(binfile, encoded, [p.issame for p in pairs])
    out = tmp_path / "bin"
    invoke("--model", pretrained_onnx, "--bin", binfile, "--out", out, "--quiet")
    es = read_embedding_dir(out)
    assert es.paths == [str(i) for i in range(len(slots))]
    keyed = {k.rsplit(".", 1)[0]: v for k, v in by_key(lfw_run).items()}
    for i, ref in enumerate(slots):
        np.testing.assert_allclose(es.embeddings[i], keyed[ref], atol=1e-5)
    # the generated pairs file lets massface-eval score it with no other argument
    assert [p.issame for p in read_pairs(es.pairs_file)] == [p.issame for p in pairs]
    issame = np.array([p.issame for p in pairs])
    assert lfw_accuracy_of(out) == accuracy(es.embeddings, issame)


def test_to_input_bins_then_input_bins(tmp_path, lfw_run, pretrained_onnx, lfw_dir,
                                       subset_pairs):
    bins = tmp_path / "bins"
    invoke("--lfw", lfw_dir, "--pairs", subset_pairs, "--to-input-bins", bins,
           "--model", pretrained_onnx)
    pairs = read_pairs(subset_pairs)
    files = sorted((bins / "inputs").iterdir())
    assert len(files) == 2 * len(pairs)
    assert (bins / "actual_issame.txt").read_text().split() == \
        ["1" if p.issame else "0" for p in pairs]
    assert not (bins / "inputs" / "actual_issame.txt").exists()  # msame feeds every file
    # the seed's 2bin: float32 NHWC [1,112,112,3] of (RGB - 127.5) / 128
    from PIL import Image

    first = resolve_reference(lfw_dir, pairs[0].a)
    want = (np.asarray(Image.open(first).convert("RGB"), np.float32) - 127.5) / 128
    np.testing.assert_array_equal(
        np.fromfile(bins / "inputs" / "0.bin", np.float32).reshape(1, 112, 112, 3), want[None])
    meta = json.loads((bins / "inputs.json").read_text())
    assert meta["files"] == 2 * len(pairs) and meta["shape"] == [1, 112, 112, 3]

    out = tmp_path / "from-bins"
    invoke("--model", pretrained_onnx, "--input-bins", bins, "--out", out, "--quiet",
           "--batch-size", 16)
    es = read_embedding_dir(out)
    assert es.paths[:3] == ["0.bin", "1.bin", "2.bin"] and len(es.paths) == 2 * len(pairs)
    keyed = {k.rsplit(".", 1)[0]: v for k, v in by_key(lfw_run).items()}
    slots = [r for p in pairs for r in (p.a, p.b)]
    for i, ref in enumerate(slots):
        np.testing.assert_allclose(es.embeddings[i], keyed[ref], atol=1e-5)
    assert lfw_accuracy_of(out) == pytest.approx(lfw_accuracy_of(lfw_run))

    # msame format from input bins: output stems follow the input stems, like msame
    out2 = tmp_path / "from-bins-msame"
    invoke("--model", pretrained_onnx, "--input-bins", bins / "inputs", "--out", out2,
           "--format", "msame", "--quiet")
    names = sorted(p.name for p in (out2 / "outputs").iterdir())
    assert names == sorted(f"{i}_output_0.bin" for i in range(2 * len(pairs)))
    assert (out2 / "actual_issame.txt").is_file()


def test_flip_pass(tmp_path, pretrained_onnx, lfw_dir, subset_pairs):
    out = tmp_path / "flip"
    lines = subset_pairs.read_text().splitlines()[:6]
    small = tmp_path / "pairs6.txt"
    small.write_text("\n".join(lines) + "\n")
    invoke("--model", pretrained_onnx, "--lfw", lfw_dir, "--pairs", small, "--out", out,
           "--flip", "--quiet")
    es = read_embedding_dir(out)
    assert es.flip is not None and es.flip.shape == es.embeddings.shape
    import onnxruntime as ort
    from PIL import Image

    sess = ort.InferenceSession(str(pretrained_onnx))
    img = np.asarray(Image.open(lfw_dir / es.paths[0]).convert("RGB"), np.float32)
    mirrored = ((img - 127.5) / 128)[:, ::-1][None].copy()
    np.testing.assert_allclose(es.flip[0], sess.run(None, {"input": mirrored})[0][0], atol=1e-4)
    assert not np.allclose(es.flip[0], es.embeddings[0])


def test_export_json_and_options(tmp_path, pretrained_onnx, lfw_dir, subset_pairs):
    model_dir = tmp_path / "exported"
    model_dir.mkdir()
    model = model_dir / "m.onnx"
    shutil.copy(pretrained_onnx, model)
    (model_dir / "export.json").write_text(json.dumps({
        "format": "massface-export", "version": 1,
        "preprocessing": {"color": "BGR", "mean": 127.5, "std": 128.0, "size": [112, 112],
                          "layout": "NHWC"}}))
    small = tmp_path / "pairs3.txt"
    small.write_text("\n".join(subset_pairs.read_text().splitlines()[:3]) + "\n")
    out = tmp_path / "bgr"
    invoke("--model", model, "--lfw", lfw_dir, "--pairs", small, "--out", out, "--quiet")
    meta = read_embedding_dir(out).meta
    assert meta["preprocessing"]["color"] == "BGR"
    assert meta["preprocessing"]["sources"]["color"] == "export.json"
    out2 = tmp_path / "rgb"
    invoke("--model", model, "--lfw", lfw_dir, "--pairs", small, "--out", out2, "--quiet",
           "--color", "RGB")
    meta2 = read_embedding_dir(out2).meta
    assert meta2["preprocessing"]["sources"]["color"] == "option"
    assert not np.allclose(read_embedding_dir(out).embeddings,
                           read_embedding_dir(out2).embeddings)


def test_orl_grey_pgm_folder_is_converted_and_resized(tmp_path, orl_dir, pretrained_onnx):
    root = tmp_path / "orl"
    for person in ("s1", "s2", "s10"):
        (root / person).mkdir(parents=True)
        for i in (1, 2, 10):
            os.symlink(orl_dir / person / f"{i}.pgm", root / person / f"{i}.pgm")
    out = tmp_path / "out"
    invoke("--model", pretrained_onnx, "--images", root, "--out", out, "--quiet")
    es = read_embedding_dir(out)
    # natural order: s2 before s10, 2.pgm before 10.pgm
    assert es.paths[:4] == ["s1/1.pgm", "s1/2.pgm", "s1/10.pgm", "s2/1.pgm"]
    assert es.paths[-1] == "s10/10.pgm"
    emb = es.embeddings / np.linalg.norm(es.embeddings, axis=1, keepdims=True)
    same = float(emb[0] @ emb[1])
    other = float(emb[0] @ emb[3])
    assert same > other  # real faces: the same person is closer



def test_local_reference_agrees_with_massface_evaluate(lfw_run):
    """The test-side accuracy reference and massface.evaluate.verify give the same figure."""
    pytest.importorskip("massface.evaluate")
    from massface.scoring import verify
    from tests.helpers.lfw_reference import lfw_accuracy

    es = read_embedding_dir(lfw_run)
    rows = es.row_of()
    pairs = read_pairs(es.pairs_file)
    emb = es.embeddings[[rows[r] for p in pairs for r in (p.a, p.b)]]
    issame = np.array([p.issame for p in pairs])
    assert verify(emb, issame).accuracy == pytest.approx(lfw_accuracy(emb, issame), abs=1e-12)
