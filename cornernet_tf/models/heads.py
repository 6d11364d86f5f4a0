"""The per-stack prediction branches of CornerNet (heatmap, embedding, offset), NHWC."""

from __future__ import annotations

import keras

from cornernet_tf.models.layers import ConvBNReLU


@keras.saving.register_keras_serializable(package="cornernet_tf")
class PredictionHead(keras.layers.Layer):
    """k x k conv with bias + ReLU at `hidden_dim`, then a 1x1 conv with bias to `out_dim`.

    The original's `make_kp_layer` (`convolution(3, cnv_dim, dims[0], with_bn=False)`, then
    Conv2d 1x1); CornerNet-Squeeze's `_pred_mod` is the same with kernel_size 1. Heatmap heads
    start with bias_init = -2.19 (prior probability ~0.1) and output logits.
    x [B, H, W, cnv_dim] -> [B, H, W, out_dim].
    """

    def __init__(self, hidden_dim: int, out_dim: int, bias_init: float = 0.0, kernel_size: int = 3, **kwargs):
        """Create the hidden conv and the output conv.

        Args:
            hidden_dim: Channels of the hidden k x k conv.
            out_dim: Channels of the output.
            bias_init: Initial bias of the output conv (-2.19 for heatmap heads).
            kernel_size: k of the hidden conv (3; CornerNet-Squeeze: 1).
            **kwargs: Keras layer arguments (name, dtype, ...).
        """
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.out_dim = out_dim
        self.bias_init = bias_init
        self.kernel_size = kernel_size
        self.conv = ConvBNReLU(hidden_dim, kernel_size, with_bn=False, dtype=self.dtype_policy, name="conv")
        self.out = keras.layers.Conv2D(
            out_dim,
            1,
            bias_initializer=keras.initializers.Constant(bias_init),
            dtype=self.dtype_policy,
            name="out",
        )

    def build(self, input_shape) -> None:
        self.conv.build((None, None, None, input_shape[-1]))
        self.out.build((None, None, None, self.hidden_dim))

    def call(self, x):
        return self.out(self.conv(x))

    def compute_output_shape(self, input_shape) -> tuple:
        return (*tuple(input_shape)[:3], self.out_dim)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            hidden_dim=self.hidden_dim,
            out_dim=self.out_dim,
            bias_init=self.bias_init,
            kernel_size=self.kernel_size,
        )
        return config
