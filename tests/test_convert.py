"""Official-weight conversion: Hourglass-104 layout, key checks, BGR -> RGB stem, the CLI."""

import pathlib
import sys

import numpy as np
import pytest
import yaml

from cornernet_tf import convert
from cornernet_tf.config import load_config
from cornernet_tf.tasks import official_weights
from cornernet_tf.tasks.model import build_model
from cornernet_tf.tasks.official_weights import config_from_official, load_official_weights
from tests.conftest import nhwc, reference_config
from tests.convert_fixtures import check_every_official_key_maps, check_parameter_count, official_fixtures

PRETRAINED_FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "pretrained"

hg104, hg104_rows, tiny_ref, tiny_params = official_fixtures("cornernet")


@pytest.fixture()
def tiny_model(tiny_ref):
    return build_model(config_from_official(reference_config(tiny_ref)), corner_pool="vectorized")


def test_hg104_parameter_count_matches_the_official_model(hg104, hg104_rows):
    check_parameter_count(hg104, hg104_rows, 201035212)


def test_hg104_every_official_key_maps_onto_a_weight_of_the_right_shape(hg104, hg104_rows):
    check_every_official_key_maps(hg104, hg104_rows[0])


def test_hg104_loads_a_module_prefixed_checkpoint_without_step_counters(hg104, hg104_rows):
    rows, _ = hg104_rows
    params = {
        f"module.{key}": np.full(shape, 0.5, "float32")
        for key, shape, _ in rows
        if not key.endswith("num_batches_tracked")
    }
    load_official_weights(hg104, params)
    assert all(np.all(w.numpy() == 0.5) for w in (hg104.weights[0], hg104.weights[-1], hg104.tl_heats[1].out.bias))


def test_stem_input_channels_are_reversed_bgr_to_rgb(tiny_model, tiny_params):
    load_official_weights(tiny_model, tiny_params)
    official = tiny_params["pre.0.conv.weight"]  # OIHW, I in BGR order
    ours = tiny_model.backbone.pre[0].conv.kernel.numpy()  # HWIO, I in RGB order
    np.testing.assert_array_equal(ours[:, :, 0], np.transpose(official[:, 2], (1, 2, 0)))
    np.testing.assert_array_equal(ours[:, :, 2], np.transpose(official[:, 0], (1, 2, 0)))
    other = tiny_params["cnvs.0.conv.weight"]
    np.testing.assert_array_equal(tiny_model.backbone.cnvs[0].conv.kernel.numpy(), np.transpose(other, (2, 3, 1, 0)))


def test_missing_extra_and_misshapen_keys_are_named(tiny_model, tiny_params):
    before = [w.numpy() for w in tiny_model.weights[:3]]
    missing = {k: v for k, v in tiny_params.items() if k != "tl_cnvs.1.p_bn1.running_var"}
    with pytest.raises(ValueError, match=r"missing from the checkpoint: tl_cnvs\.1\.p_bn1\.running_var"):
        load_official_weights(tiny_model, missing)
    extra = {**tiny_params, "module.ct_heats.0.1.bias": np.zeros(3, "float32")}
    with pytest.raises(ValueError, match=r"not used by the model: ct_heats\.0\.1\.bias \[3\]"):
        load_official_weights(tiny_model, extra)
    bad = {**tiny_params, "tl_heats.0.1.weight": np.zeros((4, 16, 1, 1), "float32")}
    with pytest.raises(ValueError, match=r"tl_heats\.0\.1\.weight \[4, 16, 1, 1\] -> .* expects \[1, 1, 16, 3\]"):
        load_official_weights(tiny_model, bad)
    for w, value in zip(tiny_model.weights[:3], before):  # all or nothing
        np.testing.assert_array_equal(w.numpy(), value)


def test_sources_npz_and_torch_checkpoints(tiny_model, tiny_params, tmp_path, monkeypatch):
    path = tmp_path / "weights.npz"
    np.savez(path, **tiny_params)
    load_official_weights(tiny_model, path)
    np.testing.assert_array_equal(tiny_model.tl_regrs[1].out.bias.numpy(), tiny_params["tl_regrs.1.1.bias"])
    with pytest.raises(ValueError, match="not found"):
        load_official_weights(tiny_model, tmp_path / "absent.pkl")
    monkeypatch.setitem(sys.modules, "torch", None)  # PyTorch files are read without PyTorch
    checkpoint = tmp_path / "ckpt.pkl"
    checkpoint.write_bytes(b"")
    with pytest.raises(ValueError, match="ckpt.pkl"):
        load_official_weights(tiny_model, checkpoint)
    # a file torch.save wrote in the legacy format of the official checkpoints, `module.` prefixed
    config = load_config(str(PRETRAINED_FIXTURES / "tiny.yaml"))
    model = build_model(config.model, corner_pool="vectorized")
    load_official_weights(model, PRETRAINED_FIXTURES / "tiny_official.pkl")
    state = official_weights.read_state_dict(PRETRAINED_FIXTURES / "tiny_official.pkl")
    np.testing.assert_array_equal(model.tl_regrs[1].out.bias.numpy(), state["module.tl_regrs.1.1.bias"])


def test_config_from_official():
    official = {"n": 5, "nstack": 2, "dims": [256, 256, 384, 384, 384, 512], "modules": [2, 2, 2, 2, 2, 4]}
    config = config_from_official({**official, "out_dim": 80})
    assert config == load_config("cornernet_hg104_coco").model
    with pytest.raises(ValueError, match="unknown key"):
        config_from_official({"n": 5, "depth": 5})
    with pytest.raises(ValueError, match="missing key"):
        config_from_official({"n": 5})


def cli(config, checkpoint, out) -> int:
    return convert.main(["--config", str(config), "--checkpoint", str(checkpoint), "--out", str(out)])


def test_cli_writes_keras_weights_atomically(tiny_ref, tiny_params, tmp_path, capsys):
    model_config = config_from_official(reference_config(tiny_ref))
    config_path = tmp_path / "tiny.yaml"
    fields = ("num_classes", "depth", "nstack", "dims", "modules", "cnv_dim", "pre_dims", "pool_dim")
    model_section = {k: getattr(model_config, k) for k in fields}
    data_section = {"input_size": [128, 128]}
    config_path.write_text(yaml.safe_dump({"model": model_section, "data": data_section}))
    checkpoint = tmp_path / "ckpt.npz"
    np.savez(checkpoint, **{f"module.{k}": v for k, v in tiny_params.items()})
    out = tmp_path / "out" / "tiny.weights.h5"
    assert cli(config_path, checkpoint, out) == 0
    assert out.is_file() and sorted(p.name for p in out.parent.iterdir()) == ["tiny.weights.h5"]

    model = build_model(model_config, corner_pool="vectorized")
    model.load_weights(out)
    images = nhwc(tiny_ref["ref/image"])[:1, ..., ::-1]
    expected = nhwc(tiny_ref["ref/eval_last/tl_heat"])[:1]
    np.testing.assert_allclose(model(images)["tl_heatmap"], expected, atol=1e-3, rtol=1e-3)

    assert cli(config_path, tmp_path / "nope.pkl", out) == 2
    assert "not found" in capsys.readouterr().err
    assert cli(config_path, checkpoint, tmp_path / "x.h5") == 2
    assert ".weights.h5" in capsys.readouterr().err
    assert cli("hg104_missing", checkpoint, out) == 2
    assert "not found" in capsys.readouterr().err
    assert cli(config_path, checkpoint, out / "x.weights.h5") == 2  # its folder would be a file
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and str(out) in line
