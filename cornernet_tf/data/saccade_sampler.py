"""CornerNet-Saccade training samples as TF ops: the official `core/sample/cornernet_saccade.py`.

Per image (tests/fixtures/official/README.md, "Training: sampler, attention targets, loss"):
clip the boxes to the image; scale the image so that a random reference box gets a random size
(`reference_scale`); pick a 255 x 255 crop around it (`crop_center`, `crop_placement`); clip
the boxes to the crop's content, maybe flip; then the corner targets, with the boxes that are
cut too much (`bbox_overlaps` <= 0.5) or too small (< `min_scale`) drawn on ignore maps
instead (`targets.build_batch_targets(positive=...)`), and binary attention maps from every
box (`attention_targets`).

The geometry functions take their random draws as arguments: uniform variates in [0, 1), one
per official `np.random` call (`DRAWS`), so a recorded official sample replays exactly
(`randint(low, high)` returning r is u = (r - low + 0.5) / (high - low)). `draw_uniforms`
makes them statelessly from a per-sample seed. Values are computed in the official dtypes:
boxes in float32, the scale and the resized image size in float64 as numpy 1 (the official
environment) evaluated them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from cornernet_tf.data import augment
from cornernet_tf.objective.targets import TargetSpec, build_batch_targets

# np.arange(0.5, 1.1, 0.1): 7 values, the float arange overshoots to 1.1 (quirk S1).
RAND_SCALES = tuple(np.arange(0.5, 1.1, 0.1).tolist())
MIN_OVERLAP = 0.5  # a box keeps its corner targets when more than this share of it is in the crop
# One uniform variate per official random call: `ref_scale`'s skip (random_crop only), reference
# box and target size, the fallback scale of images without boxes, `crop_image_dets`' centring
# choice, then per axis the two centring jitters (0..14) and the crop position, and the flip.
DRAWS = (
    "skip",
    "reference",
    "target_size",
    "fallback_scale",
    "centered",
    "jitter_low_y",
    "jitter_high_y",
    "pick_y",
    "jitter_low_x",
    "jitter_high_x",
    "pick_x",
    "flip",
)


@dataclasses.dataclass(frozen=True)
class SaccadeSampling:
    """The sampler's settings, official values by default (configs/CornerNet_Saccade.json).

    input_size: the crop (h, w). rand_scales: scales of images without boxes. random_crop: the
    official `rand_crop` (false): with it, 30% of images skip the reference scale. rand_center:
    centre the crop on the reference box half of the time. min_scale: boxes whose longer side
    (after int() of the corners) is shorter are ignored. att_ratios, att_ranges, att_sizes: per
    attention map (coarsest first), input pixels per cell, the object sizes it marks
    (inclusive) and its size.
    """

    input_size: tuple[int, int] = (255, 255)
    rand_scales: tuple[float, ...] = RAND_SCALES
    random_crop: bool = False
    rand_center: bool = True
    min_scale: int = 16
    att_ratios: tuple[int, ...] = (16, 8, 4)
    att_ranges: tuple[tuple[int, int], ...] = ((96, 256), (32, 96), (0, 32))
    att_sizes: tuple[tuple[int, int], ...] = ((16, 16), (32, 32), (64, 64))


def draw_uniforms(seed: tf.Tensor) -> dict[str, tf.Tensor]:
    """The `DRAWS` of one sample: float64 uniforms in [0, 1) from a stateless [2] int seed."""
    values = tf.random.stateless_uniform([len(DRAWS)], seed, dtype=tf.float64)
    return dict(zip(DRAWS, tf.unstack(values), strict=True))


def _randint(uniform: tf.Tensor, low: tf.Tensor, high: tf.Tensor) -> tf.Tensor:
    """numpy's `randint(low, high)` (high excluded) from a uniform variate: int32 low + floor(u (high - low))."""
    low, high = tf.cast(low, tf.int32), tf.cast(high, tf.int32)
    span = tf.cast(high - low, tf.float64)
    return low + tf.minimum(tf.cast(tf.floor(tf.cast(uniform, tf.float64) * span), tf.int32), high - low - 1)


def clip_detections(boxes: tf.Tensor, border: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The official `clip_detections`: x to [x0, x1 - 1], y to [y0, y1 - 1], boxes left without
    width or height dropped.

    Args:
        boxes: [N, 4] float32 (x1, y1, x2, y2).
        border: [4] (y0, y1, x0, x1), the image or a crop's content.

    Returns:
        (boxes [M, 4] float32, keep [M] int32: their rows in `boxes`).
    """
    y0, y1, x0, x1 = tf.unstack(tf.cast(border, tf.float32))
    low = tf.stack([x0, y0, x0, y0])
    high = tf.stack([x1, y1, x1, y1]) - 1.0
    clipped = tf.minimum(tf.maximum(tf.cast(boxes, tf.float32), low), high)
    keep = tf.where((clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1]))[:, 0]
    keep = tf.cast(keep, tf.int32)
    return tf.gather(clipped, keep), keep


def bbox_overlaps(boxes: tf.Tensor, references: tf.Tensor) -> tf.Tensor:
    """The official `bbox_overlaps`: area(boxes) / area(references) row by row in float32, an area
    ratio, not an IoU (quirk S7). boxes, references [N, 4] -> [N]."""
    boxes, references = tf.cast(boxes, tf.float32), tf.cast(references, tf.float32)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return areas / ((references[:, 2] - references[:, 0]) * (references[:, 3] - references[:, 1]))


def longer_side(box: tf.Tensor) -> tf.Tensor:
    """max(height, width) of a [4] float32 box, in float32 as the official `ref_scale`."""
    box = tf.cast(box, tf.float32)
    return tf.maximum(box[3] - box[1], box[2] - box[0])


def target_size_range(side: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """`ref_scale`'s draw range [low, high) of the reference box's new longer side, given its
    current one: 96..254 above 96, 32..96 above 32, else 16..32 (int32 scalars)."""
    low = tf.where(side > 96.0, 96, tf.where(side > 32.0, 32, 16))
    high = tf.where(side > 96.0, 255, tf.where(side > 32.0, 97, 33))
    return low, high


def reference_scale(box: tf.Tensor, target_size: tf.Tensor) -> tf.Tensor:
    """The official `ref_scale`'s scale target_size / longer side of `box` [4], in float64 as
    numpy 1 divided a Python int by a float32 scalar (numpy 2 divides in float32)."""
    return tf.cast(target_size, tf.float64) / tf.cast(longer_side(box), tf.float64)


def crop_center(
    image_hw: tf.Tensor,
    box: tf.Tensor,
    has_box: tf.Tensor,
    centered: tf.Tensor,
    jitter: tf.Tensor,
    pick: tf.Tensor,
    input_size: tuple[int, int] = (255, 255),
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The crop centre of the official `crop_image_dets` (which always crops: its `random_crop`
    is left at True), per axis (y, x):

    - side <= input: the image's centre, side // 2, and no draw;
    - no box, or not centred: a window start in [max(b1 - input, 0), min(side - input, b0)]
      (int() of each, the box fits in the window; without a box [0, side - input]) + input // 2;
    - centred: uniform in [max(c - a, 0), min(c + b, side - 1)], c = (b0 + b1) // 2 in float32,
      a and b two jitters in 0..14.

    Where the range is empty (a box longer than the input along a longer image axis, not
    centred), numpy raises ValueError (quirk S5): here an InvalidArgumentError. The official
    flow cannot get there, since `reference_scale` keeps the reference box within 254 px.

    Args:
        image_hw: [2] int (H, W) of the scaled image.
        box: [4] float32 (x1, y1, x2, y2) reference box in the scaled image (ignored without one).
        has_box: bool scalar, a reference box exists.
        centered: bool scalar, the official `rand_center and uniform() > 0.5`.
        jitter: [2, 2] int32 ((a_y, b_y), (a_x, b_x)), the jitter draws.
        pick: [2] float64 (y, x) uniform variates of the final draw.
        input_size: (h, w) of the crop.

    Returns:
        (center [2] int32 (y, x), low [2], high [2] int32): the `randint(low, high)` range of each
        axis' final draw (meaningful where the side exceeds the input).
    """
    side = tf.cast(image_hw, tf.int32)
    size = tf.constant(input_size, tf.int32)
    box = tf.cast(box, tf.float32)
    start = tf.stack([box[1], box[0]])  # (y0, x0)
    end = tf.stack([box[3], box[2]])
    middle = tf.math.floordiv(start + end, 2.0)  # float32 sum, as numpy adds two float32 scalars
    jitter = tf.cast(jitter, tf.float32)
    by_box = tf.logical_and(has_box, centered)
    window_low = tf.where(has_box, tf.cast(tf.maximum(end - tf.cast(size, tf.float32), 0.0), tf.int32), 0)
    window_high = tf.where(has_box, tf.cast(tf.minimum(tf.cast(side - size, tf.float32), start), tf.int32), side - size)
    centre_low = tf.cast(tf.maximum(middle - jitter[:, 0], 0.0), tf.int32)
    centre_high = tf.cast(tf.minimum(middle + jitter[:, 1], tf.cast(side - 1, tf.float32)), tf.int32)
    low = tf.where(by_box, centre_low, window_low)
    high = tf.where(by_box, centre_high, window_high) + 1
    drawn = side > size
    check = tf.debugging.assert_less(
        tf.where(drawn, low, 0),
        tf.where(drawn, high, 1),
        message="crop_image_dets: empty crop range (the official randint raises ValueError: low >= high)",
    )
    with tf.control_dependencies([check]):
        picked = tf.stack([_randint(pick[axis], low[axis], high[axis]) for axis in range(2)])
    shift = tf.where(by_box, 0, size // 2)
    return tf.where(drawn, picked + shift, side // 2), low, high


def crop_placement(
    center: tf.Tensor, size: tuple[int, int], image_hw: tf.Tensor, output_size: tuple[int, int] | None = None
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Where the official `crop_image` copies what: the image's [c - size // 2, c + size // 2)
    window per axis (clipped to the image; so an odd size holds one pixel less, at most 254 of
    255: quirk S4) goes around the centre (output // 2) of a zero canvas.

    Args:
        center: [2] int (y, x) in the image.
        size: (h, w) of the window.
        image_hw: [2] int (H, W) of the image.
        output_size: (h, w) of the canvas; default `size`.

    Returns:
        (border [4] float32 (y0, y1, x0, x1): the content in the canvas; offset [2] int32
        (y, x) = center - output // 2: canvas = image - offset; source [4] int32 (y0, y1, x0,
        x1): the content in the image).
    """
    output = tf.constant(output_size or size, tf.int32)
    center = tf.cast(center, tf.int32)
    half = tf.constant(size, tf.int32) // 2
    start = tf.maximum(0, center - half)
    end = tf.minimum(center + half, tf.cast(image_hw, tf.int32))
    middle = output // 2
    first, last = middle - (center - start), middle + (end - center)
    border = tf.cast(tf.stack([first[0], last[0], first[1], last[1]]), tf.float32)
    source = tf.stack([start[0], end[0], start[1], end[1]])
    return border, center - middle, source


def crop_image(
    image: tf.Tensor, center: tf.Tensor, size: tuple[int, int], output_size: tuple[int, int] | None = None
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The official `crop_image` pixel for pixel: `crop_placement`'s content on a zero canvas.

    image [H, W, C] -> (canvas [h, w, C] of the image's dtype, border [4] float32, offset [2]).
    """
    output = output_size or size
    border, offset, source = crop_placement(center, size, tf.shape(image)[:2], output)
    y0, y1, x0, x1 = tf.unstack(source)
    top, bottom, left, right = tf.unstack(tf.cast(border, tf.int32))
    padding = [[top, output[0] - bottom], [left, output[1] - right], [0, 0]]
    return tf.pad(image[y0:y1, x0:x1], padding), border, offset


def scale_size(image_hw: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """The official `scale_image_detections`' new size [2] int32: int(side * scale) in float64."""
    return tf.cast(tf.cast(image_hw, tf.float64) * tf.cast(scale, tf.float64), tf.int32)


def scale_boxes(boxes: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """boxes [N, 4] float32 * scale, rounded once to float32 (`dets[:, 0:4] *= scale`).

    The sampler passes float32(scale): numpy 1 casts a scalar to the array's dtype.
    """
    return tf.cast(tf.cast(boxes, tf.float64) * tf.cast(scale, tf.float64), tf.float32)


def sample_geometry(
    boxes: tf.Tensor,
    image_hw: tf.Tensor,
    draws: Mapping[str, tf.Tensor],
    sampling: SaccadeSampling = SaccadeSampling(),
    flip: bool = True,
) -> dict[str, tf.Tensor]:
    """One image's scale, crop, flip and boxes, as the official `cornernet_saccade` per image.

    Args:
        boxes: [N, 4] float32 (x1, y1, x2, y2) in image px.
        image_hw: [2] int (H, W).
        draws: The `DRAWS` uniforms (`draw_uniforms`, or a recorded official sample).
        sampling: The settings.
        flip: Draw the flip (the official flips unless `debug`).

    Returns:
        "scale" float64, "reference" int32 (-1: none, the scale is a choice of rand_scales),
        "scaled_hw" [2] int32, "center" [2] int32 (y, x) and "offset" [2] int32 of the crop in
        the scaled image, "border" [4] float32 (y0, y1, x0, x1) of its content, "flipped" bool;
        per box after the first clip [N1]: "scaled_boxes", "cropped_boxes" [N1, 4]; per box
        left in the crop [M]: "rows" int32 (its row in `boxes`), "boxes" [M, 4] float32 in
        input px (flipped), "overlaps" [M] float32 (`bbox_overlaps` with the unclipped box
        scaled) and "positive" [M] bool (overlap > 0.5 and a longer side >= min_scale).
    """
    original = tf.cast(boxes, tf.float32)
    image_hw = tf.cast(image_hw, tf.int32)
    clipped, rows = clip_detections(original, tf.stack([0, image_hw[0], 0, image_hw[1]]))
    count = tf.shape(clipped)[0]
    has_box = count > 0
    if sampling.random_crop:
        has_box = tf.logical_and(has_box, draws["skip"] <= 0.7)
    reference = _randint(draws["reference"], 0, tf.maximum(count, 1))
    # without a reference, row `count` is an appended zero box (its scale and crop are unused)
    box = tf.gather(tf.concat([clipped, tf.zeros([1, 4])], 0), tf.where(has_box, reference, count))
    target_size = _randint(draws["target_size"], *target_size_range(longer_side(box)))
    choices = tf.constant(sampling.rand_scales, tf.float64)
    fallback = tf.gather(choices, _randint(draws["fallback_scale"], 0, len(sampling.rand_scales)))
    scale = tf.where(has_box, reference_scale(box, target_size), fallback)
    scaled_hw = scale_size(image_hw, scale)
    box_scale = tf.cast(scale, tf.float32)
    scaled = scale_boxes(clipped, box_scale)
    centered = tf.constant(False)
    if sampling.rand_center:
        centered = draws["centered"] > 0.5
    jitter = tf.stack(
        [[_randint(draws[f"jitter_{end}_{axis}"], 0, 15) for end in ("low", "high")] for axis in ("y", "x")]
    )
    pick = tf.stack([draws["pick_y"], draws["pick_x"]])
    reference_box = scale_boxes(box[tf.newaxis], box_scale)[0]
    center, _, _ = crop_center(scaled_hw, reference_box, has_box, centered, jitter, pick, sampling.input_size)
    border, offset, _ = crop_placement(center, sampling.input_size, scaled_hw)
    cropped = scaled - tf.cast(tf.tile(offset[::-1], [2]), tf.float32)
    final, kept = clip_detections(cropped, border)
    flipped = tf.constant(False)
    if flip:
        flipped = draws["flip"] > 0.5
    width = float(sampling.input_size[1])
    mirrored = tf.stack([(width - final[:, 2]) - 1.0, final[:, 1], (width - final[:, 0]) - 1.0, final[:, 3]], axis=1)
    final = tf.where(flipped, mirrored, final)
    rows = tf.gather(rows, kept)
    overlaps = bbox_overlaps(final, scale_boxes(tf.gather(original, rows), box_scale))
    cells = tf.cast(final, tf.int32)  # int() of the corners, as the official size check
    longer = tf.maximum(cells[:, 3] - cells[:, 1], cells[:, 2] - cells[:, 0])
    return {
        "scale": scale,
        "reference": tf.where(has_box, reference, -1),
        "scaled_hw": scaled_hw,
        "center": center,
        "offset": offset,
        "border": border,
        "flipped": flipped,
        "scaled_boxes": scaled,
        "cropped_boxes": cropped,
        "rows": rows,
        "boxes": final,
        "overlaps": overlaps,
        "positive": (overlaps > MIN_OVERLAP) & (longer >= sampling.min_scale),
    }


def attention_targets(
    boxes: tf.Tensor,
    num_boxes: tf.Tensor,
    ratios: tuple[int, ...] = SaccadeSampling.att_ratios,
    ranges: tuple[tuple[int, int], ...] = SaccadeSampling.att_ranges,
    sizes: tuple[tuple[int, int], ...] = SaccadeSampling.att_sizes,
) -> dict[str, tf.Tensor]:
    """The official `create_attention_mask` of a batch: binary maps, no Gaussian.

    Every box counts, whatever its overlap or size (quirk S6): map j marks the cell
    (int(cy / ratio_j), int(cx / ratio_j)) of the float32 box centre when lo_j <= max(w, h) <= hi_j,
    inclusive at both ends, so sizes 32 and 96 mark two maps.

    Args:
        boxes: [B, N, 4] float32 (x1, y1, x2, y2) in input px, inside the input.
        num_boxes: [B] int; image b uses its first num_boxes[b] rows.
        ratios, ranges, sizes: Per map, input px per cell, object sizes (lo, hi) and (h, w).

    Returns:
        "attention_0" .. [B, h_j, w_j, 1] float32, coarsest first.
    """
    boxes = tf.cast(boxes, tf.float32)
    present = tf.sequence_mask(num_boxes, tf.shape(boxes)[1])
    longer = tf.reduce_max(boxes[..., 2:4] - boxes[..., 0:2], axis=-1)
    centers_yx = ((boxes[..., 0:2] + boxes[..., 2:4]) / 2.0)[..., ::-1]
    maps = {}
    for j, (ratio, (low, high), size) in enumerate(zip(ratios, ranges, sizes, strict=True)):
        hits = tf.where(present & (longer >= low) & (longer <= high))  # [K, 2] (image, row)
        cells = tf.cast(tf.cast(tf.gather_nd(centers_yx, hits) / float(ratio), tf.int32), tf.int64)
        indices = tf.concat([hits[:, :1], cells, tf.zeros_like(hits[:, :1])], axis=1)
        shape = tf.stack([tf.shape(boxes, tf.int64)[0], size[0], size[1], 1])
        ones = tf.ones_like(indices[:, 0], tf.float32)
        maps[f"attention_{j}"] = tf.tensor_scatter_nd_max(tf.zeros(shape), indices, ones)
    return maps


def saccade_view(
    image: tf.Tensor,
    boxes: tf.Tensor,
    classes: tf.Tensor,
    seed: tf.Tensor,
    *,
    sampling: SaccadeSampling = SaccadeSampling(),
    flip: bool = True,
    jitter: bool = True,
    light: bool = True,
) -> tuple[dict[str, tf.Tensor], tf.Tensor, tf.Tensor, tf.Tensor]:
    """One CornerNet-Saccade training sample, in `augment.sample_view`'s form: the draws and the
    boxes here, the pixel work left to `augment.render_views`.

    The official resizes the image to `scaled_hw` (cv2 bilinear) and copies a window of it onto
    a zero canvas; here that is one sampling box in the original image (the resize's own scale
    per axis, scaled_hw / (H, W), so the pixels land where cv2 puts them). Deviation: the
    canvas' last row and column (S4) show image content where the official leaves them black;
    the boxes are clipped as the official, so targets do not change. Flipped boxes are the
    official 254 - x (pixel indices mirrored), one pixel left of the mirrored content. Colour jitter and lighting
    are `augment.color_params`' (the official applies both to every sample, validation too: S2).

    Args:
        image: [H, W, 3] uint8; passed through untouched.
        boxes: [N, 4] (x1, y1, x2, y2) in image px.
        classes: [N] class indices, 0-based.
        seed: [2] int stateless seed of every draw.
        sampling: The sampler's settings.
        flip: Draw the flip.
        jitter: Draw a colour jitter.
        light: Draw a PCA lighting shift.

    Returns:
        (view, boxes, classes, positive): view {"image", "image_size" [2], "sampling_box" [4],
        "color" [6]} for `augment.render_views`; boxes [M, 4] float32 in input px, classes [M]
        and positive [M] bool (corner targets; the others are ignored regions) of the boxes left
        in the crop.
    """
    geometry_seed, jitter_seed, light_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    image_hw = tf.shape(image)[:2]
    geometry = sample_geometry(boxes, image_hw, draw_uniforms(geometry_seed), sampling, flip)
    # canvas px i of an axis is scaled-image px offset + i, at image px (p + 0.5) * ratio - 0.5
    ratio = tf.cast(image_hw, tf.float32) / tf.cast(geometry["scaled_hw"], tf.float32)
    start = tf.cast(geometry["offset"], tf.float32) * ratio
    end = start + tf.constant(sampling.input_size, tf.float32) * ratio
    view = {
        "image": image,
        "image_size": image_hw,
        "sampling_box": augment.sampling_box(tf.concat([start, end], 0), sampling.input_size, geometry["flipped"]),
        "color": augment.color_params(jitter_seed if jitter else None, light_seed if light else None),
    }
    classes = tf.gather(classes, geometry["rows"])
    return view, geometry["boxes"], classes, geometry["positive"]


def saccade_targets(
    boxes: tf.Tensor,
    classes: tf.Tensor,
    positive: tf.Tensor,
    num_boxes: tf.Tensor,
    targets: TargetSpec,
    sampling: SaccadeSampling = SaccadeSampling(),
) -> dict[str, tf.Tensor]:
    """A batch's CornerNet-Saccade targets from padded `saccade_view` boxes: the corner targets
    with ignore maps (`build_batch_targets(positive=...)`) and the attention maps.

    Args:
        boxes: [B, N, 4] float32 in input px.
        classes: [B, N] int, 0-based.
        positive: [B, N] bool.
        num_boxes: [B] int.
        targets: Official: gaussian_iou 0.5, coordinate_dtype "float64", output 64 x 64.
        sampling: The attention maps' settings.

    Returns:
        `build_batch_targets`' dict (with tl_valid, br_valid) and attention_0 .. [B, h_j, w_j, 1].
    """
    result = build_batch_targets(boxes, classes, num_boxes, **dataclasses.asdict(targets), positive=positive)
    result.update(attention_targets(boxes, num_boxes, sampling.att_ratios, sampling.att_ranges, sampling.att_sizes))
    return result
