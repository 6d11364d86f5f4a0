"""The network of a `ModelConfig`."""

from __future__ import annotations

from cornernet_tf.config import ModelConfig
from cornernet_tf.models import CornerNet


def build_model(model_config: ModelConfig, corner_pool: str | None = None, **kwargs) -> CornerNet:
    """A built (weights created) network of model_config.type (its `model_types` record names the
    class and the type's own arguments) from a validated ModelConfig.

    corner_pool overrides model_config.corner_pool (export uses "vectorized"); kwargs go to
    keras.Model (name, dtype).
    """
    model_config.validate()
    record = model_config.record
    model = record.network_class()(
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
        **{name: getattr(model_config, name) for name in record.network_arguments},
        **kwargs,
    )
    model.build((None, None, None, 3))
    return model
