"""CornerNet-Saccade (Law et al., CornerNet-Lite, BMVC 2020), NHWC: CornerNet on a stride-4
Hourglass-54 whose every level also feeds an attention head, with 3x3 prediction heads.

Follows the official princeton-vl/CornerNet-Lite `CornerNet_Saccade.py` (`saccade_net`,
`saccade_module`); `cornernet_tf.convert` maps its state_dict onto these layers. The test-time
procedure that uses the attention maps (crops at the attended places) is `cornernet_tf.detection.saccade`.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from cornernet_tf.models.cornernet import OUTPUT_KEYS, CornerNet
from cornernet_tf.models.heads import PredictionHead
from cornernet_tf.models.hourglass import HourglassBackbone, HourglassModule


def attention_keys(levels: int) -> tuple[str, ...]:
    """The output names of the attention maps of an hourglass with `levels` levels, coarsest first."""
    return tuple(f"attention_{j}" for j in range(levels))


@keras.saving.register_keras_serializable(package="cornernet_tf")
class SaccadeHourglassModule(HourglassModule):
    """The official `saccade_module`: HourglassModule's arithmetic (no max-pool, stride-2 residual
    down, nearest up), returning the merge output of every level, innermost first; the last one is
    the module's output. [B, H, W, dims[0]] -> [[B, H / 2**(depth - 1), ., dims[depth - 1]], ...,
    [B, H, W, dims[0]]].
    """

    def call(self, x, training=None):
        return self._levels(x, training)

    def compute_output_shape(self, input_shape) -> list:
        batch, height, width, _ = input_shape
        shapes = []
        for level in range(self.depth - 1, -1, -1):
            factor = 2**level
            side = [None if n is None else n // factor for n in (height, width)]
            shapes.append((batch, *side, self.dims[level]))
        return shapes


@keras.saving.register_keras_serializable(package="cornernet_tf")
class SaccadeBackbone(HourglassBackbone):
    """HourglassBackbone (the stride-4 stem, the inter-stack merges) with SaccadeHourglassModules:
    each stack's hourglass output is its finest level, and `return_levels=True` also returns every
    stack's levels (the attention heads' inputs)."""

    hourglass_module = SaccadeHourglassModule


@keras.saving.register_keras_serializable(package="cornernet_tf")
class CornerNetSaccade(CornerNet):
    """The official CornerNet-Saccade network: CornerNet's arguments, stacks, corner pools and 3x3
    heads on SaccadeBackbone, plus per stack one attention head per hourglass level
    (`att_modules[s][j]`: 3x3 conv with bias + ReLU at `att_dim`, 1x1 conv to one channel, bias
    -2.19).

    images [B, H, W, 3] -> CornerNet's six maps at stride 4 plus `attention_0 .. attention_{n-1}`
    [B, h_j, w_j, 1] logits (no sigmoid), coarsest first: the hourglass levels from the innermost
    merge (stride 4 * 2**(n - 1)) to the finest (stride 4), n = len(dims) - 1. The official
    Hourglass-54 at 255 x 255: heads 64 x 64, attention 16 x 16, 32 x 32, 64 x 64. Stack s's
    attention heads see only stack s's hourglass levels.
    """

    backbone_class = SaccadeBackbone

    def __init__(self, *args, att_dim: int = 256, **kwargs):
        """CornerNet's arguments, and att_dim: the hidden width of the attention heads."""
        super().__init__(*args, **kwargs)
        self.att_dim = att_dim
        # level j of stack s sees dims[depth - 1 - j] channels (the innermost merge first)
        self.att_modules = [
            [
                PredictionHead(att_dim, 1, self.heatmap_bias, 3, dtype=self.dtype_policy, name=f"att_modules_{s}_{j}")
                for j in range(self.depth)
            ]
            for s in range(self.nstack)
        ]

    @property
    def attention_keys(self) -> tuple[str, ...]:
        return attention_keys(self.depth)

    @property
    def output_keys(self) -> tuple[str, ...]:  # type: ignore[override]
        return OUTPUT_KEYS + self.attention_keys

    @property
    def attention_strides(self) -> tuple[int, ...]:
        """Input pixels per attention-map cell, coarsest first (16, 8, 4 for the official model)."""
        return tuple(self.stride * 2 ** (self.depth - 1 - j) for j in range(self.depth))

    def build(self, input_shape) -> None:
        super().build(input_shape)
        for heads in self.att_modules:
            for j, head in enumerate(heads):
                head.build((None, None, None, self.dims[self.depth - 1 - j]))

    def _saccade_stack(self, s: int, cnv, levels: Sequence, training) -> dict:
        maps = self._head_maps(s, cnv, training)
        for key, head, level in zip(self.attention_keys, self.att_modules[s], levels, strict=True):
            maps[key] = head(level)
        return {key: ops.cast(maps[key], "float32") for key in self.output_keys}

    def call(self, images, training=False, return_all_stacks=False):
        features, levels = self.backbone(images, training=training, return_levels=True)
        if return_all_stacks:
            return [self._saccade_stack(s, cnv, levels[s], training) for s, cnv in enumerate(features)]
        return self._saccade_stack(self.nstack - 1, features[-1], levels[-1], training)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(att_dim=self.att_dim)
        return config
