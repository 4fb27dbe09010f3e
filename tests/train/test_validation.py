"""Periodic verification embeds its pair images normalised by the one record training's
input pipeline uses (``Preprocessing.normalize``), mirrored on request."""

from __future__ import annotations

import numpy as np
import pytest

from massface.formats.preprocessing import Preprocessing
from massface.train.validation import PairsValidation


def test_validation_feeds_the_model_what_training_feeds_it(tmp_path):
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 8, 6, 3), dtype=np.uint8)
    val = PairsValidation(images, np.arange(4), np.array([True, False]), tmp_path / "p.txt",
                          preprocessing=Preprocessing(mean=100.0, std=50.0), batch_size=2)

    def model(x, training):  # the identity, flattened: the embedding is the model's input
        assert training is False
        return tf.reshape(x, [tf.shape(x)[0], -1])

    want = [[(float(v) - 100.0) / 50.0 for v in img.reshape(-1)] for img in images]
    mirrored = [[(float(v) - 100.0) / 50.0 for v in img[:, ::-1].reshape(-1)]
                for img in images]
    np.testing.assert_allclose(val.embed(model), np.array(want), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(val.embed(model, flip=True), np.array(mirrored), rtol=1e-6,
                               atol=1e-6)
    assert val.preprocessing.color == "RGB"
