"""CornerNet's corner-pooling module (the original's `pool` with TL/BR pools), NHWC."""

from __future__ import annotations

import keras
from keras import ops

from cornernet_tf.models.layers import ConvBNReLU, SymmetricConv2D, batch_norm
from cornernet_tf.ops.corner_pool import CORNERS, corner_pool_pair, resolve_implementation


@keras.saving.register_keras_serializable(package="cornernet_tf")
class CornerPoolModule(keras.layers.Layer):
    """Corner pooling with its convolutions, for one corner type.

    p1 = ConvBNReLU(pool_dim)(x), p2 = ConvBNReLU(pool_dim)(x); pooled = top(p1) + left(p2)
    ("top_left") or bottom(p1) + right(p2) ("bottom_right");
    out = conv2(ReLU(p_bn1(p_conv1(pooled)) + bn1(conv1(x)))), conv2 a 3x3 ConvBNReLU.
    x [B, H, W, cnv_dim] -> [B, H, W, cnv_dim].

    `implementation` selects the corner-pool kernel (see `cornernet_tf.ops.corner_pool`). When it
    resolves to the compiled "op", the layer sets `supports_jit = False`, so that Keras does not
    XLA-compile a model containing it (compile(jit_compile="auto") then resolves to False); "scan"
    does the same because tf.scan with gradients is not XLA-compatible.
    """

    def __init__(self, cnv_dim: int, pool_dim: int, corner: str = "top_left", implementation: str = "auto", **kwargs):
        super().__init__(**kwargs)
        if corner not in CORNERS:
            raise ValueError(f"CornerPoolModule: unknown corner {corner!r}; valid values are {list(CORNERS)}")
        self.cnv_dim = cnv_dim
        self.pool_dim = pool_dim
        self.corner = corner
        self.implementation = implementation
        self.resolved_implementation = resolve_implementation(implementation)
        self.supports_jit = self.resolved_implementation == "vectorized"
        policy = self.dtype_policy
        self.p1_conv1 = ConvBNReLU(pool_dim, 3, dtype=policy, name="p1_conv1")
        self.p2_conv1 = ConvBNReLU(pool_dim, 3, dtype=policy, name="p2_conv1")
        self.p_conv1 = SymmetricConv2D(cnv_dim, 3, use_bias=False, dtype=policy, name="p_conv1")
        self.p_bn1 = batch_norm(policy, "p_bn1")
        self.conv1 = SymmetricConv2D(cnv_dim, 1, use_bias=False, dtype=policy, name="conv1")
        self.bn1 = batch_norm(policy, "bn1")
        self.conv2 = ConvBNReLU(cnv_dim, 3, dtype=policy, name="conv2")

    def build(self, input_shape) -> None:
        x_shape = (None, None, None, input_shape[-1])
        pool_shape = (None, None, None, self.pool_dim)
        out_shape = (None, None, None, self.cnv_dim)
        self.p1_conv1.build(x_shape)
        self.p2_conv1.build(x_shape)
        self.p_conv1.build(pool_shape)
        self.p_bn1.build(out_shape)
        self.conv1.build(x_shape)
        self.bn1.build(out_shape)
        self.conv2.build(out_shape)

    def call(self, x, training=None):
        p1 = self.p1_conv1(x, training=training)
        p2 = self.p2_conv1(x, training=training)
        pooled = corner_pool_pair(p1, p2, self.corner, self.resolved_implementation)
        a = self.p_bn1(self.p_conv1(pooled), training=training)
        b = self.bn1(self.conv1(x), training=training)
        return self.conv2(ops.relu(a + b), training=training)

    def compute_output_shape(self, input_shape) -> tuple:
        return (*tuple(input_shape)[:3], self.cnv_dim)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            cnv_dim=self.cnv_dim, pool_dim=self.pool_dim, corner=self.corner, implementation=self.implementation
        )
        return config
