"""From images to final detections in original-image pixels: the one inference path.

Evaluation and export both call `detect` / `detect_multiscale`, so what is measured is what is
served. Per scale (the official test, `decode.py`): run the network (with `flip`, on
[images; mirrored images]), `decode_corners`, `flip_merge`, map to image pixels with the batch's
`image_info` [B, 6] (`data/image_info.py`) and the map stride input size / output size; then
all scales together go through one per-class soft-NMS that keeps the best `max_detections`.

A *model* is any callable `model(images, training=False) -> dict` of last-stack maps
(`tl_heatmap` logits, `tl_embedding`, `tl_offset`, and `br_*`, see `models/cornernet.py`): a
`CornerNet`, or a plain function returning fixed maps (the tests feed ground-truth maps).
Nothing here is decorated; everything runs inside `tf.function` with unknown B, H and W.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import tensorflow as tf

from cornernet_tf import decode
from cornernet_tf.data import image_info as info_lib

Model = Callable[..., dict]
MIN_SCORE_THRESHOLD = 0.001  # the original's soft-NMS threshold


@dataclasses.dataclass(frozen=True)
class DetectionSettings:
    """Decoding and test-time augmentation settings (official CornerNet test values by default).

    k: corners kept per heatmap; nms_kernel: heatmap max-pool window; ae_threshold: largest
    embedding distance of a pair; num_dets: pairs kept per image and scale; flip: also run the
    mirrored images; soft_nms_sigma: Gaussian soft-NMS sigma; max_detections: rows returned.
    score_threshold: the lowest score a returned detection may have. Soft-NMS drops a box as soon
    as its decayed score falls below it (the original's 0.001), and rows below it are returned
    invalid. The original keeps boxes whose score is below 0.001 before any decay; they rank
    below every other detection, so dropping them cannot change a COCO metric measurably.
    """

    k: int = 100
    nms_kernel: int = 3
    ae_threshold: float = 0.5
    num_dets: int = 1000
    flip: bool = False
    soft_nms_sigma: float = 0.5
    max_detections: int = 100
    score_threshold: float = MIN_SCORE_THRESHOLD

    @classmethod
    def from_eval_config(cls, eval_config) -> "DetectionSettings":
        """Settings of an `EvalConfig`. eval.score_threshold (default 0: keep everything) is
        raised to 0.001, the original's soft-NMS threshold, since soft-NMS needs one above 0
        to ever drop a decayed box; a higher value also filters the output."""
        return cls(
            k=eval_config.top_k,
            nms_kernel=eval_config.nms_kernel,
            ae_threshold=eval_config.ae_threshold,
            num_dets=eval_config.num_dets,
            flip=eval_config.flip,
            soft_nms_sigma=eval_config.soft_nms_sigma,
            max_detections=eval_config.max_per_image,
            score_threshold=max(eval_config.score_threshold, MIN_SCORE_THRESHOLD),
        )


def decode_to_image(
    model: Model, images: tf.Tensor, image_info: tf.Tensor, settings: DetectionSettings
) -> decode.Detections:
    """Run `model` on one scale and return all its candidate boxes in image pixels, before NMS.

    images [B, H, W, 3] normalized; image_info [B, 6]. Returns a detections dict [B, N] with
    N = min(num_dets, k * k) (twice that with flip), boxes clipped to the image, invalid rows
    score -1.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    batch = images if not settings.flip else tf.concat([images, tf.reverse(images, [2])], axis=0)
    outputs = model(batch, training=False)
    dets = decode.decode_corners(
        outputs, k=settings.k, nms_kernel=settings.nms_kernel,
        ae_threshold=settings.ae_threshold, num_dets=settings.num_dets,
    )
    map_hw = tf.shape(outputs["tl_heatmap"])[1:3]
    if settings.flip:
        dets = decode.flip_merge(dets, map_hw[1])
    stride = info_lib.map_stride(tf.shape(images)[1:3], map_hw)
    dets = decode.detections_to_image(dets, image_info, stride)
    return {key: dets[key] for key in ("boxes", "scores", "classes", "valid")}


def suppress(dets: decode.Detections, settings: DetectionSettings) -> decode.Detections:
    """Per-class soft-NMS over candidates [B, N] -> the final [B, max_detections] rows.

    Rows are sorted by score; rows that are not detections (fewer found, or score below
    `score_threshold`) come last with score 0, box 0 and class 0, `valid` False.
    """
    kept = decode.soft_nms(
        dets["boxes"], dets["scores"], dets["classes"], dets["valid"],
        sigma=settings.soft_nms_sigma, max_detections=settings.max_detections,
        score_threshold=settings.score_threshold,
    )
    valid = kept["valid"] & (kept["scores"] >= settings.score_threshold)
    return {
        "boxes": tf.where(valid[..., None], kept["boxes"], 0.0),
        "scores": tf.where(valid, kept["scores"], 0.0),
        "classes": tf.where(valid, kept["classes"], 0),
        "valid": valid,
    }


def detect_multiscale(
    model: Model, inputs: Sequence[tuple[tf.Tensor, tf.Tensor]], settings: DetectionSettings
) -> decode.Detections:
    """The paper's multi-scale test: every (images [B, H_s, W_s, 3], image_info [B, 6]) of the
    same B images at another test scale is decoded and mapped to image pixels, the candidates
    of all scales are merged and go through one soft-NMS.

    Returns boxes [B, M, 4] (x1, y1, x2, y2, original-image px, clipped), scores [B, M],
    classes [B, M] int32 (0-based), valid [B, M] bool, with M = max_detections; see `suppress`.
    """
    if not inputs:
        raise ValueError("detect_multiscale needs at least one (images, image_info) pair")
    parts = [decode_to_image(model, images, info, settings) for images, info in inputs]
    return suppress(decode.merge_detections(parts), settings)


def detect(model: Model, images: tf.Tensor, image_info: tf.Tensor, settings: DetectionSettings) -> decode.Detections:
    """Final detections of images [B, H, W, 3] (normalized) with image_info [B, 6]: one scale of
    `detect_multiscale`, same outputs."""
    return detect_multiscale(model, [(images, image_info)], settings)
