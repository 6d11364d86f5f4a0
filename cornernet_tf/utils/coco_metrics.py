"""COCO detection metrics with pycocotools: results json, the 12 standard numbers, AP per class."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
from collections.abc import Iterable, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cornernet_tf.utils.files import atomic_write_text

METRIC_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)


def detections_to_coco(
    image_id: int,
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    category_ids: Sequence[int],
) -> list[dict]:
    """One image's detections ([N, 4] x1, y1, x2, y2 image pixels) as COCO result records.

    Args:
        image_id: COCO id of the image the detections belong to.
        boxes_xyxy: [N, 4] boxes as x1, y1, x2, y2 in image pixels.
        scores: [N] detection scores.
        classes: [N] contiguous class indices into `category_ids`.
        category_ids: COCO category id of each contiguous class index.

    Returns:
        One record per detection: "image_id", "category_id", "bbox" as [x, y, width, height]
        rounded to 2 decimals and "score" rounded to 5.
    """
    records = []
    for (x1, y1, x2, y2), score, cls in zip(np.asarray(boxes_xyxy, np.float64), scores, classes):
        records.append(
            {
                "image_id": int(image_id),
                "category_id": int(category_ids[int(cls)]),
                "bbox": [round(float(x1), 2), round(float(y1), 2), round(float(x2 - x1), 2), round(float(y2 - y1), 2)],
                "score": round(float(score), 5),
            }
        )
    return records


def write_json(path: str | os.PathLike, value, indent: int | None = None) -> pathlib.Path:
    """Write `value` as json atomically (a temporary file beside it, then a rename)."""
    return atomic_write_text(path, json.dumps(value, indent=indent))


def write_results(path: str | os.PathLike, records: Iterable[dict]) -> pathlib.Path:
    """Write COCO results json atomically."""
    return write_json(path, list(records))


def _summarize(ground_truth: COCO, records: list[dict], image_ids: Sequence[int] | None, verbose: bool) -> COCOeval:
    """Run pycocotools' bbox evaluation (evaluate, accumulate, summarize) of `records`."""
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        results = ground_truth.loadRes(records)
        evaluator = COCOeval(ground_truth, results, "bbox")
        if image_ids is not None:
            evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def per_class_ap(evaluator: COCOeval) -> dict[str, float]:
    """{"AP/<name>", "AP50/<name>"} per category of an accumulated evaluation, as pycocotools'
    summary computes AP: the mean of the precision array [T, R, K, A, M] over IoU thresholds
    (AP50: the 0.5 one) and recall points, area "all", the largest maxDets, entries > -1 only;
    -1 where the category has no ground truth to measure."""
    precision = evaluator.eval["precision"]
    iou_50 = int(np.argmin(np.abs(evaluator.params.iouThrs - 0.5)))
    values: dict[str, float] = {}
    for column, category in enumerate(evaluator.params.catIds):
        name = evaluator.cocoGt.cats[category]["name"]
        for key, part in (("AP", precision[:, :, column, 0, -1]), ("AP50", precision[iou_50, :, column, 0, -1])):
            measured = part[part > -1]
            values[f"{key}/{name}"] = float(measured.mean()) if measured.size else -1.0
    return values


def load_ground_truth(ground_truth: COCO | str | os.PathLike) -> COCO:
    """A loaded annotation set, or the one of an annotations json (pycocotools' prints held back)."""
    if isinstance(ground_truth, COCO):
        return ground_truth
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ground_truth))


def coco_evaluation(
    ground_truth: COCO, records: list[dict], image_ids: Sequence[int] | None = None, verbose: bool = False
) -> COCOeval | None:
    """pycocotools' accumulated bbox evaluation of `records` (None when there are none: pycocotools
    cannot load an empty result list); what `coco_metrics` summarizes and `eval_plots` draws."""
    return _summarize(ground_truth, records, image_ids, verbose) if records else None


def metrics_of(evaluator: COCOeval | None, ground_truth: COCO, per_class: bool = False) -> dict[str, float]:
    """The 12 numbers (`METRIC_NAMES`) of a `coco_evaluation`, with `per_class` AP and AP50 of every
    category; every metric 0 without an evaluation (no detections at all)."""
    if evaluator is None:
        names = [f"{key}/{cat['name']}" for cat in ground_truth.cats.values() for key in ("AP", "AP50")]
        return {name: 0.0 for name in [*METRIC_NAMES, *(names if per_class else [])]}
    metrics = {name: float(value) for name, value in zip(METRIC_NAMES, evaluator.stats)}
    return {**metrics, **per_class_ap(evaluator)} if per_class else metrics


def coco_metrics(
    ground_truth: COCO | str | os.PathLike,
    records: list[dict],
    image_ids: Sequence[int] | None = None,
    verbose: bool = False,
    per_class: bool = False,
) -> dict[str, float]:
    """The 12 COCO bbox metrics of `records` against `ground_truth`, restricted to `image_ids`;
    with `per_class`, followed by `per_class_ap`'s AP and AP50 of every category.

    With no detections at all every metric is 0 (pycocotools cannot load an empty result list),
    per class too. A metric is -1 where the ground truth has nothing to measure (e.g. no large
    objects).

    Args:
        ground_truth: A loaded `COCO` annotation set, or the path of an annotations json to load.
        records: COCO result records, as `detections_to_coco` makes them.
        image_ids: Images to evaluate on; None evaluates every image of the ground truth.
        verbose: Let pycocotools print its progress and summary table.
        per_class: Add "AP/<name>" and "AP50/<name>" for every category.

    Returns:
        Metric name (`METRIC_NAMES`, then the per-class keys) to value.
    """
    ground_truth = load_ground_truth(ground_truth)
    return metrics_of(coco_evaluation(ground_truth, records, image_ids, verbose), ground_truth, per_class)


def format_metrics(metrics: dict[str, float]) -> str:
    """The 12 metrics, one per line, in the order pycocotools prints them; then, when `metrics`
    holds `per_class_ap` values, a table of AP and AP50 per class."""
    lines = [f"{name:>10s} {metrics[name]:.4f}" for name in METRIC_NAMES]
    classes = [key.split("/", 1)[1] for key in metrics if key.startswith("AP/")]
    if classes:
        width = max(10, *(len(name) for name in classes))
        lines.append(f"{'class':>{width}s}     AP   AP50")
        lines += [f"{name:>{width}s} {metrics[f'AP/{name}']:.4f} {metrics[f'AP50/{name}']:.4f}" for name in classes]
    return "\n".join(lines)
