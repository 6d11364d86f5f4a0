"""CornerNet-Saccade's test procedure in the TensorFlow graph (official `core/test/cornernet_saccade.py`).

One image is searched in crops: a first pass on the whole image downsized (`init_sizes`), then
rounds of crops around the locations the attention maps and the confident detections point at,
and the detections of every crop are merged by a per-class soft-NMS. Each function mirrors one
official function, with its dtypes (float32 where the official arrays are float32, float64 where
they are float64) and its quirks (T1-T9 of tests/fixtures/official/README.md), so the result on
the official fixtures is the official one. Everything runs inside `tf.function` with unknown
image sizes and crop counts (no data-dependent Python control flow), as a SavedModel served by a
stock TF Serving needs.

Layouts: images NHWC, (y, x) locations, boxes (x1, y1, x2, y2). The network's detections of a
crop are the official 8 columns (x1, y1, x2, y2, score, tl_score, br_score, class 0-based) in
output-map pixels (`decoded_to_official` packs `decode.decode_corners` so); its attention maps
are sigmoid maps [n, h_j, w_j, 1], coarsest first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from cornernet_tf.detection import decode
from cornernet_tf.detection.saccade_settings import SaccadeSettings

# (normalized crops [n, S, S, 3], with_attention) -> (detections [n, K, 8], attention maps or None)
DetectCrops = Callable[[tf.Tensor, bool], tuple[tf.Tensor, Sequence[tf.Tensor] | None]]

REF_SCORE = 0.5  # detections above it become reference locations (`get_ref_locs`)
FIRST_PASS_SCORE = 0.3  # first-pass detections kept (T2)
LOCATION_NMS_THRESHOLD = 16  # the official call's `location_nms(thresh=16)`


def decoded_to_official(dets: decode.Detections) -> tf.Tensor:
    """`decode.decode_corners` output -> [B, N, 8] float32, the layout of the official `_decode`.

    Columns (x1, y1, x2, y2, score, tl_score, br_score, class); the class is 0-based as a float,
    as the official code stores it.
    """
    columns = [dets["scores"], dets["tl_scores"], dets["br_scores"], tf.cast(dets["classes"], tf.float32)]
    return tf.concat([tf.cast(dets["boxes"], tf.float32)] + [c[..., None] for c in columns], axis=-1)


def _divide(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """x / y, correctly rounded also in a graph where y is (or folds to) a constant.

    Grappler's constant folding rewrites x / constant into x * (1 / constant), one rounding more,
    which moves boxes and scores by an ulp away from the official numbers; it leaves DivNoNan
    alone. No divisor here is 0.
    """
    return tf.math.divide_no_nan(x, y)


def _bilinear_taps(
    canvas_lo: tf.Tensor, new: tf.Tensor, window_lo: tf.Tensor, window: tf.Tensor, size: int, image_size: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """One axis of torch's bilinear resize (align_corners=False, no antialias) of each crop's window.

    The window [window_lo, window_lo + window) of the image is resized to `new` pixels written at
    [canvas_lo, canvas_lo + new) of a `size` canvas. Returns, per crop and canvas index [n, size],
    the two source indices (absolute, clamped into the image), their float64 weights and whether
    the index is written. Source positions are torch's: (d + 0.5) * window / new - 0.5, clamped
    at 0; the upper tap repeats the last pixel.
    """
    d = tf.range(size)[None, :] - canvas_lo[:, None]
    written = (d >= 0) & (d < new[:, None]) & (window[:, None] > 0)
    ratio = _divide(tf.cast(window, tf.float64), tf.cast(tf.maximum(new, 1), tf.float64))
    source = tf.maximum(ratio[:, None] * (tf.cast(d, tf.float64) + 0.5) - 0.5, 0.0)
    last = window[:, None] - 1
    i0 = tf.minimum(tf.cast(tf.floor(source), tf.int32), last)
    weight1 = tf.clip_by_value(source - tf.cast(i0, tf.float64), 0.0, 1.0)
    i1 = i0 + tf.cast(i0 < last, tf.int32)

    def absolute(index: tf.Tensor) -> tf.Tensor:
        return tf.clip_by_value(window_lo[:, None] + index, 0, image_size - 1)

    return absolute(i0), absolute(i1), 1.0 - weight1, weight1, written


def _crop_batch(
    image: tf.Tensor, centers: tf.Tensor, sizes: tf.Tensor, output_size: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """`crop_image_gpu` for n windows at once: canvases [n, o, o, C] float32, offsets [n, 2] int32.

    image [H, W, C] float64; centers [n, 2] (y, x) and sizes [n, 2] (h, w) int32. The four taps
    are gathered and mixed in float64 as torch does on the float64 image, then stored in float32.
    Gathering resizes windows of different sizes into their canvases in one batched op, where
    `tf.image.resize` would need one call per crop and float32 arithmetic.
    """
    shape = tf.shape(image)
    image_hw = shape[:2]
    half = sizes // 2
    lo = tf.maximum(centers - half, 0)
    hi = tf.minimum(centers + half, image_hw[None, :])
    scale = output_size / tf.cast(tf.reduce_max(sizes, axis=1, keepdims=True), tf.float64)
    middle = output_size // 2
    canvas_lo = middle - tf.cast(tf.cast(centers - lo, tf.float64) * scale, tf.int32)
    canvas_hi = middle + tf.cast(tf.cast(hi - centers, tf.float64) * scale, tf.int32)
    new, window = canvas_hi - canvas_lo, hi - lo
    y0, y1, wy0, wy1, rows = _bilinear_taps(canvas_lo[:, 0], new[:, 0], lo[:, 0], window[:, 0], output_size, shape[0])
    x0, x1, wx0, wx1, cols = _bilinear_taps(canvas_lo[:, 1], new[:, 1], lo[:, 1], window[:, 1], output_size, shape[1])

    flat = tf.reshape(image, [-1, shape[2]])

    def tap(ys: tf.Tensor, xs: tf.Tensor) -> tf.Tensor:
        return tf.gather(flat, ys[:, :, None] * shape[1] + xs[:, None, :])  # [n, o, o, C]

    wx0, wx1 = wx0[:, None, :, None], wx1[:, None, :, None]
    top = tap(y0, x0) * wx0 + tap(y0, x1) * wx1
    bottom = tap(y1, x0) * wx0 + tap(y1, x1) * wx1
    mixed = top * wy0[:, :, None, None] + bottom * wy1[:, :, None, None]
    written = rows[:, :, None, None] & cols[:, None, :, None]
    return tf.where(written, tf.cast(mixed, tf.float32), 0.0), centers - half


def crop_image(
    image: tf.Tensor, center_yx: tf.Tensor, size_hw: tf.Tensor, output_size: int = 255
) -> tuple[tf.Tensor, tf.Tensor]:
    """The official `crop_image_gpu`: a window of `image` resized into a zero canvas.

    The window of `size_hw` around `center_yx` is clipped to the image, resized bilinearly
    (torch's align_corners=False, without antialias, in float64) by output_size / max(size_hw)
    and written at [o//2 - int(before * factor), o//2 + int(after * factor)) of the canvas per axis,
    with `before` / `after` the clipped extent on each side of the centre. So crops larger than the
    image are padded with zeros, and the unclipped window's origin is returned as the offset.

    Args:
        image: [H, W, C] float (the official code crops image / 255).
        center_yx: [2] int (y, x).
        size_hw: [2] int (h, w).
        output_size: Side of the square canvas.

    Returns:
        The canvas [o, o, C] float32 and the offset [2] int32, (y, x) - size // 2.
    """
    canvases, offsets = _crop_batch(
        tf.cast(image, tf.float64),
        tf.reshape(tf.cast(center_yx, tf.int32), [1, 2]),
        tf.reshape(tf.cast(size_hw, tf.int32), [1, 2]),
        output_size,
    )
    return canvases[0], offsets[0]


def prepare_images(image: tf.Tensor, locations: tf.Tensor, input_size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The official `prepare_images`: one square crop per location, resized to `input_size`.

    A location (y, x, scale, ...) crops a window of side int(input_size / scale) around
    (int(y), int(x)) (truncation toward zero, as Python's int()), so the objects it was chosen for
    come out at the size the network detects best. The side is computed in float64, as the official
    environment (numpy 1) did for the float32 first-pass scales too. The `flipped` argument of the
    official function is ignored there (T9) and absent here.

    Args:
        image: [H, W, C] float (image / 255).
        locations: [n, >= 3] float32 (first pass) or float64.
        input_size: The network's square input side.

    Returns:
        Crops [n, S, S, C] float32 with zero padding (before normalization, T7) and the window
        offsets [n, 2] float32 (y, x).
    """
    locations = tf.convert_to_tensor(locations)
    centers = tf.cast(locations[:, :2], tf.int32)
    side = tf.cast(input_size / tf.cast(locations[:, 2], tf.float64), tf.int32)
    crops, offsets = _crop_batch(tf.cast(image, tf.float64), centers, tf.stack([side, side], axis=1), input_size)
    return crops, tf.cast(offsets, tf.float32)


def rescale_and_remap(
    dets: tf.Tensor, scales: tf.Tensor, offsets: tf.Tensor, input_size: int, output_size: int
) -> tf.Tensor:
    """The official `rescale_dets_` then `remap_dets_`: crop detections in map px -> image px.

    Coordinates are divided by the float32 ratio output_size / input_size (float32 arithmetic),
    then by the location's scale and shifted by the window offset. The scale is the location's,
    not the crop's actual resize factor input_size / int(input_size / scale) (T5). float32
    scales divide in float32, float64 ones in float64 with the result stored in float32, as the
    official in-place numpy updates do.

    Args:
        dets: [n, K, 8] float32 (x1, y1, x2, y2, ...), output-map pixels.
        scales: [n] float32 or float64, the crops' location scales.
        offsets: [n, 2] float32 (y, x) window origins.
        input_size, output_size: The network's input and output sides.

    Returns:
        [n, K, 8] float32, coordinates in image pixels (not clipped, T1); other columns unchanged.
    """
    dets = tf.convert_to_tensor(dets, tf.float32)
    scales = tf.convert_to_tensor(scales)
    coords = _divide(dets[..., :4], tf.constant(output_size / input_size, tf.float32))
    if scales.dtype == tf.float32:
        coords = _divide(coords, scales[:, None, None])
    else:
        coords = tf.cast(_divide(tf.cast(coords, scales.dtype), scales[:, None, None]), tf.float32)
    shift = tf.tile(tf.reverse(tf.cast(offsets, tf.float32), [1]), [1, 2])  # (x, y, x, y)
    return tf.concat([coords + shift[:, None, :], dets[..., 4:]], axis=-1)


def attention_nms(att: tf.Tensor, kernel: int) -> tf.Tensor:
    """The official `att_nms` on one map [n, h, w, 1]: keep cells equal to their k x k maximum.

    Plateaus keep every cell; kernel 1 keeps all. The same max-pool NMS as the heatmaps'.
    """
    return decode.heatmap_nms(att, kernel)


def decode_attention(
    atts: Sequence[tf.Tensor],
    scales: tf.Tensor,
    offsets: tf.Tensor,
    image_hw: tf.Tensor,
    ratios: Sequence[int],
    zooms: Sequence[float],
    threshold: float,
    ignore_same: bool = False,
) -> tf.Tensor:
    """The official `decode_atts`: attention cells above `threshold` -> next crop locations.

    For crop i and map j, each cell (row, col) > threshold (a float32 comparison) gives
    y = row * ratio_j / s_i + offset_y (x likewise): the cell's top-left corner, without +0.5 (T6),
    in float64. Locations outside the image are dropped, the next scale is zoom_j * s_i, and the
    whole (i, j) group is skipped when s_i > 2, when zoom_j * s_i > 4, or (ignore_same, later
    rounds) when zoom_j <= 1. Rows come crop by crop, maps coarsest first, cells row-major. The
    zoomed scale is computed in float64, as numpy 1 did (numpy 2: float32; equal for powers of 2).

    Args:
        atts: Attention maps after `attention_nms`, [n, h_j, w_j, 1] each, coarsest first.
        scales: [n] float32 or float64, the crops' location scales.
        offsets: [n, 2] float32 window origins (y, x).
        image_hw: [2] int, the image size.
        ratios: Input px per cell of each map.
        zooms: Scale factor of each map's locations.
        threshold: Attention score threshold.
        ignore_same: Skip maps whose zoom is <= 1.

    Returns:
        [M, 4] float64 (y, x, scale, score).
    """
    scales = tf.convert_to_tensor(scales)
    scale64 = tf.cast(scales, tf.float64)[:, None, None]
    offsets = tf.cast(offsets, tf.float64)
    height, width = (tf.cast(image_hw[k], tf.float64) for k in range(2))
    rows, keeps = [], []
    for att, ratio, zoom in zip(atts, ratios, zooms):
        if ignore_same and zoom <= 1:
            continue
        att = tf.cast(att[..., 0], tf.float32)
        shape = tf.shape(att)
        n = shape[0]
        grid_y = tf.cast(tf.range(shape[1]) * ratio, tf.float64)[None, :, None]
        grid_x = tf.cast(tf.range(shape[2]) * ratio, tf.float64)[None, None, :]
        ys = tf.broadcast_to(_divide(grid_y, scale64) + offsets[:, 0, None, None], shape)
        xs = tf.broadcast_to(_divide(grid_x, scale64) + offsets[:, 1, None, None], shape)
        next_scale = zoom * tf.cast(scales, tf.float64)
        group = ~((scales > 2) | (next_scale > 4))
        keep = (att > threshold) & (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width) & group[:, None, None]
        values = tf.stack(
            [ys, xs, tf.broadcast_to(next_scale[:, None, None], shape), tf.cast(att, tf.float64)], axis=-1
        )
        rows.append(tf.reshape(values, [n, -1, 4]))
        keeps.append(tf.reshape(keep, [n, -1]))
    if not rows:
        return tf.zeros([0, 4], tf.float64)
    return tf.boolean_mask(tf.concat(rows, axis=1), tf.concat(keeps, axis=1))


def reference_locations(dets: tf.Tensor) -> tf.Tensor:
    """The official `get_ref_locs`: a location on every detection scored above 0.5.

    (cy, cx, scale, 1) in float32, with scale = 192 / m for a box of max side m > 96, 64 / m for
    32 < m <= 96, 24 / m otherwise, so the next crop shows the object at a size the network
    detects well. Every score is 1, hence the ties of `location_nms` (T4).

    Args:
        dets: [M, 8] float32 detections in image pixels.

    Returns:
        [R, 4] float32.
    """
    dets = tf.boolean_mask(dets, dets[:, 4] > REF_SCORE)
    x1, y1, x2, y2 = tf.unstack(dets[:, :4], axis=1)
    longest = tf.maximum(x2 - x1, y2 - y1)
    scale = tf.where(longest > 96, 192 / longest, tf.where(longest > 32, 64 / longest, 24 / longest))
    return tf.stack([(y1 + y2) / 2, (x1 + x2) / 2, scale, tf.ones_like(scale)], axis=1)


def location_nms(locations: tf.Tensor, threshold: float = 15) -> tf.Tensor:
    """The official `location_nms`: greedy suppression of near-duplicate crop locations.

    Locations are taken by descending score; ties in reverse index order (a stable ascending sort,
    reversed: numpy 1.15's order for the official inputs, T4). Each taken location suppresses the
    remaining ones with min(|dy|, |dx|) <= threshold / its scale (a band in either axis, T3) and
    a scale ratio within [0.8, 1.2]. The official default threshold is 15; Saccade calls it with 16.

    Args:
        locations: [n, 4] float64 (y, x, scale, score).
        threshold: Distance in crop-input pixels.

    Returns:
        [k, 4] float64, in the order taken.
    """
    locations = tf.convert_to_tensor(locations, tf.float64)
    order = tf.reverse(tf.argsort(locations[:, 3], stable=True), [0])
    locations = tf.gather(locations, order)
    ys, xs, scales = locations[:, 0], locations[:, 1], locations[:, 2]
    count = tf.shape(locations)[0]
    index = tf.range(count)

    def step(alive: tf.Tensor, taken: tf.TensorArray, k: tf.Tensor):
        first = tf.reduce_min(tf.where(alive, index, count))
        distance = tf.minimum(tf.abs(ys - ys[first]), tf.abs(xs - xs[first]))
        ratio = _divide(scales[first], scales)
        keep = (distance > threshold / scales[first]) | (ratio > 1.2) | (ratio < 0.8)
        return alive & keep & tf.not_equal(index, first), taken.write(k, first), k + 1

    _, taken, _ = tf.while_loop(
        lambda alive, *_: tf.reduce_any(alive),
        step,
        (tf.ones([count], tf.bool), tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=[]), 0),
    )
    return tf.gather(locations, taken.stack())


def official_soft_nms(
    boxes: tf.Tensor,
    num_boxes: tf.Tensor | None = None,
    sigma: float = 0.5,
    nt: float = 0.3,
    threshold: float = 0.001,
    method: int = 0,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The official `soft_nms` (`core/external/nms.pyx`), batched, with its in-place result.

    Per batch row, for i = 0, 1, ...: the first row with the highest score among rows i..N-1 swaps
    columns 0-4 with row i (columns 5+ never move: they go stale, T8); every later row overlapping
    row i (iw > 0 and ih > 0, +1 pixel convention) has its score multiplied by a weight (method 2:
    exp(-ov^2 / sigma), `nt` unused; 1: 1 - ov above nt; 0: 0 above nt), and a row falling below
    `threshold` is overwritten by the last row, N dropping by one. The sequential scan of the
    original is evaluated in one step per i: the weights only depend on the rows' own boxes, so
    the kept rows, the holes the dropped ones leave, the rows moved into them (the last kept rows,
    from the end) and the stale rows after the new N follow from counts. Precision is that of the
    C code Cython generates (float32 variables, the literal 1 a C double), so scores are bitwise
    the official ones; rows beyond the new N hold what the original leaves there.

    Args:
        boxes: [B, N, D >= 5] float32 (x1, y1, x2, y2, score, ...).
        num_boxes: [B] int32 rows in use per batch row (the rest is ignored); None: all N.
        sigma, nt, threshold, method: The official arguments (defaults are nms.pyx's; Saccade
            uses sigma 0.7, nt 0.5, method 2).

    Returns:
        The array after the official call [B, N, D] float32 and the kept count [B] int32: the
        official result is range(count), rows [:count].
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    shape = tf.shape(boxes)
    length = shape[1]
    if num_boxes is None:
        num_boxes = tf.fill([shape[0]], length)
    num_boxes = tf.cast(num_boxes, tf.int32)
    position = tf.range(length)[None, :]
    sigma32, nt32, threshold32 = (tf.constant(v, tf.float32) for v in (sigma, nt, threshold))

    def plus_one(difference: tf.Tensor) -> tf.Tensor:
        return tf.cast(difference, tf.float64) + 1.0

    def step(i: tf.Tensor, rows: tf.Tensor, count: tf.Tensor):
        active = i < count
        scores = rows[..., 4]
        candidate = (position >= i) & (position < count[:, None])
        best = tf.reduce_max(tf.where(candidate, scores, -float("inf")), axis=1, keepdims=True)
        first_best = tf.reduce_min(tf.where(candidate & tf.equal(scores, best), position, length), axis=1)
        best_at = tf.where(active & (first_best < length), first_best, i)[:, None]
        swap = tf.where(tf.equal(position, i), best_at, tf.where(tf.equal(position, best_at), i, position))
        rows = tf.gather(rows, swap, batch_dims=1)

        x1, y1, x2, y2, score = tf.unstack(rows, axis=-1)
        tx1, ty1, tx2, ty2 = (rows[:, i, k, None] for k in range(4))
        area = tf.cast(plus_one(x2 - x1) * plus_one(y2 - y1), tf.float32)
        iw = tf.cast(plus_one(tf.minimum(tx2, x2) - tf.maximum(tx1, x1)), tf.float32)
        ih = tf.cast(plus_one(tf.minimum(ty2, y2) - tf.maximum(ty1, y1)), tf.float32)
        inter = iw * ih
        union = plus_one(tx2 - tx1) * plus_one(ty2 - ty1) + tf.cast(area, tf.float64) - tf.cast(inter, tf.float64)
        overlap = _divide(inter, tf.cast(union, tf.float32))
        if method == 2:
            weight = tf.cast(tf.exp(tf.cast(_divide(-(overlap * overlap), sigma32), tf.float64)), tf.float32)
        elif method == 1:
            weight = tf.where(overlap > nt32, 1.0 - overlap, 1.0)
        else:
            weight = tf.where(overlap > nt32, 0.0, 1.0)
        examined = (position > i) & (position < count[:, None]) & active[:, None]
        hit = examined & (iw > 0) & (ih > 0)
        decayed_score = tf.where(hit, weight * score, score)
        drop = hit & (decayed_score < threshold32)
        keep = examined & ~drop
        new_count = tf.where(active, i + 1 + tf.reduce_sum(tf.cast(keep, tf.int32), axis=1), count)
        end = new_count[:, None]

        # Rows (i, end) that were dropped are holes; the h-th hole receives the h-th kept row of
        # [end, count) counted from the end.
        left = (position > i) & (position < end)
        hole = left & drop
        hole_rank = tf.cumsum(tf.cast(hole, tf.int32), axis=1, exclusive=True)
        tail_kept = keep & (position >= end)
        tail_rank = tf.cumsum(tf.cast(tail_kept, tf.int32), axis=1)
        tail_total = tail_rank[:, -1:]
        fill = tf.clip_by_value(tf.searchsorted(tail_rank, tail_total - hole_rank, side="left"), 0, length - 1)
        # Row `end` is stale: where the scan consumed tail rows down to the first kept one, or
        # examined and dropped the rows left at `end` (the last one examined keeps its decayed score).
        first_tail_kept = tf.reduce_min(tf.where(tail_kept, position, length), axis=1, keepdims=True)
        scan_stop = tf.where(tail_total > 0, first_tail_kept, count[:, None])
        at_end = tf.equal(position, end) & (position < count[:, None]) & active[:, None]
        source = tf.where(left & hole, fill, position)
        source = tf.where(at_end, tf.where(scan_stop > end + 1, end + 1, end), source)
        use_decayed = left | (at_end & (scan_stop > end))

        decayed = tf.concat([rows[..., :4], decayed_score[..., None]], axis=-1)
        rows = tf.where(
            use_decayed[..., None], tf.gather(decayed, source, batch_dims=1), tf.gather(rows, source, batch_dims=1)
        )
        return i + 1, rows, new_count

    # Iterations past every row's N change nothing, so the loop ends there (the original runs to the first N).
    _, rows, count = tf.while_loop(
        lambda i, _, count: i < tf.reduce_max(count), step, (tf.constant(0), boxes[..., :5], num_boxes)
    )
    return tf.concat([rows, boxes[..., 5:]], axis=-1), count


def merge_detections(
    dets: tf.Tensor,
    num_classes: int,
    sigma: float = 0.7,
    nt: float = 0.5,
    method: int = 2,
    threshold: float = 0.001,
    max_per_image: int = 100,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The end of `cornernet_saccade_inference`: per-class soft-NMS, then the `max_per_image` cut.

    Each class's rows, in their order, go through `official_soft_nms` (all classes at once, one
    batch row each). If more than `max_per_image` boxes remain, the cut keeps the scores >= the
    (total - max_per_image)-th smallest (np.partition), so ties can leave more. Rows whose class is
    not one of 0..num_classes-1 are ignored, as the official loop over the classes does.

    Args:
        dets: [M, 8] float32 official rows in image pixels (class 0-based in column 7).
        num_classes: Categories.
        sigma, nt, method, threshold: `official_soft_nms` arguments (the official merge's by default).
        max_per_image: Boxes kept.

    Returns:
        boxes [k, 4] float32 (x1, y1, x2, y2), scores [k] float32, classes [k] int32 (0-based),
        classes ascending and each class in soft-NMS order.
    """
    dets = tf.convert_to_tensor(dets, tf.float32)
    label = tf.cast(dets[:, 7], tf.int32)
    known = tf.equal(tf.cast(label, tf.float32), dets[:, 7]) & (label >= 0) & (label < num_classes)
    dets, label = tf.boolean_mask(dets[:, :7], known), tf.boolean_mask(label, known)
    one_hot = tf.one_hot(label, num_classes, dtype=tf.int32)
    rank = tf.reduce_sum(tf.cumsum(one_hot, axis=0, exclusive=True) * one_hot, axis=1)
    counts = tf.reduce_sum(one_hot, axis=0)
    length = tf.reduce_max(tf.concat([counts, [0]], axis=0))
    per_class = tf.scatter_nd(tf.stack([label, rank], axis=1), dets, [num_classes, length, 7])
    per_class, kept = official_soft_nms(per_class, counts, sigma, nt, threshold, method)

    valid = tf.range(length)[None, :] < kept[:, None]
    scores = per_class[..., 4]
    total = tf.reduce_sum(kept)
    lowest_first = tf.concat([tf.sort(tf.boolean_mask(scores, valid)), [-float("inf")]], axis=0)
    cut = tf.where(total > max_per_image, lowest_first[tf.maximum(total - max_per_image, 0)], -float("inf"))
    keep = valid & (scores >= cut)
    classes = tf.broadcast_to(tf.range(num_classes)[:, None], tf.shape(keep))
    return tf.boolean_mask(per_class[..., :4], keep), tf.boolean_mask(scores, keep), tf.boolean_mask(classes, keep)


def _run_network(
    detect_crops: DetectCrops, crops: tf.Tensor, with_attention: bool, settings: SaccadeSettings
) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """One network call on a round's crops, normalized; attention maps after `attention_nms`.

    The crop count is dynamic; a round without crops skips the network (as the official code
    does) and gives empty detections and maps of the shapes the network would have given.
    """
    count = tf.shape(crops)[0]
    mean = tf.constant(settings.mean, tf.float32)
    std = tf.constant(settings.std, tf.float32)
    rows = min(settings.num_dets, settings.k**2)
    sides = [settings.output_size * settings.att_ratios[-1] // ratio for ratio in settings.att_ratios]

    def run() -> tuple[tf.Tensor, list[tf.Tensor]]:
        dets, atts = detect_crops(_divide(crops - mean, std), with_attention)
        dets = tf.reshape(tf.cast(dets, tf.float32)[:count], [count, rows, 8])
        return dets, [tf.reshape(att[:count], [count, side, side, 1]) for att, side in zip(atts, sides)] if atts else []

    def nothing() -> tuple[tf.Tensor, list[tf.Tensor]]:
        maps = [tf.zeros([0, side, side, 1]) for side in sides] if with_attention else []
        return tf.zeros([0, rows, 8]), maps

    dets, atts = tf.cond(count > 0, run, nothing)
    return dets, [attention_nms(att, k) for att, k in zip(atts, settings.att_nms_ks)]


def saccade_detect(
    image: tf.Tensor, detect_crops: DetectCrops, settings: SaccadeSettings | None = None
) -> dict[str, tf.Tensor | list[tf.Tensor]]:
    """The official `cornernet_saccade_inference` on one image.

    The first pass crops the whole image, downsized so its longer side is each of
    `settings.init_sizes` (float32 locations (H // 2, W // 2, size / max(H, W))). After each
    attention round, the attention maps (`attention_nms`, `decode_attention`) and, with
    `ref_dets`, the detections scored above 0.5 (`reference_locations`) give the next
    locations (`location_nms`); at most `att_max_crops` crops follow the first pass, the last round
    runs without attention. First-pass detections need a score > 0.3, later ones > -1 (T2). Crops
    are padded with 0 and then normalized with `settings.mean` / `settings.std` (T7), which must
    be in the image's channel order. The network runs once per round on all the round's crops,
    in location order.

    Args:
        image: [H, W, 3] uint8 (or float in 0..255), in the channel order of `settings.mean`.
        detect_crops: The network: (normalized crops [n, S, S, 3] float32, with_attention) ->
            (detections [n, K, 8] float32 in output-map pixels, see `decoded_to_official`;
            sigmoid attention maps [n, h_j, w_j, 1] coarsest first, or None without attention).
            It is called with n >= 1 crops only.
        settings: The test settings; None: the official ones (`SaccadeSettings()`).

    Returns:
        `boxes` [M, 4] float32 (x1, y1, x2, y2) in image pixels, not clipped (T1); `scores` [M];
        `classes` [M] int32 (0-based), classes ascending and soft-NMS order within a class;
        `locations` and `offsets`: per round, the cropped locations ([n, 3] float32 in the first
        pass, then [n, 4] float64 (y, x, scale, score)) and their window origins [n, 2] float32.

    Raises:
        ValueError: Unusable settings (`SaccadeSettings.problems`).
    """
    settings = settings or SaccadeSettings()
    problems = settings.problems()
    if problems:
        raise ValueError("saccade_detect: unusable settings: " + "; ".join(problems))
    image_hw = tf.shape(image)[:2]
    image = _divide(tf.cast(image, tf.float64), tf.constant(255.0, tf.float64))
    sizes = tf.constant(settings.init_sizes, tf.float64)
    scales = tf.cast(sizes / tf.cast(tf.reduce_max(image_hw), tf.float64), tf.float32)
    center = tf.cast(image_hw // 2, tf.float32)
    locations = tf.stack([tf.fill(tf.shape(scales), center[0]), tf.fill(tf.shape(scales), center[1]), scales], 1)
    input_size, output_size = settings.input_size, settings.output_size

    def locate(dets: tf.Tensor, atts: list[tf.Tensor], scales: tf.Tensor, offsets: tf.Tensor, r: int) -> tf.Tensor:
        found = decode_attention(
            atts,
            scales,
            offsets,
            image_hw,
            settings.att_ratios,
            settings.att_scales[r],
            settings.att_thresholds[r],
            ignore_same=r > 0,
        )
        if not settings.ref_dets:
            return found
        found = tf.concat([found, tf.cast(reference_locations(dets), tf.float64)], axis=0)
        return location_nms(found, LOCATION_NMS_THRESHOLD)

    crops, offsets = prepare_images(image, locations, input_size)
    dets, atts = _run_network(detect_crops, crops, True, settings)
    dets = tf.reshape(rescale_and_remap(dets, scales, offsets, input_size, output_size), [-1, 8])
    dets = tf.boolean_mask(dets, dets[:, 4] > FIRST_PASS_SCORE)
    rounds = {"locations": [locations], "offsets": [offsets]}
    detections = [dets]
    locations = locate(dets, atts, scales, offsets, 0)

    num_rounds = len(settings.att_thresholds)
    num_crops = tf.constant(0)
    for r in range(1, num_rounds + 1):
        locations = locations[: tf.minimum(settings.att_max_crops - num_crops, tf.shape(locations)[0])]
        num_crops += tf.shape(locations)[0]
        crops, offsets = prepare_images(image, locations, input_size)
        dets, atts = _run_network(detect_crops, crops, r < num_rounds, settings)
        dets = tf.reshape(rescale_and_remap(dets, locations[:, 2], offsets, input_size, output_size), [-1, 8])
        dets = tf.boolean_mask(dets, dets[:, 4] > -1)
        rounds["locations"].append(locations)
        rounds["offsets"].append(offsets)
        detections.append(dets)
        if r < num_rounds:
            locations = locate(dets, atts, locations[:, 2], offsets, r)

    boxes, scores, classes = merge_detections(
        tf.concat(detections, axis=0),
        settings.num_classes,
        settings.soft_nms_sigma,
        settings.nms_threshold,
        settings.nms_method,
        settings.score_threshold,
        settings.max_detections,
    )
    return {"boxes": boxes, "scores": scores, "classes": classes, **rounds}
