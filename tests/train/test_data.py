"""Dataset scanning, the P x K and shuffle samplers, decoding and augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from massface.errors import InputError
from massface.train.data import (
    Augment,
    PKSampler,
    ShuffleSampler,
    load_image,
    scan_image_folder,
)


def test_scan_orl_in_natural_order_and_decode_pgm(orl_dir):
    folder = scan_image_folder(orl_dir, ["s1", "s2", "s10"])
    assert folder.identities == ["s1", "s2", "s10"]
    assert folder.paths[:3] == ["s1/1.pgm", "s1/2.pgm", "s1/3.pgm"]
    assert folder.paths[9] == "s1/10.pgm" and len(folder) == 30
    img = load_image(orl_dir / "s1" / "1.pgm")
    assert img.shape == (112, 112, 3) and img.dtype == np.uint8
    assert np.array_equal(img[..., 0], img[..., 2])  # grey -> RGB
    with pytest.raises(InputError, match="identity folders not found: s99"):
        scan_image_folder(orl_dir, ["s1", "s99"])


def test_pk_sampler_covers_every_identity_once_per_pass():
    counts = [5, 2, 7, 1, 5, 3, 6, 4, 5, 2, 8]  # 11 identities, some with < K images
    labels = np.repeat(np.arange(len(counts)), counts)
    sampler = PKSampler(labels, P=4, K=3, seed=7)
    stream = []
    for step in range(30):
        batch = sampler.batch(step)
        assert batch.shape == (12,)
        ids = labels[batch].reshape(4, 3)
        assert (ids == ids[:, :1]).all()              # identity-major blocks of K
        assert len(set(ids[:, 0])) == 4               # never the same identity twice
        for block, ident in zip(batch.reshape(4, 3), ids[:, 0], strict=True):
            have = np.flatnonzero(labels == ident)
            assert set(block) <= set(have)
            if len(have) >= 3:
                assert len(set(block)) == 3           # without repetition when possible
            else:
                assert set(block) == set(have)        # all of them, topped up
        stream.extend(ids[:, 0])
    n = len(counts)
    for p in range(len(stream) // n):  # each pass (n identities) is a permutation
        assert sorted(stream[p * n:(p + 1) * n]) == list(range(n))
    again = PKSampler(labels, P=4, K=3, seed=7)
    assert np.array_equal(again.batch(17), sampler.batch(17))  # random access, seeded


def test_shuffle_sampler_epochs_are_permutations():
    labels = np.arange(25)
    s = ShuffleSampler(labels, batch_size=8, seed=1)
    assert s.steps_per_epoch == 3
    epoch = np.concatenate([s.batch(i) for i in range(3)])
    assert len(set(epoch)) == 24
    assert not np.array_equal(s.batch(0), s.batch(3))
    with pytest.raises(InputError, match="fewer than one batch"):
        ShuffleSampler(labels, batch_size=30, seed=0)


def test_augment_is_seeded_and_in_range():
    import tensorflow as tf

    x = tf.random.stateless_uniform([6, 112, 112, 3], (1, 2), 0, 255)
    aug = Augment(flip=True, crop=0.8, shift=4, brightness=0.2, contrast=0.3)
    a = aug(x, tf.constant([0, 5], tf.int64)).numpy()
    b = aug(x, tf.constant([0, 5], tf.int64)).numpy()
    c = aug(x, tf.constant([0, 6], tf.int64)).numpy()
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == (6, 112, 112, 3) and a.min() >= 0 and a.max() <= 255
    flip_only = Augment(flip=True)(x, tf.constant([0, 1], tf.int64)).numpy()
    for got, orig in zip(flip_only, x.numpy(), strict=True):
        assert np.array_equal(got, orig) or np.array_equal(got, orig[:, ::-1])


def test_build_source_picks_the_sampler_by_name(orl_dir):
    from dataclasses import replace

    from massface.train.config import DataConfig
    from massface.train.data import SAMPLERS, build_source

    data = DataConfig(train_dir=str(orl_dir), identities=["s1", "s2", "s3"], batch_size=6,
                      P=2, K=3, cache="false")
    shuffle = build_source(data, "shuffle", seed=0)
    assert isinstance(shuffle.sampler, ShuffleSampler) and shuffle.sampler.batch_size == 6
    assert shuffle.images is None and shuffle.batch(0)[0].shape == (6, 112, 112, 3)
    pk = build_source(data, "pk", seed=0)
    assert isinstance(pk.sampler, PKSampler) and pk.sampler.batch_size == 6
    assert SAMPLERS.names() == ["shuffle", "pk"]
    with pytest.raises(InputError, match=r"unknown sampler 'pq' \(choose one of: shuffle, pk"):
        build_source(data, "pq", seed=0)
    with pytest.raises(InputError, match=r"data\.K must be at least 2"):
        build_source(replace(data, K=1), "pk", seed=0)
    with pytest.raises(InputError, match=r"data\.train_dir is not set"):
        build_source(DataConfig(), "shuffle", seed=0)
