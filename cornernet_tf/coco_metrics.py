"""COCO detection metrics with pycocotools: results json and the 12 standard numbers."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
from typing import Iterable, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

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
    """One image's detections ([N, 4] x1, y1, x2, y2 image pixels) as COCO result records."""
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


def write_results(path: str | os.PathLike, records: Iterable[dict]) -> pathlib.Path:
    """Write COCO results json atomically."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(list(records)))
    os.replace(tmp, path)
    return path


def coco_metrics(
    ground_truth: COCO | str | os.PathLike,
    records: list[dict],
    image_ids: Sequence[int] | None = None,
    verbose: bool = False,
) -> dict[str, float]:
    """The 12 COCO bbox metrics of `records` against `ground_truth`, restricted to `image_ids`.

    With no detections at all every metric is 0 (pycocotools cannot load an empty result list).
    A metric is -1 where the ground truth has nothing to measure (e.g. no large objects).
    """
    if not isinstance(ground_truth, COCO):
        with contextlib.redirect_stdout(io.StringIO()):
            ground_truth = COCO(str(ground_truth))
    if not records:
        return {name: 0.0 for name in METRIC_NAMES}
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        results = ground_truth.loadRes(records)
        evaluator = COCOeval(ground_truth, results, "bbox")
        if image_ids is not None:
            evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(METRIC_NAMES, evaluator.stats)}


def format_metrics(metrics: dict[str, float]) -> str:
    """The 12 metrics, one per line, in the order pycocotools prints them."""
    return "\n".join(f"{name:>10s} {metrics[name]:.4f}" for name in METRIC_NAMES)
