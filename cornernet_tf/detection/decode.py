"""Decoding of CornerNet / CenterNet head outputs into boxes, in the TensorFlow graph.

Pure tensor code, batched, shared by evaluation, export and serving. Everything here follows
the official test path (CornerNet `kp_utils._decode` + `test/coco.py`, CenterNet likewise);
`tests/fixtures/official/README.md` states the rules and `tests/test_decode.py` checks them.

A *detections* dict holds, for B images and N rows:
  `boxes` [B, N, 4] float32 (x1, y1, x2, y2), `scores` [B, N] float32, `classes` [B, N] int32
  (0-based), `valid` [B, N] bool; `decode_corners` adds `tl_scores`, `br_scores`.
Invalid rows have score -1 (the original's marker) and sort last. A *centers* dict (CenterNet)
holds `centers` [B, K, 2] (x, y), `scores` [B, K], `classes` [B, K].

Image geometry: the pipelines' `image_info` [B, 6] vectors (`data/image_info.py` defines
them: input px = image px * scale + offset, and the original size for clipping) plus the map
stride, input size / output size per axis (`image_info.map_stride`).

The official test, per image batch and scale (the network runs on [images; flipped images]):
  dets = flip_merge(decode_corners(outputs, ...), output_width)        # [B, 2N], map pixels
  dets = detections_to_image(dets, image_info, stride)                  # image pixels
  (CenterNet: the same for decode_centers at scale 1, reject_margin=5, then centernet_rescore)
then, with d = merge_detections(per_scale), soft_nms(d["boxes"], d["scores"], d["classes"],
d["valid"]) keeps the best 100.

Nothing here is decorated: callers wrap it in `tf.function`. Every function runs under XLA
(`jit_compile=True`; tested for `decode_corners`, `decode_centers`, `soft_nms`). On CPU XLA
speeds soft-NMS up about 5x and decode not at all (docs/benchmarks.md).
"""

from __future__ import annotations

import tensorflow as tf

from cornernet_tf.data import image_info as info_lib
from cornernet_tf.objective.losses import gather_at

Detections = dict[str, tf.Tensor]


def heatmap_nms(heat: tf.Tensor, kernel: int = 3) -> tf.Tensor:
    """Keep only local maxima of `heat` [B, H, W, C] in a kernel x kernel window (others -> 0).

    Max-pool with stride 1 and -inf padding, keep where the pooled value equals the input,
    exactly the original's `_nms`. kernel 1 is the identity.
    """
    if kernel == 1:
        return heat
    pooled = tf.nn.max_pool2d(heat, ksize=kernel, strides=1, padding="SAME")
    return heat * tf.cast(tf.equal(pooled, heat), heat.dtype)


def topk_keypoints(heat: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Top-k over all classes and positions of `heat` [B, H, W, C] per image.

    Returns scores [B, k] float (descending), classes, ys, xs [B, k] int32. The selection is
    the original's top-K over the flattened C*H*W map; equal scores are broken by position
    (y, x, c) here, by an unspecified order in torch.
    """
    shape = tf.shape(heat)
    width, channels = shape[2], shape[3]
    flat = tf.reshape(heat, [shape[0], -1])
    scores, index = tf.math.top_k(flat, k=k, sorted=True)
    classes = index % channels
    spatial = index // channels
    return scores, classes, spatial // width, spatial % width


def _gather_at_yx(maps: tf.Tensor, ys: tf.Tensor, xs: tf.Tensor) -> tf.Tensor:
    """Values of `maps` [B, H, W, D] at integer positions ys, xs [B, K] -> [B, K, D]."""
    return gather_at(maps, ys * tf.shape(maps)[2] + xs)


def _keypoints(
    logits: tf.Tensor, offsets: tf.Tensor, k: int, nms_kernel: int
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """sigmoid -> NMS -> top-k -> sub-pixel offsets. Returns scores, classes, ys, xs, x, y [B, K]."""
    heat = heatmap_nms(tf.sigmoid(tf.cast(logits, tf.float32)), nms_kernel)
    scores, classes, ys, xs = topk_keypoints(heat, k)
    offset = _gather_at_yx(tf.cast(offsets, tf.float32), ys, xs)
    x = tf.cast(xs, tf.float32) + offset[..., 0]
    y = tf.cast(ys, tf.float32) + offset[..., 1]
    return scores, classes, ys, xs, x, y


def decode_corners(
    outputs: dict[str, tf.Tensor],
    k: int = 100,
    nms_kernel: int = 3,
    ae_threshold: float = 0.5,
    num_dets: int = 1000,
    no_border: bool = False,
) -> Detections:
    """Pair the top-k top-left and bottom-right corners into the best `num_dets` boxes.

    Every (tl i, br j) pair scores (tl + br) / 2, or -1 when the classes differ, the embeddings
    differ by more than `ae_threshold`, or the br corner lies left of / above the tl corner.
    Defaults are the official CornerNet test settings.

    Args:
        outputs: `tl_heatmap`, `br_heatmap` logits [B, H, W, C]; `tl_embedding`, `br_embedding`
            [B, H, W, 1]; `tl_offset`, `br_offset` [B, H, W, 2] (channel 0 = x).
        k: Corners of each kind kept per image (top-k over all classes and positions).
        nms_kernel: Window of the heatmap max-pool NMS (`heatmap_nms`); 1 disables it.
        ae_threshold: Largest embedding distance of a valid pair.
        num_dets: Pairs kept per image.
        no_border: CornerNet-Lite's test setting (Saccade): a pair also scores -1 when its tl
            corner lies in the map's first row or column, or its br corner in the last row or
            column (integer positions, before the offsets), as objects cut by a crop's edge do.

    Returns:
        A detections dict with N = min(num_dets, k*k) rows, boxes in output-map pixels, sorted by
        score (invalid rows last), plus `tl_scores`, `br_scores` [B, N].
    """
    tl_s, tl_c, tl_ys, tl_xs, tl_x, tl_y = _keypoints(outputs["tl_heatmap"], outputs["tl_offset"], k, nms_kernel)
    br_s, br_c, br_ys, br_xs, br_x, br_y = _keypoints(outputs["br_heatmap"], outputs["br_offset"], k, nms_kernel)
    tl_tag = _gather_at_yx(tf.cast(outputs["tl_embedding"], tf.float32), tl_ys, tl_xs)[..., 0]
    br_tag = _gather_at_yx(tf.cast(outputs["br_embedding"], tf.float32), br_ys, br_xs)[..., 0]

    # Pair matrices [B, K(tl), K(br)], flattened as i * K + j like the original.
    scores = (tl_s[:, :, None] + br_s[:, None, :]) / 2
    invalid = (
        tf.not_equal(tl_c[:, :, None], br_c[:, None, :])
        | (tf.abs(tl_tag[:, :, None] - br_tag[:, None, :]) > ae_threshold)
        | (br_x[:, None, :] < tl_x[:, :, None])
        | (br_y[:, None, :] < tl_y[:, :, None])
    )
    if no_border:
        shape = tf.shape(outputs["tl_heatmap"])
        tl_border = tf.equal(tl_ys, 0) | tf.equal(tl_xs, 0)
        br_border = tf.equal(br_ys, shape[1] - 1) | tf.equal(br_xs, shape[2] - 1)
        invalid |= tl_border[:, :, None] | br_border[:, None, :]
    scores = tf.where(invalid, -tf.ones_like(scores), scores)
    batch = tf.shape(scores)[0]
    top_scores, pair = tf.math.top_k(tf.reshape(scores, [batch, k * k]), k=min(num_dets, k * k))
    i, j = pair // k, pair % k

    def take(values: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
        return tf.gather(values, index, batch_dims=1)

    boxes = tf.stack([take(tl_x, i), take(tl_y, i), take(br_x, j), take(br_y, j)], axis=-1)
    return {
        "boxes": boxes,
        "scores": top_scores,
        "tl_scores": take(tl_s, i),
        "br_scores": take(br_s, j),
        "classes": take(tl_c, i),
        "valid": top_scores > -1,
    }


def decode_centers(outputs: dict[str, tf.Tensor], k: int = 70, nms_kernel: int = 3) -> Detections:
    """CenterNet center keypoints: the top-k of `ct_heatmap` [B, H, W, C] plus `ct_offset`.

    Returns a centers dict: `centers` [B, k, 2] (x, y) in output-map pixels, `scores` [B, k]
    (descending), `classes` [B, k] int32. The original uses the corners' K (70 at test time).
    """
    scores, classes, _, _, x, y = _keypoints(outputs["ct_heatmap"], outputs["ct_offset"], k, nms_kernel)
    return {"centers": tf.stack([x, y], axis=-1), "scores": scores, "classes": classes}


def centernet_rescore(
    dets: Detections,
    centers: Detections,
    area_threshold: float = 22500.0,
    small_n: int = 3,
    large_n: int = 5,
) -> Detections:
    """CenterNet's central-region check: keep a box only if a same-class center falls inside.

    A box of area <= area_threshold uses the central n x n-th region with n = small_n, larger
    ones n = large_n (open intervals). With a match, score <- (2 * score + center_score) / 3
    using the first matching center in center order; without, the box becomes invalid (score -1).

    Args:
        dets: Detections dict [B, N], in image pixels.
        centers: Centers dict [B, K], in the same pixels as `dets`.
        area_threshold: Largest box area (square pixels) checked with `small_n`.
        small_n: n of the central region of small boxes.
        large_n: n of the central region of larger boxes.

    Returns:
        A new detections dict: `dets` with `scores` and `valid` updated.
    """
    x1, y1, x2, y2 = tf.unstack(dets["boxes"], axis=-1)
    area = (x2 - x1) * (y2 - y1)
    n = tf.where(area <= area_threshold, float(small_n), float(large_n))
    near, far = (n + 1) / 2, (n - 1) / 2  # 2, 1 for n = 3 and 3, 2 for n = 5: exact floats
    left, right = (near * x1 + far * x2) / n, (far * x1 + near * x2) / n
    top, bottom = (near * y1 + far * y2) / n, (far * y1 + near * y2) / n

    cx = centers["centers"][:, None, :, 0]  # [B, 1, K]
    cy = centers["centers"][:, None, :, 1]
    match = (
        (cx > left[..., None])
        & (cx < right[..., None])
        & (cy > top[..., None])
        & (cy < bottom[..., None])
        & tf.equal(centers["classes"][:, None, :], dets["classes"][..., None])
    )  # [B, N, K]
    num_centers = tf.shape(match)[-1]
    order = tf.range(num_centers)[None, None, :]
    first = tf.reduce_min(tf.where(match, order, num_centers), axis=-1)  # [B, N]
    matched = (first < num_centers) & dets["valid"]
    center_score = tf.gather(centers["scores"], tf.minimum(first, num_centers - 1), batch_dims=1)
    scores = tf.where(matched, (dets["scores"] * 2 + center_score) / 3, -tf.ones_like(area))
    return {**dets, "scores": scores, "valid": matched}


def points_to_image(points: tf.Tensor, image_info: tf.Tensor, stride: tf.Tensor) -> tf.Tensor:
    """Map (x, y) pairs [B, N, 2k] from output-map to image pixels (no clipping).

    image_info [B, 6] (`data/image_info.py`); stride: input px per map px, (y, x) [2] or a
    scalar, shared by the batch.
    """
    points = tf.cast(points, tf.float32)
    stride_xy = tf.reverse(tf.broadcast_to(tf.cast(stride, tf.float32), [2]), [0])
    return info_lib.input_to_image(points * tf.tile(stride_xy, [points.shape[-1] // 2]), image_info)


def boxes_to_image(boxes: tf.Tensor, image_info: tf.Tensor, stride: tf.Tensor, clip: bool = True) -> tf.Tensor:
    """Map boxes [B, N, 4] (x1, y1, x2, y2) from output-map to image pixels, clipped to the image.

    Undoes the resize/pad described by image_info [B, 6] after scaling by the map stride (see
    `points_to_image`); clipping is to [0, width] x [0, height] as in the original.

    Args:
        boxes: [B, N, 4] (x1, y1, x2, y2) in output-map pixels.
        image_info: [B, 6] (`data/image_info.py`).
        stride: Input px per map px, (y, x) [2] or a scalar, shared by the batch.
        clip: Clip to the original image; False leaves the boxes unclipped.

    Returns:
        [B, N, 4] float32 boxes in image pixels.
    """
    boxes = points_to_image(boxes, image_info, stride)
    return info_lib.clip_to_image(boxes, image_info) if clip else boxes


def detections_to_image(
    dets: Detections, image_info: tf.Tensor, stride: tf.Tensor, reject_margin: float | None = None
) -> Detections:
    """Map a detections (or centers) dict from map to image pixels: boxes clipped, centers not.

    The original measures CenterNet's 5-pixel reject margin in the resized image, i.e. 5 / s
    image pixels at test scale s.

    Args:
        dets: Detections or centers dict in output-map pixels.
        image_info: [B, 6] (`data/image_info.py`).
        stride: Input px per map px, (y, x) [2] or a scalar (see `points_to_image`).
        reject_margin: When given (CenterNet: 5), boxes reaching `reject_margin` pixels beyond
            any image edge before clipping become invalid (score -1).

    Returns:
        A new dict of the same keys, in image pixels.
    """
    out = dict(dets)
    if "centers" in dets:
        out["centers"] = points_to_image(dets["centers"], image_info, stride)
    if "boxes" in dets:
        boxes = boxes_to_image(dets["boxes"], image_info, stride, clip=False)
        if reject_margin is not None:
            info = tf.cast(image_info, tf.float32)
            height = info[:, info_lib.ORIGINAL_HEIGHT, None]
            width = info[:, info_lib.ORIGINAL_WIDTH, None]
            x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
            outside = (
                (x1 <= -reject_margin)
                | (y1 <= -reject_margin)
                | (x2 >= width + reject_margin)
                | (y2 >= height + reject_margin)
            )
            out["valid"] = dets["valid"] & ~outside
            out["scores"] = tf.where(out["valid"], dets["scores"], -tf.ones_like(dets["scores"]))
        out["boxes"] = info_lib.clip_to_image(boxes, image_info)
    return out


def merge_detections(parts: list[Detections]) -> Detections:
    """Concatenate detections (or centers) dicts of the same images along rows: [B, sum N]."""
    return {key: tf.concat([part[key] for part in parts], axis=1) for key in parts[0]}


def flip_merge(dets: Detections, width: float | tf.Tensor) -> Detections:
    """Merge the decode of [images; flipped images] ([2B, N]) into [B, 2N], unflipped first.

    Boxes of the flipped half become x1' = width - x2, x2' = width - x1, centers x' = width - x,
    with `width` the output-map width, as in the original test code. Works on detections and
    centers dicts, before mapping to image pixels.
    """
    half = tf.shape(next(iter(dets.values())))[0] // 2
    original = {key: value[:half] for key, value in dets.items()}
    flipped = {key: value[half:] for key, value in dets.items()}
    width = tf.cast(width, tf.float32)
    if "boxes" in flipped:
        x1, y1, x2, y2 = tf.unstack(flipped["boxes"], axis=-1)
        flipped["boxes"] = tf.stack([width - x2, y1, width - x1, y2], axis=-1)
    if "centers" in flipped:
        x, y = tf.unstack(flipped["centers"], axis=-1)
        flipped["centers"] = tf.stack([width - x, y], axis=-1)
    return merge_detections([original, flipped])


def soft_nms(
    boxes: tf.Tensor,
    scores: tf.Tensor,
    classes: tf.Tensor,
    valid: tf.Tensor | None = None,
    sigma: float = 0.5,
    max_detections: int = 100,
    score_threshold: float = 0.001,
    pixel_inclusive: bool = True,
) -> Detections:
    """Per-class Gaussian soft-NMS, then the best `max_detections` over all classes.

    The original's `soft_nms(method=2)`: repeatedly take the highest current score, then
    multiply every same-class box overlapping it by exp(-iou^2 / sigma) and drop those that fall
    below `score_threshold` (boxes are never dropped for their initial score). Since per-class
    sequences are independent and non-increasing, taking the global maximum each step yields the
    top `max_detections` of all classes directly.

    Not `tf.image.non_max_suppression_with_scores`: its weight is exp(-0.5 iou^2 / sigma')
    (sigma' = sigma / 2 would match), but it hard-drops boxes at iou >= iou_threshold <= 1, so
    duplicate boxes vanish instead of decaying; it is per-class only and not XLA-compatible.

    Args:
        boxes: [B, N, 4] (x1, y1, x2, y2).
        scores: [B, N].
        classes: [B, N] int.
        valid: [B, N] bool rows to consider; None: all rows.
        sigma: Width of the Gaussian decay.
        max_detections: Rows kept per image.
        score_threshold: Boxes decayed below it are dropped.
        pixel_inclusive: Count w = x2 - x1 + 1 (and h likewise) as the original does.

    Returns:
        A detections dict [B, max_detections], rows in selection (descending) order, invalid
        rows with score -1 and zero boxes.
    """
    boxes = tf.cast(boxes, tf.float32)
    current = tf.cast(scores, tf.float32)
    classes = tf.cast(classes, tf.int32)
    if valid is None:
        valid = tf.ones_like(current, dtype=tf.bool)
    pad = 1.0 if pixel_inclusive else 0.0
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    area = (x2 - x1 + pad) * (y2 - y1 + pad)
    gone = tf.constant(-float("inf"))
    current = tf.where(valid, current, gone)

    def step(m: tf.Tensor, current: tf.Tensor, picks: tf.TensorArray, picked: tf.TensorArray):
        best = tf.argmax(current, axis=-1, output_type=tf.int32)  # [B]
        best_score = tf.gather(current, best, batch_dims=1)
        found = best_score > gone

        def at_best(values: tf.Tensor) -> tf.Tensor:
            return tf.gather(values, best, batch_dims=1)[:, None]

        iw = tf.minimum(x2, at_best(x2)) - tf.maximum(x1, at_best(x1)) + pad
        ih = tf.minimum(y2, at_best(y2)) - tf.maximum(y1, at_best(y1)) + pad
        overlap = (iw > 0) & (ih > 0) & tf.equal(classes, at_best(classes)) & found[:, None]
        inter = iw * ih
        iou = inter / (at_best(area) + area - inter)
        decayed = tf.where(overlap, current * tf.exp(-(iou * iou) / sigma), current)
        decayed = tf.where(overlap & (decayed < score_threshold), gone, decayed)
        is_best = tf.equal(tf.range(tf.shape(current)[1])[None, :], best[:, None])
        decayed = tf.where(is_best, gone, decayed)
        picks = picks.write(m, tf.where(found, best, -1))
        picked = picked.write(m, best_score)
        return m + 1, decayed, picks, picked

    _, _, picks, picked = tf.while_loop(
        lambda m, *_: m < max_detections,
        step,
        (
            tf.constant(0),
            current,
            tf.TensorArray(tf.int32, size=max_detections),
            tf.TensorArray(tf.float32, size=max_detections),
        ),
    )
    index = tf.transpose(picks.stack())  # [B, M]
    found = index >= 0
    safe = tf.maximum(index, 0)
    return {
        "boxes": tf.where(found[..., None], tf.gather(boxes, safe, batch_dims=1), 0.0),
        "scores": tf.where(found, tf.transpose(picked.stack()), -1.0),
        "classes": tf.where(found, tf.gather(classes, safe, batch_dims=1), 0),
        "valid": found,
    }
