"""Keras models and layers. They take plain arguments; `tasks.model.build_model` builds one from a
`ModelConfig`. May import `ops` and `utils` only: nothing here knows files, data or decoding."""

from __future__ import annotations

from cornernet_tf.models.centernet import CENTERNET_OUTPUT_KEYS, CenterNet
from cornernet_tf.models.cornernet import OUTPUT_KEYS, CornerNet
from cornernet_tf.models.heads import PredictionHead
from cornernet_tf.models.hourglass import HourglassBackbone, HourglassModule
from cornernet_tf.models.layers import ConvBNReLU, Residual, SymmetricDepthwiseConv2D
from cornernet_tf.models.pooling import (
    CascadeCornerPoolModule,
    CenterPoolModule,
    CornerPoolModule,
    PoolModule,
)
from cornernet_tf.models.saccade import CornerNetSaccade, SaccadeBackbone, SaccadeHourglassModule, attention_keys
from cornernet_tf.models.squeeze import (
    CornerNetSqueeze,
    FireModule,
    SqueezeBackbone,
    SqueezeHourglassModule,
)


def __getattr__(name: str):
    """Names that lived here, deprecated and kept for a release: `build_model` (now
    cornernet_tf.tasks.model.build_model) and `MODEL_TYPES` (each type's network class; the model
    types are records of cornernet_tf.model_types.MODEL_TYPES now)."""
    if name == "MODEL_TYPES":
        import warnings

        from cornernet_tf.model_types import MODEL_TYPES

        warnings.warn(
            "cornernet_tf.models.MODEL_TYPES moved to cornernet_tf.model_types.MODEL_TYPES (records; "
            "record.network_class() is the class); the old name goes away in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return {type_name: record.network_class() for type_name, record in MODEL_TYPES.items()}
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
