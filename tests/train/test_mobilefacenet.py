"""MobileFaceNet per SPEC section 3 and the checkpoint loader the export stage builds on."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import yaml

from massface.errors import InputError
from massface.train.checkpoints import load_backbone
from massface.train.mobilefacenet import MobileFaceNet, count_parameters, variables_by_key


@pytest.fixture(scope="module")
def net() -> MobileFaceNet:
    return MobileFaceNet(1024, seed=0)


def test_parameter_count_matches_massface_release(net):
    assert count_parameters(net) == (1_731_072, 22_528)


def test_embedding_size_configurable_and_output_shape():
    model = MobileFaceNet(128, seed=1)
    out = model(tf.zeros([2, 112, 112, 3]))
    assert out.shape == (2, 128) and out.dtype == tf.float32


def test_layer_shapes_follow_the_spec(net):
    x = tf.zeros([1, 112, 112, 3])
    for layer in (net.conv1, net.dwconv1, net.conv2):
        x = layer(x)
    assert x.shape == (1, 56, 56, 64)
    sizes = []
    for block in net.blocks:
        x = block(x)
        sizes.append(tuple(x.shape[1:]))
    assert sizes[4] == (28, 28, 64) and sizes[5] == (14, 14, 128)
    assert sizes[11] == (14, 14, 128) and sizes[12] == (7, 7, 128) and sizes[-1] == (7, 7, 128)
    assert [b.residual for b in net.blocks] == [False, True, True, True, True, False,
                                                True, True, True, True, True, True, False,
                                                True, True]
    assert net.gdconv.kernel.shape == (7, 7, 512, 1)


def test_bn_and_prelu_hyperparameters(net):
    assert net.conv1.bn.epsilon == 2e-5 and net.conv1.bn.momentum == 0.995
    np.testing.assert_array_equal(net.conv1.prelu.alpha.numpy(), np.full(64, 0.25, np.float32))
    assert net.conv2.prelu is None and net.embedding.prelu is None


def test_inference_uses_moving_statistics_and_fused_bn():
    model = MobileFaceNet(64, seed=2)
    x = tf.random.stateless_normal([4, 112, 112, 3], seed=(1, 2))
    before = model(x).numpy()
    model.conv1.bn.moving_mean.assign(tf.fill([64], 0.5))
    assert not np.allclose(before, model(x).numpy())  # inference reads moving stats
    graph = tf.function(lambda t: model(t)).get_concrete_function(
        tf.TensorSpec([None, 112, 112, 3])).graph
    types = [op.type for op in graph.get_operations()]
    assert types.count("FusedBatchNormV3") == 52


def test_training_moves_statistics_by_momentum():
    model = MobileFaceNet(64, seed=3)
    x = tf.random.stateless_normal([4, 112, 112, 3], seed=(3, 4))
    model(x, training=True)
    # conv1 output mean over the batch, via the same kernel: check against 0.005 * mean
    conv = tf.nn.conv2d(x, model.conv1.kernel, [1, 2, 2, 1], "SAME")
    batch_mean = tf.reduce_mean(conv, axis=[0, 1, 2]).numpy()
    np.testing.assert_allclose(model.conv1.bn.moving_mean.numpy(), 0.005 * batch_mean,
                               rtol=1e-4, atol=1e-7)


def test_seed_reproducible():
    a, b = MobileFaceNet(32, seed=5), MobileFaceNet(32, seed=5)
    for (ka, va), (kb, vb) in zip(variables_by_key(a).items(), variables_by_key(b).items(),
                                  strict=True):
        assert ka == kb
        np.testing.assert_array_equal(va.numpy(), vb.numpy())


def _save_run(tmp_path, model, size):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"embedding_size": size}}))
    ckpt = tf.train.Checkpoint(backbone=model, step=tf.Variable(3, dtype=tf.int64))
    tf.train.CheckpointManager(ckpt, run / "checkpoints", max_to_keep=2).save()
    return run


def test_checkpoint_keys_are_attribute_paths_and_load_backbone_roundtrip(tmp_path):
    model = MobileFaceNet(64, seed=7)
    model(tf.random.stateless_normal([2, 112, 112, 3], seed=(5, 6)), training=True)
    run = _save_run(tmp_path, model, 64)
    prefix = tf.train.latest_checkpoint(str(run / "checkpoints"))
    stored = {n for n, _ in tf.train.list_variables(prefix) if n.startswith("backbone/")}
    assert stored == {f"backbone/{k}/.ATTRIBUTES/VARIABLE_VALUE" for k in variables_by_key(model)}
    x = tf.random.stateless_normal([3, 112, 112, 3], seed=(7, 8))
    for path in (run, run / "checkpoints", prefix):
        loaded, config = load_backbone(path)
        assert config["model"]["embedding_size"] == 64
        np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


def test_load_backbone_errors(tmp_path):
    with pytest.raises(InputError, match="no checkpoint"):
        (tmp_path / "empty").mkdir()
        load_backbone(tmp_path / "empty")
    with pytest.raises(InputError, match="not a run folder"):
        load_backbone(tmp_path / "nothing-here")
    run = _save_run(tmp_path, MobileFaceNet(64, seed=0), 128)  # config disagrees with weights
    with pytest.raises(InputError, match=r"wrong shape: embedding/bn/beta"):
        load_backbone(run)
    other = tmp_path / "other"
    other.mkdir()
    tf.train.Checkpoint(backbone=tf.Module()).write(str(other / "ckpt"))
    with pytest.raises(InputError, match="no MobileFaceNet backbone"):
        load_backbone(other / "ckpt")
