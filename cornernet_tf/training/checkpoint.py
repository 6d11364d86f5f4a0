"""Checkpoints that really hold the model: variables are saved by their Keras paths.

`tf.train.Checkpoint(model=model)` does not follow layers that Keras 3 keeps in Python lists
(per-stack heads, hourglass branches), so it would silently save and restore none of their
weights. Naming every variable by its unique Keras path makes the checkpoint independent of
how layers are nested, and a restore fails loudly when a variable is missing or misshapen.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf


def model_variables(model: keras.Model) -> dict[str, tf.Variable]:
    """{path below the model: variable}. The model's own name is dropped, since Keras numbers
    it per process (`corner_net`, `corner_net_1`, ...); duplicate paths are an error."""
    table: dict[str, tf.Variable] = {}
    for variable in model.weights:
        path = variable.path.split("/", 1)[-1]
        if path in table:
            raise ValueError(f"two variables share the path {path!r}; give their layers distinct names")
        table[path] = variable
    return table


def optimizer_variables(optimizer: keras.optimizers.Optimizer) -> dict[str, tf.Variable]:
    """{position: variable}: optimizer slots follow the order of the trainable variables, while
    their names embed the (per-process) model and optimizer names."""
    return {f"{index:05d}": variable for index, variable in enumerate(optimizer.variables)}


def training_checkpoint(
    model: keras.Model, optimizer: keras.optimizers.Optimizer | None = None, step: tf.Variable | None = None
) -> tf.train.Checkpoint:
    """A checkpoint of the model's weights (trainable and BatchNorm statistics), and optionally
    of the optimizer state and the global step."""
    parts = {"model_weights": model_variables(model)}
    if optimizer is not None:
        parts["optimizer_weights"] = optimizer_variables(optimizer)
    if step is not None:
        parts["step"] = step
    return tf.train.Checkpoint(**parts)


def restore_model_weights(model: keras.Model, prefix: str | os.PathLike) -> None:
    """Load only the model weights of a training checkpoint; every model weight must be found."""
    status = training_checkpoint(model).restore(str(prefix))
    status.assert_existing_objects_matched()
    status.expect_partial()  # the optimizer state and step stay unread
