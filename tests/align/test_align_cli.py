"""massface-align end to end on real photos: mirrored tree, landmarks, skips, resume, lock."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from massface.align import run as align_run
from massface.align.cli import app
from massface.lock import folder_lock
from tests.helpers.cli import run_cli


def invoke(*args: object, code: int = 0):
    result = run_cli(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def test_mirrors_the_tree_and_records_every_image(small_tree, tmp_path, shared_landmarks):
    out = tmp_path / "out"
    result = invoke(small_tree, "--out", out, "--quiet")
    assert "6 images: 4 aligned (4 faces written), 2 skipped" in result.output
    keys = sorted(k for k in json.loads((out / "landmarks.json").read_text()))
    assert len(keys) == 4
    for key in keys:
        assert Image.open(out / key).size == (112, 112)
        entry = json.loads((out / "landmarks.json").read_text())[key]
        assert set(entry) == {"box", "prob", "lm", "nfaces"}
        assert np.linalg.norm(np.array(entry["lm"]) - shared_landmarks[key]["lm"],
                              axis=1).mean() < 4
    skipped = dict(line.split("\t") for line in
                   (out / "skipped.txt").read_text().splitlines()[1:])
    assert skipped["blank.png"] == "no face"
    assert skipped["broken.jpg"].startswith("unreadable")
    done = json.loads((out / "align.json").read_text())
    assert done["summary"]["skipped"] == {"no face": 1, "unreadable": 1}
    assert sorted(done["written"]) == keys
    assert not (out / ".align-partial").exists() and not (out / ".massface.lock").exists()
    # the same command again: nothing to do; other settings: refused; --overwrite: redone
    assert "already complete" in invoke(small_tree, "--out", out, "--quiet").output
    refused = " ".join(invoke(small_tree, "--out", out, "--pick", "largest", code=2).output
                       .split())
    # the resumable folder's one message (massface-infer's too): the fields that differ
    assert "already holds a finished massface-align run with other settings (differs in: " \
        "settings); rerun with --overwrite to replace it" in refused
    invoke(small_tree, "--out", out, "--pick", "largest", "--overwrite", "--quiet")


def test_given_landmarks_reproduce_the_shared_crops(raw_dir, raw_keys, shared_landmarks_path,
                                                   crops_dir, tmp_path):
    src = tmp_path / "raw"
    for key in raw_keys[:40]:
        (src / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(raw_dir / key, src / key)
    out = tmp_path / "aligned"
    invoke(src, "--out", out, "--landmarks", shared_landmarks_path, "--quiet")
    diffs = [np.abs(np.asarray(Image.open(out / k), np.int16)
                    - np.asarray(Image.open(crops_dir / k), np.int16)).mean()
             for k in raw_keys[:40]]
    assert np.mean(diffs) < 0.01  # the shared crops are these, up to JPEG's rounding


def test_missing_landmarks_entry_is_a_skip(small_tree, tmp_path, shared_landmarks):
    given = tmp_path / "given.json"
    key = sorted(p.relative_to(small_tree).as_posix() for p in small_tree.rglob("*_0*.jpg"))[0]
    given.write_text(json.dumps({key: shared_landmarks[key]}))
    out = tmp_path / "o"
    invoke(small_tree, "--out", out, "--landmarks", given, "--format", "png", "--quiet")
    assert (out / key).with_suffix(".png").is_file()
    text = (out / "skipped.txt").read_text()
    assert text.count("no landmarks") == 4  # 3 other photos + blank.png; broken.jpg: unreadable


def test_all_faces_templates_and_picks(raw_dir, raw_keys, tmp_path):
    a = np.asarray(Image.open(raw_dir / raw_keys[0]))
    b = np.asarray(Image.open(raw_dir / raw_keys[1]))
    src = tmp_path / "two"
    src.mkdir()
    Image.fromarray(np.hstack([a, b])).save(src / "pair.png")
    out = tmp_path / "o"
    invoke(src, "--out", out, "--all-faces", "--template", "sphereface", "--quiet")
    entry = json.loads((out / "landmarks.json").read_text())["pair.png"]
    assert entry["nfaces"] >= 2 and len(entry["faces"]) == entry["nfaces"]
    assert entry["faces"][0]["lm"] == entry["lm"]
    for k in range(entry["nfaces"]):
        assert Image.open(out / f"pair_{k}.jpg").size == (96, 112)
    # central: the face nearest the middle; largest: by box area
    boxes = np.array([f["box"] for f in entry["faces"]])
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2 - [250, 125]
    assert np.argmin((centres ** 2).sum(1)) == 0
    out2 = tmp_path / "o2"
    invoke(src, "--out", out2, "--pick", "largest", "--quiet")
    largest = json.loads((out2 / "landmarks.json").read_text())["pair.png"]["box"]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert largest == entry["faces"][int(np.argmax(areas))]["box"]


def test_interrupted_run_resumes_where_it_stopped(small_tree, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    invoke(small_tree, "--out", whole, "--quiet", "--workers", "1")
    out = tmp_path / "out"
    real = align_run._align_group
    calls = {"n": 0}

    def dying(*args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(align_run, "_align_group", dying)
    with pytest.raises(KeyboardInterrupt):  # groups of one image: dies at the 4th image
        align_run.run_align(align_run.AlignJob(
            small_tree, out, _settings(), workers=1, batch=1, progress=False))
    assert not (out / "align.json").exists()
    # what a kill inside atomic writes leaves (a crop, the landmarks file), and a hidden
    # file of the user's that is not a temporary
    crop_dir = (out / next(iter(json.loads((whole / "landmarks.json").read_text())))).parent
    stale = [crop_dir / ".x.png.abcd1234.tmp", out / ".landmarks.json.zz_99yy8.tmp"]
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
    (out / ".keep").write_text("mine")
    monkeypatch.setattr(align_run, "_align_group", real)
    result = invoke(small_tree, "--out", out, "--quiet", "--workers", "1")
    assert "resumed after 3 images" in result.output
    assert [p.name for p in out.rglob(".*")] == [".keep"]
    for name in ("landmarks.json", "skipped.txt"):
        assert (out / name).read_text() == (whole / name).read_text()
    for key in json.loads((whole / "landmarks.json").read_text()):
        assert (out / key).read_bytes() == (whole / key).read_bytes()


def _settings():
    from massface.align import TEMPLATES, AlignSettings

    return AlignSettings(TEMPLATES.get("arcface"))


def test_a_folder_in_use_is_refused(small_tree, tmp_path):
    out = tmp_path / "busy"
    with folder_lock(out, "massface-align"):
        result = invoke(small_tree, "--out", out, code=2)
    assert "in use by PID" in result.output


def test_bad_options_exit_2(small_tree, tmp_path):
    assert "face choice" in invoke(small_tree, "--out", tmp_path / "o", "--pick", "left",
                                   code=2).output
    assert "source folder not found" in invoke(tmp_path / "none", "--out", tmp_path / "o",
                                               code=2).output
    assert "--min-face" in invoke(small_tree, "--out", tmp_path / "o", "--min-face", "0",
                                  code=2).output


def test_groups_of_images_give_what_one_image_at_a_time_gives(small_tree, tmp_path):
    """--batch 8 (each MTCNN stage once per group) vs --batch 1 (one image per net call),
    both on ONNX Runtime: the same landmarks, crops and skips; the engine is recorded."""
    outs = {}
    for batch in (1, 8):
        out = outs[batch] = tmp_path / f"b{batch}"
        invoke(small_tree, "--out", out, "--quiet", "--batch", batch, "--detector-engine",
               "onnxruntime")
    for name in ("landmarks.json", "skipped.txt"):
        assert (outs[1] / name).read_text() == (outs[8] / name).read_text()
    for key in json.loads((outs[1] / "landmarks.json").read_text()):
        assert (outs[1] / key).read_bytes() == (outs[8] / key).read_bytes()
    done = json.loads((outs[8] / "align.json").read_text())
    assert done["fingerprint"]["settings"]["detector"]["engine"] == "onnxruntime"
    r = run_cli(app, [str(small_tree), "--out", str(tmp_path / "x"), "--batch", "0"])
    assert r.exit_code == 2 and "--batch 0: must be at least 1" in r.output
    r = run_cli(app, [str(small_tree), "--out", str(tmp_path / "x"),
                                 "--detector-engine", "trt"])
    assert r.exit_code == 2 and "unknown MTCNN engine 'trt'" in r.output
