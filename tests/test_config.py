"""Config loading, overrides, validation errors and the YAML round trip."""

import copy
import dataclasses
import warnings

import pytest
import yaml

from cornernet_tf.config import CONFIG_DIR, Config, ConfigError, config_from_dict, load_config
from cornernet_tf.detection.settings import MIN_SCORE_THRESHOLD, DetectionConfig


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_every_bundled_config_loads_and_round_trips(name, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no bundled config may still use a key that is upgraded with a warning
        config = load_config(name)
    raw = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())  # nor one upgraded silently
    assert set(raw.get("eval") or {}) <= {"max_images"} and "output_size" not in raw["data"]
    assert set(raw.get("export") or {}) <= {"corner_pool", "max_image_pixels"}
    path = tmp_path / "resolved.yaml"
    config.save(path)
    again = load_config(path)
    assert again == config
    assert not list(tmp_path.glob("*.tmp"))


def test_paper_settings_of_hg104():
    c = load_config("cornernet_hg104_coco")
    assert c.data.input_size == [511, 511] and c.model.output_size(c.data.input_size) == [128, 128]
    assert c.train.optimizer == "adam" and c.train.learning_rate == pytest.approx(2.5e-4)
    assert c.train.batch_size == 49 and c.train.steps == 500_000
    assert c.train.lr_decay_steps == [450_000] and c.train.lr_decay_factor == pytest.approx(0.1)
    assert (c.train.pull_weight, c.train.push_weight, c.train.offset_weight) == (0.1, 0.1, 1.0)
    assert c.detection.k == 100 and c.detection.ae_threshold == 0.5
    assert c.model.num_classes == 80 and c.model.nstack == 2
    assert load_config("cornernet_hg52_coco").model.nstack == 1


def test_mmdetection_settings_of_hg104():
    """cornernet_hg104_mmdet_coco: the paper's network with mmdetection's fixed head width, fed
    mmdetection's ImageNet statistics (0..255 constants / 255), decoded as cornernet_hg104_coco."""
    paper, mmdet = load_config("cornernet_hg104_coco"), load_config("cornernet_hg104_mmdet_coco")
    assert paper.model.head_dim is None and mmdet.model.head_dim == 256 and mmdet.model.pool_dim == 128
    assert dataclasses.replace(mmdet.model, head_dim=None) == paper.model
    assert [255 * v for v in mmdet.data.mean] == pytest.approx([123.675, 116.28, 103.53], abs=1e-9)
    assert [255 * v for v in mmdet.data.std] == pytest.approx([58.395, 57.12, 57.375], abs=1e-9)
    assert mmdet.detection == paper.detection and mmdet.detection.flip
    assert (paper.data.pad_value, mmdet.data.pad_value) == ("black", "mean")  # 0 once normalized, as mmdetection


def test_official_settings_of_cornernet_squeeze():
    c = load_config("squeeze_coco")
    assert c.model.type == "squeeze" and c.model.stride == 8 and c.model.depth == 4
    assert c.model.dims == [256, 256, 384, 384, 512] and c.model.modules == [2, 2, 2, 2, 4]
    assert c.data.input_size == [511, 511] and c.model.output_size(c.data.input_size) == [64, 64]
    assert c.train.batch_size == 55 and c.train.steps == 500_000 and c.train.lr_decay_steps == [450_000]
    assert c.train.learning_rate == pytest.approx(2.5e-4) and c.data.random_scale == [0.6, 1.4]
    assert (c.detection.k, c.detection.num_dets, c.detection.max_detections, c.detection.flip) == (20, 100, 100, False)
    assert load_config("cornernet_hg104_coco").model.stride == 4


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.output_size=[32, 32]", "data.output_size [32, 32] is not the [16, 16] a model.type squeeze network"),
        ("data.input_size=[95, 95]", "12-pixel heatmap side (input + 1) // 8, not divisible by 2**model.depth = 8"),
        ("model.dims=[32, 48, 63, 64]", "model.dims must be even for type squeeze"),
    ],
)
def test_squeeze_sizes_follow_its_stride_8(override, message):
    with pytest.raises(ConfigError) as info:
        load_config("squeeze_shapes_tiny", [override])
    assert message in str(info.value)
    config = load_config("squeeze_shapes_tiny", ["data.input_size=[255, 511]"])
    assert config.model.output_size(config.data.input_size) == [32, 64] and config.model.size_divisor == 64


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
        ("data.output_size=[30, 30]", "is not the [32, 32] a model.type cornernet network gives data.input_size"),
        ("detection.nms_kernel=2", "detection.nms_kernel must be odd, got 2"),
        ("detection.scales=[0.5, 1.0]", "detection.scales [0.5, 1.0] need detection.test_mode=pad"),
        ("detection.score_threshold=0", "detection.score_threshold must be in [0.001, 1)"),
        ("detection.k=0", "detection.k must be >= 1"),
        ("train.batch_size", "must look like section.key=value"),
        ("model.pre_dims=[8, 16]", "must equal model.dims[0]"),
        ("model.head_dim=0", "model.head_dim must be >= 1 or null, got 0"),
        ("model.head_dim=1.5", "model.head_dim: expected an integer"),
        ("data.pad_value=grey", "data.pad_value: 'grey' is not one of"),
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
    config = config_from_dict(values, ["train.batch_size=8", "data.random_scale=[0.5, 1.5]", "detection.k=5"])
    assert (config.train.batch_size, config.data.random_scale, config.detection.k) == (8, [0.5, 1.5], 5)
    assert values == snapshot


def test_detection_settings_validate_on_their_own():
    assert DetectionConfig().problems() == []
    assert DetectionConfig().score_threshold == MIN_SCORE_THRESHOLD
    assert DetectionConfig(nms_kernel=2).problems() == ["detection.nms_kernel must be odd, got 2"]
    (message,) = DetectionConfig(scales=[0.5, 1.0], test_mode="resize").problems()
    assert message.startswith("detection.scales [0.5, 1.0] need detection.test_mode=pad")
    assert DetectionConfig(scales=[0.5, 1.0], test_mode="pad").problems() == []
    (message,) = DetectionConfig(score_threshold=0.0).problems()
    assert message.startswith("detection.score_threshold must be in [0.001, 1)")
    assert len(DetectionConfig(nms_kernel=4, k=0).problems()) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        DetectionConfig().k = 5


# A config as saved before the detection section: eval and export each held decoding settings.
LEGACY = {
    "model": {
        "num_classes": 3,
        "depth": 3,
        "nstack": 1,
        "dims": [32, 48, 64, 64],
        "modules": [1, 1, 1, 2],
        "cnv_dim": 64,
        "pre_dims": [16, 32],
        "pool_dim": 32,
    },
    "data": {"input_size": [128, 128], "output_size": [32, 32], "class_names": ["a", "b", "c"]},
    "eval": {
        "top_k": 30,
        "max_per_image": 40,
        "score_threshold": 0.0,
        "ae_threshold": 0.7,
        "flip": False,
        "test_mode": "resize",
        "max_images": 5,
    },
    "export": {"flip": True, "max_detections": 12, "corner_pool": "scan"},
}


def test_legacy_keys_are_upgraded_into_the_detection_section(tmp_path):
    values = copy.deepcopy(LEGACY)
    with pytest.warns(UserWarning, match="export.flip") as caught:
        config = config_from_dict(values)
    assert "export.max_detections" in str(caught[0].message) and "detection section" in str(caught[0].message)
    assert values == LEGACY
    detection = config.detection
    assert (detection.k, detection.max_detections, detection.ae_threshold) == (30, 40, 0.7)
    assert (detection.flip, detection.test_mode) == (False, "resize")  # eval's, not the dropped export.flip
    assert detection.score_threshold == MIN_SCORE_THRESHOLD  # raised from 0: soft-NMS needs a threshold above 0
    assert config.eval.max_images == 5 and config.export.corner_pool == "scan"
    assert config.model.output_size(config.data.input_size) == [32, 32]
    config.save(tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert set(saved["eval"]) == {"max_images"} and "output_size" not in saved["data"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_config(tmp_path / "config.yaml") == config


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("data", "output_size", [16, 16], "data.output_size [16, 16] is not the [32, 32] a model.type cornernet"),
        ("detection", "k", 50, "eval.top_k and detection.k are both set; keep detection.k"),
    ],
)
def test_legacy_keys_that_contradict_the_config_are_errors(section, key, value, message):
    values = {name: dict(section) for name, section in LEGACY.items() if name != "export"}
    values.setdefault(section, {})[key] = value
    with pytest.raises(ConfigError) as info:
        config_from_dict(values)
    assert message in str(info.value)


def test_a_split_is_required_only_where_it_is_read(tmp_path):
    """`evaluate` of a TFRecord or COCO config needs the validation split only; training names
    the missing training keys when it reads that split."""
    from cornernet_tf.data.pipeline import TFRecordFiles
    from cornernet_tf.tasks.data import split_files

    records = load_config("shapes_tiny", ["data.dataset=tfrecord", f"data.val_tfrecords={tmp_path}/val-*.tfrecord"])
    assert split_files(records, "val") == TFRecordFiles(f"{tmp_path}/val-*.tfrecord")
    with pytest.raises(ValueError, match="data.train_tfrecords must be set"):
        split_files(records, "train")
    coco = load_config("shapes_tiny", ["data.dataset=coco", "data.val_annotations=a.json", "data.val_images=img"])
    assert split_files(coco, "val").annotations == "a.json"
    with pytest.raises(ValueError, match="data.train_annotations and data.train_images must be set"):
        split_files(coco, "train")


def test_saccade_test_settings_are_checked():
    config = load_config("saccade_coco")
    assert config.detection.test_mode == "saccade" and config.detection.att_max_crops == 30
    problems = {
        "detection.flip=true": "detection.flip must be false with test_mode saccade",
        "detection.att_scales=[[1, 2]]": r"detection.att_scales needs one row of 3 positive zooms",
        "detection.att_thresholds=[0.3, 0.5]": r"detection.att_scales needs one row of 3 positive zooms .* per round",
        "detection.att_max_crops=-1": "detection.att_max_crops must be >= 1",
        "detection.att_max_crops=0": "detection.att_max_crops must be >= 1",
        "model.type=squeeze": "detection.test_mode saccade needs model.type saccade",
        "data.pad_value=mean": "detection.test_mode saccade pads its crops black",
    }
    for override, message in problems.items():
        with pytest.raises(ConfigError, match=message):
            load_config("saccade_coco", [override])
    with pytest.raises(ConfigError, match=r"att_nms_ks needs one kernel per attention map \(model.depth = 3\)"):
        load_config("saccade_coco", ["detection.att_nms_ks=[3, 3]", "detection.att_scales=[[1, 2]]"])
    two_rounds = load_config(
        "saccade_coco", ["detection.att_thresholds=[0.3, 0.5]", "detection.att_scales=[[1, 2, 4], [2, 4, 8]]"]
    )
    assert two_rounds.detection.att_scales == [[1.0, 2.0, 4.0], [2.0, 4.0, 8.0]]
