"""inference.py: ground-truth maps decode to the ground truth (the paper's error analysis),
flip and multi-scale test on a flip-equivariant stand-in model, tf.function with dynamic shapes."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from pycocotools.coco import COCO

from cornernet_tf.config import config_from_dict, load_config
from cornernet_tf.data import augment, image_info
from cornernet_tf.detection.inference import decode_to_image, detect, detect_multiscale
from cornernet_tf.detection.settings import DetectionConfig
from cornernet_tf.objective.targets import build_targets
from cornernet_tf.tasks.data import dataset_info, eval_dataset
from cornernet_tf.utils.coco_metrics import coco_metrics, detections_to_coco

PEAK_LOGIT = 12.0
SETTINGS = DetectionConfig(flip=False, k=20, num_dets=100, max_detections=20)

# Painted rectangles (x1, y1, x2, y2 image px, even coordinates), their class and id.
RECTANGLES = [((8, 10, 40, 30), 0), ((50, 44, 90, 100), 1), ((100, 8, 120, 60), 2), ((16, 70, 36, 120), 1)]
IMAGE_HW = (128, 136)
ID_MARGIN = 4


def painted_image() -> np.ndarray:
    """uint8 [H, W, 3]: channel 0 the rectangles' mask (255), 1 their id (1, 2, ...), 2 their class,
    ids and classes painted ID_MARGIN px beyond each rectangle so resampling never blurs them
    at a corner."""
    image = np.zeros((*IMAGE_HW, 3), np.uint8)
    for number, ((x1, y1, x2, y2), cls) in enumerate(RECTANGLES, start=1):
        image[y1 - ID_MARGIN : y2 + ID_MARGIN, x1 - ID_MARGIN : x2 + ID_MARGIN, 1:] = (number, cls)
        image[y1:y2, x1:x2, 0] = 255
    return image


def _shifted(mask: tf.Tensor, dy: int, dx: int) -> tf.Tensor:
    """mask [B, H, W] read at (y - dy, x - dx), 0 outside."""
    padded = tf.pad(mask, [[0, 0], [1, 1], [1, 1]])
    height, width = tf.shape(mask)[1], tf.shape(mask)[2]
    return padded[:, 1 - dy : 1 - dy + height, 1 - dx : 1 - dx + width]


def rectangle_model(images: tf.Tensor, training: bool = False) -> dict:
    """A flip-equivariant stand-in for CornerNet at stride 1 on `painted_image` inputs ([0, 1]):
    a top-left corner is a mask pixel with nothing left of or above it, a bottom-right one with
    nothing right of or below it (offset +1: box edges are pixel edges); tags are the painted ids."""
    values = images * 255.0
    mask = tf.cast(values[..., 0] > 127.5, tf.float32)
    inside = mask > 0

    def corner(dy: int, dx: int) -> tf.Tensor:
        return inside & (_shifted(mask, 0, dx) == 0) & (_shifted(mask, dy, 0) == 0)

    classes = tf.one_hot(tf.cast(tf.round(values[..., 2]), tf.int32), 3) > 0.5
    ids = tf.round(values[..., 1])
    outputs = {}
    for name, at in (("tl", corner(1, 1)), ("br", corner(-1, -1))):
        outputs[f"{name}_heatmap"] = tf.where(at[..., None] & classes, PEAK_LOGIT, -PEAK_LOGIT)
        outputs[f"{name}_embedding"] = tf.where(at, ids, 0.0)[..., None]
        outputs[f"{name}_offset"] = tf.fill(tf.concat([tf.shape(mask), [2]], 0), 0.0 if name == "tl" else 1.0)
    return outputs


def rectangle_boxes() -> np.ndarray:
    return np.array([box for box, _ in RECTANGLES], np.float32)


def padded_input(scale: float) -> tuple[tf.Tensor, tf.Tensor]:
    images, info = augment.eval_pad(tf.constant(painted_image()), size_divisor=32, scale=scale)
    return images[None], info[None]


def assert_boxes_among(boxes: np.ndarray, expected: np.ndarray, atol: float) -> None:
    """Every row of boxes [N, 4] is within atol of some row of expected [M, 4]."""
    distance = np.abs(boxes[:, None, :] - expected[None, :, :]).max(axis=-1)
    assert (distance.min(axis=1) <= atol).all(), f"boxes {boxes[distance.min(axis=1) > atol]} match no expected box"


# Settings ---------------------------------------------------------------------------------------


def test_settings_of_an_older_eval_section():
    """An older config's eval decoding keys become the detection settings the decoder gets."""
    settings = config_from_dict(
        {
            "eval": dict(
                top_k=20,
                nms_kernel=1,
                ae_threshold=1.0,
                num_dets=50,
                max_per_image=7,
                flip=True,
                soft_nms_sigma=0.3,
                score_threshold=0.0,
            )
        }
    ).detection
    assert settings == DetectionConfig(
        k=20,
        nms_kernel=1,
        ae_threshold=1.0,
        num_dets=50,
        flip=True,
        soft_nms_sigma=0.3,
        max_detections=7,
        score_threshold=0.001,
    )
    assert config_from_dict({"eval": {"score_threshold": 0.3}}).detection.score_threshold == 0.3
    assert config_from_dict({}).detection == DetectionConfig(flip=True)  # official values


# Ground-truth maps (the paper's error analysis) ---------------------------------------------------


@pytest.fixture(scope="module")
def shapes_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes") / "ds"
    return load_config("shapes_tiny", [f"data.shapes_dir={root}", "data.shapes_train=4", "data.shapes_val=6"])


def ground_truth_maps(boxes: tf.Tensor, classes: tf.Tensor, config) -> dict:
    """CornerNet outputs [H, W, .] that are the ground truth: heatmap logits of the training
    targets (peaks high), one distinct tag per object at its two corners, the exact offsets."""
    data = config.data
    height, width = config.model.output_size(data.input_size)
    targets = build_targets(
        boxes,
        classes,
        config.model.num_classes,
        data.input_size,
        (height, width),
        max_objects=data.max_objects,
    )
    count = int(tf.shape(boxes)[0])
    tags = 2.0 * tf.range(1, count + 1, dtype=tf.float32)  # pairs need |tl - br| <= 0.5
    outputs = {}
    for name in ("tl", "br"):
        heat = tf.clip_by_value(targets[f"{name}_heatmap"], 1e-4, 1 - 1e-4)
        logits = tf.where(targets[f"{name}_heatmap"] == 1.0, PEAK_LOGIT, tf.math.log(heat / (1 - heat)))
        cells = targets[f"{name}_indices"][:count, None]
        outputs[f"{name}_heatmap"] = logits
        outputs[f"{name}_embedding"] = tf.reshape(tf.scatter_nd(cells, tags, [height * width]), [height, width, 1])
        offsets = targets[f"{name}_offset"][:count]
        outputs[f"{name}_offset"] = tf.reshape(tf.scatter_nd(cells, offsets, [height * width, 2]), [height, width, 2])
    return outputs


def ground_truth_batch(config, maps_fn):
    """The first val batch (resize mode) with its ground truth: info, COCO truth, images, meta,
    image ids, per-image xyxy boxes in image pixels, and `maps_fn(boxes, classes, config)` maps
    stacked over the batch."""
    info = dataset_info(config, "val")
    truth = COCO(info.annotations)
    images, meta = next(iter(eval_dataset(config, "val", batch_size=6, mode="resize")))
    ids = meta["image_id"].numpy()
    expected, per_image = [], []
    for image_id, info_row in zip(ids, meta["image_info"]):
        annotations = truth.loadAnns(truth.getAnnIds(imgIds=[int(image_id)]))
        xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in annotations)], np.float32)
        classes = np.array([info.category_ids.index(a["category_id"]) for a in annotations], np.int32)
        expected.append(xyxy)
        per_image.append(maps_fn(image_info.image_to_input(xyxy, info_row), classes, config))
    maps = {key: tf.stack([m[key] for m in per_image]) for key in per_image[0]}
    return info, truth, images, meta, ids, expected, maps


def test_ground_truth_maps_decode_to_the_ground_truth(shapes_config):
    info, truth, images, meta, ids, expected, maps = ground_truth_batch(shapes_config, ground_truth_maps)
    settings = shapes_config.detection

    dets = {k: v.numpy() for k, v in detect(lambda x, training: maps, images, meta["image_info"], settings).items()}

    records = []
    for row, image_id in enumerate(ids):
        valid = dets["valid"][row]
        assert valid[: valid.sum()].all() and (dets["scores"][row][~valid] == 0).all()  # invalid rows last, score 0
        assert (np.diff(dets["scores"][row]) <= 0).all()
        count = len(expected[row])
        top = dets["boxes"][row][:count]  # the real objects score ~1, far above everything else
        assert_boxes_among(top, expected[row], atol=1e-3)
        assert len({tuple(np.round(b)) for b in top}) == len({tuple(b) for b in expected[row]})
        records += detections_to_coco(
            image_id,
            dets["boxes"][row][valid],
            dets["scores"][row][valid],
            dets["classes"][row][valid],
            info.category_ids,
        )
    metrics = coco_metrics(truth, records, image_ids=ids)
    assert metrics["AP"] >= 0.95, metrics


# Flip, multi-scale, tf.function -------------------------------------------------------------------


def test_the_stand_in_model_finds_the_rectangles():
    dets = detect(rectangle_model, *padded_input(1.0), SETTINGS)
    valid = dets["valid"].numpy()[0]
    assert valid.sum() == len(RECTANGLES)
    assert_boxes_among(dets["boxes"].numpy()[0][valid], rectangle_boxes(), atol=1e-4)
    assert sorted(dets["classes"].numpy()[0][valid]) == sorted(c for _, c in RECTANGLES)


def test_flip_gives_the_same_boxes_as_without_flip():
    inputs = padded_input(1.0)
    plain = detect(rectangle_model, *inputs, SETTINGS)
    flipped = detect(rectangle_model, *inputs, dataclasses.replace(SETTINGS, flip=True))
    count = len(RECTANGLES)
    # Each box is found twice; soft-NMS decays the copy by exp(-1 / sigma) and keeps it.
    assert flipped["valid"].numpy()[0].sum() == 2 * count
    np.testing.assert_allclose(flipped["boxes"].numpy()[0, :count], plain["boxes"].numpy()[0, :count], atol=1e-4)
    np.testing.assert_allclose(flipped["scores"].numpy()[0, :count], plain["scores"].numpy()[0, :count], rtol=1e-6)
    assert_boxes_among(flipped["boxes"].numpy()[0, count : 2 * count], rectangle_boxes(), atol=1e-4)
    np.testing.assert_allclose(
        flipped["scores"].numpy()[0, count : 2 * count],
        plain["scores"].numpy()[0, :count] * np.exp(-1 / 0.5),
        rtol=1e-5,
    )


def test_multiscale_maps_every_scale_to_image_pixels():
    scales = (0.5, 1.0, 1.5)
    inputs = [padded_input(s) for s in scales]
    for (images, info), scale in zip(inputs, scales):
        assert images.shape[1] != IMAGE_HW[0] or scale == 1.0
        part = decode_to_image(rectangle_model, images, info, SETTINGS)
        found = part["valid"].numpy()[0] & (part["scores"].numpy()[0] > 0.5)
        assert found.sum() == len(RECTANGLES), scale
        assert_boxes_among(part["boxes"].numpy()[0][found], rectangle_boxes(), atol=1.0 / scale)
    merged = detect_multiscale(rectangle_model, inputs, SETTINGS)
    valid = merged["valid"].numpy()[0]
    assert valid.sum() == len(RECTANGLES) * len(scales)  # copies decay but stay above 0.001
    assert_boxes_among(merged["boxes"].numpy()[0][valid], rectangle_boxes(), atol=1.0)


def test_detect_in_tf_function_with_dynamic_batch_and_size():
    spec = [tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([None, 6], tf.float32)]
    settings = dataclasses.replace(SETTINGS, flip=True)
    graph = tf.function(lambda images, info: detect(rectangle_model, images, info, settings), input_signature=spec)
    for scale, batch in ((1.0, 1), (0.5, 3)):
        images, info = padded_input(scale)
        images, info = tf.tile(images, [batch, 1, 1, 1]), tf.tile(info, [batch, 1])
        got, want = graph(images, info), detect(rectangle_model, images, info, settings)
        assert got["boxes"].shape == (batch, SETTINGS.max_detections, 4) and got["classes"].dtype == tf.int32
        for key in want:
            np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), rtol=1e-6, atol=1e-5)
    assert graph.experimental_get_tracing_count() == 1
