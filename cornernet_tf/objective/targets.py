"""Training targets of CornerNet / CenterNet, built in the graph (pure TF, no Python loop over boxes).

Reproduces the official `sample/utils.py` (`gaussian_radius`, `draw_gaussian`) and the target part
of `sample/coco.py: kp_detection` bit for bit; see tests/fixtures/official/README.md,
"targets.json and targets.npz". Everything here runs inside `tf.data` map functions, `tf.function` and XLA.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import tensorflow as tf

# The targets entry [B] int32 that the input pipeline adds: samples of the stream that could not
# be decoded just before each example (their sum over all batches counts every dropped sample once).
SKIPPED = "skipped"

# numpy's float64 machine epsilon: the original zeroes Gaussian values below eps * max (max = 1).
_FLOAT64_EPS = float(np.finfo(np.float64).eps)


def gaussian_radius(height: tf.Tensor, width: tf.Tensor, min_overlap: float = 0.3) -> tf.Tensor:
    """CornerNet's corner radius: a box shifted by this many cells keeps IoU >= `min_overlap`.

    The minimum of the original's three quadratic roots, with its deviations from the paper's
    derivation kept ((b - sqrt)/2a for the first two, (b + sqrt)/2a for the third; c1 and a3
    not as derived). Evaluated in float64 in the original's operation order, so `int(r)` matches
    even where r lies within 1e-15 of an integer. `height`, `width`: any broadcastable shape
    (output-map cells) -> float64 radius of that shape.
    """
    h = tf.cast(height, tf.float64)
    w = tf.cast(width, tf.float64)
    ov = min_overlap
    b1 = h + w
    c1 = w * h * (1.0 - ov) / (1.0 + ov)
    r1 = (b1 - tf.sqrt(b1 * b1 - 4.0 * c1)) / 2.0
    b2 = 2.0 * (h + w)
    c2 = (1.0 - ov) * w * h
    r2 = (b2 - tf.sqrt(b2 * b2 - 16.0 * c2)) / 8.0
    a3 = 4.0 * ov
    b3 = -2.0 * ov * (h + w)
    c3 = (ov - 1.0) * w * h
    r3 = (b3 + tf.sqrt(b3 * b3 - 4.0 * a3 * c3)) / (2.0 * a3)
    return tf.minimum(tf.minimum(r1, r2), r3)


def centernet_gaussian_radius(height: tf.Tensor, width: tf.Tensor, min_overlap: float = 0.7) -> tf.Tensor:
    """CenterNet's (Duankaiwen) radius: the three candidates are (b + sqrt(b^2 - 4ac)) / 2.

    Same a, b, c as `gaussian_radius`; the third candidate is always the smallest, so radii come
    out about 4 * min_overlap times CornerNet's third root. Used for corners and centers with
    min_overlap 0.7 in official CenterNet training. Shapes as `gaussian_radius`, float64.
    """
    h = tf.cast(height, tf.float64)
    w = tf.cast(width, tf.float64)
    ov = min_overlap
    b1 = h + w
    c1 = w * h * (1.0 - ov) / (1.0 + ov)
    r1 = (b1 + tf.sqrt(b1 * b1 - 4.0 * c1)) / 2.0
    b2 = 2.0 * (h + w)
    c2 = (1.0 - ov) * w * h
    r2 = (b2 + tf.sqrt(b2 * b2 - 16.0 * c2)) / 2.0
    a3 = 4.0 * ov
    b3 = -2.0 * ov * (h + w)
    c3 = (ov - 1.0) * w * h
    r3 = (b3 + tf.sqrt(b3 * b3 - 4.0 * a3 * c3)) / 2.0
    return tf.minimum(tf.minimum(r1, r2), r3)


def _gaussian_cells(
    centers_xy: tf.Tensor, radii: tf.Tensor, height: int, width: int, sigma_divisor: float
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The cells of one clipped, unnormalised Gaussian per center: (keypoint [P] int64,
    (y, x) [P, 2] int64, value [P] float32), P = the total of the windows' cells.

    centers_xy [K, 2] int32 (x, y), radii [K] int32. Only each (2r + 1)^2 window clipped by
    the grid is evaluated, not the full grid: in float64 like the original's `gaussian2D`
    (sigma = (2r + 1) / sigma_divisor, values < eps zeroed), rounded to float32 once, as its
    `np.maximum(out=float32 heatmap)`.
    """
    dx = tf.range(width, dtype=tf.int32)[tf.newaxis, :] - centers_xy[:, 0:1]  # [K, W]
    dy = tf.range(height, dtype=tf.int32)[tf.newaxis, :] - centers_xy[:, 1:2]  # [K, H]
    in_columns = tf.abs(dx) <= radii[:, tf.newaxis]
    in_rows = tf.abs(dy) <= radii[:, tf.newaxis]
    # A boolean outer product finds the window cells; `tf.where` keeps this XLA-compatible.
    where = tf.where(in_rows[:, :, tf.newaxis] & in_columns[:, tf.newaxis, :])  # [P, 3] (k, y, x)
    keypoint = where[:, 0]
    dx = tf.gather_nd(dx, tf.stack([keypoint, where[:, 2]], axis=1))
    dy = tf.gather_nd(dy, tf.stack([keypoint, where[:, 1]], axis=1))
    sigma = tf.cast(2 * tf.gather(radii, keypoint) + 1, tf.float64) / sigma_divisor
    squared = tf.cast(dx * dx, tf.float64) + tf.cast(dy * dy, tf.float64)
    value = tf.exp(-squared / (2.0 * sigma * sigma))
    value = tf.where(value < _FLOAT64_EPS, tf.zeros_like(value), value)
    return keypoint, where[:, 1:], tf.cast(value, tf.float32)


def draw_gaussian(heatmap: tf.Tensor, center_xy: tf.Tensor, radius: tf.Tensor, sigma_divisor: float = 6.0) -> tf.Tensor:
    """Max-merge one Gaussian bump (peak 1.0 at `center_xy`) into `heatmap`, as the original.

    CornerNet corners use sigma_divisor 6, CenterNet centers 5 (its `delte`).

    Args:
        heatmap: [H, W] float32 (row = y, column = x).
        center_xy: [2] int (x, y) of the peak.
        radius: int scalar; the bump covers the (2 * radius + 1) square around the peak.
        sigma_divisor: sigma = (2 * radius + 1) / sigma_divisor.

    Returns:
        The new [H, W] float32 heatmap; cells outside the map are dropped.
    """
    heatmap = tf.convert_to_tensor(heatmap, tf.float32)
    height, width = heatmap.shape
    centers = tf.reshape(tf.cast(center_xy, tf.int32), [1, 2])
    radii = tf.reshape(tf.cast(radius, tf.int32), [1])
    _, cells, values = _gaussian_cells(centers, radii, height, width, sigma_divisor)
    return tf.tensor_scatter_nd_max(heatmap, cells, values)


def _keypoint_targets(
    points_xy: tf.Tensor,
    slots: tf.Tensor,
    planes: tf.Tensor,
    classes: tf.Tensor,
    radii: tf.Tensor,
    map_shape: tuple[int, tf.Tensor, int, int, int],
    max_objects: int,
    sigma_divisor: float,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Maps [P, B, H, W, C] (`map_shape`), flat indices [B, M] and offsets [B, M, 2] for K keypoints.

    points_xy [K, 2] map units (float32 or float64); slots [K, 2] int64 (image, object row);
    planes [K] int64: the map each keypoint is drawn on, 0 (the heatmap) or 1 (CornerNet-Saccade's
    ignore map, whose keypoints have no object row: their slots are not used). Position is
    `int()` of the map coordinate, offset its fractional part (rounded to float32 once), index
    y * W + x; rows without a keypoint are zero.
    """
    _, batch_size, height, width, _ = map_shape
    cells = tf.cast(points_xy, tf.int32)  # truncation, as the original's int(); points are >= 0
    keypoint, window_cells, values = _gaussian_cells(cells, radii, height, width, sigma_divisor)
    channel = tf.cast(tf.gather(classes, keypoint), tf.int64)
    maps = tf.tensor_scatter_nd_max(
        tf.zeros(tf.stack(map_shape), tf.float32),
        tf.concat(
            [
                tf.stack([tf.gather(planes, keypoint), tf.gather(slots[:, 0], keypoint)], 1),
                window_cells,
                channel[:, None],
            ],
            axis=1,
        ),
        values,
    )
    fractions = tf.cast(points_xy - tf.cast(cells, points_xy.dtype), tf.float32)
    objects = tf.equal(planes, 0)
    object_slots = tf.boolean_mask(slots, objects)
    object_cells = tf.boolean_mask(cells, objects)
    rows = tf.stack([batch_size, tf.constant(max_objects, tf.int64)])
    indices = tf.scatter_nd(object_slots, object_cells[:, 1] * width + object_cells[:, 0], rows)
    offsets = tf.scatter_nd(
        object_slots, tf.boolean_mask(fractions, objects), tf.concat([rows, tf.constant([2], tf.int64)], 0)
    )
    return maps, indices, offsets


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """The keyword arguments of `build_batch_targets` (see there) as one value an input spec can
    hold: `build_batch_targets(boxes, classes, num_boxes, **dataclasses.asdict(spec))`."""

    num_classes: int
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    max_objects: int = 128
    gaussian_iou: float = 0.3
    with_centers: bool = False
    radius_formula: Literal["cornernet", "centernet"] = "cornernet"
    center_sigma_divisor: float = 5.0
    coordinate_dtype: Literal["float32", "float64"] = "float32"


def build_batch_targets(
    boxes: tf.Tensor,
    classes: tf.Tensor,
    num_boxes: tf.Tensor,
    num_classes: int,
    input_size: Sequence[int],
    output_size: Sequence[int],
    max_objects: int = 128,
    gaussian_iou: float = 0.3,
    with_centers: bool = False,
    radius_formula: Literal["cornernet", "centernet"] = "cornernet",
    center_sigma_divisor: float = 5.0,
    coordinate_dtype: Literal["float32", "float64"] = "float32",
    positive: tf.Tensor | None = None,
) -> dict[str, tf.Tensor]:
    """Training targets of a batch, as the official `kp_detection` builds them per image.

    All keypoints of the batch are drawn at once, so this is a handful of batched ops (the
    training loop runs it on the accelerator, from the few bytes of boxes the input pipeline
    ships instead of megabytes of heatmaps). Map coordinates are x * (output / input) in
    `coordinate_dtype`, and the radius is `max(0, int(r))` of the `radius_formula` radius of
    (ceil(box_h * scale), ceil(box_w * scale)), box sides taken in float32. Boxes past
    `max_objects` are dropped (the original fails on them). CornerNet: radius_formula
    "cornernet", gaussian_iou 0.3; CenterNet: "centernet", 0.7, with_centers=True;
    CornerNet-Saccade (`cornernet_saccade`): "cornernet", 0.5, coordinate_dtype "float64" and
    `positive`, whose False boxes are drawn on ignore maps instead (tl_valid, br_valid).

    Args:
        boxes: [B, N, 4] float32 (x1, y1, x2, y2) in input pixels, already clipped to the image
            and with degenerate boxes removed.
        classes: [B, N] int32, 0-based.
        num_boxes: [B] int; image b uses its first num_boxes[b] rows.
        num_classes: C, the heatmaps' channels.
        input_size: (height, width) of the network input.
        output_size: (height, width) H, W of the output maps.
        max_objects: M, the object rows per image.
        gaussian_iou: min_overlap of the radius: corners moved within it keep this IoU with the box.
        with_centers: Also draw CenterNet's box-center targets.
        radius_formula: "cornernet" or "centernet", the radius computation.
        center_sigma_divisor: Sigma divisor of the center bumps (5; corners use 6).
        coordinate_dtype: "float32" evaluates map coordinates and sizes as numpy 2 does the
            original (the CornerNet fixtures), "float64" as numpy 1 did (the official
            environment; the CornerNet-Saccade fixtures). Integer cells can differ between the two
            where x * scale lies within float32 rounding of an integer; offsets by ~1e-6.
        positive: [B, N] bool, or None (every box). False boxes take no object row: their
            Gaussians go to ignore maps, the official Saccade `tl_valids`, and the object rows of
            the others stay a prefix.

    Returns:
        tl_heatmap, br_heatmap [B, H, W, C] float32; tl_indices, br_indices [B, M] int32
        (y * W + x); tl_offset, br_offset [B, M, 2] float32 (x, y fractional parts); mask [B, M]
        float32 (a prefix of ones per image); with_centers also ct_heatmap, ct_indices, ct_offset.
        With `positive`, also tl_valid, br_valid (ct_valid) [B, H, W, C] float32: 0 where an
        ignore map is non-zero (the focal loss leaves those cells out), else 1.

    Raises:
        ValueError: An unknown `radius_formula`.
    """
    radius_fns = {"cornernet": gaussian_radius, "centernet": centernet_gaussian_radius}
    if radius_formula not in radius_fns:
        raise ValueError(f"radius_formula must be one of {sorted(radius_fns)}, got {radius_formula!r}")
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    batch_size, rows = tf.shape(boxes, tf.int64)[0], tf.shape(boxes)[1]
    counts = tf.minimum(tf.cast(num_boxes, tf.int32), tf.minimum(rows, max_objects))
    present = tf.sequence_mask(counts, rows)
    drawn = tf.where(present)  # [K, 2] (image, row), row < max_objects
    slots = drawn  # (image, object row)
    if positive is None:
        planes = tf.zeros_like(slots[:, 0])
        objects = counts
    else:
        positive = tf.logical_and(tf.cast(positive, tf.bool), present)
        object_rows = tf.cumsum(tf.cast(positive, tf.int64), axis=1, exclusive=True)
        planes = 1 - tf.cast(tf.gather_nd(positive, drawn), tf.int64)
        slots = tf.stack([drawn[:, 0], tf.gather_nd(object_rows, drawn)], axis=1)
        objects = tf.reduce_sum(tf.cast(positive, tf.int32), axis=1)
    boxes = tf.gather_nd(boxes, drawn)
    classes = tf.gather_nd(tf.cast(classes, tf.int32), drawn)
    out_h, out_w = output_size
    dtype = tf.as_dtype(coordinate_dtype)
    scale = tf.constant([out_w / input_size[1], out_h / input_size[0]], dtype)  # (x, y)
    size = tf.math.ceil(tf.cast(boxes[:, 2:4] - boxes[:, 0:2], dtype) * scale)  # (w, h) in map cells
    radius = radius_fns[radius_formula](size[:, 1], size[:, 0], gaussian_iou)
    radii = tf.maximum(tf.cast(radius, tf.int32), 0)

    corners = tf.cast(boxes, dtype)
    keypoints = {"tl": (corners[:, 0:2] * scale, 6.0), "br": (corners[:, 2:4] * scale, 6.0)}
    if with_centers:
        centers = tf.cast((boxes[:, 0:2] + boxes[:, 2:4]) / 2.0, dtype)
        keypoints["ct"] = (centers * scale, center_sigma_divisor)
    num_planes = 1 if positive is None else 2
    map_shape = (num_planes, batch_size, out_h, out_w, num_classes)
    targets = {}
    for prefix, (points, sigma_divisor) in keypoints.items():
        maps, indices, offsets = _keypoint_targets(
            points, slots, planes, classes, radii, map_shape, max_objects, sigma_divisor
        )
        targets[f"{prefix}_heatmap"] = maps[0]
        targets[f"{prefix}_indices"] = indices
        targets[f"{prefix}_offset"] = offsets
        if positive is not None:
            targets[f"{prefix}_valid"] = tf.cast(tf.equal(maps[1], 0.0), tf.float32)
    targets["mask"] = tf.sequence_mask(objects, max_objects, tf.float32)
    return targets


def build_targets(
    boxes: tf.Tensor,
    classes: tf.Tensor,
    num_classes: int,
    input_size: Sequence[int],
    output_size: Sequence[int],
    **options: Any,
) -> dict[str, tf.Tensor]:
    """Per-image targets: `build_batch_targets` of a batch of one, without the batch axis.

    Args:
        boxes: [N, 4] float32 (x1, y1, x2, y2) in input pixels.
        classes: [N] int, 0-based.
        num_classes: C, the heatmaps' channels.
        input_size: (height, width) of the network input.
        output_size: (height, width) of the output maps.
        **options: The other keyword arguments of `build_batch_targets`.

    Returns:
        heatmaps [H, W, C], indices [M], offsets [M, 2] and mask [M] (as `build_batch_targets`).

    Raises:
        ValueError: An unknown `radius_formula`.
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    targets = build_batch_targets(
        boxes[tf.newaxis],
        tf.convert_to_tensor(classes)[tf.newaxis],
        tf.shape(boxes)[:1],
        num_classes,
        input_size,
        output_size,
        **options,
    )
    return {key: value[0] for key, value in targets.items()}
