"""CornerNet (Law & Deng, ECCV 2018) as a Keras model: Hourglass backbone, corner pools, heads."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from cornernet_tf.models.heads import PredictionHead
from cornernet_tf.models.hourglass import HourglassBackbone
from cornernet_tf.models.pooling import CornerPoolModule

OUTPUT_KEYS = ("tl_heatmap", "br_heatmap", "tl_embedding", "br_embedding", "tl_offset", "br_offset")


@keras.saving.register_keras_serializable(package="cornernet_tf")
class CornerNet(keras.Model):
    """The original `kp` network with plain arguments (build from a ModelConfig with
    `cornernet_tf.tasks.model.build_model`).

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

    output_keys = OUTPUT_KEYS
    # the per-stack layer lists, which `build` and `cornernet_tf.convert` walk
    stack_layer_names = ("tl_cnvs", "br_cnvs", "tl_heats", "br_heats", "tl_tags", "br_tags", "tl_regrs", "br_regrs")
    corner_pool_module: type = CornerPoolModule  # CenterNet: cascade corner pooling
    backbone_class: type = HourglassBackbone  # CornerNet-Squeeze: fire-module hourglasses
    head_kernel_size: int = 3  # CornerNet-Squeeze: 1x1 heads

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
        head_dim: int | None = None,
        **kwargs,
    ):
        """Build the backbone and every stack's corner pools and heads.

        Args:
            num_classes: Channels of the heatmaps.
            nstack: Number of stacked hourglasses.
            dims: Channels of each hourglass level, outermost first.
            modules: Blocks of each hourglass level (len(dims) of them).
            cnv_dim: Channels of each stack's features, the corner pools' input.
            pre_dims: Channels of the stem's two layers; pre_dims[1] must equal dims[0].
            pool_dim: Channels of the corner pools' branches.
            corner_pool: Corner-pool implementation: "auto" | "op" | "vectorized" | "scan".
            heatmap_bias: Initial bias of the heatmap heads (-2.19: prior probability ~0.1).
            head_dim: Hidden width of the prediction heads; None: dims[0], the official rule
                (mmdetection's CornerNet hard-codes 256).
            **kwargs: Keras model arguments (name, dtype, ...).

        Raises:
            ValueError: Inconsistent dims, modules or pre_dims, nstack < 1, or an unknown
                corner-pool implementation.
        """
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
        self.head_dim = head_dim
        policy = self.dtype_policy
        self.backbone = self.backbone_class(nstack, dims, modules, cnv_dim, pre_dims, dtype=policy, name="backbone")
        self.tl_cnvs = self._corner_pools("tl_cnvs", "top_left")
        self.br_cnvs = self._corner_pools("br_cnvs", "bottom_right")
        self.tl_heats = self._heads("tl_heats", num_classes, heatmap_bias)
        self.br_heats = self._heads("br_heats", num_classes, heatmap_bias)
        self.tl_tags = self._heads("tl_tags", 1)
        self.br_tags = self._heads("br_tags", 1)
        self.tl_regrs = self._heads("tl_regrs", 2)
        self.br_regrs = self._heads("br_regrs", 2)
        self.supports_jit = all(pool.supports_jit for pool in self.tl_cnvs + self.br_cnvs)

    def _per_stack(self, layer_class: type, prefix: str, *args) -> list:
        """One layer_class(*args) per stack, named `{prefix}_{s}`."""
        return [layer_class(*args, dtype=self.dtype_policy, name=f"{prefix}_{s}") for s in range(self.nstack)]

    def _corner_pools(self, prefix: str, corner: str) -> list:
        """One `corner_pool_module` per stack (cascade corner pooling in CenterNet)."""
        return self._per_stack(self.corner_pool_module, prefix, self.cnv_dim, self.pool_dim, corner, self.corner_pool)

    def _heads(self, prefix: str, out_dim: int, bias: float = 0.0) -> list:
        """One PredictionHead (hidden width head_dim, by default dims[0]; `head_kernel_size`) per stack."""
        hidden = self.dims[0] if self.head_dim is None else self.head_dim
        return self._per_stack(PredictionHead, prefix, hidden, out_dim, bias, self.head_kernel_size)

    @property
    def depth(self) -> int:
        """Number of stride-2 downsamplings in one hourglass (the original's `n`)."""
        return len(self.dims) - 1

    @property
    def stride(self) -> int:
        """Input pixels per output-map pixel (4; CornerNet-Squeeze: 8)."""
        return self.backbone.stride

    def build(self, input_shape) -> None:
        self.backbone.build(input_shape)
        cnv = (None, None, None, self.cnv_dim)
        for name in self.stack_layer_names:
            for layer in getattr(self, name):
                layer.build(cnv)

    def _head_maps(self, s: int, cnv, training) -> dict:
        """{output key: map} of stack s on its features cnv [B, Ho, Wo, cnv_dim], compute dtype."""
        tl = self.tl_cnvs[s](cnv, training=training)
        br = self.br_cnvs[s](cnv, training=training)
        return {
            "tl_heatmap": self.tl_heats[s](tl),
            "br_heatmap": self.br_heats[s](br),
            "tl_embedding": self.tl_tags[s](tl),
            "br_embedding": self.br_tags[s](br),
            "tl_offset": self.tl_regrs[s](tl),
            "br_offset": self.br_regrs[s](br),
        }

    def _stack_outputs(self, s: int, cnv, training) -> dict:
        """Heads of stack s, in `output_keys` order."""
        maps = self._head_maps(s, cnv, training)
        # Losses and decoding work in float32 whatever the compute dtype (mixed precision).
        return {key: ops.cast(maps[key], "float32") for key in self.output_keys}

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
            head_dim=self.head_dim,
        )
        return config
