"""massface-eval through its CLI: every input format, every report, every refusal."""

from __future__ import annotations

import json
import subprocess
import sys
from hashlib import sha256
from pathlib import Path

import numpy as np
import pytest

from massface.evaluate.cli import app
from massface.formats import embedding_dir, msame
from massface.formats.pairs import Pair, write_path_pairs
from massface.scoring import verify
from massface.scoring.folds import contiguous_fold_ids
from tests.helpers.cli import run_cli
from tests.helpers.naive_reference import assert_matches, naive_evaluate

N_PAIRS = 60
DIM = 8


@pytest.fixture
def data():
    """60 pairs (6 per fold, 3 same then 3 different) with a learnable signal."""
    rng = np.random.default_rng(42)
    same = np.tile([True, True, True, False, False, False], 10)
    a = rng.standard_normal((N_PAIRS, DIM))
    b = rng.standard_normal((N_PAIRS, DIM))
    b[same] = a[same] + 0.9 * b[same]
    emb = np.empty((2 * N_PAIRS, DIM), np.float32)
    emb[0::2], emb[1::2] = a, b
    return emb, same


def run(*args):
    result = run_cli(app, [str(a) for a in args])
    return result.exit_code, result.output


def run_json(tmp_path, *args):
    out = tmp_path / "report.json"
    code, output = run(*args, "--json", out)
    assert code == 0, output
    return json.loads(out.read_text())


def write_outputs(folder: Path, emb: np.ndarray, namer=msame.msame_output_name, dtype=np.float32,
                  ext="bin"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(emb):
        path = folder / namer(i, 0, ext)
        if ext == "bin":
            path.write_bytes(row.astype(dtype).tobytes())
        elif ext == "txt":
            path.write_text(" ".join(f"{v:.9g}" for v in row) + "\n")
        else:
            np.save(path, row[None, :].astype(dtype))
    return folder


def labels_file(tmp_path, same):
    path = tmp_path / msame.LABELS_FILE
    msame.write_labels_file(path, same)
    return path


# --- inputs ---------------------------------------------------------------------------


def test_npz_with_labels_matches_api_and_naive(tmp_path, data):
    emb, same = data
    np.savez(tmp_path / "run.npz", embeddings=emb, issame=same)
    report = run_json(tmp_path, tmp_path / "run.npz")
    expected = verify(emb, same)
    assert report["accuracy"] == expected.accuracy
    assert report["fold_threshold"] == list(expected.fold_threshold)
    assert_matches(expected, naive_evaluate(emb, same))
    for key in ("accuracy", "accuracy_std", "fold_accuracy", "fold_threshold", "val", "val_std",
                "far", "auc", "eer", "tpr_at_far", "protocol", "input"):
        assert key in report
    digest = sha256((tmp_path / "run.npz").read_bytes()).hexdigest()
    assert report["input"]["sha256"][str(tmp_path / "run.npz")] == digest


@pytest.mark.parametrize("labels_kind", ["txt", "json", "json-object", "npy"])
def test_npy_with_each_label_format(tmp_path, data, labels_kind):
    emb, same = data
    np.save(tmp_path / "emb.npy", emb)
    if labels_kind == "txt":
        labels = labels_file(tmp_path, same)
    elif labels_kind.startswith("json"):
        labels = tmp_path / "labels.json"
        body = [int(x) for x in same]
        labels.write_text(json.dumps({"issame": body} if labels_kind == "json-object" else body))
    else:
        labels = tmp_path / "labels.npy"
        np.save(labels, same)
    report = run_json(tmp_path, tmp_path / "emb.npy", "--labels", labels)
    assert report["accuracy"] == verify(emb, same).accuracy
    assert str(labels) in report["input"]["sha256"]


@pytest.mark.parametrize("layout", ["msame-timestamp", "msame-direct", "ais_bench"])
def test_output_folders_are_read_in_integer_order(tmp_path, data, layout):
    """calAcc's emb_array: file i is row i. 120 files make listdir/lexicographic order
    ('10' before '2') wrong, so equality with the array proves integer ordering."""
    emb, same = data
    root = tmp_path / "out"
    if layout == "msame-timestamp":
        write_outputs(root / "2024_01_01_12_00_00_123456", emb)
    elif layout == "msame-direct":
        write_outputs(root, emb)
    else:
        write_outputs(root / "2024_01_01-12_00_00", emb, namer=msame.ais_bench_output_name)
        (root / "2024_01_01-12_00_00_summary.json").write_text("{}")
        (root / "2024_01_01-12_00_00" / "sumary.json").write_text("{}")
    report = run_json(tmp_path, root, "--labels", labels_file(tmp_path, same), "--dim", DIM)
    expected = verify(emb, same)
    assert report["accuracy"] == expected.accuracy
    assert report["fold_accuracy"] == list(expected.fold_accuracy)
    assert report["input"]["tool"] == ("ais_bench" if layout == "ais_bench" else "msame")
    assert report["input"]["output_dtype"] == "float32"
    files = sorted(root.rglob("*.bin"), key=lambda p: int(p.name.split("_")[0]))
    manifest = "".join(f"{sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in files)
    assert report["input"]["outputs_manifest_sha256"] == sha256(manifest.encode()).hexdigest()


def test_float16_outputs_inferred_from_size_and_dim(tmp_path, data):
    emb, same = data
    write_outputs(tmp_path / "out" / "ts", emb, dtype=np.float16)
    labels = labels_file(tmp_path, same)
    report = run_json(tmp_path, tmp_path / "out", "--labels", labels, "--dim", DIM)
    assert report["input"]["output_dtype"] == "float16"
    assert report["accuracy"] == verify(emb.astype(np.float16), same).accuracy
    report = run_json(tmp_path, tmp_path / "out", "--labels", labels, "--dtype", "float16")
    assert report["input"]["output_dtype"] == "float16"
    code, out = run(tmp_path / "out", "--labels", labels)
    assert code == 2 and "pass --dtype" in out and "0_output_0.bin" in out


def test_txt_and_npy_outputs(tmp_path, data):
    emb, same = data
    labels = labels_file(tmp_path, same)
    write_outputs(tmp_path / "txt" / "ts", emb, ext="txt")
    write_outputs(tmp_path / "npy" / "ts", emb, namer=msame.ais_bench_output_name, ext="npy")
    report = run_json(tmp_path, tmp_path / "txt", tmp_path / "npy", "--labels", labels)
    expected = verify(emb, same)
    for r in report["runs"]:
        assert r["accuracy"] == expected.accuracy
    assert [r["input"]["output_format"] for r in report["runs"]] == ["txt", "npy"]


def test_labels_found_inside_the_output_folder(tmp_path, data):
    emb, same = data
    write_outputs(tmp_path / "out" / "ts", emb)
    labels_file(tmp_path / "out", same)
    report = run_json(tmp_path, tmp_path / "out", "--dtype", "float32")
    assert report["accuracy"] == verify(emb, same).accuracy


def _embedding_folder(tmp_path, data, flip=False):
    """Distinct images (each used by several pairs) + a path-pairs file in the folder."""
    emb, same = data
    rng = np.random.default_rng(0)
    paths = [f"id{i // 4}/{i}.png" for i in range(2 * N_PAIRS)]
    perm = rng.permutation(2 * N_PAIRS)  # rows stored in another order than pair order
    pairs = [Pair(paths[2 * i], paths[2 * i + 1], bool(same[i])) for i in range(N_PAIRS)]
    pairs_file = tmp_path / "pairs.txt"
    write_path_pairs(pairs_file, pairs)
    flipped = emb + np.float32(0.1) if flip else None
    folder = embedding_dir.write_embedding_dir(
        tmp_path / "emb", emb[perm], [paths[i] for i in perm],
        flip=None if flipped is None else flipped[perm], pairs_file=pairs_file,
        meta={"model": "synthetic"})
    return folder, flipped


def test_embedding_folder_maps_pairs_to_rows(tmp_path, data):
    emb, same = data
    folder, _ = _embedding_folder(tmp_path, data)
    report = run_json(tmp_path, folder)
    assert report["accuracy"] == verify(emb, same).accuracy
    assert report["input"]["kind"] == "embeddings"
    assert report["input"]["labels_kind"] == "path-pairs"


def test_embedding_folder_with_flip_concat_and_sum(tmp_path, data):
    emb, same = data
    folder, flipped = _embedding_folder(tmp_path, data, flip=True)
    for mode in ("concat", "sum"):
        report = run_json(tmp_path, folder, "--flip", mode)
        expected = verify(emb, same, flip_embeddings=flipped, flip=mode)
        assert report["accuracy"] == expected.accuracy
        assert report["protocol"]["flip"] == mode
        assert mode in report["protocol"]["description"] or "flip" in \
            report["protocol"]["description"]


def test_protocol_options_reach_the_result(tmp_path, data):
    emb, same = data
    np.savez(tmp_path / "run.npz", embeddings=emb, issame=same)
    report = run_json(tmp_path, tmp_path / "run.npz", "--distance", "cosine", "--subtract-mean",
                      "--normalization", "massface", "--step", "0.0025", "--far", "0.01",
                      "--folds", "5")
    expected = verify(emb, same, distance="cosine", subtract_mean=True, normalization="massface",
                      threshold_step=0.0025, far_target=0.01, n_folds=5)
    assert report["accuracy"] == expected.accuracy
    assert report["val"] == expected.val
    assert report["protocol"] == expected.protocol.to_dict()


def test_several_runs_markdown_and_roc(tmp_path, data):
    emb, same = data
    np.savez(tmp_path / "a.npz", embeddings=emb, issame=same)
    noisy = emb + np.random.default_rng(1).standard_normal(emb.shape).astype(np.float32)
    np.savez(tmp_path / "b.npz", embeddings=noisy, issame=same)
    md, png = tmp_path / "r.md", tmp_path / "roc.png"
    code, out = run(tmp_path / "a.npz", tmp_path / "b.npz", "--markdown", md, "--roc", png)
    assert code == 0, out
    assert "a.npz" in out and "b.npz" in out and "accuracy" in out
    text = md.read_text()
    assert text.count("| ") > 10 and "a.npz" in text and "b.npz" in text and "sha256" in text
    assert f"{100 * verify(emb, same).accuracy:.3f}" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_console_entry_point_runs(tmp_path, data):
    emb, same = data
    np.savez(tmp_path / "run.npz", embeddings=emb, issame=same)
    proc = subprocess.run([sys.executable, "-c", "from massface.evaluate.cli import main; main()",
                           str(tmp_path / "run.npz")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "accuracy" in proc.stdout


def test_evaluation_never_imports_tensorflow():
    code = ("import sys, massface.evaluate, massface.evaluate.cli, massface.evaluate.inputs, "
            "massface.evaluate.report, massface.formats.msame, massface.tools.pairs_generate; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# --- allow-missing --------------------------------------------------------------------


def test_allow_missing_drops_pairs_and_keeps_original_folds(tmp_path, data):
    emb, same = data
    folder = write_outputs(tmp_path / "out" / "ts", emb)
    (folder / "7_output_0.bin").unlink()  # pair 3
    (folder / "40_output_0.bin").unlink()  # pair 20
    (folder / "41_output_0.bin").unlink()  # pair 20 again: still one pair
    labels = labels_file(tmp_path, same)
    code, out = run(tmp_path / "out", "--labels", labels, "--dim", DIM)
    assert code == 2 and "3 of 120 output files missing" in out and "7, 40, 41" in out
    report = run_json(tmp_path, tmp_path / "out", "--labels", labels, "--dim", DIM,
                      "--allow-missing")
    assert report["input"]["pairs_dropped"] == 2
    assert report["input"]["dropped_pair_indices"] == [3, 20]
    keep = np.ones(N_PAIRS, bool)
    keep[[3, 20]] = False
    folds = contiguous_fold_ids(N_PAIRS, 10)[keep]
    kept_emb = emb.reshape(N_PAIRS, 2, DIM)[keep].reshape(-1, DIM)
    expected = verify(kept_emb, same[keep], fold_ids=folds)
    assert report["accuracy"] == expected.accuracy
    assert report["fold_sizes"] == [5, 6, 6, 5, 6, 6, 6, 6, 6, 6]  # not re-split contiguously
    splits = [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(10)]
    assert_matches(expected, naive_evaluate(kept_emb, same[keep], splits=splits))
    code, out = run(tmp_path / "out", "--labels", labels, "--dim", DIM, "--allow-missing")
    assert "2 of 60 pairs dropped" in " ".join(out.split())


def test_allow_missing_for_embedding_folder_images(tmp_path, data):
    folder, _ = _embedding_folder(tmp_path, data)
    es = embedding_dir.read_embedding_dir(folder)
    drop = es.paths.index("id0/1.png")  # image of pair 0
    keep = [i for i in range(len(es.paths)) if i != drop]
    embedding_dir.write_embedding_dir(folder, es.embeddings[keep], [es.paths[i] for i in keep],
                                      pairs_file=tmp_path / "pairs.txt")
    code, out = run(folder)
    assert code == 2 and "id0/1.png (pair 0)" in out
    report = run_json(tmp_path, folder, "--allow-missing")
    assert report["input"]["dropped_pair_indices"] == [0]


# --- refusals -------------------------------------------------------------------------


def expect_error(*args, contains):
    code, out = run(*args)
    assert code == 2, out
    flat = " ".join(out.split())
    for text in contains:
        assert text in flat, flat
    return flat


def test_missing_outputs_list_first_indices(tmp_path, data):
    emb, same = data
    folder = write_outputs(tmp_path / "out" / "ts", emb)
    for i in range(10, 30):
        (folder / f"{i}_output_0.bin").unlink()
    expect_error(tmp_path / "out", "--labels", labels_file(tmp_path, same), "--dim", DIM,
                 contains=[str(folder), "20 of 120 output files missing",
                           "10, 11, 12, 13, 14, 15, 16, 17, 18, 19", "10_output_0.bin"])


def test_extra_outputs(tmp_path, data):
    emb, same = data
    write_outputs(tmp_path / "out" / "ts", np.concatenate([emb, emb[:2]]))
    expect_error(tmp_path / "out", "--labels", labels_file(tmp_path, same), "--dim", DIM,
                 contains=["2 output file(s) beyond the 120 images", "120_output_0.bin"])


def test_mixed_dimensions(tmp_path, data):
    emb, same = data
    folder = write_outputs(tmp_path / "out" / "ts", emb)
    (folder / "5_output_0.bin").write_bytes(np.zeros(DIM + 1, np.float32).tobytes())
    expect_error(tmp_path / "out", "--labels", labels_file(tmp_path, same), "--dtype", "float32",
                 contains=["mixed dimensions", "5_output_0.bin"])
    write_outputs(tmp_path / "txt" / "ts", emb, ext="txt")
    (tmp_path / "txt" / "ts" / "9_output_0.txt").write_text("1 2 3\n")
    expect_error(tmp_path / "txt", "--labels", tmp_path / msame.LABELS_FILE,
                 contains=["mixed dimensions", "9_output_0.txt"])


@pytest.mark.parametrize("value,what", [(np.nan, "NaN or Inf"), (np.inf, "NaN or Inf"),
                                        (0.0, "all zero")])
def test_bad_rows_are_named_with_their_files(tmp_path, data, value, what):
    emb, same = data
    bad = emb.copy()
    bad[[4, 77]] = 0.0 if value == 0.0 else bad[[4, 77]]
    if value != 0.0:
        bad[4, 2] = bad[77, 0] = value
    write_outputs(tmp_path / "out" / "ts", bad)
    expect_error(tmp_path / "out", "--labels", labels_file(tmp_path, same), "--dim", DIM,
                 contains=[what, "4 (4_output_0.bin)", "77 (77_output_0.bin)"])
    np.save(tmp_path / "bad.npy", bad)
    expect_error(tmp_path / "bad.npy", "--labels", tmp_path / msame.LABELS_FILE,
                 contains=[str(tmp_path / "bad.npy"), what, "rows 4, 77"])


def test_labels_not_zero_one(tmp_path, data):
    emb, _ = data
    np.save(tmp_path / "emb.npy", emb)
    bad = tmp_path / "labels.txt"
    bad.write_text("1 0 2 1 " + " ".join("1" for _ in range(56)) + "\n")
    expect_error(tmp_path / "emb.npy", "--labels", bad,
                 contains=[str(bad), "not 0/1", "#2='2'"])
    bad_json = tmp_path / "labels.json"
    bad_json.write_text(json.dumps([1, 0, 3] + [1] * 57))
    expect_error(tmp_path / "emb.npy", "--labels", bad_json, contains=[str(bad_json), "0/1"])


def test_odd_and_mismatched_counts(tmp_path, data):
    emb, same = data
    labels = labels_file(tmp_path, same)
    np.save(tmp_path / "odd.npy", emb[:-1])
    expect_error(tmp_path / "odd.npy", "--labels", labels,
                 contains=[str(tmp_path / "odd.npy"), "odd number of embeddings (119)"])
    np.save(tmp_path / "short.npy", emb[:-2])
    expect_error(tmp_path / "short.npy", "--labels", labels,
                 contains=["118 embeddings make 59 pairs but there are 60 labels", str(labels)])


def test_fold_without_positives_or_negatives(tmp_path, data):
    emb, _ = data
    np.save(tmp_path / "emb.npy", emb)
    same = np.tile([True, True, True, False, False, False], 10)
    same[12:18] = True  # fold 3 holds pairs 12-17
    labels = labels_file(tmp_path, same)
    expect_error(tmp_path / "emb.npy", "--labels", labels,
                 contains=[str(tmp_path / "emb.npy"), "fold 3 of 10 (pairs 12-17)",
                           "no different-person pairs"])
    same[12:18] = False
    msame.write_labels_file(labels, same)
    expect_error(tmp_path / "emb.npy", "--labels", labels,
                 contains=["fold 3 of 10", "no same-person pairs"])


def test_unreadable_files(tmp_path, data):
    emb, same = data
    (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    expect_error(tmp_path / "broken.npy", "--labels", labels_file(tmp_path, same),
                 contains=[str(tmp_path / "broken.npy"), "unreadable"])
    write_outputs(tmp_path / "txt" / "ts", emb, ext="txt")
    (tmp_path / "txt" / "ts" / "3_output_0.txt").write_text("0.1 zero 0.3\n")
    expect_error(tmp_path / "txt", "--labels", tmp_path / msame.LABELS_FILE,
                 contains=["3_output_0.txt", "unreadable"])
    expect_error(tmp_path / "nothing.npz", contains=["nothing.npz", "no such file"])
    (tmp_path / "labels.bin").write_bytes(b"\xff\xfe\x00")
    np.save(tmp_path / "emb.npy", emb)
    expect_error(tmp_path / "emb.npy", "--labels", tmp_path / "labels.bin",
                 contains=["labels.bin", "cannot read labels"])


def test_ambiguous_output_folders(tmp_path, data):
    emb, same = data
    labels = labels_file(tmp_path, same)
    write_outputs(tmp_path / "out" / "run1", emb)
    write_outputs(tmp_path / "out" / "run2", emb)
    expect_error(tmp_path / "out", "--labels", labels,
                 contains=["2 subfolders hold outputs (run1, run2)"])
    folder = write_outputs(tmp_path / "mixed", emb)
    write_outputs(folder, emb[:4], namer=msame.ais_bench_output_name)
    expect_error(folder, "--labels", labels, contains=["mixed output files"])
    (tmp_path / "empty").mkdir()
    expect_error(tmp_path / "empty", "--labels", labels, contains=["no msame"])
    stranger = write_outputs(tmp_path / "stranger", emb)
    (stranger / "notes.bin").write_bytes(b"x")
    expect_error(stranger, "--labels", labels, contains=["not named like msame", "notes.bin"])


def test_labels_that_disagree_with_the_inputs_own(tmp_path, data):
    emb, same = data
    np.savez(tmp_path / "run.npz", embeddings=emb, issame=same)
    other = same.copy()
    other[7] = not other[7]
    labels = labels_file(tmp_path, other)
    expect_error(tmp_path / "run.npz", "--labels", labels,
                 contains=["disagree", "first difference at pair 7"])


def test_bare_labels_cannot_pair_an_embedding_folder(tmp_path, data):
    emb, same = data
    folder = embedding_dir.write_embedding_dir(tmp_path / "emb", emb, [f"{i}.png" for i in
                                                                       range(len(emb))])
    expect_error(folder, "--labels", labels_file(tmp_path, same),
                 contains=["cannot say which rows pair up"])


def test_bad_option_values(tmp_path, data):
    emb, same = data
    np.savez(tmp_path / "run.npz", embeddings=emb, issame=same)
    code, out = run(tmp_path / "run.npz", "--flip", "mirror")
    assert code != 0 and "mirror" in out
    expect_error(tmp_path / "run.npz", "--flip", "concat",
                 contains=["run.npz", "needs the flipped images"])


def test_every_protocol_is_a_registry_entry_lfw_included(data):
    """massface-eval has one path: each protocol scores pairs or a labelled set through its
    PROTOCOLS entry; lfw is a real entry (no None standing for it)."""
    from types import SimpleNamespace

    from massface.evaluate.protocols import PROTOCOLS, PairOptions

    for name in PROTOCOLS:
        entry = PROTOCOLS.get(name)
        assert (entry.pairs is None) != (entry.evaluate is None), name
    lfw = PROTOCOLS.get("lfw")
    assert lfw.report == "pairs"
    emb, same = data
    pairs = SimpleNamespace(embeddings=emb, issame=same, flip_embeddings=None, fold_ids=None)
    got = lfw.pairs(pairs, PairOptions(distance="cosine", threshold_step=0.001))
    want = verify(emb, same, distance="cosine", threshold_step=0.001)
    assert got.accuracy == want.accuracy and list(got.fold_threshold) == \
        list(want.fold_threshold)
