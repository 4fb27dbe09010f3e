"""Fixtures for the export tests: a stand-in `atc` and a real-looking training run."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

#: A stand-in for CANN's `atc`: records its argv, then behaves as MODE says. Success
#: prints ATC's success line and writes OUTPUT.om (or OUTPUT_linux_x86_64.om, as some
#: releases do); failure prints ATC's failure line and exits 255 (as ATC does);
#: "silent" exits 0 without writing a model.
STANDIN_ATC = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$(dirname "$0")/argv.txt"
pwd > "$(dirname "$0")/cwd.txt"
out=""
for a in "$@"; do case "$a" in --output=*) out="${a#--output=}";; esac; done
case "MODE" in
  success) printf 'OM' > "$out.om"; echo "ATC run success, welcome to the next use."; exit 0;;
  renamed) printf 'OM' > "${out}_linux_x86_64.om"
           echo "ATC run success, welcome to the next use."; exit 0;;
  fail) printf 'half' > "$out.om"
        echo "E10001: Value [Ascend999] for parameter [--soc_version] is invalid."
        echo "ATC run failed, Please check the detail log, Try 'atc --help' for more information"
        exit 255;;
  silent) echo "ATC run success, welcome to the next use."; exit 0;;
esac
"""


def install_standin_atc(folder: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Write the stand-in `atc` (behaving as ``mode``) into ``folder``, first on PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "atc"
    exe.write_text(STANDIN_ATC.replace("MODE", mode))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    return folder


@pytest.fixture
def standin_atc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``standin_atc(mode)`` -> folder holding the stand-in and, after a run, argv.txt."""

    def install(mode: str) -> Path:
        return install_standin_atc(tmp_path / f"atc-{mode}", mode, monkeypatch)

    return install


@pytest.fixture
def no_atc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH with no `atc` on it."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def make_training_run(run_dir: Path, faces, *, embedding_size: int = 128, seed: int = 0) -> Path:
    """A massface-train-style run folder whose BatchNorm statistics are real.

    Random-init MobileFaceNet, non-trivial gamma/beta, then one training-mode pass over
    real faces with momentum 0 so every BatchNorm's moving mean/variance are the real
    activation statistics (so folding BN into the convolutions is really exercised).
    Saved as ``tf.train.Checkpoint(backbone=model, step=...)`` by a CheckpointManager
    under ``checkpoints/``, with ``config.yaml`` beside it, as ``load_backbone`` expects.
    """
    import numpy as np
    import tensorflow as tf
    import yaml

    from massface.train.mobilefacenet import BatchNorm, MobileFaceNet

    model = MobileFaceNet(embedding_size=embedding_size, seed=seed)
    rng = np.random.default_rng(seed)
    bns = [m for m in model.submodules if isinstance(m, BatchNorm)]
    for bn in bns:
        bn.gamma.assign(rng.uniform(0.6, 1.4, bn.gamma.shape).astype(np.float32))
        bn.beta.assign(rng.normal(0.0, 0.1, bn.beta.shape).astype(np.float32))
        bn.momentum = 0.0
    model(tf.constant(faces), training=True)
    for bn in bns:
        bn.momentum = 0.995
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(
        yaml.safe_dump({"model": {"embedding_size": embedding_size},
                        "data": {"image_size": [112, 112], "mean": 127.5, "std": 128.0,
                                 "color": "RGB"}}))
    ckpt = tf.train.Checkpoint(backbone=model, step=tf.Variable(1, dtype=tf.int64))
    tf.train.CheckpointManager(ckpt, str(run_dir / "checkpoints"), max_to_keep=1).save()
    return run_dir


@pytest.fixture(scope="session")
def training_run_maker():
    """The :func:`make_training_run` function (test modules cannot import conftest)."""
    return make_training_run


@pytest.fixture(scope="session")
def faces(lfw_dir, lfw_pairs):
    """The export's default parity batch: the first 16 images of the LFW pairs."""
    from massface.export.faces import load_face_batch

    return load_face_batch()


@pytest.fixture(scope="session")
def atc_installer():
    """The :func:`install_standin_atc` function, for module-scoped fixtures."""
    return install_standin_atc
