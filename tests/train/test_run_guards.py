"""massface-train guards: a single identity is refused, the run folder is locked (a stale
lock never blocks), stale temporaries go, a damaged checkpoint is named on resume."""

from __future__ import annotations

import os
import shutil

from massface.lock import LOCK_FILE, folder_lock
from massface.train.cli import app
from tests.helpers.cli import run_cli

TINY = ["model.embedding_size=8", "data.batch_size=8", "data.identities=[s1, s2]",
        "train.progress=false", "train.log_every=1", "validation.pairs=null"]


def train(orl_dir, work, *extra: str):
    args = []
    for item in [f"data.train_dir={orl_dir}", f"work_dir={work}", "name=run", *TINY, *extra]:
        args += ["--set", item]
    return run_cli(app, args)


def one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    for fragment in fragments:
        assert fragment in text, text


def test_a_single_identity_is_refused_before_the_run_starts(orl_dir, tmp_path):
    one = tmp_path / "one"
    shutil.copytree(orl_dir / "s1", one / "s1")
    result = train(one, tmp_path / "work", "data.identities=null")
    one_line_error(result, str(one), "only one identity (s1)")
    assert not (tmp_path / "work").exists()


def saved_checkpoint(run) -> tuple:
    """A readable checkpoint where resume looks for one: (data shard, index)."""
    import tensorflow as tf

    ckpt = tf.train.Checkpoint(v=tf.Variable(tf.ones([256, 64])))
    tf.train.CheckpointManager(ckpt, str(run / "checkpoints"), max_to_keep=1).save(1)
    return tuple(run / "checkpoints" / f"ckpt-1.{ext}"
                 for ext in ("data-00000-of-00001", "index"))


def test_lock_stale_lock_temporaries_and_damaged_checkpoints(orl_dir, tmp_path):
    work, run = tmp_path / "work", tmp_path / "work" / "run"
    with folder_lock(run, "holder"):
        one_line_error(train(orl_dir, work), f"in use by PID {os.getpid()} (holder)")
    assert not run.exists()  # nothing written by the refused run
    data, index = saved_checkpoint(run)
    good = data.read_bytes()
    data.write_bytes(good[: len(good) // 2])
    # left by a killed run: its lock file and a half-written summary; neither blocks, and
    # resume names the damaged shard (not "the config changed")
    (run / LOCK_FILE).write_text("999999 massface-train\n")
    (run / ".summary.json.ab12cd34.tmp").write_text("{")
    one_line_error(train(orl_dir, work), str(data), "truncated or damaged")
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []
    data.write_bytes(good)
    index.write_bytes(b"\x00garbage" * 16)
    one_line_error(train(orl_dir, work), str(index), "damaged checkpoint index")
