"""Scoring one LFW set or any subset of pairs: ``--folds-by label`` and messages that say
what to do."""

from __future__ import annotations

import numpy as np
import pytest

from massface.errors import InputError
from massface.evaluate.cli import app
from massface.scoring import verify
from tests.helpers.cli import run_cli
from tests.helpers.naive_reference import assert_matches, naive_evaluate


def _one_lfw_set(seed=0, n=600, dim=16):
    """Like one LFW set: 300 same-person pairs, then 300 different-person ones."""
    rng = np.random.default_rng(seed)
    same = np.r_[np.ones(n // 2, bool), np.zeros(n // 2, bool)]
    ids = rng.standard_normal((n, dim))
    emb = np.empty((2 * n, dim))
    emb[0::2] = ids + 0.5 * rng.standard_normal((n, dim))
    emb[1::2] = np.where(same[:, None], ids, rng.standard_normal((n, dim))) \
        + 0.5 * rng.standard_normal((n, dim))
    return emb, same


def _slow_label_folds(same, k):
    """Walk the pairs in order, dealing each kind's pairs into k equal runs."""
    folds = np.zeros(same.size, int)
    for kind in (True, False):
        idx = [i for i in range(same.size) if same[i] == kind]
        per, extra = divmod(len(idx), k)
        pos = 0
        for f in range(k):
            size = per + (1 if f < extra else 0)
            for i in idx[pos:pos + size]:
                folds[i] = f
            pos += size
    return folds


def test_one_set_by_position_says_what_to_do():
    emb, same = _one_lfw_set()
    with pytest.raises(InputError, match="--folds-by label"):
        verify(emb, same)
    with pytest.raises(InputError, match="use --folds 2 or more"):
        verify(emb, same, n_folds=1)


@pytest.mark.parametrize("n,k", [(600, 10), (94, 7)])
def test_folds_by_label_matches_naive(n, k):
    emb, same = _one_lfw_set(n=n)
    result = verify(emb, same, folds_by="label", n_folds=k)
    folds = _slow_label_folds(same, k)
    splits = [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(k)]
    assert_matches(result, naive_evaluate(emb, same, splits=splits))
    assert result.protocol.folds == "by label"
    for f in range(k):
        assert same[folds == f].any() and (~same[folds == f]).any()


def test_too_few_pairs_of_a_kind_for_the_folds():
    emb, same = _one_lfw_set(n=12)
    with pytest.raises(InputError, match="use --folds 6 or fewer"):
        verify(emb, same, folds_by="label")


def test_cli_scores_one_set(tmp_path):
    emb, same = _one_lfw_set()
    path = tmp_path / "set1.npz"
    np.savez(path, embeddings=emb, issame=same)
    r = run_cli(app, [str(path)])
    assert r.exit_code == 2 and "--folds-by label" in r.output
    r = run_cli(app, [str(path), "--folds", "1"])
    assert r.exit_code == 2 and "use --folds 2 or more" in r.output
    r = run_cli(app, [str(path), "--folds-by", "label"])
    assert r.exit_code == 0, r.output
    assert f"{100 * verify(emb, same, folds_by='label').accuracy:.3f}" in r.output
    r = run_cli(app, [str(path), "--folds-by", "random"])
    assert r.exit_code == 2 and "unknown fold split 'random'" in r.output
