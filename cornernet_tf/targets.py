"""Training targets of CornerNet / CenterNet, built in the graph (pure TF, no Python loop over boxes).

Reproduces the official `sample/utils.py` (`gaussian_radius`, `draw_gaussian`) and the target part
of `sample/coco.py: kp_detection` bit for bit; see reference/README.md, "targets.json and
targets.npz". Everything here runs inside `tf.data` map functions, `tf.function` and XLA.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import tensorflow as tf

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


def _gaussian_bumps(
    centers_xy: tf.Tensor, radii: tf.Tensor, height: int, width: int, sigma_divisor: float
) -> tf.Tensor:
    """One clipped, unnormalised Gaussian per center on the full grid, zero outside its window.

    centers_xy [N, 2] int32 (x, y), radii [N] int32 -> [N, height, width] float32. The bump is
    computed in float64 like the original's `gaussian2D` (sigma = (2r + 1) / sigma_divisor,
    values < eps zeroed) and rounded to float32 once, as its `np.maximum(out=float32 heatmap)`.
    """
    cx = centers_xy[:, 0, tf.newaxis, tf.newaxis]
    cy = centers_xy[:, 1, tf.newaxis, tf.newaxis]
    r = radii[:, tf.newaxis, tf.newaxis]
    dx = tf.range(width, dtype=tf.int32)[tf.newaxis, tf.newaxis, :] - cx  # [N, 1, W]
    dy = tf.range(height, dtype=tf.int32)[tf.newaxis, :, tf.newaxis] - cy  # [N, H, 1]
    inside = (tf.abs(dx) <= r) & (tf.abs(dy) <= r)  # the (2r+1)^2 window, clipped by the grid
    sigma = tf.cast(2 * r + 1, tf.float64) / sigma_divisor
    squared = tf.cast(dx * dx, tf.float64) + tf.cast(dy * dy, tf.float64)
    bump = tf.exp(-squared / (2.0 * sigma * sigma))
    bump = tf.where(bump < _FLOAT64_EPS, tf.zeros_like(bump), bump)
    return tf.where(inside, tf.cast(bump, tf.float32), 0.0)


def draw_gaussian(
    heatmap: tf.Tensor, center_xy: tf.Tensor, radius: tf.Tensor, sigma_divisor: float = 6.0
) -> tf.Tensor:
    """Max-merge one Gaussian bump (peak 1.0 at `center_xy`) into `heatmap`, as the original.

    heatmap [H, W] float32 (row = y, column = x); center_xy [2] int (x, y); radius int scalar.
    CornerNet corners use sigma_divisor 6, CenterNet centers 5 (its `delte`). Returns the new
    [H, W] float32 heatmap; cells outside the map are dropped.
    """
    heatmap = tf.convert_to_tensor(heatmap, tf.float32)
    height, width = heatmap.shape
    centers = tf.reshape(tf.cast(center_xy, tf.int32), [1, 2])
    radii = tf.reshape(tf.cast(radius, tf.int32), [1])
    return tf.maximum(heatmap, _gaussian_bumps(centers, radii, height, width, sigma_divisor)[0])


def _keypoint_targets(
    points_xy: tf.Tensor,
    classes: tf.Tensor,
    radii: tf.Tensor,
    num_classes: int,
    output_hw: tuple[int, int],
    max_objects: int,
    sigma_divisor: float,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Heatmap [H, W, C], flat indices [M] and offsets [M, 2] for N keypoints [N, 2] (map units).

    Position is `int()` of the float map coordinate, offset its fractional part, index y * W + x;
    rows past N are zero.
    """
    height, width = output_hw
    cells = tf.cast(points_xy, tf.int32)  # truncation, as the original's int(); points are >= 0
    bumps = _gaussian_bumps(cells, radii, height, width, sigma_divisor)  # [N, H, W]
    # Max-merge only the non-zero window cells into the [H, W, C] map: cheaper than a per-class
    # reduction over full grids followed by a transpose.
    where = tf.where(bumps > 0.0)  # [K, 3] (n, y, x)
    channel = tf.cast(tf.gather(classes, where[:, 0]), tf.int64)
    heatmap = tf.tensor_scatter_nd_max(
        tf.zeros([height, width, num_classes], tf.float32),
        tf.stack([where[:, 1], where[:, 2], channel], axis=1),
        tf.gather_nd(bumps, where),
    )
    pad = [[0, max_objects - tf.shape(points_xy)[0]]]
    indices = tf.pad(cells[:, 1] * width + cells[:, 0], pad)
    offsets = tf.pad(points_xy - tf.cast(cells, tf.float32), pad + [[0, 0]])
    indices = tf.ensure_shape(indices, [max_objects])
    return heatmap, indices, tf.ensure_shape(offsets, [max_objects, 2])


def build_targets(
    boxes: tf.Tensor,
    classes: tf.Tensor,
    num_classes: int,
    input_size: Sequence[int],
    output_size: Sequence[int],
    max_objects: int = 128,
    gaussian_iou: float = 0.3,
    with_centers: bool = False,
    radius_formula: Literal["cornernet", "centernet"] = "cornernet",
    center_sigma_divisor: float = 5.0,
) -> dict[str, tf.Tensor]:
    """Per-image training targets, as the official `kp_detection` builds them.

    boxes [N, 4] float32 (x1, y1, x2, y2) in input pixels, already clipped to the image and with
    degenerate boxes removed; classes [N] int32, 0-based. input_size / output_size: (height,
    width). Map coordinates are x * (output / input) in float32 (as numpy 2 evaluates the
    original), and the radius is `max(0, int(r))` of the `radius_formula` radius of
    (ceil(box_h * scale), ceil(box_w * scale)). Boxes past `max_objects` are dropped (the
    original fails on them). CornerNet: radius_formula "cornernet", gaussian_iou 0.3;
    CenterNet: "centernet", 0.7, with_centers=True (box-center bumps with sigma divisor 5).

    Returns tl_heatmap, br_heatmap [H, W, C] float32; tl_indices, br_indices [M] int32 (y * W + x);
    tl_offset, br_offset [M, 2] float32 (x, y fractional parts); mask [M] float32 (prefix of
    ones); with_centers also ct_heatmap, ct_indices, ct_offset. M = max_objects.
    """
    radius_fns = {"cornernet": gaussian_radius, "centernet": centernet_gaussian_radius}
    if radius_formula not in radius_fns:
        raise ValueError(f"radius_formula must be one of {sorted(radius_fns)}, got {radius_formula!r}")
    boxes = tf.convert_to_tensor(boxes, tf.float32)[:max_objects]
    classes = tf.convert_to_tensor(classes, tf.int32)[:max_objects]
    out_h, out_w = output_size
    scale = tf.constant([out_w / input_size[1], out_h / input_size[0]], tf.float32)  # (x, y)
    size = tf.math.ceil((boxes[:, 2:4] - boxes[:, 0:2]) * scale)  # (w, h) in map cells
    radius = radius_fns[radius_formula](size[:, 1], size[:, 0], gaussian_iou)
    radii = tf.maximum(tf.cast(radius, tf.int32), 0)

    keypoints = {"tl": (boxes[:, 0:2] * scale, 6.0), "br": (boxes[:, 2:4] * scale, 6.0)}
    if with_centers:
        keypoints["ct"] = ((boxes[:, 0:2] + boxes[:, 2:4]) / 2.0 * scale, center_sigma_divisor)
    targets = {}
    for prefix, (points, sigma_divisor) in keypoints.items():
        heatmap, indices, offsets = _keypoint_targets(
            points, classes, radii, num_classes, (out_h, out_w), max_objects, sigma_divisor
        )
        targets[f"{prefix}_heatmap"] = heatmap
        targets[f"{prefix}_indices"] = indices
        targets[f"{prefix}_offset"] = offsets
    num = tf.shape(boxes)[0]
    mask = tf.pad(tf.ones([num], tf.float32), [[0, max_objects - num]])
    targets["mask"] = tf.ensure_shape(mask, [max_objects])
    return targets
