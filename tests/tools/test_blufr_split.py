"""massface-pairs blufr-split: a BLUFR trial's split as a training tree (synthetic config
and the real one), and the leakage it is there to prevent."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from massface.errors import InputError
from massface.leakage import reference_identities
from massface.tools.blufr_split import MANIFEST, write_split_tree
from massface.tools.pairs_generate import app
from tests.helpers import shared
from tests.helpers.blufr_reference import lfw_like_names, random_trials, write_config
from tests.helpers.cli import run_cli


def world(tmp_path, seed=0, n_ids=30):
    """A BLUFR config over LFW-like names and a fake LFW root holding every image."""
    rng = np.random.default_rng(seed)
    names, labels = lfw_like_names(rng.integers(1, 5, size=n_ids))
    trials = random_trials(labels, 3, rng)
    config = write_config(tmp_path / "config.mat", names, labels, trials)
    root = tmp_path / "lfw"
    for n in names:
        person = n.rsplit("_", 1)[0]
        (root / person).mkdir(parents=True, exist_ok=True)
        (root / person / n).write_bytes(n.encode())
    return root, config, names, labels, trials


def tree_files(tree: Path) -> list[str]:
    return sorted(str(p.relative_to(tree)) for p in tree.rglob("*.jpg"))


def run(*args):
    result = run_cli(app, ["blufr-split", *(str(a) for a in args)])
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize("split", ["train", "test"])
def test_tree_holds_exactly_the_trials_split(tmp_path, split):
    root, config, names, labels, trials = world(tmp_path)
    out = tmp_path / "tree"
    code, output = run(root, "--trial", 2, "--split", split, "--out", out,
                       "--blufr-config", config)
    assert code == 0, output
    idx = trials[1][0 if split == "train" else 1]
    expected = sorted(f"{names[i].rsplit('_', 1)[0]}/{names[i]}" for i in idx)
    assert tree_files(out) == expected
    for ref in expected:  # links to the real files
        assert (out / ref).is_symlink() and (out / ref).read_bytes() == (root / ref).read_bytes()
    m = json.loads((out / MANIFEST).read_text())
    assert (m["trial"], m["split"], m["images"]) == (2, split, len(idx))
    assert m["identities"] == len(set(labels[idx]))
    assert m["identities_with_2_or_more_images"] == int((np.bincount(labels[idx]) >= 2).sum())


def test_train_and_test_trees_share_no_identity_and_rewrite_in_place(tmp_path):
    root, config, *_ = world(tmp_path, seed=1)
    for split in ("train", "test"):
        write_split_tree(root, config, 1, split, tmp_path / split)
    train_ids = reference_identities(tree_files(tmp_path / "train"))
    test_ids = reference_identities(tree_files(tmp_path / "test"))
    assert train_ids and test_ids and not train_ids & test_ids
    # an earlier tree is replaced; the other trial's images only
    write_split_tree(root, config, 3, "train", tmp_path / "train")
    assert json.loads((tmp_path / "train" / MANIFEST).read_text())["trial"] == 3


def test_refusals_name_the_problem(tmp_path):
    root, config, *_ = world(tmp_path, seed=2)
    code, output = run(root, "--trial", 4, "--out", tmp_path / "t", "--blufr-config", config)
    assert code == 2 and "trials 1 to 3" in output
    code, output = run(root, "--trial", 1, "--split", "dev", "--out", tmp_path / "t",
                       "--blufr-config", config)
    assert code == 2 and "choose train or test" in output
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    code, output = run(root, "--trial", 1, "--out", busy, "--blufr-config", config)
    assert code == 2 and "not a BLUFR split tree" in output and (busy / "notes.txt").exists()
    # an image of the split missing from the LFW root: named, nothing written
    write_split_tree(root, config, 1, "train", tmp_path / "ok")
    gone = sorted(tree_files(tmp_path / "ok"))[0]
    (root / gone).unlink()
    with pytest.raises(InputError, match=gone.rsplit(".", 1)[0]):
        write_split_tree(root, config, 1, "train", tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_massface_pairs_dispatches_blufr_split(tmp_path, monkeypatch):
    from massface.tools import pairs_generate

    root, config, *_ = world(tmp_path, seed=3)
    out = tmp_path / "tree"
    monkeypatch.setattr(sys, "argv", ["massface-pairs", "blufr-split", str(root), "--trial",
                                      "1", "--out", str(out), "--blufr-config", str(config)])
    with pytest.raises(SystemExit) as stop:
        pairs_generate.main()
    assert stop.value.code == 0 and (out / MANIFEST).is_file()


def test_real_trial_1_split_and_lfw_pairs_overlap(tmp_path):
    """The real config: trial 1's training split has BLUFR's documented 1,500 people, none
    of them in its test split; LFW's pairs.txt names many of them (the leak massface-train
    refuses, tests/train/test_leakage.py)."""
    from massface.evaluate.protocols.blufr_config import read_blufr_config, split_identities
    from massface.formats.pairs import pair_references, read_pairs

    config = shared.shared_root() / "data" / "lfw" / "blufr" / "blufr_lfw_config.mat"
    lfw, pairs = shared.lfw_dir(), shared.lfw_pairs()
    if not (config.is_file() and lfw.is_dir() and pairs.is_file()):
        pytest.skip(f"BLUFR config / aligned LFW / pairs.txt not found under "
                    f"{shared.shared_root()} (set {shared.ENV_VAR})")
    tree = write_split_tree(lfw, config, 1, "train", tmp_path / "t1")
    assert tree.identities == 1500
    ids = reference_identities(tree_files(tmp_path / "t1"))
    cfg = read_blufr_config(config)
    assert len(ids) == 1500 and not ids & split_identities(cfg, 1, "test")
    assert len(ids | split_identities(cfg, 1, "test")) == 5749
    assert len(ids & reference_identities(pair_references(read_pairs(pairs)))) > 100
