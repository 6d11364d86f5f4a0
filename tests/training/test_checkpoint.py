"""Training checkpoints hold every model weight and refuse a model of another shape."""

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.config import load_config
from cornernet_tf.tasks.model import build_model
from cornernet_tf.training.checkpoint import model_variables, restore_model_weights, training_checkpoint

from .conftest import tiny_overrides


def test_every_weight_round_trips_and_other_shapes_are_refused(tmp_path):
    config = load_config("shapes_tiny", tiny_overrides(str(tmp_path / "unused")))
    model = build_model(config.model)
    prefix = training_checkpoint(model, step=tf.Variable(3, dtype=tf.int64)).save(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(prefix) if name.startswith("model_weights/")]
    assert len(saved) == len(model_variables(model)) == len(model.weights)

    fresh = build_model(config.model)  # another auto-generated model name, same layout
    assert fresh.name != model.name
    restore_model_weights(fresh, prefix)
    for got, want in zip(fresh.weights, model.weights):
        np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=got.path)

    wider = build_model(
        load_config("shapes_tiny", tiny_overrides(str(tmp_path / "unused")) + ["model.cnv_dim=16"]).model
    )
    with pytest.raises(ValueError, match="incompatible tensor with shape"):
        restore_model_weights(wider, prefix)
    deeper = build_model(
        load_config("shapes_tiny", tiny_overrides(str(tmp_path / "unused")) + ["model.nstack=2"]).model
    )
    with pytest.raises(AssertionError, match="not bound to checkpointed values"):
        restore_model_weights(deeper, prefix)
