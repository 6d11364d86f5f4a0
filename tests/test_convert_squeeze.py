"""Official-weight conversion for CornerNet-Squeeze (CornerNet-Lite): the full official layout, the
depthwise and transposed-conv kernels, type detection, key checks, the CLI."""

import numpy as np
import pytest
import yaml

from cornernet_tf import convert
from cornernet_tf.config import load_config
from cornernet_tf.models import CornerNet, CornerNetSqueeze
from cornernet_tf.tasks.model import build_model
from cornernet_tf.tasks.official_weights import (
    config_from_official,
    load_official_weights,
    official_model_type,
)
from tests.conftest import load_reference, nhwc, reference_config
from tests.convert_fixtures import check_every_official_key_maps, check_parameter_count, official_fixtures

# hg104 is the full official CornerNet-Squeeze here
hg104, hg104_rows, tiny_ref, tiny_params = official_fixtures("squeeze")
OFFICIAL = {"n": 4, "nstack": 2, "dims": [256, 256, 384, 384, 512], "modules": [2, 2, 2, 2, 4], "out_dim": 80}


@pytest.fixture()
def tiny_model(tiny_ref):
    return build_model(config_from_official(reference_config(tiny_ref)), corner_pool="vectorized")


def test_full_parameter_count_matches_the_official_model(hg104, hg104_rows):
    assert isinstance(hg104, CornerNetSqueeze)
    check_parameter_count(hg104, hg104_rows, 31771852)


def test_full_every_official_key_maps_onto_a_weight_of_the_right_shape(hg104, hg104_rows):
    check_every_official_key_maps(hg104, hg104_rows[0])


def test_full_loads_a_module_prefixed_checkpoint_built_from_the_tsv(hg104, hg104_rows):
    rows, _ = hg104_rows
    params = {f"module.{key}": np.full(shape, 0.5, "float32") for key, shape, _ in rows}
    load_official_weights(hg104, params)
    up2 = hg104.backbone.kps[1].low2.low2.low2.up2  # the innermost ConvTranspose2d at 384
    assert up2.kernel.shape == (4, 4, 384, 384) and np.all(up2.kernel.numpy() == 0.5)
    others = (hg104.weights[0], hg104.weights[-1], hg104.br_regrs[1].out.bias)
    assert all(np.all(w.numpy() == 0.5) for w in others)


def test_depthwise_transposed_and_stem_kernels(tiny_model, tiny_params):
    load_official_weights(tiny_model, tiny_params)
    hourglass = tiny_model.backbone.kps[0]
    depthwise = tiny_params["hg.hgs.0.up1.0.conv_3x3.weight"]  # (C, 1, 3, 3), groups = C
    ours = hourglass.up1[0].conv_3x3.kernel.numpy()  # (3, 3, C, 1)
    np.testing.assert_array_equal(ours[:, :, 5, 0], depthwise[5, 0])
    transposed = tiny_params["hg.hgs.0.up2.weight"]  # (in, out, 4, 4)
    ours = hourglass.up2.kernel.numpy()  # (4, 4, out, in)
    np.testing.assert_array_equal(ours[:, :, 3, 7], transposed[7, 3])
    np.testing.assert_array_equal(hourglass.up2.bias.numpy(), tiny_params["hg.hgs.0.up2.bias"])
    stem = tiny_params["hg.pre.0.conv.weight"]  # OIHW, I in BGR order
    ours = tiny_model.backbone.pre[0].conv.kernel.numpy()  # HWIO, I in RGB order
    np.testing.assert_array_equal(ours[:, :, 0], np.transpose(stem[:, 2], (1, 2, 0)))
    np.testing.assert_array_equal(ours[:, :, 2], np.transpose(stem[:, 0], (1, 2, 0)))


def test_model_type_from_the_keys_or_the_official_model_name(hg104_rows, tiny_ref, tiny_params):
    keys = [key for key, _, _ in hg104_rows[0]]
    assert official_model_type(keys) == official_model_type(f"module.{k}" for k in keys) == "squeeze"
    expected = load_config("squeeze_coco").model
    assert config_from_official({**OFFICIAL, "model": "CornerNet_Squeeze"}) == expected
    assert config_from_official(OFFICIAL, keys=keys) == expected
    assert config_from_official({**OFFICIAL, "type": "squeeze"}) == expected
    assert config_from_official(reference_config(tiny_ref), keys=tiny_params).type == "squeeze"
    with pytest.raises(ValueError, match="type 'cornernet', but model 'CornerNet_Squeeze' is a squeeze"):
        config_from_official({**OFFICIAL, "model": "CornerNet_Squeeze", "type": "cornernet"})
    with pytest.raises(ValueError, match="type 'cornernet', but the checkpoint keys are a squeeze's"):
        config_from_official({**OFFICIAL, "type": "cornernet"}, keys=keys)
    with pytest.raises(ValueError, match="unknown official model 'CornerNet_Squeeze_Saccade'"):
        config_from_official({**OFFICIAL, "model": "CornerNet_Squeeze_Saccade"})


def test_missing_extra_misshapen_and_foreign_keys_are_named(tiny_model, tiny_ref, tiny_params):
    before = [w.numpy() for w in tiny_model.weights[:3]]
    missing = {k: v for k, v in tiny_params.items() if k != "hg.hgs.1.low2.up2.bias"}
    with pytest.raises(ValueError, match=r"missing from the checkpoint: hg\.hgs\.1\.low2\.up2\.bias"):
        load_official_weights(tiny_model, missing)
    extra = {**tiny_params, "module.tl_regrs.0.1.bias": np.zeros(2, "float32")}
    with pytest.raises(ValueError, match=r"not used by the model: tl_regrs\.0\.1\.bias \[2\]"):
        load_official_weights(tiny_model, extra)
    bad = {**tiny_params, "hg.hgs.0.up1.0.conv_3x3.weight": np.zeros((8, 8, 3, 3), "float32")}
    with pytest.raises(ValueError, match=r"conv_3x3\.weight \[8, 8, 3, 3\] -> .* expects \[3, 3, 8, 1\]"):
        load_official_weights(tiny_model, bad)
    for w, value in zip(tiny_model.weights[:3], before):  # all or nothing
        np.testing.assert_array_equal(w.numpy(), value)
    cornernet = load_reference("cornernet_tiny.npz")
    cornernet_params = {k: v for k, v in cornernet.items() if not k.startswith("ref/")}
    with pytest.raises(ValueError, match=r"cornernet checkpoint but a squeeze model \(set model.type=corner"):
        load_official_weights(tiny_model, cornernet_params)
    hyperparameters = {k: v for k, v in reference_config(tiny_ref).items() if k != "model"}
    plain = build_model(config_from_official({**hyperparameters, "type": "cornernet"}))
    assert type(plain) is CornerNet
    with pytest.raises(ValueError, match=r"squeeze checkpoint but a cornernet model \(set model.type=sq"):
        load_official_weights(plain, tiny_params)


def test_cli_converts_a_squeeze_checkpoint(tiny_ref, tiny_params, tmp_path):
    model_config = config_from_official(reference_config(tiny_ref))
    fields = ("type", "num_classes", "depth", "nstack", "dims", "modules", "cnv_dim", "pre_dims", "pool_dim")
    config_path = tmp_path / "tiny.yaml"
    sections = {"model": {k: getattr(model_config, k) for k in fields}}
    sections["data"] = {"input_size": [191, 255]}
    config_path.write_text(yaml.safe_dump(sections))
    checkpoint = tmp_path / "ckpt.npz"
    np.savez(checkpoint, **{f"module.{k}": v for k, v in tiny_params.items()})
    out = tmp_path / "tiny.weights.h5"
    argv = ["--config", str(config_path), "--checkpoint", str(checkpoint), "--out", str(out)]
    assert convert.main(argv) == 0

    model = build_model(model_config, corner_pool="vectorized")
    model.load_weights(out)
    images = nhwc(tiny_ref["ref/image"])[..., ::-1]
    expected = nhwc(tiny_ref["ref/eval_last/br_off"])
    np.testing.assert_allclose(model(images)["br_offset"], expected, atol=1e-3, rtol=1e-3)
