"""Short real trainings on ORL: the loss falls, resume is bit-exact, bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from massface.errors import InputError
from massface.train.checkpoints import load_backbone
from massface.train.config import load_config
from massface.train.mobilefacenet import variables_by_key
from massface.train.trainer import Trainer

pytestmark = pytest.mark.slow

SMALL = ["model.embedding_size=32", "data.batch_size=16", "train.progress=false",
         "train.log_every=1", "data.identities=[s1, s2, s3, s4, s5, s6]",
         "optimizer.learning_rate=0.01", "schedule.kind=constant"]


def _cfg(orl_dir, tmp_path, *extra):
    return load_config(None, [f"data.train_dir={orl_dir}", f"work_dir={tmp_path}", *SMALL,
                              *extra])


def _weights(model):
    return {k: v.numpy() for k, v in variables_by_key(model).items()}


def test_softmax_loss_falls(orl_dir, tmp_path):
    cfg = _cfg(orl_dir, tmp_path, "name=fall", "train.max_steps=10", "data.batch_size=20",
               "data.identities=[s1, s2, s3, s4]", "optimizer.learning_rate=0.02")
    result = Trainer(cfg).run()
    assert result.status == "completed" and result.final_step == 10
    import csv

    with open(tmp_path / "fall" / "metrics.csv") as f:
        losses = [float(r["objective"]) for r in csv.DictReader(f)]
    assert len(losses) == 10 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    rows = (tmp_path / "fall" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 11 and rows[0].startswith("step,epoch,lr,loss")
    assert (tmp_path / "fall" / "logs").is_dir()


@pytest.mark.parametrize("loss", ["triplet_cosface"])  # head + mining + P x K sampler
def test_resume_is_bit_exact(orl_dir, tmp_path, loss):
    extra = [f"loss.kind={loss}", "data.P=4", "data.K=3", "train.checkpoint_every=2",
             "train.max_steps=4"]
    straight = Trainer(_cfg(orl_dir, tmp_path, "name=straight", *extra))
    assert straight.run().final_step == 4
    first = Trainer(_cfg(orl_dir, tmp_path, "name=resumed", *extra[:-1], "train.max_steps=2"))
    assert first.run().final_step == 2
    second = Trainer(_cfg(orl_dir, tmp_path, "name=resumed", *extra))
    result = second.run()
    assert (result.start_step, result.final_step) == (2, 4)
    # mining statistics: every step in mining.csv (resume drops then redoes rows > 2),
    # and the triplet term is logged on its own beside the CosFace cross-entropy
    import csv

    with open(tmp_path / "resumed" / "mining.csv") as f:
        mined = list(csv.DictReader(f))
    assert [int(r["step"]) for r in mined] == [1, 2, 3, 4]
    assert all(float(r["triplets"]) >= 1 and 0 <= float(r["active_fraction"]) <= 1
               for r in mined)
    with open(tmp_path / "resumed" / "metrics.csv") as f:
        logged = list(csv.DictReader(f))
    for row, m in zip(logged, mined, strict=True):
        assert float(row["triplet_loss"]) == pytest.approx(float(m["triplet_loss"]))
        assert float(row["objective"]) == pytest.approx(
            float(row["triplet_loss"]) + 0.5 * float(row["ce"]), rel=1e-5)
    a, b = _weights(straight.model), _weights(second.model)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    for sa, sb in zip(straight.optimizer.trainable_variables + straight.optimizer.variables,
                      second.optimizer.variables, strict=False):
        np.testing.assert_array_equal(sa.numpy(), sb.numpy())
    loaded, cfg = load_backbone(tmp_path / "resumed")
    x = tf.random.stateless_normal([2, 112, 112, 3], seed=(1, 1))
    np.testing.assert_array_equal(loaded(x).numpy(), second.model(x).numpy())
    assert cfg["loss"]["kind"] == loss


def test_pretrained_backbone_and_mismatch(orl_dir, tmp_path):
    pre = Trainer(_cfg(orl_dir, tmp_path, "name=pre", "train.max_steps=1"))
    pre.run()
    tri = Trainer(_cfg(orl_dir, tmp_path, "name=tri", "loss.kind=triplet", "data.P=3",
                       "data.K=4", "train.max_steps=1", f"train.pretrained={tmp_path / 'pre'}"))
    tri._prepare_run_dir()
    for k, v in _weights(pre.model).items():
        np.testing.assert_array_equal(v, _weights(tri.model)[k], err_msg=k)
    with pytest.raises(InputError, match=r"wrong shape: embedding/bn/beta"):
        Trainer(_cfg(orl_dir, tmp_path, "name=bad", "model.embedding_size=16",
                     f"train.pretrained={tmp_path / 'pre'}")).run()
    with pytest.raises(InputError, match="cannot resume this run with the current config"):
        Trainer(_cfg(orl_dir, tmp_path, "name=pre", "model.embedding_size=16")).run()


def test_bad_datasets(tmp_path, orl_dir):
    def _cfg(root, tmp, *extra):
        return load_config(None, [f"data.train_dir={root}", f"work_dir={tmp}",
                                  "data.identities=null", *extra])

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no images found"):
        Trainer(_cfg(empty, tmp_path))
    with pytest.raises(InputError, match="does not exist"):
        Trainer(_cfg(tmp_path / "missing", tmp_path))
    single = tmp_path / "single"
    for name in ("a", "b", "c"):
        (single / name).mkdir(parents=True)
        for i in range(1 if name == "b" else 3):
            (single / name / f"{i}.png").write_bytes((orl_dir / "s1" / "1.pgm").read_bytes())
    with pytest.raises(InputError, match=r"1 identities have a single image .*\(b\)"):
        Trainer(_cfg(single, tmp_path, "loss.kind=triplet", "data.P=2", "data.K=2"))
    (single / "a" / "0.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"a/0.png: cannot decode image"):
        Trainer(_cfg(single, tmp_path, "data.batch_size=4"))
    # streamed from disk (no cache): the decode error surfaces from tf.data, still named
    streamed = Trainer(_cfg(single, tmp_path, "data.batch_size=7", "data.cache=false",
                            "train.progress=false", "model.embedding_size=8"))
    with pytest.raises(InputError, match=r"a/0.png: cannot decode image"):
        streamed.run()


def test_sigterm_saves_a_checkpoint_and_resume_continues(orl_dir, tmp_path):
    # SIGTERM goes to a child running massface-train, as a scheduler (SLURM, Kubernetes)
    # sends it: signalling the test process itself would take the pytest-xdist worker
    # down whenever the handler is not installed at that instant, and a crashed worker
    # under --dist loadfile can hang the whole suite (pytest-xdist #784)
    import json
    import signal
    import subprocess
    import sys
    import time

    args = ["--set", f"data.train_dir={orl_dir}", "--work-dir", str(tmp_path), "--name", "sig",
            "--no-progress", *[a for s in SMALL for a in ("--set", s)],
            "--max-steps", "500", "--set", "train.checkpoint_every=1000"]
    metrics = tmp_path / "sig" / "metrics.csv"
    handler = signal.getsignal(signal.SIGTERM)
    child = subprocess.Popen([sys.executable, "-m", "massface.train.cli", *args],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not metrics.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.poll() is None, f"massface-train ended before training: {child.stdout.read()}"
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, out  # interrupted, checkpoint saved
    summary = json.loads((tmp_path / "sig" / "summary.json").read_text())
    done = summary["final_step"]
    assert summary["status"] == "interrupted" and 1 <= done < 500, summary
    assert summary["last_checkpoint"].endswith(f"ckpt-{done}")
    assert "interrupted at step" in out, out
    again = Trainer(_cfg(orl_dir, tmp_path, "name=sig", f"train.max_steps={done + 1}")).run()
    assert (again.start_step, again.final_step, again.status) == (done, done + 1, "completed")
    assert signal.getsignal(signal.SIGTERM) is handler  # the in-process run restored it


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(orl_dir, tmp_path):
    from massface.train.cli import app
    from tests.helpers.cli import run_cli

    base = ["--set", f"data.train_dir={orl_dir}", "--work-dir", str(tmp_path), "--name", "nan",
            "--no-progress", *[a for s in SMALL for a in ("--set", s)]]
    res = run_cli(app, [*base, "--max-steps", "2", "--set", "train.checkpoint_every=1"])
    assert res.exit_code == 0, res.output
    # an input scaling that overflows float32 makes the loss non-finite at the next step
    res = run_cli(app, [*base, "--max-steps", "4", "--set", "data.mean=1e38"])
    assert res.exit_code == 3, res.output
    assert "loss is nan at step 2" in res.output.replace("\n", " ")
    assert tf.train.latest_checkpoint(str(tmp_path / "nan" / "checkpoints")).endswith("ckpt-2")
    import json

    summary = json.loads((tmp_path / "nan" / "summary.json").read_text())
    assert summary["status"] == "nan" and summary["final_step"] == 2


def test_k1_refused_and_no_triplet_warning(orl_dir, tmp_path, monkeypatch):
    """K = 1 can never give a positive pair: refused. Steps that select nothing warn once,
    and mining stats are logged every step whatever train.log_every says."""
    import csv

    from massface.train import callbacks
    from massface.train.losses import Triplet

    with pytest.raises(InputError, match=r"data\.K must be at least 2"):
        Trainer(_cfg(orl_dir, tmp_path, "name=k1", "data.K=1"), objective=Triplet())
    monkeypatch.setattr(callbacks, "ZERO_TRIPLET_STEPS", 2)
    nothing = Triplet(fixed_mask=np.zeros((4, 4, 4), bool))  # a selection that is empty
    cfg = _cfg(orl_dir, tmp_path, "name=none", "loss.kind=triplet", "data.P=2", "data.K=2",
               "model.embedding_size=8", "train.max_steps=3", "train.log_every=10")
    result = Trainer(cfg, objective=nothing).run()
    assert result.status == "completed"
    warned = [w for w in result.warnings if "no triplet selected" in w]
    assert len(warned) == 1 and warned[0].startswith("step 2:"), result.warnings
    with open(tmp_path / "none" / "mining.csv") as f:
        mined = list(csv.DictReader(f))
    assert [(int(r["step"]), float(r["triplets"])) for r in mined] == [(1, 0), (2, 0), (3, 0)]
