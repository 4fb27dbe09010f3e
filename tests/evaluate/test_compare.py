"""`massface-eval compare`: each deployment mistake, injected into the shared model's
embeddings of about 200 LFW images, is named; two identical runs agree.

The mistakes are written here independently of massface's hypotheses (NumPy and PIL on
the decoded pixels, the shared ONNX on ONNX Runtime), as a device pipeline would make
them; the fp16 candidate comes from the export's float16 simulation, as the issue allows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from massface.evaluate.diagnose import compare
from massface.evaluate.hypotheses import CAUSES, HYPOTHESES, ReferenceModel
from massface.evaluate.inputs import LoadOptions
from massface.export.budget import select_pairs
from massface.formats import msame
from massface.formats.embedding_dir import write_embedding_dir
from massface.formats.pairs import pair_references, read_pairs, resolve_reference, write_path_pairs
from tests.helpers.cli import run_cli

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

PAIRS = 120  # 12 per fold
SAMPLE = 16


def _norm(px: np.ndarray) -> np.ndarray:
    return (px.astype(np.float32) - 127.5) / 128.0


def _resize_128_crop_112(px: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(a).resize((128, 128), Image.BILINEAR))
                     [8:120, 8:120] for a in px])


#: cause -> the model input a broken pipeline feeds, from uint8 RGB pixels
MISTAKES = {
    "channel_order": lambda px: _norm(px[..., ::-1]),
    "normalization": lambda px: px.astype(np.float32) / 255.0,
    "layout": lambda px: np.ascontiguousarray(_norm(px).transpose(0, 3, 1, 2)).reshape(
        px.shape),
    "mirror": lambda px: _norm(px[:, :, ::-1]),
    "resize": lambda px: _norm(_resize_128_crop_112(px)),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, pretrained_onnx, lfw_dir, lfw_pairs):
    """REF (correct), a second identical run, and one candidate per mistake, as embedding
    folders over the same images (plus the fp16 one, and REF as msame outputs)."""
    from massface.export.fp16 import simulate_fp16

    root = tmp_path_factory.mktemp("compare")
    pairs, _ = select_pairs(read_pairs(lfw_pairs), PAIRS)
    write_path_pairs(root / "pairs.txt", pairs)
    keys = pair_references(pairs)
    px = np.stack([np.asarray(Image.open(resolve_reference(lfw_dir, k)).convert("RGB"))
                   for k in keys])
    model = onnx.load(str(pretrained_onnx))
    fp32 = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def embed(x: np.ndarray, sess=fp32) -> np.ndarray:
        return np.concatenate([sess.run(None, {"input": x[i:i + 64]})[0]
                               for i in range(0, len(x), 64)])

    fp16 = ort.InferenceSession(simulate_fp16(model).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    made = {"ref": embed(_norm(px)), "same": embed(_norm(px)),
            "precision": embed(_norm(px), fp16)}
    made.update({cause: embed(fn(px)) for cause, fn in MISTAKES.items()})
    for name, emb in made.items():
        write_embedding_dir(root / name, emb, keys, pairs_file=root / "pairs.txt")
    return root, keys, pairs, made


@pytest.fixture(scope="module")
def reference(pretrained_onnx, lfw_dir):
    ref = ReferenceModel(pretrained_onnx, lfw_dir)
    yield ref
    ref.close()


def test_the_causes_are_the_issues_list():
    assert set(CAUSES) == {"none", "channel_order", "normalization", "layout", "precision",
                           "mirror", "resize", "unknown"}
    assert {HYPOTHESES.get(n).cause for n in HYPOTHESES} == set(CAUSES) - {"none", "unknown"}


@pytest.mark.slow
@pytest.mark.parametrize("cause", ["channel_order", "normalization", "layout", "precision",
                                   "mirror", "resize"])
def test_each_injected_mistake_is_named(runs, reference, cause):
    root = runs[0]
    report = compare(root / "ref", root / cause, LoadOptions(), model=reference,
                     sample=SAMPLE)
    assert report["cause"] == cause, report["verdict"]
    assert report["reference_check"]["ok"]
    winners = [e for e in report["evidence"] if e.get("reproduces")]
    assert winners and all(e["cause"] == cause for e in winners)
    assert report["baseline"]["median_cosine"] < 1 - 1e-7


@pytest.mark.slow
def test_identical_runs_give_none(runs, reference):
    root = runs[0]
    report = compare(root / "ref", root / "same", LoadOptions(), model=reference,
                     sample=SAMPLE)
    assert report["cause"] == "none" and report["evidence"] == []
    assert not report["accuracy"]["beyond_fold_noise"]


@pytest.mark.slow
def test_per_image_figures_against_a_naive_loop(runs):
    root, keys, _, made = runs
    report = compare(root / "ref", root / "mirror", LoadOptions(), worst=5)
    cos = []
    for a, b in zip(made["ref"], made["mirror"], strict=True):  # one image at a time
        a, b = a.astype(np.float64), b.astype(np.float64)
        cos.append(float(a @ b / (np.sqrt(a @ a) * np.sqrt(b @ b))))
    assert report["images"] == len(keys) and report["per"] == "image"
    assert abs(report["min_cosine"] - min(cos)) < 1e-12
    assert abs(report["median_cosine"] - float(np.median(cos))) < 1e-12
    worst = sorted(range(len(cos)), key=lambda i: cos[i])[:5]
    assert [w["path"] for w in report["worst"]] == [keys[i] for i in worst]
    assert report["cause"] == "unknown"  # no --model: no diagnosis


def test_accuracy_noise_rule_against_hand_computed_folds():
    from massface.evaluate.diagnose import accuracy_difference
    from massface.evaluate.inputs import PairInput

    rng = np.random.default_rng(0)
    issame = np.tile([True] * 10 + [False] * 10, 10)
    base = rng.standard_normal((400, 8))
    base[1::2][issame] = base[0::2][issame] + 0.3 * rng.standard_normal((issame.sum(), 8))
    noisy = base + 0.6 * rng.standard_normal(base.shape)

    def pi(e):
        return PairInput("x", "npy", e, issame)

    same = accuracy_difference(pi(base), pi(base.copy()))
    assert same["difference"] == 0 and not same["beyond_fold_noise"]
    d = accuracy_difference(pi(base), pi(noisy))
    folds = np.array(d["fold_differences"])
    se = folds.std(ddof=1) / np.sqrt(10)
    assert abs(d["standard_error"] - se) < 1e-15
    assert abs(d["difference"] - folds.mean()) < 1e-12
    assert d["beyond_fold_noise"] == (abs(folds.mean()) > 2 * se)


@pytest.mark.slow
def test_cli_on_msame_outputs_writes_the_json_and_exits_0(runs, tmp_path, pretrained_onnx,
                                                           lfw_dir):
    """A device-style msame output folder (the mirror mistake) against the CPU folder,
    the images named by --labels pairs.txt."""
    from massface.evaluate.cli import main
    from massface.io import write_bytes

    root, keys, pairs, made = runs
    out = tmp_path / "device" / "20240101_120000"  # msame's timestamp folder
    out.mkdir(parents=True)
    row = {k: i for i, k in enumerate(keys)}
    for i, ref in enumerate(r for p in pairs for r in (p.a, p.b)):
        write_bytes(out / msame.msame_output_name(i), made["mirror"][row[ref]].tobytes())
    report_path = tmp_path / "r.json"
    argv = ["massface-eval", "compare", str(root / "ref"), str(tmp_path / "device"),
            "--labels", str(root / "pairs.txt"), "--model", str(pretrained_onnx),
            "--images", str(lfw_dir), "--sample", str(SAMPLE), "--json", str(report_path),
            "--html", str(tmp_path / "compare.html")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.argv", argv)
        with pytest.raises(SystemExit) as exit_info:
            main()
    assert exit_info.value.code in (0, None)
    r = json.loads(report_path.read_text())
    for key in ("min_cosine", "median_cosine", "worst", "cause", "evidence"):
        assert key in r
    assert r["cause"] == "mirror"
    assert {e["hypothesis"] for e in r["evidence"]} == set(HYPOTHESES)
    assert all({"path", "cosine"} <= set(w) for w in r["worst"])
    page = (tmp_path / "compare.html").read_text()  # the cosine histogram and worst faces
    assert "<svg" in page and page.count("data:image/jpeg") >= len(r["worst"])
    assert r["worst"][0]["path"] in page and "mirror" in page


def test_cli_refuses_inputs_of_different_images(tmp_path):
    from massface.evaluate.cli import app

    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    rng = np.random.default_rng(1)
    np.savez(a, embeddings=rng.standard_normal((40, 4)), issame=np.tile([1, 0], 10))
    np.savez(b, embeddings=rng.standard_normal((40, 5)), issame=np.tile([1, 0], 10))
    r = run_cli(app, ["compare", str(a), str(b)])
    assert r.exit_code == 2 and "not the same images" in r.output
    r = run_cli(app, ["compare", str(a), str(a), "--model", str(Path("m.onnx"))])
    assert r.exit_code == 2 and "--images" in r.output
