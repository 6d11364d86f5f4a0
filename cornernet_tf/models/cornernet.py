"""CornerNet (Law & Deng, ECCV 2018) as a Keras model: Hourglass backbone, corner pools, heads."""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from cornernet_tf.models.corner_pool import CornerPoolModule
from cornernet_tf.models.heads import PredictionHead
from cornernet_tf.models.hourglass import HourglassBackbone

OUTPUT_KEYS = ("tl_heatmap", "br_heatmap", "tl_embedding", "br_embedding", "tl_offset", "br_offset")


@keras.saving.register_keras_serializable(package="cornernet_tf")
class CornerNet(keras.Model):
    """The original `kp` network with plain arguments (build from a ModelConfig with
    `cornernet_tf.models.build_model`).

    images [B, H, W, 3] (RGB, normalised) -> dict of float32 maps at stride 4
    ([B, Ho, Wo, .], Ho = ceil(H / 4), e.g. 511 -> 128; Ho and Wo must be divisible by
    2**(len(dims) - 1)):
      tl_heatmap, br_heatmap  [B, Ho, Wo, num_classes] logits (no sigmoid),
      tl_embedding, br_embedding  [B, Ho, Wo, 1],
      tl_offset, br_offset  [B, Ho, Wo, 2] (channel 0 = x, channel 1 = y).
    The inference path runs the corner pools and heads of the last stack only;
    `return_all_stacks=True` returns a list with one such dict per stack (intermediate
    supervision). Per-stack modules are lists named like the original's (`tl_cnvs`, `tl_heats`,
    ...), which `cornernet_tf.convert` relies on. If the corner pool resolves to the compiled
    op, the model must not be XLA-compiled: `supports_jit` is then False and Keras'
    compile(jit_compile="auto") picks False.
    """

    def __init__(
        self,
        num_classes: int,
        nstack: int,
        dims: Sequence[int],
        modules: Sequence[int],
        cnv_dim: int,
        pre_dims: Sequence[int],
        pool_dim: int,
        corner_pool: str = "auto",
        heatmap_bias: float = -2.19,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.nstack = nstack
        self.dims = list(dims)
        self.modules = list(modules)
        self.cnv_dim = cnv_dim
        self.pre_dims = list(pre_dims)
        self.pool_dim = pool_dim
        self.corner_pool = corner_pool
        self.heatmap_bias = heatmap_bias
        policy = self.dtype_policy
        self.backbone = HourglassBackbone(nstack, dims, modules, cnv_dim, pre_dims, dtype=policy, name="backbone")
        stacks = range(nstack)

        def pools(corner: str, prefix: str) -> list:
            return [
                CornerPoolModule(cnv_dim, pool_dim, corner, corner_pool, dtype=policy, name=f"{prefix}_{s}")
                for s in stacks
            ]

        def heads(out_dim: int, prefix: str, bias: float = 0.0) -> list:
            return [PredictionHead(self.dims[0], out_dim, bias, dtype=policy, name=f"{prefix}_{s}") for s in stacks]

        self.tl_cnvs = pools("top_left", "tl_cnvs")
        self.br_cnvs = pools("bottom_right", "br_cnvs")
        self.tl_heats = heads(num_classes, "tl_heats", heatmap_bias)
        self.br_heats = heads(num_classes, "br_heats", heatmap_bias)
        self.tl_tags = heads(1, "tl_tags")
        self.br_tags = heads(1, "br_tags")
        self.tl_regrs = heads(2, "tl_regrs")
        self.br_regrs = heads(2, "br_regrs")
        self.supports_jit = all(pool.supports_jit for pool in self.tl_cnvs + self.br_cnvs)

    @property
    def depth(self) -> int:
        """Number of stride-2 downsamplings in one hourglass (the original's `n`)."""
        return len(self.dims) - 1

    def build(self, input_shape) -> None:
        self.backbone.build(input_shape)
        cnv = (None, None, None, self.cnv_dim)
        per_stack = (self.tl_cnvs, self.br_cnvs, self.tl_heats, self.br_heats)
        per_stack += (self.tl_tags, self.br_tags, self.tl_regrs, self.br_regrs)
        for layers in per_stack:
            for layer in layers:
                layer.build(cnv)

    def _stack_outputs(self, s: int, cnv, training) -> dict:
        """Heads of stack s on its features cnv [B, Ho, Wo, cnv_dim]."""
        tl = self.tl_cnvs[s](cnv, training=training)
        br = self.br_cnvs[s](cnv, training=training)
        maps = {
            "tl_heatmap": self.tl_heats[s](tl),
            "br_heatmap": self.br_heats[s](br),
            "tl_embedding": self.tl_tags[s](tl),
            "br_embedding": self.br_tags[s](br),
            "tl_offset": self.tl_regrs[s](tl),
            "br_offset": self.br_regrs[s](br),
        }
        # Losses and decoding work in float32 whatever the compute dtype (mixed precision).
        return {key: ops.cast(maps[key], "float32") for key in OUTPUT_KEYS}

    def call(self, images, training=False, return_all_stacks=False):
        features = self.backbone(images, training=training)
        if return_all_stacks:
            return [self._stack_outputs(s, cnv, training) for s, cnv in enumerate(features)]
        return self._stack_outputs(self.nstack - 1, features[-1], training)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            nstack=self.nstack,
            dims=self.dims,
            modules=self.modules,
            cnv_dim=self.cnv_dim,
            pre_dims=self.pre_dims,
            pool_dim=self.pool_dim,
            corner_pool=self.corner_pool,
            heatmap_bias=self.heatmap_bias,
        )
        return config
