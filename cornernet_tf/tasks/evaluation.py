"""COCO metrics of a model on a split of a `Config`'s data, decoded with its `detection` settings.

`evaluate_model` is what `python -m cornernet_tf.evaluate`, training's validation and the
notebooks run. Detections come from `inference.detect_multiscale` (CornerNet-Saccade's test:
`inference.detect_saccade`), the path export serves.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
from collections.abc import Sequence

import cv2
import numpy as np
import tensorflow as tf
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cornernet_tf.config import Config, DataConfig
from cornernet_tf.data import image_info as info_lib
from cornernet_tf.detection.inference import Model, detect_multiscale, detect_saccade
from cornernet_tf.detection.settings import DetectionConfig
from cornernet_tf.tasks.data import dataset_info, eval_dataset, eval_image_ids
from cornernet_tf.utils import eval_plots
from cornernet_tf.utils.coco_metrics import (
    METRIC_NAMES,
    coco_evaluation,
    detections_to_coco,
    load_ground_truth,
    metrics_of,
    write_results,
)
from cornernet_tf.utils.visualize import draw_detections, save_png
from cornernet_tf.utils.voc_metrics import format_voc_metrics, voc_metrics

# the pictures `evaluate_model(plots_dir=...)` writes, by file name
PLOT_FILES = ("precision_recall_50.png", "precision_recall.png", "confusion_matrix.png")

PROGRESS_EVERY_S = 5.0


def restore_image(image: np.ndarray, image_info: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """The original image (approximately: resampled) from a normalized input [H, W, 3] and its
    image_info [6]: undo the normalization, then warp input px back to image px.

    Args:
        image: Normalized input [H, W, 3] float.
        image_info: Its [6] vector (`data/image_info.py`).
        mean: Per-channel RGB mean of the normalization (pixels in [0, 1]).
        std: Per-channel RGB standard deviation of the normalization.

    Returns:
        uint8 RGB [original_height, original_width, 3]; pixels the input never held are 0.
    """
    pixels = np.clip((np.asarray(image) * np.asarray(std) + np.asarray(mean)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    scale_y, scale_x, offset_y, offset_x, height, width = (float(v) for v in image_info)
    # pixel centres: input (x + 0.5) * scale + offset - 0.5 holds image pixel x
    to_input = np.array(
        [[scale_x, 0.0, 0.5 * scale_x + offset_x - 0.5], [0.0, scale_y, 0.5 * scale_y + offset_y - 0.5]]
    )
    return cv2.warpAffine(
        pixels, to_input, (int(round(width)), int(round(height))), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )


def batch_detector(model: Model, settings: DetectionConfig, num_scales: int, data: DataConfig):
    """`detect_multiscale` (the crop search of test_mode "saccade": `detect_saccade`) as one tf.function for any
    batch and image size (no retracing), called with [(images, image_info)] per test scale: what
    `evaluate_model` runs, and the benchmarks time."""
    spec = (tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([None, info_lib.IMAGE_INFO_SIZE]))
    if settings.procedure.crop_search:
        preprocessing = (tuple(data.input_size), tuple(data.mean), tuple(data.std))
        return tf.function(
            lambda inputs: detect_saccade(model, *inputs[0], settings, *preprocessing), input_signature=[[spec]]
        )
    return tf.function(lambda inputs: detect_multiscale(model, inputs, settings), input_signature=[[spec] * num_scales])


class _Progress:
    """Prints `images detected / total, images/s` at most every PROGRESS_EVERY_S seconds, and at
    the end; images that could not be decoded are in the total but never detected (the account
    printed after it names them)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total
        self.start = self.last = time.monotonic()

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            rate = done / max(now - self.start, 1e-9)
            print(f"{self.label}: {done}/{self.total} images detected, {rate:.1f} images/s", flush=True)


def evaluate_model(
    model: Model,
    config: Config,
    split: str = "val",
    flip: bool | None = None,
    scales: Sequence[float] | None = None,
    max_images: int | None = None,
    results_path: str | os.PathLike | None = None,
    visualize_dir: str | os.PathLike | None = None,
    num_visualize: int = 8,
    batch_size: int = 1,
    plots_dir: str | os.PathLike | None = None,
) -> tuple[dict[str, float], list[dict]]:
    """COCO metrics of `model` on `split`; returns (metrics, the COCO result records).

    Every scale runs its own `eval_dataset` over the same images; their detections are merged
    before soft-NMS. Metrics are computed against the split's annotations over every image of
    the split (the first max_images): an image that could not be read or decoded counts as an
    image without detections, so its ground truth stays in the metric, and the printed account
    says how many. The original evaluates one image per batch (`batch_size` 1); larger pad-mode
    batches pad images to the batch's largest.

    Args:
        model: The network (`inference.Model`).
        config: The run's config; its data, detection and eval settings are used.
        split: "train" or "val".
        flip: Overrides detection.flip (see `with_test_overrides`); None keeps it.
        scales: Overrides detection.scales; None keeps them.
        max_images: Overrides eval.max_images (0 = all); None keeps it.
        results_path: When given, receives the records as COCO results json.
        visualize_dir: When given, receives PNGs of the first `num_visualize` images with their
            detections (drawn on the input nearest scale 1, mapped back to the original image).
        num_visualize: Images drawn into `visualize_dir`.
        batch_size: Images per batch.
        plots_dir: When given, receives the evaluation's pictures (`write_plots`: precision-recall
            curves per class at IoU 0.5 and over 0.5:0.95, the confusion matrix).

    Returns:
        (metrics, records). metrics: the 12 COCO numbers (`METRIC_NAMES`), then "num_images"
        (scored) and "num_unusable_images" (of those, the ones that could not be read or
        decoded), then "AP/<class>" and "AP50/<class>" of every category
        (`coco_metrics.per_class_ap`), and for data.dataset voc VOC's own mAP ("mAP_voc",
        "mAP_voc07", "AP_voc/<class>"); flat floats, so the trainer logs them all to TensorBoard
        and metrics.json. records: the COCO result records of every detection.

    Raises:
        ValueError: No image of the split could be read, or the overridden config is invalid
            (`ConfigError`).
        RuntimeError: The test scales' pipelines went out of step.
    """
    config = with_test_overrides(config, flip=flip, scales=scales, max_images=max_images)
    detection, data, info = config.detection, config.data, dataset_info(config, split)
    datasets = [eval_dataset(config, split, batch_size, scale) for scale in detection.scales]
    detector = batch_detector(model, detection, len(datasets), data)
    # the inputs drawn on: normalized, except the crop search's images in [0, 1]
    mean, std = (data.mean, data.std) if detection.procedure.normalized_input else ((0.0,) * 3, (1.0,) * 3)
    shown = int(np.argmin([abs(scale - 1.0) for scale in detection.scales]))
    scored_ids = eval_image_ids(config, split)
    progress = _Progress(
        f"eval {split} ({'flip, ' if detection.flip else ''}scales {detection.scales})", len(scored_ids)
    )

    records: list[dict] = []
    image_ids: list[int] = []
    for batches in zip(*datasets):
        ids = batches[0][1]["image_id"].numpy()
        if any(not np.array_equal(meta["image_id"].numpy(), ids) for _, meta in batches[1:]):
            raise RuntimeError("the test scales' pipelines went out of step (different image ids in one batch)")
        dets = {key: value.numpy() for key, value in detector([(i, m["image_info"]) for i, m in batches]).items()}
        for row, image_id in enumerate(ids):
            boxes, scores, classes = (dets[key][row][dets["valid"][row]] for key in ("boxes", "scores", "classes"))
            records.extend(detections_to_coco(image_id, boxes, scores, classes, info.category_ids))
            if visualize_dir is not None and len(image_ids) < num_visualize:
                images, meta = batches[shown]
                picture = restore_image(images[row].numpy(), meta["image_info"][row].numpy(), mean, std)
                drawn = draw_detections(picture, boxes, scores, classes, info.class_names)
                save_png(pathlib.Path(visualize_dir) / f"{split}_{int(image_id)}.png", drawn)
            image_ids.append(int(image_id))
        progress.update(len(image_ids))
    progress.update(len(image_ids), final=True)
    if not image_ids:
        raise ValueError(f"no {split} image could be read; check the data paths of this config")
    print(_account(split, scored_ids, image_ids), flush=True)
    if results_path is not None:
        write_results(results_path, records)
    # pycocotools' loadRes adds keys to the records it is given: hand it copies
    ground_truth = load_ground_truth(info.annotations)
    evaluator = coco_evaluation(ground_truth, [dict(r) for r in records], image_ids=scored_ids)
    metrics = metrics_of(evaluator, ground_truth, per_class=True)
    if plots_dir is not None:
        write_plots(plots_dir, evaluator, ground_truth, records, scored_ids)
    if data.dataset == "voc":
        metrics.update(_voc_metrics(ground_truth, records, scored_ids))
    counts = {"num_images": len(scored_ids), "num_unusable_images": len(set(scored_ids) - set(image_ids))}
    summary = {name: metrics.pop(name) for name in METRIC_NAMES}
    return {**summary, **counts, **metrics}, records


def write_plots(
    directory: str | os.PathLike,
    evaluator: COCOeval | None,
    ground_truth: COCO,
    records: list[dict],
    image_ids: Sequence[int],
) -> list[pathlib.Path]:
    """The evaluation's pictures in `directory` (`PLOT_FILES`): precision-recall curves per class
    and overall at IoU 0.5 and averaged over IoU 0.5:0.95 (pycocotools' arrays, so their AP is the
    reported one), and the confusion matrix with background (detections scored >= 0.25, IoU 0.5).
    Without detections the curves are empty axes. Returns the written paths."""
    directory = pathlib.Path(directory)
    paths = [directory / name for name in PLOT_FILES]
    curves = eval_plots.precision_recall_curves(evaluator) if evaluator is not None else eval_plots.empty_curves()
    for path, iou in zip(paths[:2], ("0.5", "0.5:0.95")):
        eval_plots.draw_precision_recall(curves, path, iou=iou)
    matrix, names = eval_plots.confusion_matrix(ground_truth, records, image_ids)
    eval_plots.draw_confusion_matrix(matrix, names, paths[2])
    return paths


def _voc_metrics(ground_truth: COCO, records: list[dict], image_ids: Sequence[int]) -> dict[str, float]:
    """Pascal VOC's own mAP at IoU 0.5 beside COCO's, for a VOC source: "mAP_voc" (area under the
    precision envelope, VOC2010+), "mAP_voc07" (11-point, VOC2007) and "AP_voc/<class>" (area; -1
    for a class without positives, as the COCO numbers mark it); printed as one extra line."""
    area = voc_metrics(ground_truth, records, image_ids)
    eleven = voc_metrics(ground_truth, records, image_ids, use_07_metric=True)["mAP_voc"]
    print(f"VOC, area under the precision curve (VOC2010+): {format_voc_metrics(area)}", flush=True)
    print(f"VOC2007 11-point mAP {eleven:.4f}", flush=True)
    values = {**area, "mAP_voc07": eleven}
    return {key: -1.0 if np.isnan(value) else float(value) for key, value in values.items()}


def _account(split: str, scored_ids: Sequence[int], decoded_ids: Sequence[int]) -> str:
    """One line: how many images were scored, and which had no pixels to detect on."""
    unusable = sorted(set(scored_ids) - set(decoded_ids))
    line = f"eval {split}: {len(scored_ids)} images scored, {len(scored_ids) - len(unusable)} decoded"
    if not unusable:
        return line
    ids = ", ".join(str(i) for i in unusable[:10]) + (" ..." if len(unusable) > 10 else "")
    return f"{line}; {len(unusable)} could not be read or decoded and count as images without detections (ids {ids})"


def with_test_overrides(
    config: Config,
    flip: bool | None = None,
    scales: Sequence[float] | None = None,
    max_images: int | None = None,
) -> Config:
    """`config` with the given test settings replaced (None keeps the config's). Scales other
    than [1] need the "pad" transform: a "resize" config is switched to it, saying so.

    Args:
        config: The config to update (left unchanged).
        flip: New detection.flip.
        scales: New detection.scales.
        max_images: New eval.max_images (0 = all).

    Returns:
        The updated, validated config.

    Raises:
        ConfigError: The updated config is invalid.
    """
    detection = config.detection
    changes = {
        key: value
        for key, value in (("flip", flip), ("scales", None if scales is None else list(scales)))
        if value is not None
    }
    if changes.get("scales", [1.0]) != [1.0] and not detection.procedure.multi_scale:
        print(
            f"test scales {changes['scales']} use the 'pad' transform (detection.test_mode is {detection.test_mode!r})"
        )
        changes["test_mode"] = "pad"
    evaluation = config.eval if max_images is None else dataclasses.replace(config.eval, max_images=max_images)
    updated = dataclasses.replace(config, detection=dataclasses.replace(detection, **changes), eval=evaluation)
    updated.validate()
    return updated
