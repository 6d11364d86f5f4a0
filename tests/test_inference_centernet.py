"""inference.py on CenterNet outputs: ground-truth maps decode to the ground truth, the center
check drops boxes without a center in their central region and rescores the others, flip, the
5-pixel border rule, scale-1 centers and the area threshold in image pixels."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.config import config_from_dict, load_config
from cornernet_tf.data import augment, image_info
from cornernet_tf.detection.inference import (
    CENTERS_KEY,
    detect,
    rescore_with_centers,
    unit_scale_centers,
)
from cornernet_tf.detection.settings import DetectionConfig
from cornernet_tf.objective.targets import build_targets
from cornernet_tf.utils.coco_metrics import coco_metrics, detections_to_coco
from tests.test_inference import (
    ID_MARGIN,
    IMAGE_HW,
    PEAK_LOGIT,
    SETTINGS,
    assert_boxes_among,
    ground_truth_batch,
    ground_truth_maps,
    rectangle_model,
)

CENTER_LOGIT = 0.0  # center score 0.5
MARKER = 200.0  # channel-0 value of a center pixel (inside a rectangle's mask, > 127.5)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + np.exp(-x))


RESCORED = (2 * sigmoid(PEAK_LOGIT) + sigmoid(CENTER_LOGIT)) / 3


def centernet_model(images: tf.Tensor, training: bool = False) -> dict:
    """`rectangle_model` plus flip-equivariant center maps: a peak of the rectangle's class at
    every MARKER pixel, offset (0.5, 0.5), so a marker at pixel (x, y) is the center (x + 0.5, y + 0.5)."""
    outputs = rectangle_model(images, training)
    values = images * 255.0
    marker = tf.abs(values[..., 0] - MARKER) < 10.0
    classes = tf.one_hot(tf.cast(tf.round(values[..., 2]), tf.int32), 3) > 0.5
    outputs["ct_heatmap"] = tf.where(marker[..., None] & classes, CENTER_LOGIT, -PEAK_LOGIT)
    outputs["ct_offset"] = tf.fill(tf.concat([tf.shape(marker), [2]], 0), 0.5)
    return outputs


def painted_input(rectangles: list[tuple]) -> tuple[tf.Tensor, tf.Tensor]:
    """The padded input (scale 1) of an empty IMAGE_HW image with `rectangles` painted as
    `rectangle_model` reads them; each is (box x1, y1, x2, y2 in image px, class, center pixel
    (x, y) in image px or None). Boxes may reach into the zero border around the image."""
    images, info = augment.eval_pad(tf.zeros((*IMAGE_HW, 3), tf.uint8), size_divisor=32)
    canvas = images.numpy()
    dy, dx = int(info[image_info.OFFSET_Y]), int(info[image_info.OFFSET_X])
    for number, (box, cls, center) in enumerate(rectangles, start=1):
        x1, y1, x2, y2 = box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy
        canvas[y1 - ID_MARGIN : y2 + ID_MARGIN, x1 - ID_MARGIN : x2 + ID_MARGIN, 1:] = (number / 255, cls / 255)
        canvas[y1:y2, x1:x2, 0] = 1.0
        if center is not None:
            canvas[center[1] + dy, center[0] + dx, 0] = MARKER / 255
    return tf.constant(canvas[None]), info[None]


# Boxes, classes, center markers: 0 and 3 have a center in their central third; 1 has none;
# 2 has one inside the box but outside its central third; 3's center is not 1's (same class).
RECTANGLES = [
    ((8, 10, 40, 30), 0, (24, 20)),
    ((50, 44, 90, 100), 1, None),
    ((100, 8, 120, 60), 2, (102, 12)),
    ((16, 70, 36, 120), 1, (26, 95)),
]
KEPT = np.array([RECTANGLES[0][0], RECTANGLES[3][0]], np.float32)


def valid_rows(dets: dict, row: int = 0) -> dict[str, np.ndarray]:
    valid = dets["valid"].numpy()[row]
    return {key: dets[key].numpy()[row][valid] for key in ("boxes", "scores", "classes")}


def test_settings_of_an_older_eval_section_map_the_area_threshold():
    assert config_from_dict({"eval": {"center_area_threshold": 100.0}}).detection.center_area_threshold == 100.0
    assert DetectionConfig().center_area_threshold == 22500.0


# The central-region check ----------------------------------------------------------------------


def test_boxes_without_a_center_in_their_central_region_are_dropped_others_rescored():
    found = valid_rows(detect(centernet_model, *painted_input(RECTANGLES), SETTINGS))
    assert len(found["boxes"]) == len(KEPT)
    order = np.argsort(found["boxes"][:, 1])
    np.testing.assert_allclose(found["boxes"][order], KEPT, atol=1e-4)
    np.testing.assert_array_equal(found["classes"][order], [0, 1])
    np.testing.assert_allclose(found["scores"], RESCORED, rtol=1e-5)


def test_without_center_maps_every_box_stays():
    assert len(valid_rows(detect(rectangle_model, *painted_input(RECTANGLES), SETTINGS))["boxes"]) == len(RECTANGLES)


def test_flip_gives_the_same_boxes_as_without_flip():
    inputs = painted_input(RECTANGLES)
    plain = valid_rows(detect(centernet_model, *inputs, SETTINGS))
    flipped = valid_rows(detect(centernet_model, *inputs, dataclasses.replace(SETTINGS, flip=True)))
    count = len(KEPT)
    # Each box and center is found twice; the copy's score decays by exp(-1 / sigma) in soft-NMS.
    assert len(flipped["boxes"]) == 2 * count
    np.testing.assert_allclose(flipped["boxes"][:count], plain["boxes"], atol=1e-4)
    np.testing.assert_allclose(flipped["boxes"][count:], plain["boxes"], atol=1e-4)
    np.testing.assert_allclose(flipped["scores"][:count], plain["scores"], rtol=1e-6)
    np.testing.assert_allclose(flipped["scores"][count:], plain["scores"] * np.exp(-1 / 0.5), rtol=1e-5)


def test_boxes_reaching_5_pixels_beyond_the_image_are_dropped():
    width = IMAGE_HW[1]
    beyond, inside = (100, 20, width + 5, 50), (100, 70, width + 4, 100)
    # centers in the central third of the clipped boxes, as the original checks after clipping
    found = valid_rows(
        detect(centernet_model, *painted_input([(beyond, 0, (118, 35)), (inside, 0, (118, 85))]), SETTINGS)
    )
    np.testing.assert_allclose(found["boxes"], [[100, 70, width, 100]], atol=1e-4)  # clipped


def test_in_tf_function_with_dynamic_batch_and_size():
    spec = [tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([None, 6], tf.float32)]
    settings = dataclasses.replace(SETTINGS, flip=True)
    graph = tf.function(lambda images, info: detect(centernet_model, images, info, settings), input_signature=spec)
    images, info = painted_input(RECTANGLES)
    for batch in (1, 2):
        tiled = tf.tile(images, [batch, 1, 1, 1]), tf.tile(info, [batch, 1])
        got, want = graph(*tiled), detect(centernet_model, *tiled, settings)
        for key in want:
            np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), rtol=1e-6, atol=1e-5)
    assert graph.experimental_get_tracing_count() == 1


# Multi-scale rules ------------------------------------------------------------------------------


def info_at(scale: float, batch: int = 2) -> tf.Tensor:
    return tf.constant([[scale, scale, 0.0, 0.0, 100.0, 100.0]] * batch)


def test_only_the_centers_of_the_scale_nearest_1_are_used():
    scales = (1.5, 1.0, 0.5)
    centers = [
        {"centers": tf.fill([2, 3, 2], s), "scores": tf.fill([2, 3], s), "classes": tf.fill([2, 3], int(10 * s))}
        for s in scales
    ]
    picked = unit_scale_centers(centers, [info_at(s) for s in scales])
    for key in centers[1]:
        np.testing.assert_array_equal(picked[key].numpy(), centers[1][key].numpy())
    picked = unit_scale_centers(centers[:1], [tf.constant([[0.4, 0.5, 0, 0, 100, 100]] * 2)])  # one scale: it
    np.testing.assert_array_equal(picked["scores"].numpy(), centers[0]["scores"].numpy())


def test_the_area_threshold_applies_to_image_pixels():
    """A 100 x 100 image-px box (40000 input px at scale 2) with a center inside its central
    third but outside its central fifth: kept with a threshold of 20000, dropped with 5000."""
    part = {
        "boxes": tf.constant([[[0.0, 0.0, 100.0, 100.0]]]),
        "scores": tf.constant([[0.9]]),
        "classes": tf.constant([[0]]),
        "valid": tf.constant([[True]]),
        CENTERS_KEY: {
            "centers": tf.constant([[[62.0, 50.0]]]),
            "scores": tf.constant([[0.6]]),
            "classes": tf.constant([[0]]),
        },
    }
    info = [info_at(2.0, batch=1)]
    kept = rescore_with_centers([part], info, DetectionConfig(flip=False, center_area_threshold=20000.0))
    assert kept["valid"].numpy()[0, 0] and kept["scores"].numpy()[0, 0] == pytest.approx((2 * 0.9 + 0.6) / 3)
    dropped = rescore_with_centers([part], info, DetectionConfig(flip=False, center_area_threshold=5000.0))
    assert not dropped["valid"].numpy()[0, 0]


# Ground-truth maps (the paper's error analysis) ---------------------------------------------------


@pytest.fixture(scope="module")
def centernet_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes") / "ds"
    return load_config("centernet_shapes_tiny", [f"data.shapes_dir={root}", "data.shapes_train=4", "data.shapes_val=6"])


def ground_truth_centernet_maps(boxes: tf.Tensor, classes: tf.Tensor, config) -> dict:
    """CenterNet outputs [H, W, .] that are the ground truth: `ground_truth_maps`' corners plus
    the center heatmap logits of the training targets (peaks high) and the exact center offsets."""
    data = config.data
    height, width = config.model.output_size(data.input_size)
    targets = build_targets(
        boxes,
        classes,
        config.model.num_classes,
        data.input_size,
        (height, width),
        max_objects=data.max_objects,
        gaussian_iou=data.gaussian_iou,
        with_centers=True,
        radius_formula="centernet",
    )
    heat = tf.clip_by_value(targets["ct_heatmap"], 1e-4, 1 - 1e-4)
    cells = targets["ct_indices"][: tf.shape(boxes)[0], None]
    offsets = targets["ct_offset"][: tf.shape(boxes)[0]]
    return {
        **ground_truth_maps(boxes, classes, config),
        "ct_heatmap": tf.where(targets["ct_heatmap"] == 1.0, PEAK_LOGIT, tf.math.log(heat / (1 - heat))),
        "ct_offset": tf.reshape(tf.scatter_nd(cells, offsets, [height * width, 2]), [height, width, 2]),
    }


def test_ground_truth_maps_decode_to_the_ground_truth(centernet_config):
    info, truth, images, meta, ids, expected, maps = ground_truth_batch(centernet_config, ground_truth_centernet_maps)
    settings = centernet_config.detection

    dets = detect(lambda x, training: maps, images, meta["image_info"], settings)

    records = []
    for row, image_id in enumerate(ids):
        found = valid_rows(dets, row)
        assert_boxes_among(expected[row], found["boxes"], atol=1e-3)  # the center check drops no object
        records += detections_to_coco(image_id, found["boxes"], found["scores"], found["classes"], info.category_ids)
    metrics = coco_metrics(truth, records, image_ids=ids)
    assert metrics["AP"] >= 0.95, metrics
