"""Tensor operations used by the models: corner pooling (pure TF, or the compiled op). Imports
TensorFlow and `utils` only."""

from cornernet_tf.ops.corner_pool import (
    CORNERS,
    DIRECTIONS,
    IMPLEMENTATIONS,
    compiled_available,
    corner_pool,
    corner_pool_pair,
    resolve_implementation,
)

__all__ = [
    "CORNERS",
    "DIRECTIONS",
    "IMPLEMENTATIONS",
    "compiled_available",
    "corner_pool",
    "corner_pool_pair",
    "resolve_implementation",
]
