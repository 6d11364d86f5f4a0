"""detector.py: `Detector` from a SavedModel and from weights against the SavedModel's own
signatures, its filters, inputs, result objects and errors."""

from __future__ import annotations

import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import cornernet_tf
from cornernet_tf.api.detector import Detector, ImageDetections, load_image
from cornernet_tf.config import load_config
from cornernet_tf.tasks.export import export_model
from cornernet_tf.tasks.model import build_model
from cornernet_tf.utils.visualize import class_color
from tests.data.conftest import with_exif_orientation

# A small, fast network; ae_threshold 1000 pairs corners whatever their embeddings, so a random
# model detects plenty.
OVERRIDES = [
    "detection.ae_threshold=1000",
    "detection.max_detections=12",
    "data.input_size=[64, 64]",
    "model.depth=2",
    "model.dims=[16, 16, 16]",
    "model.modules=[1, 1, 1]",
    "model.pre_dims=[8, 16]",
    "model.cnv_dim=16",
    "model.pool_dim=16",
]


def pixels(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random RGB image (noise blurred by upsampling), uint8 [H, W, 3]."""
    coarse = np.random.default_rng(seed).uniform(0, 255, (height // 8 + 1, width // 8 + 1, 3))
    return tf.cast(tf.image.resize(coarse, (height, width)), tf.uint8).numpy()


def tiny_model(tmp_path_factory) -> tuple[pathlib.Path, pathlib.Path]:
    """(weights, export version folder) of one random network, made once per test session (the
    test modules of the detector and the predict command share them)."""
    root = tmp_path_factory.getbasetemp() / "tiny_detector_model"
    weights, base = root / "tiny.weights.h5", root / "exports"
    if not weights.is_file():
        config = load_config("shapes_tiny", OVERRIDES)
        keras.utils.set_random_seed(5)
        model = build_model(config.model, corner_pool="vectorized")
        root.mkdir(parents=True, exist_ok=True)
        model.save_weights(str(weights))
        export_model(model, config, base)
    return weights, base / "1"


def signature_detections(outputs: dict, height: int, width: int) -> list[dict[str, np.ndarray]]:
    """The SavedModel's outputs per image in pixels: boxes x1, y1, x2, y2, scores, 0-based classes."""
    results = []
    for row, count in enumerate(outputs["num_detections"].numpy().astype(int)):
        y1, x1, y2, x2 = (outputs["detection_boxes"][row, :count].numpy() * [height, width, height, width]).T
        results.append(
            {
                "boxes": np.stack([x1, y1, x2, y2], -1),
                "scores": outputs["detection_scores"][row, :count],
                "classes": outputs["detection_classes"][row, :count].numpy().astype(int) - 1,
            }
        )
    return results


def assert_same(found: ImageDetections, want: dict) -> None:
    assert len(found) == len(want["scores"])
    np.testing.assert_array_equal(found.class_ids, want["classes"])
    np.testing.assert_allclose(found.scores, want["scores"], atol=1e-4)
    np.testing.assert_allclose(found.boxes, want["boxes"], atol=1e-4)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return tiny_model(tmp_path_factory)


@pytest.fixture(scope="module")
def from_export(model_files):
    return Detector.from_export(model_files[1].parent, batch_size=2)  # the base path: its highest version


@pytest.fixture(scope="module")
def from_weights(model_files):
    return Detector.from_weights(model_files[0], "shapes_tiny", overrides=OVERRIDES, batch_size=3)


@pytest.fixture(scope="module")
def saved_model(model_files):
    return tf.saved_model.load(str(model_files[1]))


IMAGES = [pixels(48, 72, 0), pixels(48, 72, 1), pixels(48, 72, 2), pixels(40, 40, 3)]


def test_from_export_returns_what_the_saved_model_returns(from_export, saved_model):
    results = from_export.predict(IMAGES)  # a run of three 48 x 72 images (batches of 2), then a 40 x 40 one
    assert [r.image_size for r in results] == [(48, 72)] * 3 + [(40, 40)]
    want = signature_detections(saved_model.signatures["serving_tensor"](images=np.stack(IMAGES[:3])), 48, 72)
    want += signature_detections(saved_model.signatures["serving_tensor"](images=IMAGES[3][None]), 40, 40)
    assert min(len(w["scores"]) for w in want) >= 5, "the comparison needs detections"
    for found, expected in zip(results, want):
        assert_same(found, expected)
        assert found.class_names == [["rectangle", "ellipse", "triangle"][c] for c in expected["classes"]]


def test_a_path_gives_what_serving_default_gives_for_its_bytes(from_export, saved_model, tmp_path):
    path = tmp_path / "picture.png"
    path.write_bytes(tf.io.encode_png(IMAGES[3]).numpy())
    (found,) = from_export.predict(path)
    outputs = saved_model.signatures["serving_default"](images=tf.constant([path.read_bytes()]))
    assert_same(found, signature_detections(outputs, 40, 40)[0])
    np.testing.assert_array_equal(load_image(path), IMAGES[3])


def test_from_weights_gives_the_boxes_of_the_export(from_export, from_weights):
    batch = np.stack(IMAGES[:3])  # a [B, H, W, 3] batch counts as B images
    for got, want in zip(from_weights.predict([batch, IMAGES[3]]), from_export.predict(IMAGES)):
        assert_same(got, {"boxes": want.boxes, "scores": want.scores, "classes": want.class_ids})
    assert from_weights.description.startswith("weights ") and from_weights.config.detection.max_detections == 12


def test_score_threshold_and_max_detections_keep_the_best(from_export):
    everything = from_export.predict(IMAGES)
    threshold = float(np.median(everything[0].scores))
    filtered = Detector(
        from_export.signature, from_export.class_names, score_threshold=threshold, max_detections=3
    ).predict(IMAGES)
    for full, part in zip(everything, filtered):
        keep = full.scores >= threshold
        count = min(int(keep.sum()), 3)
        assert len(part) == count
        np.testing.assert_array_equal(part.boxes, full.boxes[keep][:count])


def test_to_coco_and_to_json(from_export):
    found = from_export.predict(IMAGES[0])[0]
    records = found.to_coco(7, category_ids=[10, 20, 30])
    assert len(records) == len(found)
    for record, box, score, cls in zip(records, found.boxes, found.scores, found.class_ids):
        x1, y1, x2, y2 = box
        assert record["image_id"] == 7 and record["category_id"] == [10, 20, 30][cls]
        np.testing.assert_allclose(record["bbox"], [x1, y1, x2 - x1, y2 - y1], atol=0.01)
        assert record["score"] == pytest.approx(score, abs=1e-5)
    assert [r["category_id"] for r in found.to_coco(1)] == list(found.class_ids + 1)
    as_json = found.to_json()
    assert (as_json["height"], as_json["width"]) == (48, 72)
    assert [d["class_name"] for d in as_json["detections"]] == found.class_names
    np.testing.assert_allclose([d["box"] for d in as_json["detections"]], found.boxes, atol=1e-6)


def test_draw_puts_boxes_and_a_legend_on_a_copy():
    found = ImageDetections(
        np.array([[10.0, 20.0, 60.0, 70.0]], np.float32),
        np.array([0.9], np.float32),
        np.array([1], np.int32),
        ("cat", "dog"),
        (100, 160),
    )
    image = np.full((100, 160, 3), 50, np.uint8)
    picture = found.draw(image)
    assert (image == 50).all() and picture.shape == image.shape
    assert tuple(picture[45, 10]) == class_color(1) and tuple(picture[45, 60]) == class_color(1)
    legend = picture[4:24, 100:156]
    assert (legend == class_color(1)).all(axis=-1).any(), "the legend shows the class colour"
    assert (legend.sum(axis=-1) > 600).any(), "and its name in white"
    with pytest.raises(ValueError, match=r"\(100, 160\)"):
        found.draw(np.zeros((10, 10, 3), np.uint8))


def test_bad_inputs_are_clear_errors(from_export, tmp_path):
    with pytest.raises(ValueError, match=r"uint8 RGB \[H, W, 3\].*float32"):
        from_export.predict(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"uint8 RGB"):
        from_export.predict(np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(OSError, match="missing.png"):
        from_export.predict(tmp_path / "missing.png")
    (tmp_path / "cut.png").write_bytes(tf.io.encode_png(IMAGES[0]).numpy()[:200])
    with pytest.raises(ValueError, match="cut.png"):
        from_export.predict(str(tmp_path / "cut.png"))
    with pytest.raises(FileNotFoundError, match="no saved_model.pb"):
        Detector.from_export(tmp_path)
    with pytest.raises(ValueError, match="no GPU:7"):
        Detector(lambda images: {}, [], device="gpu:7")
    assert from_export.predict([]) == []


def test_the_package_exports_detector_lazily():
    assert cornernet_tf.Detector is Detector and cornernet_tf.ImageDetections is ImageDetections


def test_a_jpeg_is_turned_by_its_exif_orientation(from_export, tmp_path):
    stored = pixels(48, 72, 4)
    path = tmp_path / "turned.jpg"
    path.write_bytes(with_exif_orientation(tf.io.encode_jpeg(stored, quality=100).numpy(), 6))  # turn 90° clockwise
    decoded = tf.io.decode_jpeg(tf.io.encode_jpeg(stored, quality=100)).numpy()
    shown = np.ascontiguousarray(np.rot90(decoded, k=-1))  # what cv2.imread shows
    np.testing.assert_array_equal(load_image(path), shown)
    (found,) = from_export.predict(path)
    (want,) = from_export.predict(shown)
    assert found.image_size == (72, 48) and len(found) >= 5
    np.testing.assert_array_equal(found.boxes, want.boxes)


def test_a_device_scope_gives_the_same_detections(from_export):
    on_cpu = Detector(from_export.signature, from_export.class_names, device="cpu").predict(IMAGES[0])
    np.testing.assert_array_equal(on_cpu[0].boxes, from_export.predict(IMAGES[0])[0].boxes)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_served_bytes_give_the_boxes_of_the_path_in_every_orientation(
    from_export, saved_model, tmp_path, orientation
):
    """serving_default turns a photo by its EXIF orientation inside the graph, as Detector on a
    path (and training, evaluate) does: same boxes, normalized to the displayed image."""
    data = with_exif_orientation(tf.io.encode_jpeg(pixels(48, 72, 6), quality=100).numpy(), orientation)
    path = tmp_path / f"photo_{orientation}.jpg"
    path.write_bytes(data)
    (found,) = from_export.predict(path)
    height, width = found.image_size
    assert (height, width) == ((72, 48) if orientation >= 5 else (48, 72)) and len(found) >= 5
    (served,) = signature_detections(
        saved_model.signatures["serving_default"](images=tf.constant([data])), height, width
    )
    assert_same(found, served)
