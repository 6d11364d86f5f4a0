"""Official-weight conversion for CenterNet: the CenterNet-104 layout, type detection, the CLI."""

import numpy as np
import pytest
import yaml

from cornernet_tf import convert
from cornernet_tf.config import load_config
from cornernet_tf.models import CenterNet, CornerNet
from cornernet_tf.tasks.model import build_model
from cornernet_tf.tasks.official_weights import config_from_official, load_official_weights, official_model_type
from tests.conftest import nhwc, reference_config
from tests.convert_fixtures import check_every_official_key_maps, check_parameter_count, official_fixtures

hg104, hg104_rows, tiny_ref, tiny_params = official_fixtures("centernet")


def test_hg104_parameter_count_matches_the_official_model(hg104, hg104_rows):
    assert isinstance(hg104, CenterNet)
    check_parameter_count(hg104, hg104_rows, 210062960)


def test_hg104_every_official_key_maps_onto_a_weight_of_the_right_shape(hg104, hg104_rows):
    check_every_official_key_maps(hg104, hg104_rows[0])


def test_hg104_loads_a_module_prefixed_zero_checkpoint(hg104, hg104_rows):
    rows, _ = hg104_rows
    params = {f"module.{key}": np.zeros(shape, "float32") for key, shape, _ in rows}
    load_official_weights(hg104, params)
    assert not any(np.any(w.numpy()) for w in hg104.weights)


def test_model_type_is_given_or_detected_from_the_keys(hg104_rows, tiny_ref, tiny_params):
    keys = [key for key, _, _ in hg104_rows[0]]
    assert official_model_type(keys) == official_model_type(f"module.{k}" for k in keys) == "centernet"
    assert official_model_type(k for k in keys if not k.startswith("ct_")) == "cornernet"
    official = {"n": 5, "nstack": 2, "dims": [256, 256, 384, 384, 384, 512], "modules": [2, 2, 2, 2, 2, 4]}
    expected = load_config("centernet_hg104_coco").model
    assert config_from_official({**official, "out_dim": 80}, keys=keys) == expected
    assert config_from_official({**official, "out_dim": 80, "type": "centernet"}) == expected
    assert config_from_official({**official, "out_dim": 80}).type == "cornernet"
    assert config_from_official(reference_config(tiny_ref), keys=tiny_params).type == "centernet"
    with pytest.raises(ValueError, match="type 'cornernet', but the checkpoint keys are a centernet's"):
        config_from_official({**official, "out_dim": 80, "type": "cornernet"}, keys=keys)
    with pytest.raises(ValueError, match="unknown type 'centernet2'"):
        config_from_official({**official, "out_dim": 80, "type": "centernet2"})


def test_a_checkpoint_of_the_other_type_is_named(tiny_ref, tiny_params):
    config = config_from_official({**reference_config(tiny_ref), "type": "cornernet"})
    cornernet = build_model(config, corner_pool="vectorized")
    assert type(cornernet) is CornerNet
    with pytest.raises(ValueError, match=r"a centernet checkpoint but a cornernet model \(set model.type=centernet\)"):
        load_official_weights(cornernet, tiny_params)
    centernet = build_model(config_from_official(reference_config(tiny_ref), keys=tiny_params))
    corner_only = {k: v for k, v in tiny_params.items() if not k.startswith("ct_") and "look_conv" not in k}
    with pytest.raises(ValueError, match=r"missing from the checkpoint: tl_cnvs\.0\.look_conv1\.conv\.weight") as err:
        load_official_weights(centernet, corner_only)
    assert "set model.type=cornernet" in str(err.value)


def test_cli_converts_a_centernet_checkpoint(tiny_ref, tiny_params, tmp_path):
    model_config = config_from_official(reference_config(tiny_ref), keys=tiny_params)
    fields = ("type", "num_classes", "depth", "nstack", "dims", "modules", "cnv_dim", "pre_dims", "pool_dim")
    config_path = tmp_path / "tiny.yaml"
    sections = {"model": {k: getattr(model_config, k) for k in fields}}
    sections["data"] = {"input_size": [128, 128]}
    config_path.write_text(yaml.safe_dump(sections))
    checkpoint = tmp_path / "ckpt.npz"
    np.savez(checkpoint, **{f"module.{k}": v for k, v in tiny_params.items()})
    out = tmp_path / "tiny.weights.h5"
    assert convert.main(["--config", str(config_path), "--checkpoint", str(checkpoint), "--out", str(out)]) == 0

    model = build_model(model_config, corner_pool="vectorized")
    model.load_weights(out)
    images = nhwc(tiny_ref["ref/image"])[:1, ..., ::-1]
    expected = nhwc(tiny_ref["ref/eval_last/ct_heat"])[:1]
    np.testing.assert_allclose(model(images)["ct_heatmap"], expected, atol=1e-3, rtol=1e-3)
