"""AUC and EER are right for every --flip / --distance / --normalization option.

The reference is the ROC of all pairs computed by scikit-learn (``roc_auc_score``: sort
all pairs, ties count one half; ``roc_curve`` + brentq for the EER), from distances the
test computes itself. Concatenated flips reach squared L2 8 and unnormalised vectors any
distance: facenet's grid stops at 4, which once cut the ROC (AUC 0.53 for a 99% model).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from massface.errors import InputError
from massface.scoring import verify
from tests.helpers.naive_reference import naive_all_pairs, naive_distance, naive_prepare

OPTIONS = [dict(flip=f, distance=d, normalization=n, subtract_mean=m)
           for f, d, n, m in itertools.product(("none", "concat", "sum"),
                                               ("euclidean", "cosine"),
                                               ("l2", "massface", "none"), (False, True))]


def _naive_pooled(emb, flip_emb, same, opts, n_folds=10):
    """Each pair's distance as its test fold scores it (contiguous folds)."""
    e = naive_prepare(emb, flip_emb, opts["normalization"], opts["flip"])
    e1, e2 = e[0::2], e[1::2]
    folds = np.array_split(np.arange(same.size), n_folds)
    out = np.zeros(same.size)
    for test in folds:
        train = np.setdiff1d(np.arange(same.size), test)
        m = np.mean(np.concatenate([e1[train], e2[train]]), 0) if opts["subtract_mean"] else 0
        out[test] = naive_distance(e1 - m, e2 - m, opts["distance"])[test]
    return out


def _separable(seed=0, n_pairs=400, dim=16, scale=1.0):
    """Embeddings where same-person pairs are close: a high AUC, like a real model's."""
    rng = np.random.default_rng(seed)
    ids = rng.standard_normal((n_pairs, dim))
    same = np.tile(np.r_[np.ones(20, bool), np.zeros(20, bool)], n_pairs // 40)
    a = ids + 0.3 * rng.standard_normal((n_pairs, dim))
    other = rng.standard_normal((n_pairs, dim))
    b = np.where(same[:, None], ids, other) + 0.3 * rng.standard_normal((n_pairs, dim))
    emb = np.empty((2 * n_pairs, dim))
    emb[0::2], emb[1::2] = a, b
    flip = emb + 0.2 * rng.standard_normal(emb.shape)
    return scale * emb, scale * flip, same


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_auc_and_eer_equal_all_pairs_reference(opts):
    emb, flip, same = _separable(scale=2.0)  # unnormalised distances far beyond 4
    result = verify(emb, same, flip_embeddings=flip, **opts)
    ref = naive_all_pairs(_naive_pooled(emb, flip, same, opts), same)
    assert abs(result.auc - ref["auc"]) <= 1e-12
    assert abs(result.eer - ref["eer"]) <= 1e-9
    assert result.fpr[-1] == 1.0 or result.thresholds[-1] < 4  # the grid reaches (1, 1)


def test_concat_auc_is_not_cut_at_4():
    """The bug: thresholds stopped at 4 while concatenated distances reach 8."""
    emb, flip, same = _separable()
    emb[1::2][~same] *= -1  # different-person pairs nearly opposite: distances near 8
    flip[1::2][~same] *= -1
    result = verify(emb, same, flip_embeddings=flip, flip="concat")
    assert result.auc > 0.99
    assert result.thresholds[-1] > 4 and result.fpr[-1] == 1.0
    assert result.auc_grid > 0.99  # the grid's figure covers the range too


def test_a_grid_too_large_is_refused_with_the_fix():
    emb, _flip, same = _separable(scale=30.0)
    with pytest.raises(InputError, match="--normalization l2"):
        verify(emb, same, normalization="none")


@pytest.fixture(scope="module")
def lfw_with_mirrors(lfw_flip_run):
    """The shared model's embeddings of LFW's 7,701 pair images and of their mirrors."""
    from massface.evaluate.inputs import LoadOptions, load_input

    data = load_input(lfw_flip_run, LoadOptions(progress=False))
    return data.embeddings, data.flip_embeddings, data.issame


@pytest.mark.slow
@pytest.mark.parametrize("opts", [o for o in OPTIONS if o["normalization"] != "massface"],
                         ids=lambda o: "-".join(str(v) for v in o.values()))
def test_real_lfw_auc_every_option(lfw_with_mirrors, opts):
    emb, flip, same = lfw_with_mirrors
    # raw embeddings: squared distances reach 7e4, a grid of step 0.1 has 7e5 thresholds
    step = 0.1 if opts["normalization"] == "none" else 0.01
    result = verify(emb, same, flip_embeddings=flip, threshold_step=step, **opts)
    ref = naive_all_pairs(_naive_pooled(emb, flip, same, opts), same)
    assert abs(result.auc - ref["auc"]) <= 1e-6
    assert abs(result.eer - ref["eer"]) <= 1e-6


@pytest.mark.parametrize("seed", range(5))
def test_val_threshold_by_bisection_is_the_pinned_interpolation_on_the_grid(seed):
    from massface.scoring.verification import far_threshold, threshold_grid, val_threshold

    rng = np.random.default_rng(seed)
    neg = np.sort(np.round(rng.uniform(0, 6, 300), 2))  # ties and values past 4
    step = 0.01
    grid = threshold_grid(step, float(neg.max()))
    far = np.searchsorted(neg, grid, side="left") / neg.size
    for target in (1e-3, 0.01, 0.1, 0.5, 0.999, 1.0):
        assert val_threshold(neg, step, grid.size, target) == far_threshold(far, grid, target)
