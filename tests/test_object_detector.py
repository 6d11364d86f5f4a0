"""`ObjectDetector`: the Keras task trains, evaluates and predicts with the command line's code.

References: the command line's `Trainer` (same loss on the same batch), `Detector.from_weights`
(same detections), NumPy (clipping and dropping of boxes), Keras' own save / load.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf import ObjectDetector
from cornernet_tf.api.callbacks import CocoEvaluation
from cornernet_tf.api.detector import Detector
from cornernet_tf.api.presets import PRESET_CONFIG, is_preset
from cornernet_tf.config import ConfigError, load_config
from cornernet_tf.data import augment
from cornernet_tf.objective.targets import build_batch_targets
from cornernet_tf.tasks.data import train_input
from cornernet_tf.tasks.model import build_model
from cornernet_tf.tasks.training import build_trainer
from cornernet_tf.training.checkpoint import PRESET_WEIGHTS

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = [
    "model.depth=2",
    "model.dims=[8, 8, 8]",
    "model.modules=[1, 1, 1]",
    "model.pre_dims=[8, 8]",
    "model.cnv_dim=8",
    "model.pool_dim=8",
    "data.input_size=[64, 64]",
    "data.max_objects=6",
    "train.learning_rate=0.001",
    "detection.k=10",
    "detection.max_detections=10",
]
BUNDLED = {"cornernet": "shapes_tiny", "centernet": "centernet_shapes_tiny", "squeeze": "squeeze_shapes_tiny"}


def tiny_config(model_type: str = "cornernet", extra: tuple[str, ...] = ()):
    overrides = list(TINY)
    if model_type == "squeeze":  # stride 8: a 64 input gives 8 x 8 maps, divisible by 2**2
        overrides += ["model.dims=[8, 8, 8]"]
    return load_config(BUNDLED[model_type], [*overrides, *extra])


def batch(seed: int = 0, size: int = 4) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Images and xyxy ground truth: one box partly outside (clipped), one degenerate (dropped),
    padding rows."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (size, 64, 64, 3), dtype=np.uint8)
    boxes = np.full([size, 4, 4], -1.0, np.float32)
    labels = np.full([size, 4], -1, np.int32)
    for i in range(size):
        boxes[i, 0] = [4 + i, 6, 30 + i, 40]
        boxes[i, 1] = [40, 30 + i, 70, 62]  # reaches past the right edge: clipped to 63
        labels[i, :2] = [i % 3, (i + 1) % 3]
        if i % 2:
            boxes[i, 2] = [10, 10, 10, 20]  # no width: dropped
            labels[i, 2] = 2
    return images, {"boxes": boxes, "labels": labels}


def numpy_clip(boxes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The command line's rule, re-derived: clip to [0, 63], drop what is empty, kept rows first."""
    out_boxes, out_labels, counts = np.zeros_like(boxes), np.zeros_like(labels), []
    for i in range(len(boxes)):
        clipped = np.clip(boxes[i], 0, 63)
        keep = (labels[i] >= 0) & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        out_boxes[i, : keep.sum()] = clipped[keep]
        out_labels[i, : keep.sum()] = labels[i][keep]
        counts.append(int(keep.sum()))
    return out_boxes, out_labels, np.array(counts)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[ObjectDetector, pathlib.Path]:
    """A tiny detector fitted a few steps, saved as a preset (shared by the read-only tests)."""
    keras.utils.set_random_seed(0)
    detector = ObjectDetector(tiny_config(), bounding_box_format="xywh")
    detector.compile()
    images, y = batch()
    y = {"boxes": keras.utils.bounding_boxes.convert_format(y["boxes"], "xyxy", "xywh").numpy(), "labels": y["labels"]}
    y["boxes"][y["labels"] < 0] = -1
    detector.fit(images, y, batch_size=2, epochs=2, verbose=0)
    preset = tmp_path_factory.mktemp("preset") / "tiny"
    detector.save_to_preset(preset)
    return detector, preset


@pytest.mark.parametrize("model_type", sorted(BUNDLED))
def test_loss_equals_the_command_line_trainers_on_the_same_batch(model_type, tmp_path):
    config = tiny_config(model_type)
    detector = ObjectDetector(config, bounding_box_format="xywh")
    detector.compile()
    images, y = batch()
    trainer = build_trainer(config, tf.distribute.OneDeviceStrategy("/cpu:0"), tmp_path, dataset_fn=lambda *args: None)
    trainer.model.set_weights(detector.network.get_weights())
    boxes, labels, counts = numpy_clip(y["boxes"], y["labels"])
    targets = build_batch_targets(boxes, labels, counts, **dataclasses.asdict(train_input(config).targets))
    normalized = augment.normalize(
        tf.constant(images / 255.0, tf.float32), tuple(config.data.mean), tuple(config.data.std)
    )
    expected = {key: float(value) for key, value in trainer.test_step(tf.cast(normalized, tf.float32), targets).items()}

    xywh = keras.utils.bounding_boxes.convert_format(y["boxes"], "xyxy", "xywh").numpy()
    logs = detector.evaluate(images, {"boxes": xywh, "labels": y["labels"]}, batch_size=4, verbose=0, return_dict=True)
    for name, part in (("loss", "total"), ("focal", "focal"), ("pull", "pull"), ("push", "push"), ("offset", "offset")):
        assert logs[name] == pytest.approx(expected[part], rel=1e-6, abs=1e-6), (name, logs, expected)
    assert logs["dropped_boxes"] == 2  # the two degenerate boxes


FIT_EQUIVALENCE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    sys.path.insert(0, sys.argv[1])
    from tests.test_object_detector import batch, tiny_config
    from cornernet_tf import ObjectDetector

    config = tiny_config("cornernet", ("train.sync_batchnorm=true",))
    images, y = batch(size=12)
    keras.utils.set_random_seed(0)
    initial = ObjectDetector(config).network.get_weights()

    def fitted(strategy, data):
        with strategy.scope():
            detector = ObjectDetector(config)
            detector.network.set_weights(initial)
            detector.compile()
        if data == "arrays":
            detector.fit(images, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        else:
            dataset = tf.data.Dataset.from_tensor_slices((images, y)).batch(4)
            detector.fit(dataset, epochs=1, verbose=0)
        return detector.network.get_weights()

    one = fitted(tf.distribute.OneDeviceStrategy("/cpu:0"), "arrays")
    runs = {
        "dataset": fitted(tf.distribute.OneDeviceStrategy("/cpu:0"), "dataset"),
        "mirrored": fitted(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), "dataset"),
    }
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(one, initial))
    report = {name: max(float(np.max(np.abs(a - b))) for a, b in zip(one, weights)) for name, weights in runs.items()}
    print(json.dumps({"moved": moved, **report}))
    """
)


def test_fit_on_arrays_a_dataset_and_two_replicas_reaches_the_same_weights():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-c", FIT_EQUIVALENCE, str(REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["moved"] > 1e-3, report  # three steps did train
    assert report["dataset"] <= 1e-5, report
    assert report["mirrored"] <= 1e-5, report


def test_predict_equals_the_detector_of_the_same_weights(trained):
    detector, preset = trained
    images = np.random.default_rng(3).integers(0, 256, (2, 80, 96, 3), dtype=np.uint8)  # not the input size
    found = detector.predict(images, verbose=0)
    reference = Detector.from_weights(preset).predict(images)
    for row, expected in enumerate(reference):
        count = int(found["num_detections"][row])
        assert count == len(expected)
        assert np.all(found["labels"][row, count:] == -1)
        xyxy = keras.utils.bounding_boxes.convert_format(found["boxes"][row, :count], "xywh", "xyxy").numpy()
        np.testing.assert_allclose(xyxy, expected.boxes, atol=1e-4)
        np.testing.assert_allclose(found["confidence"][row, :count], expected.scores, atol=1e-4)
        np.testing.assert_array_equal(found["labels"][row, :count], expected.class_ids)


def test_keras_file_and_preset_round_trips_predict_the_same(trained, tmp_path):
    detector, preset = trained
    images = np.random.default_rng(4).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    expected = detector.predict(images, verbose=0)
    detector.save(tmp_path / "detector.keras")
    loaded = keras.models.load_model(tmp_path / "detector.keras")
    reopened = ObjectDetector.from_preset(preset)
    for other in (loaded, reopened):
        assert other.bounding_box_format == "xywh"
        found = other.predict(images, verbose=0)
        for key in expected:
            np.testing.assert_allclose(found[key], expected[key], atol=1e-6)
    # the optimizer state travels in the .keras file
    assert len(loaded.optimizer.variables) == len(detector.optimizer.variables)
    np.testing.assert_array_equal(loaded.optimizer.iterations.numpy(), detector.optimizer.iterations.numpy())
    assert sorted(os.listdir(preset)) == sorted(
        ["class_names.txt", "config.json", "config.yaml", "metadata.json", "model.weights.h5"]
    )
    metadata = json.loads((preset / "metadata.json").read_text())
    assert metadata["parameter_count"] == detector.network.count_params()
    assert (preset / "class_names.txt").read_text().splitlines() == ["rectangle", "ellipse", "triangle"]


def test_from_preset_opens_every_source(trained, tmp_path):
    detector, preset = trained
    fresh = ObjectDetector.from_preset("shapes_tiny")
    assert fresh.config.name == "shapes_tiny" and fresh.config.model.num_classes == 3

    # a training run folder: config.yaml beside checkpoints/
    run = tmp_path / "run"
    trainer = build_trainer(detector.config, tf.distribute.get_strategy(), run, dataset_fn=lambda *args: None)
    trainer.model.set_weights(detector.network.get_weights())
    trainer.save()
    detector.config.save(run / "config.yaml")
    # converted weights: a .weights.h5 with its config
    weights = tmp_path / "converted.weights.h5"
    detector.network.save_weights(weights)
    sources = [ObjectDetector.from_preset(run), ObjectDetector.from_preset(weights, config=detector.config)]
    for other in sources:
        for a, b in zip(other.network.get_weights(), detector.network.get_weights()):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ConfigError, match="pass config="):
        ObjectDetector.from_preset(weights)
    with pytest.raises(ConfigError, match="not found"):
        ObjectDetector.from_preset("no_such_config")

    # other classes: new heads, every other weight loaded
    five = ObjectDetector.from_preset(preset, num_classes=5)
    assert five.config.model.num_classes == 5 and five.class_names == [f"class_{i}" for i in range(1, 6)]
    old = {v.path.split("/", 1)[-1]: v.numpy() for v in detector.network.weights}
    changed = [v.path for v in five.network.weights if v.shape != old[v.path.split("/", 1)[-1]].shape]
    assert changed and all("heat" in path for path in changed), changed
    same = [v for v in five.network.weights if v.shape == old[v.path.split("/", 1)[-1]].shape]
    assert all(np.array_equal(v.numpy(), old[v.path.split("/", 1)[-1]]) for v in same)
    assert not ObjectDetector.from_preset(preset, load_weights=False).network.get_weights()[0].tolist() == (
        detector.network.get_weights()[0].tolist()
    )


def test_the_export_command_takes_a_preset_folder(trained, tmp_path):
    _, preset = trained
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "-m", "cornernet_tf.export", "--weights", str(preset), "--export_dir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    images = np.random.default_rng(5).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    served = Detector.from_export(tmp_path).predict(images)[0]
    weights = Detector.from_weights(preset).predict(images)[0]
    np.testing.assert_allclose(served.scores, weights.scores, atol=1e-4)


def test_callbacks_run_in_a_short_fit(trained, tmp_path):
    detector, _ = trained
    images, y = batch(seed=1)
    y = {"boxes": keras.utils.bounding_boxes.convert_format(y["boxes"], "xyxy", "xywh").numpy(), "labels": y["labels"]}
    coco = CocoEvaluation((images, y), every_n_epochs=2, verbose=False)
    callbacks = [
        coco,
        keras.callbacks.ModelCheckpoint(str(tmp_path / "epoch{epoch}.weights.h5"), save_weights_only=True),
        keras.callbacks.TensorBoard(str(tmp_path / "logs")),
        keras.callbacks.BackupAndRestore(str(tmp_path / "backup")),
    ]
    history = detector.fit(images, y, batch_size=2, epochs=2, verbose=0, callbacks=callbacks)
    assert history.history["val_AP"] == [coco.last_metrics["AP"]]  # evaluated after epoch 2 only
    assert set(coco.last_metrics) >= {"AP", "AP50", "AR100"}
    assert history.history["loss"] and all(np.isfinite(history.history["loss"]))
    assert (tmp_path / "epoch2.weights.h5").is_file()
    # TensorBoard, listed after the COCO callback, wrote its metrics to the validation logs
    tags = set()
    for events in (tmp_path / "logs" / "validation").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            tags.update(value.tag for value in event.summary.value)
    assert {"epoch_AP", "epoch_AP50"} <= tags, tags
    restored = ObjectDetector(detector.config)
    restored.load_weights(tmp_path / "epoch2.weights.h5")
    for a, b in zip(restored.network.get_weights(), detector.network.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_coco_callback_scores_the_ground_truth_as_pycocotools_does(trained):
    """Detections equal to the ground truth score AP 1; the callback's numbers come from pycocotools."""
    detector, _ = trained
    images, y = batch(seed=2)
    y["labels"][:, 2:] = -1  # no degenerate boxes: the oracle below detects every real box
    y = {"boxes": keras.utils.bounding_boxes.convert_format(y["boxes"], "xyxy", "xywh").numpy(), "labels": y["labels"]}
    real = y["labels"] >= 0
    detections = y["boxes"].copy()

    class Oracle:  # predicts the ground truth, clipped as the detector would see it
        bounding_box_format = "xywh"
        class_names = detector.class_names

        def predict_on_batch(self, images_batch):
            count = real[: len(images_batch)].sum(axis=1)
            return {
                "boxes": detections[: len(images_batch)],
                "labels": y["labels"][: len(images_batch)],
                "confidence": np.where(real[: len(images_batch)], 0.9, -1.0),
                "num_detections": count,
            }

    coco = CocoEvaluation((images, y), verbose=False)
    coco.set_model(Oracle())
    assert coco.evaluate()["AP"] == pytest.approx(1.0)
    detections[0, 0] += [20, 0, 0, 0]  # one detection of eight moves off its object: IoU 6 / 46
    assert coco.evaluate()["AP"] < 0.9


BAD_INPUTS = [
    ("inverted", "is inverted .* bounding_box_format 'xyxy': is that their format"),
    ("label_too_large", "sample 1, box 0: label 3 is not below num_classes 3"),
    ("label_not_integer", "sample 0, box 1: label 1.5 is not a class index"),
    ("nan_pixels", "sample 2: the image has NaN or Inf pixel values"),
    ("wrong_size", "images are 32 x 64 but the network takes 64 x 64"),
    ("boxes_without_labels", "sample 0: 2 boxes but 1 labels"),
    ("no_y_dict", "y must be a dict with 'boxes'"),
]


@pytest.mark.parametrize("case,message", BAD_INPUTS, ids=[case for case, _ in BAD_INPUTS])
def test_bad_input_is_a_clear_error_before_the_graph(trained, case, message):
    detector = ObjectDetector(tiny_config())  # xyxy
    detector.compile()
    images, y = batch()
    images = images.astype(np.float32)
    if case == "inverted":
        y["boxes"][0, 0] = [30, 40, 4, 6]
    elif case == "label_too_large":
        y["labels"][1, 0] = 3
    elif case == "label_not_integer":
        y["labels"] = y["labels"].astype(np.float32)
        y["labels"][0, 1] = 1.5
    elif case == "nan_pixels":
        images[2, 5, 5, 1] = np.nan
    elif case == "wrong_size":
        images = images[:, :32]
    elif case == "boxes_without_labels":
        y = {"boxes": [y["boxes"][0][:2]], "labels": [[0]]}
        images = images[:1]
    elif case == "no_y_dict":
        y = y["boxes"]
    with pytest.raises(ValueError, match=message):
        detector.fit(images, y, verbose=0)


def test_unknown_box_format_and_foreign_compile_arguments_are_refused():
    with pytest.raises(ValueError, match="bounding_box_format 'ltrb' is not one of"):
        ObjectDetector(tiny_config(), bounding_box_format="ltrb")
    with pytest.raises(ValueError, match="computes its own loss"):
        ObjectDetector(tiny_config()).compile(loss="mse")


def test_a_dataset_with_an_impossible_label_fails_in_the_graph_with_its_message():
    detector = ObjectDetector(tiny_config())
    detector.compile()
    images, y = batch()
    y["labels"][0, 0] = 7
    dataset = tf.data.Dataset.from_tensor_slices((images, y)).batch(4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not below num_classes 3"):
        detector.fit(dataset, verbose=0)


def test_lists_per_image_train_like_the_padded_arrays():
    images, y = batch()
    ragged = {
        "boxes": [row[labels >= 0].tolist() for row, labels in zip(y["boxes"], y["labels"])],
        "labels": [labels[labels >= 0].tolist() for labels in y["labels"]],
    }
    detector = ObjectDetector(tiny_config())
    detector.compile()
    padded = detector.evaluate(images, y, verbose=0, return_dict=True)
    listed = detector.evaluate(images, ragged, verbose=0, return_dict=True)
    assert listed == pytest.approx(padded, rel=1e-6)


def test_training_augmentation_is_the_command_lines(tmp_path):
    detector = ObjectDetector(tiny_config(), bounding_box_format="rel_xyxy")
    augmentation = detector.augmentation(seed=3)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    boxes_px = np.array([[10, 20, 60, 80], [70, 5, 118, 40]], np.float32)
    relative = boxes_px / [120, 90, 120, 90]
    y = {"boxes": np.concatenate([relative, [[-1] * 4]]).astype(np.float32), "labels": np.array([0, 2, -1])}
    seed = tf.constant([3, 11], tf.int64)
    pixels, out = augmentation(image, y, seed)
    data = detector.config.data
    expected_image, expected_boxes, expected_classes = augment.train_transform(
        image,
        boxes_px,
        np.array([0, 2]),
        seed,
        input_size=(64, 64),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        scale_range=tuple(data.random_scale),
        random_crop=data.random_crop,
        flip=data.flip,
        jitter=data.color_jitter,
        light=data.lighting,
    )
    np.testing.assert_allclose(pixels.numpy(), expected_image.numpy() * 255.0, atol=1e-3)
    count = len(expected_classes)
    assert out["boxes"].shape == (6, 4) and np.all(out["labels"].numpy()[count:] == -1)
    np.testing.assert_allclose(out["boxes"].numpy()[:count] * 64.0, expected_boxes.numpy(), atol=1e-4)
    np.testing.assert_array_equal(out["labels"].numpy()[:count], expected_classes.numpy())

    samples = tf.data.Dataset.from_tensors((image, y)).repeat(4)
    first = [s[0].numpy() for s in augmentation.apply(samples)]
    second = [s[0].numpy() for s in augmentation.apply(samples)]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))  # a function of the position
    assert not np.array_equal(first[0], first[1])  # each sample draws its own
    detector.compile()
    history = detector.fit(augmentation.apply(samples).batch(2), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_fit_dataset_is_the_command_lines_training_stream(tmp_path):
    from cornernet_tf.tasks.data import fit_dataset, train_dataset

    config = tiny_config(
        extra=(
            f"data.shapes_dir={tmp_path / 'shapes'}",
            "data.shapes_train=8",
            "data.shapes_val=2",
            "data.shapes_image_size=64",
            "train.batch_size=4",
            "data.deterministic=true",
        )
    )
    detector = ObjectDetector(config, bounding_box_format="center_xywh")
    images, y = next(iter(fit_dataset(config, "center_xywh")))
    expected_images, expected_targets = next(iter(train_dataset(config)))
    np.testing.assert_allclose(detector.normalize(images).numpy(), expected_images.numpy(), atol=2e-5)
    boxes = keras.utils.bounding_boxes.convert_format(y["boxes"], "center_xywh", "xyxy").numpy()
    labels = y["labels"].numpy()
    counts = (labels >= 0).sum(axis=1)
    targets = build_batch_targets(boxes, labels, counts, **dataclasses.asdict(detector.target_spec))
    for key, value in targets.items():
        np.testing.assert_allclose(value.numpy(), expected_targets[key].numpy(), atol=1e-5, err_msg=key)
    np.testing.assert_array_equal(y["skipped"].numpy(), expected_targets["skipped"].numpy())


def test_the_network_must_belong_to_the_config():
    config = tiny_config()
    other = build_model(dataclasses.replace(config.model, num_classes=4))
    with pytest.raises(ValueError, match="not a network of this config"):
        ObjectDetector(config, network=other)
    assert ObjectDetector(config, network=build_model(config.model)).config.model.num_classes == 3


def test_a_preset_folder_is_written_whole(trained, tmp_path, monkeypatch):
    detector, _ = trained
    target = tmp_path / "preset"
    detector.save_to_preset(target)
    before = (target / PRESET_WEIGHTS).read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(keras.saving, "serialize_keras_object", broken)
    with pytest.raises(OSError, match="disk full"):
        detector.save_to_preset(target)
    assert is_preset(target) and (target / PRESET_WEIGHTS).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preset"]  # no temporary folder left
    assert json.loads((target / PRESET_CONFIG).read_text())["class_name"] == "ObjectDetector"


def test_keras_box_aware_layers_feed_fit():
    """The documented combination: Keras 3's Resizing with bounding_box_format brings images of
    another size, with their boxes, to the network's input."""
    detector = ObjectDetector(tiny_config(), bounding_box_format="xyxy")
    detector.compile()
    images, y = batch()
    large = np.kron(images, np.ones((1, 3, 3, 1), np.uint8))[:, :96, :96]  # 96 x 96: scale 1.5
    scaled = {"boxes": np.where(y["labels"][..., None] >= 0, y["boxes"] * 1.5, -1.0), "labels": y["labels"]}
    resize = keras.layers.Resizing(64, 64, bounding_box_format="xyxy")

    def to_input(image, target):
        out = resize({"images": tf.cast(image, tf.float32), "bounding_boxes": target})
        return out["images"], out["bounding_boxes"]

    dataset = tf.data.Dataset.from_tensor_slices((large, scaled)).batch(4).map(to_input)
    resized, target = next(iter(dataset))
    real = y["labels"] >= 0
    # Keras clips to the image edge (64), the detector then to the last pixel (63), as training does
    np.testing.assert_allclose(target["boxes"].numpy()[real], np.minimum(y["boxes"][real], 64), atol=1e-4)
    assert resized.shape == (4, 64, 64, 3)
    history = detector.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
