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
from cornernet_tf.models.saccade import CornerNetSaccade, SaccadeBackbone, SaccadeHourglassModule, attention_keys
from cornernet_tf.models.squeeze import (
    CornerNetSqueeze,
    FireModule,
    SqueezeBackbone,
    SqueezeHourglassModule,
)

MODEL_TYPES = {"cornernet": CornerNet, "centernet": CenterNet, "squeeze": CornerNetSqueeze, "saccade": CornerNetSaccade}


def __getattr__(name: str):
    """`build_model`, which lived here before it moved to the task layer: deprecated, kept for a
    release (import it from cornernet_tf.tasks.model)."""
    if name == "build_model":
        import warnings

        from cornernet_tf.tasks.model import build_model  # the deprecated alias, the one exception

        warnings.warn(
            "cornernet_tf.models.build_model moved to cornernet_tf.tasks.model.build_model; the old name "
            "goes away in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return build_model
    raise AttributeError(f"module 'cornernet_tf.models' has no attribute {name!r}")


__all__ = [
    "CENTERNET_OUTPUT_KEYS",
    "MODEL_TYPES",
    "OUTPUT_KEYS",
    "CascadeCornerPoolModule",
    "CenterNet",
    "CenterPoolModule",
    "ConvBNReLU",
    "CornerNet",
    "CornerNetSaccade",
    "CornerNetSqueeze",
    "CornerPoolModule",
    "FireModule",
    "HourglassBackbone",
    "HourglassModule",
    "PoolModule",
    "PredictionHead",
    "Residual",
    "SaccadeBackbone",
    "SaccadeHourglassModule",
    "SqueezeBackbone",
    "SqueezeHourglassModule",
    "SymmetricDepthwiseConv2D",
    "attention_keys",
]
