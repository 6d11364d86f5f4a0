"""ConvBNReLU and Residual against a NumPy transcription of the original's PyTorch blocks."""

import keras
import numpy as np
import pytest

from cornernet_tf.models.layers import BN_EPSILON, ConvBNReLU, Residual, SymmetricConv2D
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
