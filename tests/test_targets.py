"""Targets: official radius table and draw_gaussian cases, official kp_detection targets, a NumPy
transliteration of the original loop (CornerNet and CenterNet), properties, graph/XLA use."""

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.objective.targets import (
    build_batch_targets,
    build_targets,
    centernet_gaussian_radius,
    draw_gaussian,
    gaussian_radius,
)
from tests.conftest import reference_path

RADIUS_FNS = {"cornernet": gaussian_radius, "centernet": centernet_gaussian_radius}


@pytest.fixture(scope="module")
def table():
    return json.loads(reference_path("targets.json").read_text())


@pytest.fixture(scope="module")
def official():
    with np.load(reference_path("targets.npz")) as data:
        return {key: data[key] for key in data.files}


@pytest.mark.parametrize("formula", ["cornernet", "centernet"])
@pytest.mark.parametrize("min_overlap", [0.3, 0.7])
def test_radius_table(table, formula, min_overlap):
    rows = table["radius_table"]
    prefix = "" if formula == "cornernet" else "centernet_"
    h = np.array([row["h"] for row in rows])
    w = np.array([row["w"] for row in rows])
    radius = RADIUS_FNS[formula](h, w, min_overlap).numpy()
    assert radius.dtype == np.float64
    np.testing.assert_allclose(radius, [row[f"{prefix}radius_{min_overlap}"] for row in rows], rtol=0, atol=1e-9)
    int_radius = tf.maximum(tf.cast(radius, tf.int32), 0).numpy()
    np.testing.assert_array_equal(int_radius, [row[f"{prefix}int_radius_{min_overlap}"] for row in rows])


@pytest.mark.parametrize(
    "key, sigma_divisor", [("heatmap_float32", 6.0), ("centernet_center_heatmap_delte5_float32", 5.0)]
)
@pytest.mark.parametrize("case", range(4))
def test_draw_gaussian_cases_exact(table, case, key, sigma_divisor):
    entry = table["draw_gaussian_cases"][case]
    heatmap = tf.zeros([16, 16], tf.float32)
    for x, y, r in entry["draws"]:
        heatmap = draw_gaussian(heatmap, [x, y], r, sigma_divisor)
    np.testing.assert_array_equal(heatmap.numpy(), np.array(entry[key], np.float32))


@pytest.mark.parametrize("image", [0, 1])
def test_official_kp_detection_targets_exact(official, image):
    config = json.loads(str(official["config_json"]))
    count = official["dets_input_coords_count"][image]
    dets = official["dets_input_coords"][image, :count]
    out = build_targets(
        dets[:, :4],
        dets[:, 4].astype(np.int32) - 1,
        config["categories"],
        config["input_size"],
        config["output_size"],
        max_objects=128,
        gaussian_iou=config["gaussian_iou"],
    )
    np.testing.assert_array_equal(out["tl_heatmap"].numpy(), official["tl_heatmaps"][image].transpose(1, 2, 0))
    np.testing.assert_array_equal(out["br_heatmap"].numpy(), official["br_heatmaps"][image].transpose(1, 2, 0))
    np.testing.assert_array_equal(out["tl_indices"].numpy(), official["tl_tags"][image])
    np.testing.assert_array_equal(out["br_indices"].numpy(), official["br_tags"][image])
    np.testing.assert_array_equal(out["tl_offset"].numpy(), official["tl_regrs"][image])
    np.testing.assert_array_equal(out["br_offset"].numpy(), official["br_regrs"][image])
    np.testing.assert_array_equal(out["mask"].numpy(), official["tag_masks"][image])
    assert out["tl_indices"].dtype == tf.int32 and out["mask"].dtype == tf.float32


# ---- an independent NumPy path: the original's per-box loop, transliterated ----


def numpy_radius(height: int, width: int, min_overlap: float, formula: str) -> float:
    """sample/utils.py gaussian_radius (CornerNet divides by 2a; CenterNet adds and halves)."""
    ov = min_overlap
    a = (1, 4, 4 * ov)
    b = (height + width, 2 * (height + width), -2 * ov * (height + width))
    c = (width * height * (1 - ov) / (1 + ov), (1 - ov) * width * height, (ov - 1) * width * height)
    roots = []
    for i in range(3):
        sq = np.sqrt(b[i] ** 2 - 4 * a[i] * c[i])
        if formula == "centernet":
            roots.append((b[i] + sq) / 2)
        else:
            roots.append(((b[i] + sq) if i == 2 else (b[i] - sq)) / (2 * a[i]))
    return min(roots)


def numpy_draw(heatmap: np.ndarray, center: tuple[int, int], radius: int, delte: float) -> None:
    diameter = 2 * radius + 1
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    sigma = diameter / delte
    gaussian = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    gaussian[gaussian < np.finfo(gaussian.dtype).eps * gaussian.max()] = 0
    cx, cy = center
    height, width = heatmap.shape
    left, right = min(cx, radius), min(width - cx, radius + 1)
    top, bottom = min(cy, radius), min(height - cy, radius + 1)
    window = heatmap[cy - top : cy + bottom, cx - left : cx + right]
    np.maximum(window, gaussian[radius - top : radius + bottom, radius - left : radius + right], out=window)


def numpy_targets(boxes, classes, num_classes, input_size, output_size, max_objects, iou, formula):
    """sample/coco.py kp_detection's target loop (CenterNet's, with centers), one image, NHWC."""
    out_h, out_w = output_size
    ratio = np.float32(out_w / input_size[1]), np.float32(out_h / input_size[0])
    heat = {k: np.zeros((num_classes, out_h, out_w), np.float32) for k in ("tl", "br", "ct")}
    inds = {k: np.zeros(max_objects, np.int64) for k in heat}
    regr = {k: np.zeros((max_objects, 2), np.float32) for k in heat}
    for i, ((x1, y1, x2, y2), cls) in enumerate(zip(boxes.astype(np.float32), classes)):
        radius = numpy_radius(math.ceil((y2 - y1) * ratio[1]), math.ceil((x2 - x1) * ratio[0]), iou, formula)
        radius = max(0, int(radius))
        points = {"tl": (x1, y1), "br": (x2, y2), "ct": ((x2 + x1) / np.float32(2), (y2 + y1) / np.float32(2))}
        for key, (px, py) in points.items():
            fx, fy = px * ratio[0], py * ratio[1]
            numpy_draw(heat[key][cls], (int(fx), int(fy)), radius, 5.0 if key == "ct" else 6.0)
            regr[key][i] = [fx - int(fx), fy - int(fy)]
            inds[key][i] = int(fy) * out_w + int(fx)
    mask = (np.arange(max_objects) < len(boxes)).astype(np.float32)
    return {k: h.transpose(1, 2, 0) for k, h in heat.items()}, inds, regr, mask


def random_boxes(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    """Boxes in [0, size - 1] with positive width and height, large ones included."""
    corners = rng.uniform(0, size - 1, (count, 2, 2)).astype(np.float32)
    lo, hi = corners.min(axis=1), corners.max(axis=1)
    hi = np.maximum(hi, np.minimum(lo + 1.5, size - 1))
    return np.concatenate([lo, hi], axis=1)


@pytest.mark.parametrize("formula, iou", [("cornernet", 0.3), ("centernet", 0.7)])
def test_matches_numpy_transliteration(formula, iou):
    rng = np.random.default_rng(7)
    boxes = random_boxes(rng, 12, 95)
    boxes[0] = [0, 0, 95, 95]  # whole image: bumps clipped on every side
    classes = rng.integers(0, 3, 12).astype(np.int32)
    heat, inds, regr, mask = numpy_targets(boxes, classes, 3, (95, 95), (24, 24), 16, iou, formula)
    out = build_targets(
        boxes,
        classes,
        3,
        (95, 95),
        (24, 24),
        max_objects=16,
        gaussian_iou=iou,
        with_centers=True,
        radius_formula=formula,
    )
    for key in ("tl", "br", "ct"):
        np.testing.assert_array_equal(out[f"{key}_heatmap"].numpy(), heat[key])
        np.testing.assert_array_equal(out[f"{key}_indices"].numpy(), inds[key])
        np.testing.assert_array_equal(out[f"{key}_offset"].numpy(), regr[key])
    np.testing.assert_array_equal(out["mask"].numpy(), mask)


def test_each_box_peaks_at_its_corner_cells():
    rng = np.random.default_rng(1)
    boxes = random_boxes(rng, 20, 127)
    classes = rng.integers(0, 4, 20).astype(np.int32)
    out = build_targets(boxes, classes, 4, (127, 127), (32, 32), max_objects=32, with_centers=True)
    for key in ("tl", "br", "ct"):
        heatmap = out[f"{key}_heatmap"].numpy()
        assert heatmap.shape == (32, 32, 4) and heatmap.min() >= 0 and heatmap.max() == 1.0
        cells = out[f"{key}_indices"].numpy()[:20]
        np.testing.assert_array_equal(heatmap.reshape(-1, 4)[cells, classes], 1.0)
        offsets = out[f"{key}_offset"].numpy()[:20]
        assert offsets.min() >= 0 and offsets.max() < 1
    ys, xs = np.divmod(out["tl_indices"].numpy()[:20], 32)
    np.testing.assert_array_equal(xs, (boxes[:, 0] * np.float32(32 / 127)).astype(int))
    np.testing.assert_array_equal(ys, (boxes[:, 1] * np.float32(32 / 127)).astype(int))


def test_no_objects():
    boxes, classes = tf.zeros([0, 4]), tf.zeros([0], tf.int32)
    out = build_targets(boxes, classes, 3, (64, 64), (16, 16), max_objects=8, with_centers=True)
    for key in ("tl", "br", "ct"):
        np.testing.assert_array_equal(out[f"{key}_heatmap"].numpy(), np.zeros((16, 16, 3)))
        np.testing.assert_array_equal(out[f"{key}_indices"].numpy(), np.zeros(8))
        np.testing.assert_array_equal(out[f"{key}_offset"].numpy(), np.zeros((8, 2)))
    np.testing.assert_array_equal(out["mask"].numpy(), np.zeros(8))


def test_objects_past_max_objects_are_dropped():
    boxes = random_boxes(np.random.default_rng(2), 6, 63)
    classes = np.array([0, 1, 2, 0, 1, 2], np.int32)
    kept = build_targets(boxes[:4], classes[:4], 3, (63, 63), (16, 16), max_objects=4)
    out = build_targets(boxes, classes, 3, (63, 63), (16, 16), max_objects=4)
    for key, value in kept.items():
        np.testing.assert_array_equal(out[key].numpy(), value.numpy())
    assert out["mask"].numpy().sum() == 4


def test_unknown_radius_formula():
    with pytest.raises(ValueError, match="radius_formula"):
        build_targets(tf.zeros([0, 4]), tf.zeros([0], tf.int32), 3, (64, 64), (16, 16), radius_formula="paper")


def test_in_tf_data_and_xla():
    boxes = random_boxes(np.random.default_rng(3), 5, 127)
    classes = np.array([0, 1, 2, 1, 0], np.int32)
    eager = build_targets(boxes, classes, 3, (127, 127), (32, 32), max_objects=8, with_centers=True)

    def make(b, c):
        return build_targets(b, c, 3, (127, 127), (32, 32), max_objects=8, with_centers=True)

    dataset = tf.data.Dataset.from_tensors((boxes, classes)).map(make)
    assert dataset.element_spec["tl_heatmap"].shape == (32, 32, 3)
    assert dataset.element_spec["ct_indices"].shape == (8,)
    assert dataset.element_spec["mask"].shape == (8,)
    from_dataset = next(iter(dataset))
    from_xla = tf.function(make, jit_compile=True)(boxes, classes)
    for key, value in eager.items():
        np.testing.assert_array_equal(from_dataset[key].numpy(), value.numpy())
        np.testing.assert_array_equal(from_xla[key].numpy(), value.numpy())


@pytest.mark.parametrize("formula, iou", [("cornernet", 0.3), ("centernet", 0.7)])
def test_batch_targets_equal_the_per_image_loop(formula, iou):
    """Padded box lists with different counts (incl. none and more than max_objects), drawn
    together, eagerly and under XLA, equal the original's loop run image by image."""
    rng = np.random.default_rng(11)
    counts = [3, 0, 12, 7]
    boxes = np.zeros((4, 12, 4), np.float32)
    classes = np.zeros((4, 12), np.int32)
    for b, count in enumerate(counts):
        boxes[b, :count] = random_boxes(rng, count, 63)
        classes[b, :count] = rng.integers(0, 3, count)
    boxes[0, 0] = [0, 0, 63, 63]

    def make(boxes, classes, counts):
        return build_batch_targets(
            boxes,
            classes,
            counts,
            3,
            (63, 63),
            (16, 16),
            max_objects=8,
            gaussian_iou=iou,
            with_centers=True,
            radius_formula=formula,
        )

    for batch in (make(boxes, classes, counts), tf.function(make, jit_compile=True)(boxes, classes, counts)):
        for b, count in enumerate(counts):
            kept = min(count, 8)
            heat, inds, regr, mask = numpy_targets(
                boxes[b, :kept], classes[b, :kept], 3, (63, 63), (16, 16), 8, iou, formula
            )
            np.testing.assert_array_equal(batch["mask"][b].numpy(), mask)
            for key in ("tl", "br", "ct"):
                np.testing.assert_array_equal(batch[f"{key}_heatmap"][b].numpy(), heat[key], err_msg=f"{key}, {b}")
                np.testing.assert_array_equal(batch[f"{key}_indices"][b].numpy(), inds[key])
                np.testing.assert_array_equal(batch[f"{key}_offset"][b].numpy(), regr[key])


def test_positive_flags_split_boxes_between_heatmaps_and_ignore_maps():
    """CornerNet-Saccade's split: the heatmaps and object rows are those of the positive boxes
    alone (compacted), the valid maps are 0 exactly where the other boxes' Gaussians are; all
    positive is the plain targets with nothing ignored. Eager and XLA agree."""
    rng = np.random.default_rng(21)
    boxes = np.stack([random_boxes(rng, 6, 127) for _ in range(2)])
    classes = rng.integers(0, 3, (2, 6)).astype(np.int32)
    counts = np.array([6, 4])
    positive = rng.random((2, 6)) < 0.5
    positive[0, :2] = [True, False]
    options = dict(num_classes=3, input_size=(127, 127), output_size=(32, 32), max_objects=8)
    options["coordinate_dtype"] = "float64"

    def subset(keep):
        rows = np.zeros_like(boxes)
        labels = np.zeros_like(classes)
        for b in range(2):
            chosen = np.flatnonzero(keep[b, : counts[b]])
            rows[b, : len(chosen)], labels[b, : len(chosen)] = boxes[b, chosen], classes[b, chosen]
        return build_batch_targets(rows, labels, [keep[b, : counts[b]].sum() for b in range(2)], **options)

    split = build_batch_targets(boxes, classes, counts, positive=positive, **options)
    kept, ignored = subset(positive), subset(~positive)
    for key in ("tl_heatmap", "br_heatmap", "tl_indices", "br_indices", "tl_offset", "br_offset", "mask"):
        np.testing.assert_array_equal(split[key].numpy(), kept[key].numpy())
    for corner in ("tl", "br"):
        np.testing.assert_array_equal(split[f"{corner}_valid"].numpy(), ignored[f"{corner}_heatmap"].numpy() == 0)
        assert not split[f"{corner}_valid"].numpy().all()
    everything = build_batch_targets(boxes, classes, counts, positive=np.ones_like(positive), **options)
    plain = build_batch_targets(boxes, classes, counts, **options)
    for key, value in plain.items():
        np.testing.assert_array_equal(everything[key].numpy(), value.numpy())
    assert everything["tl_valid"].numpy().all()
    make = tf.function(lambda *args: build_batch_targets(*args[:3], positive=args[3], **options), jit_compile=True)
    for key, value in make(boxes, classes, counts, positive).items():
        np.testing.assert_array_equal(value.numpy(), split[key].numpy())
