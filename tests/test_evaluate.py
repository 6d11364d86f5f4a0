"""evaluate.py: end to end on a tiny random model, weights in every accepted form, the CLI."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf import evaluate
from cornernet_tf.coco_metrics import METRIC_NAMES
from cornernet_tf.config import load_config
from cornernet_tf.data import augment
from cornernet_tf.models import build_model
from cornernet_tf.training.checkpoint import load_weights, training_checkpoint


@pytest.fixture(scope="module")
def overrides(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("shapes") / "ds"
    return [f"data.shapes_dir={root}", "data.shapes_train=4", "data.shapes_val=6"]


@pytest.fixture(scope="module")
def config(overrides):
    return load_config("shapes_tiny", overrides)


@pytest.fixture(scope="module")
def model(config):
    keras.utils.set_random_seed(0)
    return build_model(config.model)


def _cli_args(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def _save_checkpoint(model, model_dir) -> str:
    """What the trainer writes: model, optimizer and step under model_dir/checkpoints."""
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    checkpoint = training_checkpoint(model, optimizer, tf.Variable(7, dtype=tf.int64))
    return tf.train.CheckpointManager(checkpoint, str(model_dir / "checkpoints"), max_to_keep=1).save(7)


def test_evaluate_model_end_to_end(model, config, tmp_path):
    results, pictures = tmp_path / "results.json", tmp_path / "pictures"
    metrics, records = evaluate.evaluate_model(
        model, config, max_images=4, results_path=results, visualize_dir=pictures, num_visualize=3
    )
    assert list(metrics) == list(METRIC_NAMES) and all(-1 <= v <= 1 for v in metrics.values())
    assert json.loads(results.read_text()) == records
    assert {r["image_id"] for r in records} <= {1, 2, 3, 4} and records
    assert all(r["category_id"] in (1, 2, 3) and len(r["bbox"]) == 4 for r in records)
    assert sorted(p.name for p in pictures.iterdir()) == ["val_1.png", "val_2.png", "val_3.png"]


def test_evaluate_model_flip_and_multiscale(model, config, capsys):
    metrics, records = evaluate.evaluate_model(model, config, flip=True, scales=[0.75, 1.0], max_images=2)
    assert list(metrics) == list(METRIC_NAMES)
    assert {r["image_id"] for r in records} <= {1, 2}
    out = capsys.readouterr().out
    assert "'pad' transform" in out and "2/2 images" in out and "images/s" in out
    for record in records:  # image px of the 128 x 128 images, whatever the test scale
        x, y, w, h = record["bbox"]
        assert 0 <= x <= x + w <= 128 and 0 <= y <= y + h <= 128


@pytest.mark.parametrize("mode, scale", [("pad", 1.0), ("pad", 0.5), ("pad", 1.5), ("resize", 1.0)])
def test_restore_image_undoes_the_eval_transform(mode, scale):
    y, x = np.mgrid[0:40, 0:60]
    image = np.stack([2 * x + 3 * y, 200 - 2 * x, 50 + 3 * y], axis=-1).astype(np.uint8)  # bilinear keeps ramps
    if mode == "pad":
        pixels, info = augment.eval_pad(tf.constant(image), size_divisor=32, scale=scale)
    else:
        pixels, info = augment.eval_resize(tf.constant(image), (96, 80))
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.3, 0.25)
    restored = evaluate.restore_image(augment.normalize(pixels, mean, std).numpy(), info.numpy(), mean, std)
    assert restored.shape == image.shape and restored.dtype == np.uint8
    error = np.abs(restored.astype(int) - image.astype(int))
    assert error[2:-2, 2:-2].max() <= 1  # a half-pixel shift would cost 1.5 on these slopes
    if scale == 1.0:
        assert error.max() <= 1


@pytest.mark.parametrize("form", ["weights.h5", "model_dir", "checkpoints_dir", "prefix"])
def test_load_weights_restores_every_variable(model, config, tmp_path, form):
    if form == "weights.h5":
        path = tmp_path / "model.weights.h5"
        model.save_weights(str(path))
    else:
        prefix = _save_checkpoint(model, tmp_path)
        path = {"model_dir": tmp_path, "checkpoints_dir": tmp_path / "checkpoints", "prefix": prefix}[form]
    fresh = build_model(config.model)
    assert not np.allclose(fresh.get_weights()[0], model.get_weights()[0])
    load_weights(fresh, path)
    for got, want in zip(fresh.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_load_weights_errors_name_the_problem(model, config, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_weights(model, tmp_path / "missing.weights.h5")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_weights(model, tmp_path)
    other = build_model(load_config("shapes_tiny", ["model.cnv_dim=32"]).model)
    other.save_weights(str(tmp_path / "other.weights.h5"))
    with pytest.raises(ValueError, match="do not fit the model"):
        load_weights(build_model(config.model), tmp_path / "other.weights.h5")


def test_checkpoint_of_another_architecture_is_a_clear_error(config, tmp_path):
    _save_checkpoint(build_model(load_config("shapes_tiny", ["model.cnv_dim=32"]).model), tmp_path)
    with pytest.raises(ValueError, match="does not fit the model"):
        load_weights(build_model(config.model), tmp_path)


def test_cli_with_saved_weights(model, overrides, tmp_path, capsys):
    weights = tmp_path / "model.weights.h5"
    model.save_weights(str(weights))
    results = tmp_path / "out.json"
    code = evaluate.main(["--config", "shapes_tiny", "--weights", str(weights), *_cli_args(overrides),
                          "--max_images", "2", "--results", str(results), "--visualize", str(tmp_path / "vis")])
    assert code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in METRIC_NAMES)
    assert results.is_file() and len(list((tmp_path / "vis").iterdir())) == 2


def test_cli_with_a_training_model_dir_uses_its_config(model, config, tmp_path, capsys):
    _save_checkpoint(model, tmp_path)
    config.save(tmp_path / "config.yaml")  # the run's config, with its shapes_dir
    assert evaluate.main(["--weights", str(tmp_path), "--max_images", "1", "--no-flip", "--scales", "1"]) == 0
    out = capsys.readouterr().out
    assert "ckpt-7" in out and "using the run's config" in out and "AR100" in out


def test_cli_bad_weights_path_is_a_clear_error(overrides, tmp_path, capsys):
    assert evaluate.main(["--weights", str(tmp_path / "nope.weights.h5"), *_cli_args(overrides)]) == 2
    err = capsys.readouterr().err
    assert "nope.weights.h5" in err and "not found" in err


def test_cli_missing_annotations_is_a_clear_error(model, tmp_path, capsys):
    weights = tmp_path / "model.weights.h5"
    model.save_weights(str(weights))
    missing = tmp_path / "instances_val.json"
    coco = ["data.dataset=coco", f"data.train_annotations={missing}", f"data.train_images={tmp_path}",
            f"data.val_annotations={missing}", f"data.val_images={tmp_path}"]
    assert evaluate.main(["--weights", str(weights), *_cli_args(coco)]) == 2
    assert str(missing) in capsys.readouterr().err
