"""Config loading, overrides, validation errors and the YAML round trip."""

import copy
import dataclasses

import pytest
import yaml

from cornernet_tf.config import CONFIG_DIR, Config, ConfigError, config_from_dict, load_config


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_every_bundled_config_loads_and_round_trips(name, tmp_path):
    config = load_config(name)
    path = tmp_path / "resolved.yaml"
    config.save(path)
    again = load_config(path)
    assert again == config
    assert not list(tmp_path.glob("*.tmp"))


def test_paper_settings_of_hg104():
    c = load_config("cornernet_hg104_coco")
    assert c.data.input_size == [511, 511] and c.data.output_size == [128, 128]
    assert c.train.optimizer == "adam" and c.train.learning_rate == pytest.approx(2.5e-4)
    assert c.train.batch_size == 49 and c.train.steps == 500_000
    assert c.train.lr_decay_steps == [450_000] and c.train.lr_decay_factor == pytest.approx(0.1)
    assert (c.train.pull_weight, c.train.push_weight, c.train.offset_weight) == (0.1, 0.1, 1.0)
    assert c.eval.top_k == 100 and c.eval.ae_threshold == 0.5
    assert c.model.num_classes == 80 and c.model.nstack == 2
    assert load_config("cornernet_hg52_coco").model.nstack == 1


def test_official_settings_of_cornernet_squeeze():
    c = load_config("squeeze_coco")
    assert c.model.type == "squeeze" and c.model.stride == 8 and c.model.depth == 4
    assert c.model.dims == [256, 256, 384, 384, 512] and c.model.modules == [2, 2, 2, 2, 4]
    assert c.data.input_size == [511, 511] and c.data.output_size == [64, 64]
    assert c.train.batch_size == 55 and c.train.steps == 500_000 and c.train.lr_decay_steps == [450_000]
    assert c.train.learning_rate == pytest.approx(2.5e-4) and c.data.random_scale == [0.6, 1.4]
    assert (c.eval.top_k, c.eval.num_dets, c.eval.max_per_image, c.eval.flip) == (20, 100, 100, False)
    assert load_config("cornernet_hg104_coco").model.stride == 4


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.output_size=[32, 32]", "must be (input_size + 1) // 8 of data.input_size [128, 128]"),
        ("data.input_size=[95, 95]", "output_size side 12 must be divisible by 2**model.depth = 8"),
        ("model.dims=[32, 48, 63, 64]", "model.dims must be even for type squeeze"),
    ],
)
def test_squeeze_sizes_follow_its_stride_8(override, message):
    overrides = [override, "data.output_size=[12, 12]"] if "input_size" in override else [override]
    with pytest.raises(ConfigError) as info:
        load_config("squeeze_shapes_tiny", overrides)
    assert message in str(info.value)
    assert load_config("squeeze_shapes_tiny", ["data.input_size=[255, 511]", "data.output_size=[32, 64]"])


def test_default_is_shapes_tiny():
    assert load_config().name == "shapes_tiny"
    assert load_config().data.dataset == "shapes"


def test_overrides_are_parsed_as_yaml():
    c = load_config("shapes_tiny", ["train.batch_size=8", "data.random_scale=[0.5, 1.5]", "train.clip_norm=2"])
    assert c.train.batch_size == 8
    assert c.data.random_scale == [0.5, 1.5]
    assert c.train.clip_norm == 2.0 and isinstance(c.train.clip_norm, float)
    assert load_config("shapes_tiny", ["train.clip_norm=null"]).train.clip_norm is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.bach_size=8", "unknown key(s) ['bach_size']"),
        ("trian.batch_size=8", "unknown key(s) ['trian']"),
        ("train.batch_size=eight", "train.batch_size: expected an integer"),
        ("train.batch_size=1.5", "train.batch_size: expected an integer"),
        ("train.batch_size=0", "train.batch_size must be >= 1"),
        ("data.flip=1", "data.flip: expected true or false"),
        ("train.optimizer=sgd", "train.optimizer: 'sgd' is not one of"),
        ("model.dims=[32, 48]", "model.dims needs depth + 1"),
        ("data.output_size=[30, 30]", "must be (input_size + 1) // 4"),
        ("eval.nms_kernel=2", "eval.nms_kernel must be odd"),
        ("train.batch_size", "must look like section.key=value"),
        ("model.pre_dims=[8, 16]", "must equal model.dims[0]"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_config("shapes_tiny", [override])
    assert message in str(info.value)


def test_class_names_must_match_num_classes():
    with pytest.raises(ConfigError, match="class_names has 3 names but model.num_classes is 4"):
        load_config("shapes_tiny", ["model.num_classes=4"])


def test_unknown_config_name_lists_bundled_ones():
    with pytest.raises(ConfigError, match="shapes_tiny"):
        load_config("no_such_config")


def test_yaml_is_plain_data():
    text = load_config("cornernet_hg104_coco").to_yaml()
    tree = yaml.safe_load(text)
    assert set(tree) == {f.name for f in dataclasses.fields(Config)}
    assert config_from_dict(tree) == load_config("cornernet_hg104_coco")


def test_config_from_dict_leaves_the_callers_dicts_alone():
    values = {"name": "mine", "train": {"batch_size": 4}, "data": {"random_scale": [1, 2]}}
    snapshot = copy.deepcopy(values)
    config = config_from_dict(values, ["train.batch_size=8", "data.random_scale=[0.5, 1.5]", "eval.top_k=5"])
    assert (config.train.batch_size, config.data.random_scale, config.eval.top_k) == (8, [0.5, 1.5], 5)
    assert values == snapshot
