"""The msame command massface prints, run as printed through a stand-in msame that
behaves as the real one (tests/helpers/standin_msame.py), on a dynamic-batch .om double
of the shared model; its outputs read back by massface-eval."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import numpy as np
import pytest

from massface.errors import InputError
from massface.formats.msame import msame_command
from tests.helpers.cli import run_cli
from tests.helpers.fake_acl import FakeAcl, write_fake_om
from tests.helpers.standin_msame import install_standin_msame

GEARS = (1, 8, 32)  # massface-export's default .om


def _prepare(monkeypatch, tmp_path, onnx, lfw_args, name="bins"):
    """prepare-bins --model M.om (a dynamic-batch double); returns (printed msame argv,
    printed eval argv, bins folder)."""
    from massface.infer.cli import app

    om = write_fake_om(tmp_path / "model.om", onnx=onnx, gears=list(GEARS))
    monkeypatch.setitem(sys.modules, "acl", FakeAcl.from_om(om))
    dest = tmp_path / name
    r = run_cli(app, ["prepare-bins", "--model", str(om), *map(str, lfw_args),
                                 "--out", str(dest)])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    command = shlex.split(lines[lines.index(next(x for x in lines
                                                 if x.startswith("run on the Ascend"))) + 1])
    evaluate = shlex.split(next(x for x in lines if x.startswith("then: "))[len("then: "):])
    assert json.loads((dest / "inputs.json").read_text())["msame_command"] == \
        shlex.join(command)
    return command, evaluate, dest


def _run(argv, tmp_path):
    exe = install_standin_msame(tmp_path / "bin")
    return subprocess.run([str(exe), *argv[1:]], capture_output=True, text=True,
                          timeout=3000, cwd=tmp_path)


def _evaluate(evaluate, tmp_path):
    from massface.evaluate.cli import app as eval_app

    out = tmp_path / "eval.json"
    r = run_cli(eval_app, [*evaluate[1:], "--json", str(out)])
    assert r.exit_code == 0, r.output
    return json.loads(out.read_text())


def test_printed_command_runs_through_the_standin_msame(monkeypatch, tmp_path,
                                                        pretrained_onnx, lfw_dir,
                                                        subset_pairs):
    """60 LFW pairs: the printed command (with --dymBatch 1 and --output) gives the same
    embeddings and accuracy as the ONNX model run by massface-infer."""
    from massface.formats.embedding_dir import read_embedding_dir
    from massface.formats.msame import scan_output_folder

    command, evaluate, dest = _prepare(monkeypatch, tmp_path, pretrained_onnx,
                                       ["--lfw", lfw_dir, "--pairs", subset_pairs])
    assert command[-2:] == ["--dymBatch", "1"] and "--output" in command
    done = _run(command, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = scan_output_folder(dest / "msame")
    assert outputs.tool == "msame" and len(outputs.files) == 120
    assert outputs.folder.parent == dest / "msame"  # msame's timestamp folder
    got = np.stack([np.fromfile(outputs.files[i], np.float32) for i in range(120)])
    r = run_cli(__import__("massface.infer.cli", fromlist=["app"]).app, [
        "--model", str(pretrained_onnx), "--lfw", str(lfw_dir), "--pairs",
        str(subset_pairs), "--out", str(tmp_path / "ref"), "--quiet"])
    assert r.exit_code == 0, r.output
    ref = read_embedding_dir(tmp_path / "ref")
    order = [ref.paths.index(p) for p in json.loads((dest / "inputs.json").read_text())["order"]]
    np.testing.assert_allclose(got, ref.embeddings[order], atol=1e-4)
    got_eval = _evaluate(evaluate, tmp_path)
    ref_eval = _evaluate(["massface-eval", str(tmp_path / "ref")], tmp_path)
    assert got_eval["accuracy"] == ref_eval["accuracy"]


def test_printed_ais_bench_command_gives_the_same_outputs(monkeypatch, tmp_path,
                                                        pretrained_onnx, lfw_dir,
                                                        subset_pairs):
    """The ais_bench command prepare-bins prints, through its stand-in: the same
    embeddings as msame's, named <i>_0.bin, read back by massface-eval."""
    from massface.formats.msame import scan_output_folder
    from tests.helpers.standin_ais_bench import install_standin_ais_bench

    command, evaluate, dest = _prepare(monkeypatch, tmp_path, pretrained_onnx,
                                       ["--lfw", lfw_dir, "--pairs", subset_pairs])
    ais = shlex.split(json.loads((dest / "inputs.json").read_text())["ais_bench_command"])
    assert ais[:3] == ["python3", "-m", "ais_bench"] and ais[-2:] == ["--dymBatch", "1"]
    exe = install_standin_ais_bench(tmp_path / "bin")
    done = subprocess.run([str(exe), *ais[3:]], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _run(command, tmp_path).returncode == 0
    a, m = scan_output_folder(dest / "ais_bench"), scan_output_folder(dest / "msame")
    assert a.tool == "ais_bench" and m.tool == "msame" and len(a.files) == len(m.files) == 120
    for i in range(120):
        assert a.files[i].read_bytes() == m.files[i].read_bytes()
    via_msame = _evaluate(evaluate, tmp_path)["accuracy"]
    evaluate[1] = str(dest / "ais_bench")
    assert _evaluate(evaluate, tmp_path)["accuracy"] == via_msame


def test_without_dymbatch_msame_writes_nothing(monkeypatch, tmp_path, pretrained_onnx,
                                               lfw_dir, subset_pairs):
    """What the old printed command did: every execute fails on a dynamic-batch .om,
    the first is skipped, the second stops msame; no output file at all."""
    command, _, dest = _prepare(monkeypatch, tmp_path, pretrained_onnx,
                                ["--lfw", lfw_dir, "--pairs", subset_pairs])
    old = command[: command.index("--dymBatch")]
    done = _run(old, tmp_path)
    assert done.returncode == 1 and "model execute failed" in done.stdout
    assert not any(p.is_file() for p in (dest / "msame").rglob("*"))


def test_standin_msame_quirks(monkeypatch, tmp_path, pretrained_onnx, lfw_dir, subset_pairs):
    """Exit 0 without outputs when --output cannot be made; a '.bin' in the --input path
    means a file list; a gear the model lacks is exit 1."""
    command, _, dest = _prepare(monkeypatch, tmp_path, pretrained_onnx,
                                ["--lfw", lfw_dir, "--pairs", subset_pairs])
    i = command.index("--output")
    no_parent = [*command[:i + 1], str(tmp_path / "missing" / "deep"), *command[i + 2:]]
    done = _run(no_parent, tmp_path)
    assert done.returncode == 0 and "does not have permission" in done.stdout
    assert not (tmp_path / "missing").exists()
    no_output = command[:i] + command[i + 2:]
    done = _run(no_output, tmp_path)
    assert done.returncode == 0 and "does not have permission" in done.stdout
    wrong_gear = [*command[:-1], "4"]
    assert _run(wrong_gear, tmp_path).returncode == 1
    (tmp_path / "x.bins").symlink_to(dest / "inputs")
    j = command.index("--input")
    as_list = [*command[:j + 1], str(tmp_path / "x.bins"), *command[j + 2:]]
    done = _run(as_list, tmp_path)
    assert done.returncode == 1 and "read file" in done.stdout


def test_msame_command_refuses_what_msame_gets_wrong(tmp_path):
    with pytest.raises(InputError, match=r"containing '\.bin'"):
        msame_command("m.om", tmp_path / "lfw.bins" / "inputs", tmp_path / "o", gears=GEARS)
    with pytest.raises(InputError, match="have no 1"):
        msame_command("m.om", tmp_path / "inputs", tmp_path / "o", gears=(8, 32))
    with pytest.raises(InputError, match="static batch 4"):
        msame_command("m.om", tmp_path / "inputs", tmp_path / "o", static_batch=4)
    assert "--dymBatch" not in msame_command("m.om", tmp_path / "i", tmp_path / "o",
                                             static_batch=1)


def test_prepare_bins_refuses_a_dot_bin_folder(tmp_path, lfw_dir, subset_pairs):
    from massface.infer.cli import app

    r = run_cli(app, ["prepare-bins", "--lfw", str(lfw_dir), "--pairs",
                                 str(subset_pairs), "--out", str(tmp_path / "lfw.bins")])
    assert r.exit_code == 2 and "containing '.bin'" in r.output
    assert not (tmp_path / "lfw.bins").exists()


@pytest.mark.slow
def test_full_lfw_through_the_printed_msame_command(monkeypatch, tmp_path, pretrained_onnx,
                                                    lfw_dir, lfw_pairs):
    """All 6,000 pairs (12,000 bins) through the printed command and the stand-in:
    the reference LFW accuracy of the shared model, 0.992667."""
    from tests.helpers.lfw_reference import lfw_accuracy

    command, evaluate, dest = _prepare(monkeypatch, tmp_path, pretrained_onnx,
                                       ["--lfw", lfw_dir, "--pairs", lfw_pairs])
    done = _run(command, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = _evaluate(evaluate, tmp_path)
    assert round(result["accuracy"], 6) == 0.992667
    from massface.formats.msame import read_labels_file, scan_output_folder

    outputs = scan_output_folder(dest / "msame")
    emb = np.stack([np.fromfile(outputs.files[i], np.float32) for i in range(12000)])
    naive = lfw_accuracy(emb, read_labels_file(dest / "actual_issame.txt"))
    assert abs(naive - result["accuracy"]) < 1e-12


def test_fp16_input_om_gets_float16_bins_that_msame_feeds(monkeypatch, tmp_path, lfw_dir,
                                                          subset_pairs):
    """An .om built with --input_fp16_nodes: prepare-bins writes float16 bins (2 bytes a
    value, what the model's input holds) and the stand-in msame embeds them correctly."""
    from massface.formats.msame import scan_output_folder
    from massface.infer.cli import app
    from tests.helpers.models import make_linear_onnx

    weight = make_linear_onnx(tmp_path / "lin.onnx", size=(112, 112), dim=8)
    om = write_fake_om(tmp_path / "model.om", onnx=tmp_path / "lin.onnx", gears=[1, 8],
                       input_dtype="float16", dim=8)
    monkeypatch.setitem(sys.modules, "acl", FakeAcl.from_om(om))
    dest = tmp_path / "bins"
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("\n".join(subset_pairs.read_text().splitlines()[:4]) + "\n")
    r = run_cli(app, ["prepare-bins", "--model", str(om), "--lfw", str(lfw_dir),
                                 "--pairs", str(pairs), "--out", str(dest)])
    assert r.exit_code == 0, r.output
    info = json.loads((dest / "inputs.json").read_text())
    assert info["dtype"] == "float16"
    x = np.fromfile(dest / "inputs" / "0.bin", np.float16)
    assert x.size == 112 * 112 * 3
    done = _run(shlex.split(info["msame_command"]), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = scan_output_folder(dest / "msame")
    assert len(outputs.files) == 8
    got = np.fromfile(outputs.files[0], np.float32)
    np.testing.assert_allclose(got, x.astype(np.float64) @ weight, atol=1e-4)
