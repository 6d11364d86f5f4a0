"""The model-type records: every type's network, targets and support come from its record."""

from __future__ import annotations

import dataclasses

import pytest

from cornernet_tf.config import ConfigError, ModelConfig, load_config
from cornernet_tf.model_types import MODEL_TYPES, ModelType, model_type
from cornernet_tf.models import CornerNet
from cornernet_tf.tasks import data as data_tasks
from cornernet_tf.tasks.model import build_model

TINY = dict(num_classes=2, depth=1, nstack=1, dims=[8, 8], modules=[1, 1], cnv_dim=6, pre_dims=[4, 8])


@pytest.mark.parametrize("name", sorted(MODEL_TYPES))
def test_a_record_names_the_network_that_build_model_builds(name):
    record = MODEL_TYPES[name]
    network = build_model(ModelConfig(name, **TINY), corner_pool="vectorized")
    assert type(network) is record.network_class() and issubclass(record.network_class(), CornerNet)
    assert network.stride == record.stride == ModelConfig(name, **TINY).stride
    keys = set(network.output_keys)
    assert any("ct_" in key for key in keys) == record.center_keypoints, keys
    assert bool(getattr(network, "attention_keys", ())) == record.attention


def test_the_training_targets_follow_the_record():
    for name, config_name in (("cornernet", "shapes_tiny"), ("centernet", "centernet_shapes_tiny")):
        spec = data_tasks.train_input(load_config(config_name))
        record = MODEL_TYPES[name]
        assert spec.targets.with_centers == record.center_keypoints
        assert spec.targets.radius_formula == record.radius_formula
    saccade = data_tasks.train_input(load_config("saccade_shapes_tiny"))
    assert saccade.saccade is not None and saccade.targets.coordinate_dtype == "float64"


def test_an_unknown_type_is_one_error_naming_the_known_ones():
    with pytest.raises(ConfigError, match=r"model.type: 'yolo' is not one of \['cornernet', 'centernet'"):
        load_config("shapes_tiny", ["model.type=yolo"])
    with pytest.raises(ConfigError, match=r"model.type 'yolo' is not one of"):
        ModelConfig("yolo", **TINY).validate()
    with pytest.raises(ValueError, match="is not one of"):
        model_type("yolo")


def test_a_new_type_is_one_record(monkeypatch):
    """A record registered under a new name is validated, built and given its stride's geometry
    with no other change (here CornerNet-Squeeze's network under another name)."""
    record = dataclasses.replace(MODEL_TYPES["squeeze"], name="squeeze_twin", coco_configs={})
    monkeypatch.setitem(MODEL_TYPES, "squeeze_twin", record)
    config = ModelConfig("squeeze_twin", **TINY)
    assert config.output_size([127, 127]) == [16, 16]
    assert type(build_model(config, corner_pool="vectorized")).__name__ == "CornerNetSqueeze"
    with pytest.raises(ConfigError, match="must be even for type squeeze"):
        dataclasses.replace(config, dims=[8, 7]).validate()


def test_records_are_frozen_and_complete():
    for name, record in MODEL_TYPES.items():
        assert isinstance(record, ModelType) and record.name == name and record.description
        assert set(record.network_arguments) <= {field.name for field in dataclasses.fields(ModelConfig)}
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.stride = 2  # type: ignore[misc]
