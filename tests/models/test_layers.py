"""ConvBNReLU and Residual against a NumPy transcription of the original's PyTorch blocks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.models.layers import BN_EPSILON, ConvBNReLU, FusedBatchNorm, Residual, SymmetricConv2D
from tests.conftest import check_layer


def numpy_conv(x: np.ndarray, kernel: np.ndarray, stride: int) -> np.ndarray:
    """PyTorch Conv2d semantics: symmetric zero padding (k - 1) // 2. x [B,H,W,C], kernel HWIO."""
    k = kernel.shape[0]
    pad = (k - 1) // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out_h = (xp.shape[1] - k) // stride + 1
    out_w = (xp.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[-1]))
    for i in range(k):
        for j in range(k):
            window = xp[:, i : i + stride * out_h : stride, j : j + stride * out_w : stride]
            out += np.einsum("bhwc,co->bhwo", window, kernel[i, j])
    return out


def numpy_bn(x: np.ndarray, bn: keras.layers.BatchNormalization) -> np.ndarray:
    gamma, beta, mean, var = (np.asarray(w) for w in bn.get_weights())
    return (x - mean) / np.sqrt(var + BN_EPSILON) * gamma + beta


def randomize(layer: keras.layers.Layer, seed: int = 0) -> None:
    """Random weights everywhere, with positive BN variances (so eval-mode BN is really tested)."""
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        value = rng.standard_normal(w.shape) * 0.5
        w.assign(np.abs(value) + 0.5 if "variance" in w.path else value)


@pytest.mark.parametrize(
    ("size", "kernel", "stride"),
    [((8, 8), 3, 2), ((7, 9), 7, 2), ((6, 5), 3, 1), ((5, 5), 1, 1), ((8, 6), 1, 2), ((7, 9), 1, 2)],
)
def test_conv_bn_relu_pads_symmetrically_like_pytorch(size, kernel, stride):
    layer = ConvBNReLU(4, kernel, strides=stride)
    x = np.random.default_rng(1).standard_normal((2, *size, 3)).astype("float32")
    layer(x)
    randomize(layer)
    expected = np.maximum(numpy_bn(numpy_conv(x, np.asarray(layer.conv.kernel), stride), layer.bn), 0)
    np.testing.assert_allclose(layer(x, training=False), expected, rtol=1e-4, atol=1e-4)


def test_symmetric_conv_round_trips_and_rejects_even_kernels():
    conv = SymmetricConv2D(5, 3, strides=2, use_bias=False)
    check_layer(conv, (1, 8, 7, 2), (1, 4, 4, 5))
    config = conv.get_config()
    assert (config["kernel_size"], config["strides"], config["use_bias"]) == (3, 2, False)
    with pytest.raises(ValueError, match="odd kernel_size"):
        SymmetricConv2D(5, 2)


def test_conv_bn_relu_has_a_bias_exactly_without_bn():
    with_bn = ConvBNReLU(4, 3)
    without = ConvBNReLU(4, 3, with_bn=False)
    check_layer(with_bn, (2, 8, 6, 3), (2, 8, 6, 4))
    check_layer(without, (2, 8, 6, 3), (2, 8, 6, 4))
    assert not with_bn.conv.use_bias and with_bn.bn is not None
    assert without.conv.use_bias and without.bn is None
    assert with_bn.bn.epsilon == 1e-5 and with_bn.bn.momentum == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("in_channels", "filters", "stride", "size", "has_skip"),
    [(4, 4, 1, (6, 6), False), (4, 6, 1, (6, 6), True), (4, 4, 2, (8, 6), True), (4, 6, 2, (7, 9), True)],
)
def test_residual_matches_the_original_block(in_channels, filters, stride, size, has_skip):
    layer = Residual(filters, strides=stride)
    x = np.random.default_rng(2).standard_normal((2, *size, in_channels)).astype("float32")
    out_shape = (2, (size[0] - 1) // stride + 1, (size[1] - 1) // stride + 1, filters)
    check_layer(layer, x.shape, out_shape)
    assert (layer.skip_conv is not None) == has_skip
    randomize(layer, seed=3)
    y = np.maximum(numpy_bn(numpy_conv(x, np.asarray(layer.conv1.kernel), stride), layer.bn1), 0)
    y = numpy_bn(numpy_conv(y, np.asarray(layer.conv2.kernel), 1), layer.bn2)
    skip = numpy_bn(numpy_conv(x, np.asarray(layer.skip_conv.kernel), stride), layer.skip_bn) if has_skip else x
    np.testing.assert_allclose(layer(x, training=False), np.maximum(y + skip, 0), rtol=1e-4, atol=1e-4)


def test_mixed_precision_computes_in_half_and_keeps_float32_variables():
    layer = Residual(6, strides=2, dtype="mixed_bfloat16")
    y = layer(np.zeros((1, 8, 8, 4), "float32"))
    assert y.dtype == "bfloat16"
    assert all(w.dtype == "float32" for w in layer.weights)


def _batch_norm_pair(channels: int):
    """Keras' BatchNormalization and ours with the same non-trivial variables."""
    rng = np.random.default_rng(0)
    values = [
        rng.uniform(0.5, 1.5, channels),
        rng.normal(size=channels),
        rng.normal(size=channels),
        rng.uniform(0.5, 2.0, channels),
    ]
    layers = (
        keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.9),
        FusedBatchNorm(epsilon=BN_EPSILON, momentum=0.9),
    )
    for layer in layers:
        layer.build((None, None, None, channels))
        layer.set_weights([v.astype("float32") for v in values])
    return layers


@pytest.mark.parametrize("training", [False, True])
def test_fused_batch_norm_computes_what_keras_batch_normalization_computes(training):
    x = tf.random.stateless_normal([3, 9, 7, 5], seed=(1, 2)) * 3.0 + 1.0
    weights = tf.random.stateless_normal(x.shape, seed=(3, 4))
    results = []
    for layer in _batch_norm_pair(5):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(y * weights)
        results.append((y, tape.gradient(loss, [x, *layer.trainable_weights]), layer.get_weights()))
    (keras_y, keras_grads, keras_after), (our_y, our_grads, our_after) = results
    np.testing.assert_allclose(our_y, keras_y, atol=1e-5)
    for ours, theirs in zip(our_grads, keras_grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    # the moving statistics move alike in training (biased batch variance) and stay at inference
    for ours, theirs in zip(our_after, keras_after):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_fused_batch_norm_uses_the_fused_kernel_and_keras_for_synchronized_statistics():
    _, layer = _batch_norm_pair(4)
    x = tf.ones([2, 4, 4, 4])

    def op_types() -> set[str]:
        graph = tf.function(lambda t: layer(t, training=True)).get_concrete_function(x).graph
        return {op.type for op in graph.get_operations()}

    assert "FusedBatchNormV3" in op_types()
    layer.synchronized = True
    assert "FusedBatchNormV3" not in op_types()
