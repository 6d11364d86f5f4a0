"""The two building blocks of the Hourglass network, ConvBNReLU and Residual (NHWC), and the
convs and BatchNorm they (and CornerNet-Squeeze's fire modules) are made of.

Both follow the original PyTorch code exactly: symmetric zero padding of (k - 1) // 2 on every
side (SymmetricConv2D), and BatchNorm with PyTorch's defaults (epsilon 1e-5, momentum 0.1,
i.e. Keras momentum 0.9).
Attribute names mirror the original's module names (`conv`, `bn`, `conv1`, `skip`, ...) so that
`cornernet_tf.convert` can map official checkpoint keys onto them.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def strided_side(size: int | None, strides: int) -> int | None:
    """Side length after a symmetric-padded odd-kernel conv: ceil(size / strides)."""
    return None if size is None else (size - 1) // strides + 1


def strided_shape(input_shape, strides: int, filters: int) -> tuple:
    batch, height, width, _ = input_shape
    return (batch, strided_side(height, strides), strided_side(width, strides), filters)


def symmetric_pad(x, kernel: int, stride: int) -> tuple:
    """PyTorch's symmetric (k - 1) // 2 zero padding for an odd-kernel conv: (x, stride, padding).

    Strided: x padded explicitly, to be convolved "valid" (a strided 1x1 subsamples first and runs
    at stride 1). Stride 1: x unchanged and "same", which is already symmetric.
    """
    if kernel == 1 and stride > 1:
        return x[:, ::stride, ::stride, :], 1, "same"
    if stride == 1:
        return x, 1, "same"
    pad = (kernel - 1) // 2
    if pad:
        x = ops.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    return x, stride, "valid"


class _SymmetricPadding:
    """`call` and `get_config` of the symmetric-padding convs: pad as PyTorch does (see
    `symmetric_pad`), then convolve with `_convolve` (a keras.ops conv); the config keeps
    the int kernel size and stride the constructors take, and no padding."""

    _convolve = staticmethod(ops.conv)

    def call(self, x):
        x, stride, padding = symmetric_pad(x, self.kernel_size[0], self.strides[0])
        y = self._convolve(x, self.kernel, strides=stride, padding=padding)
        if self.use_bias:
            y = y + self.bias
        return y

    def get_config(self) -> dict:
        config = super().get_config()
        config["kernel_size"] = self.kernel_size[0]
        config["strides"] = self.strides[0]
        del config["padding"]
        return config


@keras.saving.register_keras_serializable(package="cornernet_tf")
class SymmetricConv2D(_SymmetricPadding, keras.layers.Conv2D):
    """Conv2D (odd kernel) with PyTorch's symmetric zero padding of (k - 1) // 2 on every side.

    TF's "same" padding is asymmetric for stride 2 on even sizes (0 before, 1 after), which
    shifts the sampling grid; so strided convs pad explicitly and run "valid". With stride 1,
    "same" is already symmetric and saves the copy. A strided 1x1 conv subsamples first and
    runs at stride 1: the same result at a quarter of the cost, and it avoids a oneDNN (CPU)
    heap corruption in the backward pass of chained strided 1x1 convs (TF 2.21).
    [B, H, W, C_in] -> [B, ceil(H / s), ceil(W / s), filters].
    """

    def __init__(self, filters: int, kernel_size: int, strides: int = 1, use_bias: bool = True, **kwargs):
        """Check the kernel; `call` pads (see `symmetric_pad`), so Keras' own padding stays "valid".

        Args:
            filters: Output channels.
            kernel_size: Odd kernel side k.
            strides: Stride s of both axes.
            use_bias: Add a bias.
            **kwargs: Other keras.layers.Conv2D arguments (name, dtype, ...).

        Raises:
            ValueError: `kernel_size` is even.
        """
        if kernel_size % 2 != 1:
            raise ValueError(f"SymmetricConv2D needs an odd kernel_size, got {kernel_size}")
        super().__init__(filters, kernel_size, strides=strides, padding="valid", use_bias=use_bias, **kwargs)

    def compute_output_shape(self, input_shape) -> tuple:
        return strided_shape(input_shape, self.strides[0], self.filters)


@keras.saving.register_keras_serializable(package="cornernet_tf")
class SymmetricDepthwiseConv2D(_SymmetricPadding, keras.layers.DepthwiseConv2D):
    """DepthwiseConv2D (odd kernel, multiplier 1, no bias) with PyTorch's symmetric padding.

    PyTorch's Conv2d(c, c, k, groups=c, padding=(k - 1) // 2, bias=False); see SymmetricConv2D
    for why strided convs pad explicitly. Kernel [k, k, C, 1].
    [B, H, W, C] -> [B, ceil(H / s), ceil(W / s), C].
    """

    def __init__(self, kernel_size: int, strides: int = 1, **kwargs):
        if kernel_size % 2 != 1:
            raise ValueError(f"SymmetricDepthwiseConv2D needs an odd kernel_size, got {kernel_size}")
        kwargs.setdefault("use_bias", False)
        super().__init__(kernel_size, strides=strides, padding="valid", **kwargs)

    _convolve = staticmethod(ops.depthwise_conv)

    def compute_output_shape(self, input_shape) -> tuple:
        return strided_shape(input_shape, self.strides[0], input_shape[-1] * self.depth_multiplier)


@keras.saving.register_keras_serializable(package="cornernet_tf")
class FusedBatchNorm(keras.layers.BatchNormalization):
    """Keras' BatchNormalization computed by TensorFlow's fused kernel (FusedBatchNormV3).

    Keras 3 normalises with separate moments, subtract, rsqrt, multiply and add ops, each making
    a full-size tensor, and as many again in the gradient; the fused kernel is one op each way
    (oneDNN's on CPU, cuDNN's on GPU), and at inference grappler folds it into the conv before
    it. The results are Keras' own: normalisation by the biased batch variance in training, the
    same running-average updates of moving_mean and moving_variance (the kernel's Bessel-corrected
    variance is scaled back), the same variables and config. Synchronized statistics, masks and
    layouts other than NHWC take Keras' path.
    """

    def call(self, inputs, training=None, mask=None):
        rank = len(inputs.shape)
        fused = (
            mask is None
            and not self.synchronized
            and rank == 4
            and self.axis % rank == 3
            and inputs.dtype in (tf.float32, tf.float16, tf.bfloat16)
            and self.center
            and self.scale
        )
        if not fused:
            return super().call(inputs, training=training, mask=mask)
        gamma, beta = tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32)
        if not (training and self.trainable):
            outputs, *_ = tf.raw_ops.FusedBatchNormV3(
                x=inputs,
                scale=gamma,
                offset=beta,
                mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32),
                epsilon=self.epsilon,
                is_training=False,
            )
            return outputs
        empty = tf.constant([], tf.float32)
        outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=gamma, offset=beta, mean=empty, variance=empty, epsilon=self.epsilon, is_training=True
        )
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), tf.float32)
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)  # biased, as Keras keeps it
        for moving, batch_value in ((self.moving_mean, mean), (self.moving_variance, variance)):
            moving.assign(moving * self.momentum + tf.cast(batch_value, moving.dtype) * (1.0 - self.momentum))
        return outputs


def batch_norm(dtype: Any, name: str) -> keras.layers.BatchNormalization:
    """A BatchNormalization with PyTorch's defaults (eps 1e-5, running-average momentum 0.1)."""
    return FusedBatchNorm(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, dtype=dtype, name=name)


def _channels_only(input_shape) -> tuple:
    """[B, H, W, C] with only C kept: weights depend on nothing else."""
    return (None, None, None, input_shape[-1])


@keras.saving.register_keras_serializable(package="cornernet_tf")
class ConvBNReLU(keras.layers.Layer):
    """Conv (k x k, stride, symmetric padding) -> BatchNorm (or a conv bias) -> ReLU.

    The original's `convolution(k, inp_dim, out_dim, stride, with_bn)`: the conv has a bias
    exactly when there is no BatchNorm. [B, H, W, C_in] -> [B, ceil(H / s), ceil(W / s), filters].
    """

    def __init__(self, filters: int, kernel_size: int = 3, strides: int = 1, with_bn: bool = True, **kwargs):
        """Create the conv and, with `with_bn`, its BatchNorm.

        Args:
            filters: Output channels.
            kernel_size: Odd kernel side k.
            strides: Stride s of both axes.
            with_bn: BatchNorm after the conv; without it, the conv has a bias.
            **kwargs: Keras layer arguments (name, dtype, ...).

        Raises:
            ValueError: `kernel_size` is even.
        """
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.with_bn = with_bn
        self.conv = SymmetricConv2D(
            filters, kernel_size, strides, use_bias=not with_bn, dtype=self.dtype_policy, name="conv"
        )
        self.bn = batch_norm(self.dtype_policy, "bn") if with_bn else None

    def build(self, input_shape) -> None:
        self.conv.build(_channels_only(input_shape))
        if self.bn is not None:
            self.bn.build((None, None, None, self.filters))

    def call(self, x, training=None):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x, training=training)
        return ops.relu(x)

    def compute_output_shape(self, input_shape) -> tuple:
        return strided_shape(input_shape, self.strides, self.filters)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides, with_bn=self.with_bn)
        return config


@keras.saving.register_keras_serializable(package="cornernet_tf")
class Residual(keras.layers.Layer):
    """The original's `residual`: two 3x3 conv-BN (ReLU between) plus a skip, then ReLU.

    The skip is a 1x1 conv (same stride) + BN when `strides != 1` or the channel count changes,
    otherwise the identity; it is created in `build`, once the input channels are known.
    [B, H, W, C_in] -> [B, ceil(H / s), ceil(W / s), filters].
    """

    def __init__(self, filters: int, strides: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides
        self.conv1 = SymmetricConv2D(filters, 3, strides, use_bias=False, dtype=self.dtype_policy, name="conv1")
        self.bn1 = batch_norm(self.dtype_policy, "bn1")
        self.conv2 = SymmetricConv2D(filters, 3, use_bias=False, dtype=self.dtype_policy, name="conv2")
        self.bn2 = batch_norm(self.dtype_policy, "bn2")
        self.skip_conv = None
        self.skip_bn = None

    def build(self, input_shape) -> None:
        in_shape = _channels_only(input_shape)
        out_shape = (None, None, None, self.filters)
        self.conv1.build(in_shape)
        self.bn1.build(out_shape)
        self.conv2.build(out_shape)
        self.bn2.build(out_shape)
        if self.strides != 1 or input_shape[-1] != self.filters:
            self.skip_conv = SymmetricConv2D(
                self.filters, 1, self.strides, use_bias=False, dtype=self.dtype_policy, name="skip_conv"
            )
            self.skip_bn = batch_norm(self.dtype_policy, "skip_bn")
            self.skip_conv.build(in_shape)
            self.skip_bn.build(out_shape)

    def call(self, x, training=None):
        y = ops.relu(self.bn1(self.conv1(x), training=training))
        y = self.bn2(self.conv2(y), training=training)
        skip = x
        if self.skip_conv is not None:
            skip = self.skip_bn(self.skip_conv(x), training=training)
        return ops.relu(y + skip)

    def compute_output_shape(self, input_shape) -> tuple:
        return strided_shape(input_shape, self.strides, self.filters)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(filters=self.filters, strides=self.strides)
        return config
