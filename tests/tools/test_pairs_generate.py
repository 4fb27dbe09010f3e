"""LFW-style pair generation for folder-per-identity datasets (synthetic and real ORL)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from massface.errors import InputError
from massface.formats.pairs import read_pairs, resolve_reference, write_path_pairs
from massface.scoring.folds import contiguous_fold_ids
from massface.tools.pairs_generate import generate_pair_set, generate_pairs, natural_key


def _identity(pair_path: str) -> str:
    return pair_path.split("/")[0]


def _check_lfw_like(pairs, n_folds, per_fold):
    assert len(pairs) == n_folds * per_fold
    folds = contiguous_fold_ids(len(pairs), n_folds)
    for f in range(n_folds):
        fold = [pairs[i] for i in np.flatnonzero(folds == f)]
        flags = [p.issame for p in fold]
        assert flags == [True] * (per_fold // 2) + [False] * (per_fold // 2)  # same, then diff
    keys = [tuple(sorted((p.a, p.b))) for p in pairs]
    assert len(set(keys)) == len(keys)  # no pair twice
    for p in pairs:
        assert p.a != p.b
        assert (_identity(p.a) == _identity(p.b)) == p.issame


@pytest.fixture
def dataset(tmp_path):
    """30 identities with 1..6 images each, .png and .pgm, one empty folder."""
    for i in range(30):
        d = tmp_path / f"p{i}"
        d.mkdir()
        for j in range(1 + i % 6):
            (d / f"{j + 1}.{'png' if j % 2 else 'pgm'}").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    return tmp_path


def test_identity_split_keeps_each_person_in_one_fold(dataset):
    result = generate_pair_set(dataset, n_folds=10, pairs_per_fold=4, seed=1)
    assert result.split == "identity"
    _check_lfw_like(result.pairs, 10, 4)
    folds = contiguous_fold_ids(len(result.pairs), 10)
    owner = {}
    for i, p in enumerate(result.pairs):
        for ref in (p.a, p.b):
            assert owner.setdefault(_identity(ref), folds[i]) == folds[i]


def test_seeded_and_reproducible(dataset):
    a = generate_pairs(dataset, pairs_per_fold=4, seed=3)
    assert a == generate_pairs(dataset, pairs_per_fold=4, seed=3)
    assert a != generate_pairs(dataset, pairs_per_fold=4, seed=4)


def test_default_size_is_what_every_fold_can_supply(dataset):
    result = generate_pair_set(dataset, seed=0)
    assert result.pairs_per_fold >= 2
    _check_lfw_like(result.pairs, 10, result.pairs_per_fold)
    with pytest.raises(InputError, match="at most"):
        generate_pair_set(dataset, pairs_per_fold=10_000, seed=0)


def test_pair_split_for_few_identities(dataset):
    ids = [f"p{i}" for i in range(3, 9)]  # 6 people: too few for 10 identity folds
    with pytest.raises(InputError, match="use split 'pair'"):
        generate_pair_set(dataset, identities=ids, split="identity")
    result = generate_pair_set(dataset, identities=ids, seed=0)
    assert result.split == "pair"
    _check_lfw_like(result.pairs, 10, result.pairs_per_fold)
    assert {_identity(r) for p in result.pairs for r in (p.a, p.b)} <= set(ids)


def test_bad_arguments(dataset):
    with pytest.raises(InputError, match="identities not found"):
        generate_pairs(dataset, identities=["p1", "nobody"])
    with pytest.raises(InputError, match="even number"):
        generate_pairs(dataset, pairs_per_fold=3)
    with pytest.raises(InputError, match="unknown split"):
        generate_pairs(dataset, split="random")
    with pytest.raises(InputError, match="dataset folder not found"):
        generate_pairs(dataset / "missing")


def test_natural_order():
    assert sorted(["s10", "s2", "s1"], key=natural_key) == ["s1", "s2", "s10"]


def test_orl_held_out_people_s31_to_s40(orl_dir, tmp_path):
    ids = [f"s{i}" for i in range(31, 41)]
    result = generate_pair_set(orl_dir, identities=ids, seed=0)
    assert result.split == "pair"
    assert result.pairs_per_fold == 90  # all 450 same-person pairs of 10 x 10 images
    _check_lfw_like(result.pairs, 10, 90)
    out = tmp_path / "orl_pairs.txt"
    write_path_pairs(out, result.pairs)
    back = read_pairs(out)
    assert back == result.pairs
    assert all(resolve_reference(orl_dir, ref) for p in back for ref in (p.a, p.b))
    per_person = Counter(_identity(p.a) for p in back if p.issame)
    assert set(per_person.values()) == {45}


def test_orl_all_people_identity_split(orl_dir):
    result = generate_pair_set(orl_dir, seed=0)
    assert result.split == "identity" and result.identities == 40 and result.images == 400
    _check_lfw_like(result.pairs, 10, result.pairs_per_fold)


def test_module_cli(orl_dir, tmp_path):
    out = tmp_path / "pairs.txt"
    cmd = [sys.executable, "-m", "massface.tools.pairs_generate", str(orl_dir), "--out", str(out),
           "--identities", ",".join(f"s{i}" for i in range(31, 41)), "--seed", "5"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "900 pairs" in proc.stdout and "split 'pair'" in proc.stdout
    assert read_pairs(out) == generate_pairs(orl_dir, identities=[f"s{i}" for i in range(31, 41)],
                                             seed=5)
    proc = subprocess.run([*cmd[:-2], "--split", "identity"], capture_output=True, text=True)
    assert proc.returncode == 2 and "use split 'pair'" in proc.stderr


def test_lfw_named_dataset_is_written_in_lfw_format(lfw_dir, tmp_path):
    """On LFW-named files the generator writes LFW's own pairs.txt, which reads back to
    the same pairs (references without extension, as LFW pairs name images)."""
    people = sorted(p.name for p in lfw_dir.iterdir()
                    if p.is_dir() and len(list(p.iterdir())) >= 2)[:20]
    out = tmp_path / "pairs.txt"
    cmd = [sys.executable, "-m", "massface.tools.pairs_generate", str(lfw_dir), "--out",
           str(out), "--identities", ",".join(people), "--seed", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "lfw format" in proc.stdout
    header = out.read_text().splitlines()[0].split()
    expected = generate_pairs(lfw_dir, identities=people, seed=1)
    assert header == ["10", str(len(expected) // 20)]
    got = read_pairs(out)
    assert [(p.a, p.b, p.issame) for p in got] == [
        (a.rsplit(".", 1)[0], b.rsplit(".", 1)[0], s) for a, b, s in
        ((p.a, p.b, p.issame) for p in expected)]
    assert all(resolve_reference(lfw_dir, p.a) for p in got)


def test_lfw_format_refuses_other_names(orl_dir, tmp_path):
    out = tmp_path / "pairs.txt"
    cmd = [sys.executable, "-m", "massface.tools.pairs_generate", str(orl_dir), "--out",
           str(out), "--format", "lfw"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2 and "not named <name>/<name>_NNNN" in proc.stderr
    assert not out.exists()
