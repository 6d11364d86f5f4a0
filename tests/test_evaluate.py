"""evaluate.py and tasks.evaluation: end to end on a tiny random model, weights in every accepted form, the CLI."""

import json

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf import evaluate
from cornernet_tf.config import load_config
from cornernet_tf.data import augment
from cornernet_tf.tasks.evaluation import PLOT_FILES, evaluate_model, restore_image
from cornernet_tf.tasks.model import build_model
from cornernet_tf.training.checkpoint import find_saved_config, load_weights, training_checkpoint
from cornernet_tf.utils.coco_metrics import METRIC_NAMES


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
    metrics, records = evaluate_model(
        model, config, max_images=4, results_path=results, visualize_dir=pictures, num_visualize=3
    )
    per_class = [f"{key}/{name}" for name in ("rectangle", "ellipse", "triangle") for key in ("AP", "AP50")]
    assert list(metrics) == [*METRIC_NAMES, "num_images", "num_unusable_images", *per_class]
    assert all(-1 <= metrics[name] <= 1 for name in per_class)
    assert all(-1 <= metrics[name] <= 1 for name in METRIC_NAMES)
    assert (metrics["num_images"], metrics["num_unusable_images"]) == (4, 0)
    assert json.loads(results.read_text()) == records
    assert {r["image_id"] for r in records} <= {1, 2, 3, 4} and records
    assert all(r["category_id"] in (1, 2, 3) and len(r["bbox"]) == 4 for r in records)
    assert sorted(p.name for p in pictures.iterdir()) == ["val_1.png", "val_2.png", "val_3.png"]


def test_evaluate_model_flip_and_multiscale(model, config, capsys):
    metrics, records = evaluate_model(model, config, flip=True, scales=[0.75, 1.0], max_images=2)
    assert list(metrics)[:12] == list(METRIC_NAMES)
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
    restored = restore_image(augment.normalize(pixels, mean, std).numpy(), info.numpy(), mean, std)
    assert restored.shape == image.shape and restored.dtype == np.uint8
    error = np.abs(restored.astype(int) - image.astype(int))
    assert error[2:-2, 2:-2].max() <= 1  # a half-pixel shift would cost 1.5 on these slopes
    if scale == 1.0:
        assert error.max() <= 1


def _saved_weights(model, root, form: str):
    """`model`'s weights saved under `root` in one of the forms --weights takes; returns that path."""
    if form == "weights.h5":
        model.save_weights(str(root / "model.weights.h5"))
        return root / "model.weights.h5"
    prefix = _save_checkpoint(model, root)
    return {"model_dir": root, "checkpoints_dir": root / "checkpoints", "prefix": prefix}[form]


@pytest.mark.parametrize("form", ["weights.h5", "model_dir", "checkpoints_dir", "prefix"])
def test_load_weights_restores_every_variable(model, config, tmp_path, form):
    path = _saved_weights(model, tmp_path, form)
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
    code = evaluate.main(
        [
            "--config",
            "shapes_tiny",
            "--weights",
            str(weights),
            *_cli_args(overrides),
            "--max_images",
            "2",
            "--results",
            str(results),
            "--visualize",
            str(tmp_path / "vis"),
            "--metrics",
            str(tmp_path / "metrics.json"),
            "--plots",
            str(tmp_path / "plots"),
        ]
    )
    assert code == 0
    for name in PLOT_FILES:  # precision-recall curves and the confusion matrix, as valid pictures
        picture = cv2.imread(str(tmp_path / "plots" / name))
        assert picture is not None and picture.shape[0] >= 400 and picture.std() > 0, name
    out = capsys.readouterr().out
    assert all(name in out for name in METRIC_NAMES)
    assert results.is_file() and len(list((tmp_path / "vis").iterdir())) == 2
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert {"AP/ellipse", "AP50/triangle", "num_images"} <= set(stored) and "ellipse" in out


@pytest.mark.parametrize("form", ["model_dir", "checkpoints_dir", "prefix", "weights.h5"])
def test_find_saved_config_walks_from_any_form_of_weights_to_the_run(model, config, tmp_path, form):
    config.save(tmp_path / "config.yaml")
    weights = _saved_weights(model, tmp_path, form)
    assert find_saved_config(weights) == tmp_path / "config.yaml"
    (tmp_path / "config.yaml").unlink()
    assert find_saved_config(weights) is None


def test_find_saved_config_looks_above_a_checkpoints_folder_only(model, config, tmp_path):
    config.save(tmp_path / "config.yaml")
    (tmp_path / "elsewhere").mkdir()
    model.save_weights(str(tmp_path / "elsewhere" / "model.weights.h5"))
    assert find_saved_config(tmp_path / "elsewhere" / "model.weights.h5") is None


@pytest.mark.parametrize("form", ["model_dir", "checkpoints_dir", "prefix"])
def test_cli_with_weights_of_a_training_run_uses_its_config(model, config, tmp_path, capsys, form):
    prefix = _save_checkpoint(model, tmp_path)
    config.save(tmp_path / "config.yaml")  # the run's config, with its shapes_dir
    weights = {"model_dir": tmp_path, "checkpoints_dir": tmp_path / "checkpoints", "prefix": prefix}[form]
    assert evaluate.main(["--weights", str(weights), "--max_images", "1", "--no-flip", "--scales", "1"]) == 0
    out = capsys.readouterr().out
    assert "ckpt-7" in out and f"using the run's config {tmp_path / 'config.yaml'}" in out and "AR100" in out


def test_cli_without_config_and_without_a_saved_one_asks_for_config(model, tmp_path, capsys):
    weights = tmp_path / "model.weights.h5"
    model.save_weights(str(weights))
    assert evaluate.main(["--weights", str(weights)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"error: --weights {str(weights)!r} has no config.yaml beside it or above it; pass "
        f"--config (the YAML the run was trained with, or a bundled name such as cornernet_hg104_coco)"
    )


def test_cli_bad_weights_path_is_a_clear_error(overrides, tmp_path, capsys):
    assert evaluate.main(["--weights", str(tmp_path / "nope.weights.h5"), *_cli_args(overrides)]) == 2
    err = capsys.readouterr().err
    assert "nope.weights.h5" in err and "not found" in err


def test_cli_missing_annotations_is_a_clear_error(model, tmp_path, capsys):
    weights = tmp_path / "model.weights.h5"
    model.save_weights(str(weights))
    missing = tmp_path / "instances_val.json"
    coco = [
        "data.dataset=coco",
        f"data.train_annotations={missing}",
        f"data.train_images={tmp_path}",
        f"data.val_annotations={missing}",
        f"data.val_images={tmp_path}",
    ]
    assert evaluate.main(["--config", "shapes_tiny", "--weights", str(weights), *_cli_args(coco)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_unusable_images_stay_in_the_metric_as_images_without_detections(model, tmp_path, capsys):
    """A split with an empty file and a JPEG cut inside its pixels: both are scored as images
    without detections, from COCO json and from TFRecords alike, as pycocotools scores the
    whole ground truth given no detections for them."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from cornernet_tf.data import coco, tfrecord
    from tests.data.conftest import encode, write_coco

    rng = np.random.default_rng(3)
    good = [encode(rng.integers(0, 256, (96, 112, 3), dtype=np.uint8), ".jpg") for _ in range(4)]
    images = (
        [("cut.jpg", good[0][: len(good[0]) // 2], 96, 112)]
        + [(f"{i}.jpg", data, 96, 112) for i, data in enumerate(good)]
        + [("empty.jpg", b"", 96, 112)]
    )
    boxes = [(i, 1 + i % 3, [10 + 3 * i, 12, 40, 30 + 2 * i], 0) for i in range(1, 7)]
    annotations, images_dir = write_coco(tmp_path / "coco", images, boxes, [(1, "a"), (2, "b"), (3, "c")])
    tfrecord.write_tfrecords(
        coco.load_coco(annotations, images_dir), str(tmp_path / "records"), "val", num_shards=2, progress=lambda _: None
    )
    sources = {
        "coco": [
            "data.dataset=coco",
            *(
                f"data.{split}_{key}={value}"
                for split in ("train", "val")
                for key, value in (("annotations", annotations), ("images", images_dir))
            ),
        ],
        "tfrecord": [
            "data.dataset=tfrecord",
            *(f"data.{split}_tfrecords={tmp_path}/records/val-*.tfrecord" for split in ("train", "val")),
        ],
    }
    for name, overrides in sources.items():
        config = load_config("shapes_tiny", overrides + ["eval.max_images=0"])
        metrics, records = evaluate_model(model, config)
        assert records and {r["image_id"] for r in records} <= {2, 3, 4, 5}, name
        out = capsys.readouterr().out
        assert (
            "6 images scored, 4 decoded; 2 could not be read or decoded and count as images without "
            "detections (ids 1, 6)" in out
        ), name

        truth = COCO(str(annotations))
        evaluator = COCOeval(truth, truth.loadRes([dict(r) for r in records]), "bbox")
        evaluator.params.imgIds = [1, 2, 3, 4, 5, 6]
        evaluator.evaluate(), evaluator.accumulate(), evaluator.summarize()
        np.testing.assert_allclose([metrics[m] for m in METRIC_NAMES], evaluator.stats, err_msg=name)
        assert (metrics["num_images"], metrics["num_unusable_images"]) == (6, 2), name
