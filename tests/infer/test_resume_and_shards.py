"""Interrupted runs continue where they stopped; shards merge into the unsharded result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from massface.errors import InputError
from massface.formats.embedding_dir import read_embedding_dir
from massface.infer import InferOptions, run_inference
from massface.infer.cli import app
from massface.runtime import open_backend
from massface.runtime.sources import lfw_dataset
from tests.helpers.cli import invoke_ok as invoke
from tests.helpers.cli import run_cli
from tests.helpers.faults import failing_backend
from tests.helpers.scoring import lfw_accuracy_of

# These tests interrupt runs at a model call and resume them: ONNX Runtime, named, so each
# call is synchronous (OpenVINO, --backend auto's CPU choice, keeps requests in flight).
ORT = "onnxruntime"
REPO = Path(__file__).resolve().parents[2]

SLOW_MAIN = """
import sys, time
from massface.runtime.backends import onnx_backend
_run = onnx_backend.OnnxBackend._run
def slow(self, batch):
    time.sleep(0.2)
    return _run(self, batch)
onnx_backend.OnnxBackend._run = slow
from massface.infer.cli import main
sys.argv = ["massface-infer", *sys.argv[1:]]
main()
"""



@pytest.fixture(scope="module")
def clean(tmp_path_factory, pretrained_onnx, lfw_dir, subset_pairs) -> Path:
    out = tmp_path_factory.mktemp("clean") / "run"
    invoke("--model", pretrained_onnx, "--lfw", lfw_dir, "--pairs", subset_pairs, "--out", out,
           "--batch-size", 8, "--chunk-batches", 2, "--quiet", "--backend", ORT)
    return out


def test_killed_run_resumes_to_the_identical_result(tmp_path, clean, pretrained_onnx, lfw_dir,
                                                    subset_pairs):
    out = tmp_path / "run"
    args = ["--model", pretrained_onnx, "--lfw", lfw_dir, "--pairs", subset_pairs, "--out", out,
            "--batch-size", 8, "--chunk-batches", 2, "--quiet", "--backend", ORT]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_MAIN, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not (out / ".partial" / "chunk_00002.json").exists():
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "meta.json").exists() and not (out / "embeddings.npy").exists()
    result = invoke(*args)
    assert "resumed after" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_rows"] >= 48 and summary["images"] == \
        len(read_embedding_dir(clean).paths) - summary["resumed_rows"]
    a, b = read_embedding_dir(out), read_embedding_dir(clean)
    assert a.paths == b.paths
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    assert not (out / ".partial").exists()



def test_injected_failure_then_rerun_and_rerun_rules(tmp_path, clean, pretrained_onnx,
                                                     lfw_dir, subset_pairs):
    ds = lfw_dataset(lfw_dir, subset_pairs)
    out = tmp_path / "run"
    opts = InferOptions(out=out, batch_size=8, chunk_batches=2, progress=False, backend=ORT)
    with pytest.raises(RuntimeError, match="injected"):
        run_inference(pretrained_onnx, ds, opts,
                      backend=failing_backend(open_backend(pretrained_onnx, backend=ORT), 5))
    assert sorted(p.name for p in (out / ".partial").glob("chunk_*.json")) == \
        ["chunk_00000.json", "chunk_00001.json"]
    result = run_inference(pretrained_onnx, ds, opts)
    assert result.summary.resumed_rows == 32
    np.testing.assert_array_equal(read_embedding_dir(out).embeddings,
                                  read_embedding_dir(clean).embeddings)
    # finished: the same command again does nothing; other settings are refused
    again = run_inference(pretrained_onnx, ds, opts)
    assert again.summary.already_complete
    r = run_cli(app, ["--model", str(pretrained_onnx), "--lfw", str(lfw_dir), "--pairs",
                            str(subset_pairs), "--out", str(out), "--batch-size", "16",
                            "--backend", ORT])
    assert r.exit_code == 2 and "--overwrite" in r.output
    # a partial run with other settings is refused too; --overwrite starts again
    out2 = tmp_path / "run2"
    with pytest.raises(RuntimeError, match="injected"):
        run_inference(pretrained_onnx, ds, InferOptions(out=out2, batch_size=8, chunk_batches=2,
                                                        progress=False, backend=ORT),
                      backend=failing_backend(open_backend(pretrained_onnx, backend=ORT), 3))
    opts16 = InferOptions(out=out2, batch_size=16, chunk_batches=2, progress=False,
                          backend=ORT)
    with pytest.raises(InputError, match=r"unfinished massface-infer run with other "
                                         r"settings.*batch_size"):
        run_inference(pretrained_onnx, ds, opts16)
    opts16.overwrite = True
    assert run_inference(pretrained_onnx, ds, opts16).summary.resumed_rows == 0
    assert read_embedding_dir(out2).meta["batch_size"] == 16


def test_shards_merge_to_the_unsharded_folder(tmp_path, clean, pretrained_onnx, lfw_dir,
                                              subset_pairs):
    base = ["--model", pretrained_onnx, "--lfw", lfw_dir, "--pairs", subset_pairs,
            "--batch-size", 8, "--chunk-batches", 2, "--quiet", "--backend", ORT]
    shards = []
    for k in range(3):
        d = tmp_path / f"shard{k}"
        invoke(*base, "--shard", f"{k}/3", "--out", d)
        shards.append(d)
        assert not (d / "pairs.txt").exists()  # a shard alone is not evaluable
    sizes = [len(read_embedding_dir(d).paths) for d in shards]
    total = len(read_embedding_dir(clean).paths)
    assert sum(sizes) == total and max(sizes) - min(sizes) <= 1
    merged = tmp_path / "merged"
    invoke("merge", shards[2], shards[0], shards[1], "--out", merged)  # any order
    a, b = read_embedding_dir(merged), read_embedding_dir(clean)
    assert a.paths == b.paths
    np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-5)
    assert (merged / "pairs.txt").read_bytes() == subset_pairs.read_bytes()
    assert lfw_accuracy_of(merged) == lfw_accuracy_of(clean)
    # merge straight to msame outputs
    ms = tmp_path / "merged-msame"
    invoke("merge", *shards, "--out", ms, "--format", "msame")
    assert len(list((ms / "outputs").glob("*_output_0.bin"))) == 120

    r = run_cli(app, ["merge", str(shards[0]), str(shards[2]), "--out",
                            str(tmp_path / "x")])
    assert r.exit_code == 2 and "missing [1]" in r.output
    r = run_cli(app, ["merge", str(shards[0]), str(shards[0]), str(shards[1]),
                            "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "repeated [0]" in r.output
    other = tmp_path / "other1"
    invoke(*base[:6], "--backend", ORT, "--batch-size", 4, "--shard", "1/3", "--out", other,
           "--quiet")
    r = run_cli(app, ["merge", str(shards[0]), str(other), str(shards[2]), "--out",
                            str(tmp_path / "x")])
    assert r.exit_code == 2 and "batch_size" in r.output
    r = run_cli(app, ["merge", str(clean), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "not a shard" in r.output
