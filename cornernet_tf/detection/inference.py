"""From images to final detections in original-image pixels: the one inference path.

Evaluation and export both call `detect` / `detect_multiscale` with a run's `DetectionConfig`,
so what is measured is what is served. Per scale (the official test, `decode.py`): run the network (with `flip`, on
[images; mirrored images]), `decode_corners`, `flip_merge`, map to image pixels with the batch's
`image_info` [B, 6] (`data/image_info.py`) and the map stride input size / output size; then
all scales together go through one per-class soft-NMS that keeps the best `max_detections`.

CornerNet-Saccade's own test (detection.test_mode "saccade") is `detect_saccade`: per image,
`saccade.saccade_detect` crops the places its attention maps point at and merges the crops'
detections; the network (`attention_0 ..` outputs too) runs once per round on all its crops.

CenterNet (a model whose outputs hold `ct_heatmap`), the official test: per scale also
`decode_centers` with the same k, flipped and mapped like the boxes, and boxes reaching 5 input
px beyond the image are dropped; then the boxes of all scales go through `centernet_rescore`
against the centers of the scale nearest 1 (the original: scale 1), all in original-image px,
and only then soft-NMS.

A *model* is any callable `model(images, training=False) -> dict` of last-stack maps
(`tl_heatmap` logits, `tl_embedding`, `tl_offset`, and `br_*`, see `models/cornernet.py`;
CenterNet adds `ct_heatmap`, `ct_offset`): a `CornerNet` / `CenterNet`, or a plain function
returning fixed maps (the tests feed ground-truth maps).
Nothing here is decorated; everything runs inside `tf.function` with unknown B, H and W.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from cornernet_tf.data import image_info as info_lib
from cornernet_tf.detection import decode, saccade
from cornernet_tf.detection.saccade_settings import SaccadeSettings
from cornernet_tf.detection.settings import DetectionConfig

Model = Callable[..., dict]
CENTERNET_MARGIN = 5.0  # CenterNet drops boxes reaching this many input px beyond the image
DETECTION_KEYS = ("boxes", "scores", "classes", "valid")
CENTERS_KEY = "center_keypoints"  # a CenterNet scale's centers dict in `decode_to_image`'s result


def has_centers(outputs: dict) -> bool:
    """Whether model outputs are CenterNet's: they hold center keypoint maps (`ct_heatmap`)."""
    return "ct_heatmap" in outputs


def _mean_scale(image_info: tf.Tensor) -> tf.Tensor:
    """Input px per image px of image_info [..., 6], the mean of both axes: [...]."""
    info = tf.cast(image_info, tf.float32)
    return (info[..., info_lib.SCALE_Y] + info[..., info_lib.SCALE_X]) / 2


def _to_image(
    dets: decode.Detections,
    map_width: tf.Tensor,
    image_info: tf.Tensor,
    stride: tf.Tensor,
    settings: DetectionConfig,
    reject_margin: tf.Tensor | None = None,
) -> decode.Detections:
    """A detections or centers dict of the network batch ([2B, N] with flip, else [B, N]) in
    map px -> [B, N] (flip: [B, 2N], `flip_merge`) in image px; see `decode.detections_to_image`."""
    if settings.flip:
        dets = decode.flip_merge(dets, map_width)
    return decode.detections_to_image(dets, image_info, stride, reject_margin)


def network_batch(images: tf.Tensor, settings: DetectionConfig) -> tf.Tensor:
    """What the network runs on for one scale: images [B, H, W, 3], with `settings.flip` followed
    by their mirror images ([2B, H, W, 3])."""
    return images if not settings.flip else tf.concat([images, tf.reverse(images, [2])], axis=0)


def decode_to_image(
    model: Model, images: tf.Tensor, image_info: tf.Tensor, settings: DetectionConfig
) -> decode.Detections:
    """Run `model` on one scale and return all its candidate boxes in image pixels, before NMS.

    CenterNet: boxes reaching CENTERNET_MARGIN input px beyond the image are invalid (the
    original's rule).

    Args:
        model: The network (see the module doc).
        images: [B, H, W, 3] normalized.
        image_info: [B, 6] (`data/image_info.py`).
        settings: The decode settings used: flip, k, nms_kernel, ae_threshold, num_dets.

    Returns:
        A detections dict [B, N] with N = min(num_dets, k * k) (twice that with flip), boxes
        clipped to the image, invalid rows score -1. CenterNet: CENTERS_KEY also holds this
        scale's centers dict [B, k] (2k with flip), centers in image px, not clipped.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    outputs = model(network_batch(images, settings), training=False)
    dets = decode.decode_corners(
        outputs,
        k=settings.k,
        nms_kernel=settings.nms_kernel,
        ae_threshold=settings.ae_threshold,
        num_dets=settings.num_dets,
        no_border=settings.no_border,
    )
    map_hw = tf.shape(outputs["tl_heatmap"])[1:3]
    stride = info_lib.map_stride(tf.shape(images)[1:3], map_hw)
    centernet = has_centers(outputs)
    margin = (CENTERNET_MARGIN / _mean_scale(image_info))[:, None] if centernet else None
    dets = _to_image(dets, map_hw[1], image_info, stride, settings, reject_margin=margin)
    result = {key: dets[key] for key in DETECTION_KEYS}
    if centernet:
        centers = decode.decode_centers(outputs, k=settings.k, nms_kernel=settings.nms_kernel)
        result[CENTERS_KEY] = _to_image(centers, map_hw[1], image_info, stride, settings)
    return result


def unit_scale_centers(centers: Sequence[decode.Detections], image_info: Sequence[tf.Tensor]) -> decode.Detections:
    """Per image, the centers dict [B, K] of the test scale nearest 1 among the scales' centers
    dicts [B, K] with their image_info [B, 6]. The original rescores with the scale-1 centers
    only; nearest 1 is that scale when the scales include 1, and the only one in a 'resize' test.
    """
    scales = tf.stack([_mean_scale(info) for info in image_info], axis=1)  # [B, S]
    nearest = tf.argmin(tf.abs(tf.math.log(scales)), axis=1, output_type=tf.int32)
    return {
        key: tf.gather(tf.stack([part[key] for part in centers], axis=1), nearest, batch_dims=1) for key in centers[0]
    }


def rescore_with_centers(
    parts: Sequence[decode.Detections], image_info: Sequence[tf.Tensor], settings: DetectionConfig
) -> decode.Detections:
    """The scales' `decode_to_image` results -> their boxes merged [B, sum N]; CenterNet parts
    (with CENTERS_KEY) are rescored with `unit_scale_centers`, unmatched boxes invalid."""
    dets = decode.merge_detections([{key: part[key] for key in DETECTION_KEYS} for part in parts])
    if CENTERS_KEY not in parts[0]:
        return dets
    centers = unit_scale_centers([part[CENTERS_KEY] for part in parts], image_info)
    return decode.centernet_rescore(dets, centers, area_threshold=settings.center_area_threshold)


def suppress(dets: decode.Detections, settings: DetectionConfig) -> decode.Detections:
    """Per-class soft-NMS over candidates [B, N] -> the final [B, max_detections] rows.

    Rows are sorted by score; rows that are not detections (fewer found, or score below
    `score_threshold`) come last with score 0, box 0 and class 0, `valid` False.
    """
    kept = decode.soft_nms(
        dets["boxes"],
        dets["scores"],
        dets["classes"],
        dets["valid"],
        sigma=settings.soft_nms_sigma,
        max_detections=settings.max_detections,
        score_threshold=settings.score_threshold,
    )
    return final_rows(kept, kept["valid"], settings.score_threshold)


def final_rows(dets: decode.Detections, found: tf.Tensor, score_threshold: float) -> decode.Detections:
    """Rows [B, M] of `dets` that were `found` and score at least `score_threshold`, the others
    emptied (score 0, box 0, class 0, `valid` False): what every test path returns."""
    valid = found & (dets["scores"] >= score_threshold)
    return {
        "boxes": tf.where(valid[..., None], dets["boxes"], 0.0),
        "scores": tf.where(valid, dets["scores"], 0.0),
        "classes": tf.where(valid, dets["classes"], 0),
        "valid": valid,
    }


def detect_multiscale(
    model: Model, inputs: Sequence[tuple[tf.Tensor, tf.Tensor]], settings: DetectionConfig
) -> decode.Detections:
    """The paper's multi-scale test: every (images [B, H_s, W_s, 3], image_info [B, 6]) of the
    same B images at another test scale is decoded and mapped to image pixels, the candidates
    of all scales are merged (CenterNet: and rescored with the scale-1 centers) and go through
    one soft-NMS.

    Returns boxes [B, M, 4] (x1, y1, x2, y2, original-image px, clipped), scores [B, M],
    classes [B, M] int32 (0-based), valid [B, M] bool, with M = max_detections; see `suppress`.
    """
    if not inputs:
        raise ValueError("detect_multiscale needs at least one (images, image_info) pair")
    parts = [decode_to_image(model, images, info, settings) for images, info in inputs]
    return suppress(rescore_with_centers(parts, [info for _, info in inputs], settings), settings)


def detect(model: Model, images: tf.Tensor, image_info: tf.Tensor, settings: DetectionConfig) -> decode.Detections:
    """Final detections of images [B, H, W, 3] (normalized) with image_info [B, 6]: one scale of
    `detect_multiscale`, same outputs.

    Args:
        model: The network (see the module doc).
        images: [B, H, W, 3] normalized.
        image_info: [B, 6] (`data/image_info.py`).
        settings: The run's detection settings.

    Returns:
        boxes [B, M, 4] (x1, y1, x2, y2, original-image px, clipped), scores [B, M], classes
        [B, M] int32 (0-based), valid [B, M] bool, with M = settings.max_detections; see `suppress`.
    """
    return detect_multiscale(model, [(images, image_info)], settings)


def saccade_settings(
    model: Model, settings: DetectionConfig, input_size: Sequence[int], mean: Sequence[float], std: Sequence[float]
) -> SaccadeSettings:
    """The `saccade.saccade_detect` settings of a CornerNet-Saccade model (its stride and attention
    strides), the run's detection section (every field both have, by its one name), its square
    crop size (data.input_size) and RGB normalization."""
    height, width = input_size
    if height != width:
        raise ValueError(f"the saccade test needs a square data.input_size, got {list(input_size)}")
    shared = {field.name for field in dataclasses.fields(SaccadeSettings)} & {
        field.name for field in dataclasses.fields(settings)
    }
    return SaccadeSettings(
        **{name: _as_tuples(getattr(settings, name)) for name in shared},
        input_size=height,
        output_size=(height + 1) // model.stride,
        att_ratios=tuple(model.attention_strides),
        num_classes=model.num_classes,
        mean=tuple(mean),
        std=tuple(std),
    )


def _as_tuples(value: Any) -> Any:
    """Lists (nested too) as tuples: a config's lists in the frozen settings' form."""
    return tuple(_as_tuples(item) for item in value) if isinstance(value, list) else value


def crop_detector(model: Model, settings: SaccadeSettings) -> saccade.DetectCrops:
    """The network as `saccade.saccade_detect` calls it: normalized crops -> their decoded pairs
    in the official 8 columns, and the sigmoid attention maps when asked for."""

    def detect_crops(crops: tf.Tensor, with_attention: bool) -> tuple[tf.Tensor, list[tf.Tensor] | None]:
        outputs = model(crops, training=False)
        dets = decode.decode_corners(
            outputs,
            k=settings.k,
            nms_kernel=settings.nms_kernel,
            ae_threshold=settings.ae_threshold,
            num_dets=settings.num_dets,
            no_border=settings.no_border,
        )
        attention = [tf.sigmoid(outputs[key]) for key in model.attention_keys] if with_attention else None
        return saccade.decoded_to_official(dets), attention

    return detect_crops


def detect_saccade(
    model: Model,
    images: tf.Tensor,
    image_info: tf.Tensor,
    settings: DetectionConfig,
    input_size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
) -> decode.Detections:
    """CornerNet-Saccade's test on each of a batch of images, in `detect`'s output form.

    Each image is searched on its own (`saccade.saccade_detect`: the first pass at
    detection.init_sizes, at most detection.att_max_crops crops after it). Its merged detections
    are clipped to the image (the official leaves them unclipped, T1; every other model type's
    boxes are clipped) and the best max_detections kept (the official keeps ties at the cut).

    Args:
        model: A CornerNetSaccade (its `attention_keys`, `attention_strides`, `stride`).
        images: [B, H, W, 3] RGB in [0, 1], not normalized (`augment.eval_original`), each image
            at the top-left of its zero-padded slot.
        image_info: [B, 6] of the identity transform: the original (height, width) of each.
        settings: The run's detection settings (test_mode "saccade").
        input_size: The square crop size (data.input_size).
        mean, std: The RGB normalization of the training images.

    Returns:
        boxes [B, M, 4] (x1, y1, x2, y2, original-image px, clipped), scores [B, M], classes
        [B, M] int32 (0-based), valid [B, M] bool, M = max_detections, best first.
    """
    search = saccade_settings(model, settings, input_size, mean, std)
    detect_crops = crop_detector(model, search)
    rows = settings.max_detections

    def one(args: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        image, info = args
        hw = tf.cast(info[info_lib.ORIGINAL_HEIGHT : info_lib.ORIGINAL_WIDTH + 1], tf.int32)
        # the image's own 0..255 values again (exact for 8-bit images), as the official test reads them
        pixels = tf.round(image[: hw[0], : hw[1]] * 255.0)
        found = saccade.saccade_detect(pixels, detect_crops, search)
        scores, order = tf.math.top_k(found["scores"], k=tf.minimum(rows, tf.shape(found["scores"])[0]))
        boxes = info_lib.clip_to_image(tf.gather(found["boxes"], order), info)
        pad = rows - tf.shape(scores)[0]
        return (
            tf.pad(boxes, [[0, pad], [0, 0]]),
            tf.pad(scores, [[0, pad]], constant_values=-1.0),
            tf.pad(tf.gather(found["classes"], order), [[0, pad]]),
        )

    boxes, scores, classes = tf.map_fn(
        one,
        (images, image_info),
        fn_output_signature=(
            tf.TensorSpec([rows, 4], tf.float32),
            tf.TensorSpec([rows], tf.float32),
            tf.TensorSpec([rows], tf.int32),
        ),
        parallel_iterations=1,
    )
    dets = {"boxes": boxes, "scores": scores, "classes": classes}
    return final_rows(dets, tf.ones_like(scores, tf.bool), settings.score_threshold)
