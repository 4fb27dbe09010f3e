"""One run per output folder (massface-infer, merge, prepare-bins), and no stale temporaries
left in a folder a killed run is resumed into."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from massface.formats.embedding_dir import read_embedding_dir
from massface.infer import InferOptions, run_inference
from massface.infer.cli import app
from massface.lock import LOCK_FILE, folder_lock
from massface.runtime import open_backend
from massface.runtime.sources import images_dataset
from tests.helpers.cli import invoke_ok, run_cli
from tests.helpers.faults import failing_backend
from tests.helpers.models import make_linear_onnx

SIZE = (8, 8)
STALE = "999999 massface-infer\n"  # the PID of a process that is gone


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path]:
    """(tiny linear model, 12 random images in 3 identity folders)."""
    base = tmp_path_factory.mktemp("lockworld")
    model = base / "tiny.onnx"
    make_linear_onnx(model, size=SIZE, dim=4)
    rng = np.random.default_rng(0)
    for i in range(12):
        d = base / "ds" / f"id{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (*SIZE, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return model, base / "ds"


def refused_in_use(args: list[object], folder: Path) -> None:
    """Run the CLI while this process holds ``folder``'s lock: exit 2 naming our PID."""
    with folder_lock(folder, "holder"):
        r = run_cli(app, [str(a) for a in args])
    assert r.exit_code == 2, r.output
    assert f"in use by PID {os.getpid()} (holder)" in " ".join(r.output.split())
    assert "Traceback" not in r.output


def test_infer_refuses_a_locked_out_and_ignores_a_stale_lock(tmp_path, world):
    model, ds = world
    out = tmp_path / "out"
    args = ["--model", model, "--images", ds, "--out", out, "--batch-size", 4, "--quiet"]
    refused_in_use(args, out)
    assert not out.exists()  # nothing written by the refused run (the holder made it empty)
    out.mkdir()
    (out / LOCK_FILE).write_text(STALE)  # left by a killed run
    invoke_ok(*args)
    assert len(read_embedding_dir(out).paths) == 12
    assert not (out / LOCK_FILE).exists()
    # finished: a locked folder is refused even for the "already complete" answer, and a
    # stale lock file does not count as content of the finished folder
    refused_in_use(args, out)
    (out / LOCK_FILE).write_text(STALE)
    assert "already complete" in invoke_ok(*args).output


def test_merge_and_prepare_bins_lock_their_out(tmp_path, world):
    model, ds = world
    shards = [tmp_path / f"s{k}" for k in range(2)]
    for k, d in enumerate(shards):
        invoke_ok("--model", model, "--images", ds, "--out", d, "--shard", f"{k}/2", "--quiet")
        (d / LOCK_FILE).write_text(STALE)  # a stale lock inside an input is not a shard file
    merged = tmp_path / "merged"
    refused_in_use(["merge", *shards, "--out", merged], merged)
    merged.mkdir()
    (merged / LOCK_FILE).write_text(STALE)
    invoke_ok("merge", *shards, "--out", merged)
    assert len(read_embedding_dir(merged).paths) == 12 and not (merged / LOCK_FILE).exists()

    bins = tmp_path / "bins"
    refused_in_use(["prepare-bins", "--images", ds, "--out", bins, "--size", "8x8"], bins)
    bins.mkdir()
    (bins / LOCK_FILE).write_text(STALE)
    invoke_ok("prepare-bins", "--images", ds, "--out", bins, "--size", "8x8")
    assert len(list((bins / "inputs").iterdir())) == 12 and not (bins / LOCK_FILE).exists()


def test_resume_removes_stale_temporaries_and_gives_the_same_result(tmp_path, world):
    model, root = world
    ds = images_dataset(root)
    clean = tmp_path / "clean"
    # ONNX Runtime, named: its model calls are synchronous, so the failure point is exact
    run_inference(model, ds, InferOptions(out=clean, batch_size=2, chunk_batches=1,
                                          progress=False, backend="onnxruntime"))
    out = tmp_path / "out"
    opts = InferOptions(out=out, batch_size=2, chunk_batches=1, progress=False,
                        backend="onnxruntime")
    with pytest.raises(RuntimeError, match="injected"):
        run_inference(model, ds, opts, backend=failing_backend(
            open_backend(model, backend="onnxruntime"), 3))
    # what a kill in the middle of atomic writes leaves: a temporary file, a temporary
    # folder, a folder moved aside; and a hidden file of the user's that must stay
    planted = [out / ".embeddings.npy.k2j4_x9a.tmp",
               out / ".partial" / ".chunk_00003.npy.ab12cd34.tmp",
               out / ".outputs.q1w2e3r4.tmp" / "0_output_0.bin",
               out / ".meta.json.old-zz99yy88"]
    for p in planted:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
    (out / ".keep").write_text("mine")
    result = run_inference(model, ds, opts)
    assert result.summary.resumed_rows == 6
    hidden = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    assert hidden == [".keep"]
    a, b = read_embedding_dir(out), read_embedding_dir(clean)
    assert a.paths == b.paths
    assert a.embeddings.tobytes() == b.embeddings.tobytes()
