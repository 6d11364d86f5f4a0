"""CornerNet-Squeeze (Law et al., CornerNet-Lite, BMVC 2020), NHWC: CornerNet with a stride-8 stem,
fire-module hourglasses with transposed-conv upsampling, and 1x1 heads.

Follows the official princeton-vl/CornerNet-Lite `CornerNet_Squeeze.py`; attribute names mirror
its module names (`conv1`, `bn1`, `conv_1x1`, `conv_3x3`, `bn2`, `up2`) for `cornernet_tf.convert`.
"""

from __future__ import annotations

import keras
from keras import ops

from cornernet_tf.models.cornernet import CornerNet
from cornernet_tf.models.hourglass import HourglassBackbone, HourglassModule
from cornernet_tf.models.layers import (
    ConvBNReLU,
    Residual,
    SymmetricConv2D,
    SymmetricDepthwiseConv2D,
    batch_norm,
    strided_shape,
)


@keras.saving.register_keras_serializable(package="cornernet_tf")
class FireModule(keras.layers.Layer):
    """The official `fire_module(inp, filters, sr=2, strides)`.

    conv1 1x1 (inp -> filters/2, no bias) -> bn1 (no ReLU); concat(conv_1x1 1x1/s, depthwise
    conv_3x3 3x3/s), filters/2 channels each -> bn2; then ReLU(bn2 + x) when strides == 1 and
    inp == filters, else ReLU(bn2) (no skip branch).
    [B, H, W, inp] -> [B, ceil(H / s), ceil(W / s), filters].
    """

    def __init__(self, filters: int, strides: int = 1, **kwargs):
        super().__init__(**kwargs)
        if filters < 2 or filters % 2:
            raise ValueError(f"FireModule needs an even filters >= 2 (two halves), got {filters}")
        self.filters = filters
        self.strides = strides
        half = filters // 2
        policy = self.dtype_policy
        self.conv1 = SymmetricConv2D(half, 1, use_bias=False, dtype=policy, name="conv1")
        self.bn1 = batch_norm(policy, "bn1")
        self.conv_1x1 = SymmetricConv2D(half, 1, strides, use_bias=False, dtype=policy, name="conv_1x1")
        self.conv_3x3 = SymmetricDepthwiseConv2D(3, strides, dtype=policy, name="conv_3x3")
        self.bn2 = batch_norm(policy, "bn2")
        self.identity_skip = False

    def build(self, input_shape) -> None:
        half = (None, None, None, self.filters // 2)
        self.conv1.build((None, None, None, input_shape[-1]))
        self.bn1.build(half)
        self.conv_1x1.build(half)
        self.conv_3x3.build(half)
        self.bn2.build((None, None, None, self.filters))
        self.identity_skip = self.strides == 1 and input_shape[-1] == self.filters

    def call(self, x, training=None):
        squeezed = self.bn1(self.conv1(x), training=training)
        expanded = ops.concatenate([self.conv_1x1(squeezed), self.conv_3x3(squeezed)], axis=-1)
        y = self.bn2(expanded, training=training)
        return ops.relu(y + x if self.identity_skip else y)

    def compute_output_shape(self, input_shape) -> tuple:
        return strided_shape(input_shape, self.strides, self.filters)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(filters=self.filters, strides=self.strides)
        return config


@keras.saving.register_keras_serializable(package="cornernet_tf")
class SqueezeHourglassModule(HourglassModule):
    """The official `hg_module` of CornerNet-Squeeze: HourglassModule's recursion with fire modules
    (make_layer / make_hg_layer / make_layer_revr) and, as up2, ConvTranspose2d(d, d, 4, stride 2,
    padding 1, bias). Keras' "same" transposed conv (k 4, s 2) pads 1 on both sides of the
    implied forward conv, i.e. exactly PyTorch's padding 1: [B, h, w, d] -> [B, 2h, 2w, d].
    """

    block = FireModule

    def _make_up2(self, dim: int) -> keras.layers.Layer:
        return keras.layers.Conv2DTranspose(dim, 4, strides=2, padding="same", dtype=self.dtype_policy, name="up2")


@keras.saving.register_keras_serializable(package="cornernet_tf")
class SqueezeBackbone(HourglassBackbone):
    """HourglassBackbone with the stride-8 stem (7x7/2 conv, stride-2 residual to pre_dims[1],
    stride-2 residual at pre_dims[1]) and SqueezeHourglassModules; the inter-stack merge is the
    original's. images [B, H, W, 3] -> nstack x [B, ceil(H / 8), ceil(W / 8), cnv_dim]
    (511 -> 256 -> 128 -> 64).
    """

    hourglass_module = SqueezeHourglassModule

    def _make_stem(self) -> list:
        policy = self.dtype_policy
        return [
            ConvBNReLU(self.pre_dims[0], 7, strides=2, dtype=policy, name="pre_0"),
            Residual(self.pre_dims[1], strides=2, dtype=policy, name="pre_1"),
            Residual(self.pre_dims[1], strides=2, dtype=policy, name="pre_2"),
        ]


@keras.saving.register_keras_serializable(package="cornernet_tf")
class CornerNetSqueeze(CornerNet):
    """The official CornerNet-Squeeze: CornerNet's arguments, corner pools (`tl_modules` /
    `br_modules` there), stacks and outputs, on SqueezeBackbone, with 1x1 prediction heads
    (`_pred_mod`: 1x1 conv with bias + ReLU, 1x1 conv). Outputs as CornerNet's, at stride 8:
    images [B, H, W, 3] -> maps [B, ceil(H / 8), ceil(W / 8), .]; those sides must be divisible
    by 2**(len(dims) - 1).
    """

    backbone_class = SqueezeBackbone
    head_kernel_size = 1
