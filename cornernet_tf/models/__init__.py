"""Keras models and layers. They take plain arguments; `tasks.model.build_model` builds one from a
`ModelConfig`."""

from __future__ import annotations

from cornernet_tf.models.centernet import CENTERNET_OUTPUT_KEYS, CenterNet
from cornernet_tf.models.corner_pool import (
    CascadeCornerPoolModule,
    CenterPoolModule,
    CornerPoolModule,
    PoolModule,
)
from cornernet_tf.models.cornernet import OUTPUT_KEYS, CornerNet
from cornernet_tf.models.heads import PredictionHead
from cornernet_tf.models.hourglass import HourglassBackbone, HourglassModule
from cornernet_tf.models.layers import ConvBNReLU, Residual, SymmetricDepthwiseConv2D
from cornernet_tf.models.squeeze import (
    CornerNetSqueeze,
    FireModule,
    SqueezeBackbone,
    SqueezeHourglassModule,
)

MODEL_TYPES = {"cornernet": CornerNet, "centernet": CenterNet, "squeeze": CornerNetSqueeze}


__all__ = [
    "CENTERNET_OUTPUT_KEYS",
    "MODEL_TYPES",
    "OUTPUT_KEYS",
    "CascadeCornerPoolModule",
    "CenterNet",
    "CenterPoolModule",
    "ConvBNReLU",
    "CornerNet",
    "CornerNetSqueeze",
    "CornerPoolModule",
    "FireModule",
    "HourglassBackbone",
    "HourglassModule",
    "PoolModule",
    "PredictionHead",
    "Residual",
    "SqueezeBackbone",
    "SqueezeHourglassModule",
    "SymmetricDepthwiseConv2D",
]
