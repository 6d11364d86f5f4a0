"""The network of a `ModelConfig`."""

from __future__ import annotations

from cornernet_tf.config import ModelConfig
from cornernet_tf.models import MODEL_TYPES, CornerNet


def build_model(model_config: ModelConfig, corner_pool: str | None = None, **kwargs) -> CornerNet:
    """A built (weights created) CornerNet, CenterNet, CornerNetSqueeze or CornerNetSaccade
    (model_config.type) from a validated ModelConfig.

    corner_pool overrides model_config.corner_pool (export uses "vectorized"); kwargs go to
    keras.Model (name, dtype).
    """
    model_config.validate()
    if model_config.type not in MODEL_TYPES:
        raise ValueError(f"build_model: unknown model.type {model_config.type!r}; valid values are {list(MODEL_TYPES)}")
    model = MODEL_TYPES[model_config.type](
        num_classes=model_config.num_classes,
        nstack=model_config.nstack,
        dims=model_config.dims,
        modules=model_config.modules,
        cnv_dim=model_config.cnv_dim,
        pre_dims=model_config.pre_dims,
        pool_dim=model_config.pool_dim,
        head_dim=model_config.head_dim,
        corner_pool=corner_pool or model_config.corner_pool,
        heatmap_bias=model_config.heatmap_bias,
        **({"att_dim": model_config.att_dim} if model_config.type == "saccade" else {}),
        **kwargs,
    )
    model.build((None, None, None, 3))
    return model
