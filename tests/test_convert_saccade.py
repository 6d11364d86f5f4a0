"""Official-weight conversion for CornerNet-Saccade (CornerNet-Lite): the full official layout and
parameter count, the attention heads, type detection, hyperparameter checks, key errors, the CLI."""

import numpy as np
import pytest
import yaml

from cornernet_tf import convert
from cornernet_tf.config import load_config
from cornernet_tf.models import CornerNetSaccade, CornerNetSqueeze
from cornernet_tf.tasks.model import build_model
from cornernet_tf.tasks.official_weights import config_from_official, load_official_weights, official_model_type
from tests.conftest import load_reference, nhwc, reference_config
from tests.convert_fixtures import check_every_official_key_maps, check_parameter_count, official_fixtures

# hg104 is the full official CornerNet-Saccade (Hourglass-54) here
hg104, hg104_rows, tiny_ref, tiny_params = official_fixtures("saccade")
OFFICIAL = {
    "n": 3,
    "nstack": 3,
    "dims": [256, 384, 384, 512],
    "modules": [1, 1, 1, 1],
    "out_dim": 80,
    "att_dim": 256,
    "att_in_channels": [384, 384, 256],
}


@pytest.fixture()
def tiny_model(tiny_ref):
    return build_model(config_from_official(reference_config(tiny_ref)), corner_pool="vectorized")


def test_full_parameter_count_matches_the_official_model(hg104, hg104_rows):
    assert isinstance(hg104, CornerNetSaccade) and hg104.nstack == 3 and hg104.depth == 3
    check_parameter_count(hg104, hg104_rows, 116969339)


def test_full_every_official_key_maps_onto_a_weight_of_the_right_shape(hg104, hg104_rows):
    check_every_official_key_maps(hg104, hg104_rows[0])


def test_full_loads_a_module_prefixed_checkpoint_built_from_the_tsv(hg104, hg104_rows):
    rows, _ = hg104_rows
    params = {f"module.{key}": np.full(shape, 0.25, "float32") for key, shape, _ in rows}
    load_official_weights(hg104, params)
    attention = hg104.att_modules[2][1]  # att_modules.2.1: stack 2, the 32 x 32 level (384 channels)
    assert attention.conv.conv.kernel.shape == (3, 3, 384, 256) and attention.out.kernel.shape == (1, 1, 256, 1)
    assert all(np.all(w.numpy() == 0.25) for w in (hg104.weights[0], hg104.weights[-1], attention.out.bias))


def test_attention_kernels_are_transposed_to_hwio(tiny_model, tiny_params):
    load_official_weights(tiny_model, tiny_params)
    official = tiny_params["att_modules.1.0.0.conv.weight"]  # stack 1, coarsest level: OIHW (12, 24, 3, 3)
    ours = tiny_model.att_modules[1][0].conv.conv.kernel.numpy()  # HWIO (3, 3, 24, 12)
    np.testing.assert_array_equal(ours[:, :, 5, 7], official[7, 5])
    np.testing.assert_array_equal(tiny_model.att_modules[0][2].out.bias.numpy(), tiny_params["att_modules.0.2.1.bias"])


def test_model_type_from_the_keys_or_the_official_model_name(hg104_rows, tiny_ref, tiny_params):
    keys = [key for key, _, _ in hg104_rows[0]]
    assert official_model_type(keys) == official_model_type(f"module.{k}" for k in keys) == "saccade"
    expected = load_config("saccade_coco").model
    assert config_from_official({**OFFICIAL, "model": "CornerNet_Saccade"}) == expected
    assert config_from_official(OFFICIAL, keys=keys) == expected
    tiny = config_from_official(reference_config(tiny_ref), keys=tiny_params)
    assert (tiny.type, tiny.att_dim, tiny.pool_dim) == ("saccade", 12, 8)
    with pytest.raises(ValueError, match="type 'squeeze', but model 'CornerNet_Saccade' is a saccade"):
        config_from_official({**OFFICIAL, "model": "CornerNet_Saccade", "type": "squeeze"})
    with pytest.raises(ValueError, match="type 'squeeze', but the checkpoint keys are a saccade's"):
        config_from_official({**OFFICIAL, "type": "squeeze"}, keys=keys)
    with pytest.raises(ValueError, match=r"att_in_channels \[256, 384, 384\] must be .* = \[384, 384, 256\]"):
        config_from_official({**OFFICIAL, "att_in_channels": [256, 384, 384]})


def test_missing_extra_and_foreign_keys_are_named(tiny_model, tiny_ref, tiny_params):
    before = [w.numpy() for w in tiny_model.weights[-3:]]
    missing = {k: v for k, v in tiny_params.items() if k != "att_modules.1.2.1.bias"}
    with pytest.raises(ValueError, match=r"missing from the checkpoint: att_modules\.1\.2\.1\.bias"):
        load_official_weights(tiny_model, missing)
    extra = {**tiny_params, "att_modules.2.0.1.bias": np.zeros(1, "float32")}
    with pytest.raises(ValueError, match=r"not used by the model: att_modules\.2\.0\.1\.bias \[1\]"):
        load_official_weights(tiny_model, extra)
    for w, value in zip(tiny_model.weights[-3:], before, strict=True):  # all or nothing
        np.testing.assert_array_equal(w.numpy(), value)
    squeeze = load_reference("squeeze_tiny.npz")
    squeeze_params = {k: v for k, v in squeeze.items() if not k.startswith("ref/")}
    with pytest.raises(ValueError, match=r"squeeze checkpoint but a saccade model \(set model.type=squeeze"):
        load_official_weights(tiny_model, squeeze_params)
    squeeze_model = build_model(config_from_official(reference_config(squeeze)), corner_pool="vectorized")
    assert isinstance(squeeze_model, CornerNetSqueeze)
    with pytest.raises(ValueError, match=r"saccade checkpoint but a squeeze model \(set model.type=saccade"):
        load_official_weights(squeeze_model, tiny_params)


def test_cli_converts_a_saccade_checkpoint(tiny_ref, tiny_params, tmp_path):
    model_config = config_from_official(reference_config(tiny_ref))
    fields = ("type", "num_classes", "depth", "nstack", "dims", "modules", "cnv_dim", "pre_dims", "pool_dim", "att_dim")
    config_path = tmp_path / "tiny.yaml"
    sections = {"model": {k: getattr(model_config, k) for k in fields}, "data": {"input_size": [255, 255]}}
    config_path.write_text(yaml.safe_dump(sections))
    checkpoint = tmp_path / "ckpt.npz"
    np.savez(checkpoint, **{f"module.{k}": v for k, v in tiny_params.items()})
    out = tmp_path / "tiny.weights.h5"
    argv = ["--config", str(config_path), "--checkpoint", str(checkpoint), "--out", str(out)]
    assert convert.main(argv) == 0

    model = build_model(model_config, corner_pool="vectorized")
    model.load_weights(out)
    images = nhwc(tiny_ref["ref/image"])[..., ::-1]
    expected = nhwc(tiny_ref["ref/stack1/att0"])
    np.testing.assert_allclose(model(images)["attention_0"], expected, atol=1e-3, rtol=1e-3)
