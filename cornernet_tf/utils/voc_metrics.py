"""Pascal VOC's detection metric: AP at IoU 0.5 per class and its mean, the number VOC results are
compared by (the VOC devkit, mmdetection's `eval_map`), beside the COCO metrics of `coco_metrics`.

Both variants: the VOC2007 11-point interpolated AP (`use_07_metric=True`) and the area under the
monotone precision envelope (VOC2010 and later, the default).

Boxes. The devkit measures overlap on 1-based inclusive pixel boxes (width = xmax - xmin + 1). A
VOC box xmin..xmax in inclusive pixels is, in COCO's continuous coordinates, x = xmin - 1 and
w = xmax - xmin + 1, so the devkit's IoU of two boxes is exactly the plain continuous IoU of their
COCO forms, with no +1 anywhere: this module computes that continuous IoU on COCO [x, y, w, h].

Ignored ground truth. An annotation with `difficult: 1` (VOC's flag) is not counted among the
positives, and a detection whose best match is one is neither a true nor a false positive. An
`iscrowd: 1` annotation is treated the same way: VOC has no crowd regions, and the data loader
(`cornernet_tf.data.voc`) marks difficult objects as crowd for pycocotools.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
from pycocotools.coco import COCO

__all__ = ["box_iou", "format_voc_metrics", "match_detections", "voc_ap", "voc_metrics"]

# the 11 recall thresholds of VOC2007 built as k * 0.1, the values np.arange(0, 1.1, 0.1) holds in
# the Python references (the devkit's Python ports, mmdetection, detectron2): 0.30000000000000004,
# not 3 / 10, so that a recall of exactly 3/10 scores as it does there
_RECALL_POINTS_07 = np.arange(11) * 0.1


def box_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """[N, M] IoU of [N, 4] and [M, 4] COCO [x, y, w, h] boxes, in continuous coordinates (no +1:
    see the module docstring for why this equals the devkit's inclusive-pixel IoU); 0 where the
    union is empty."""
    a = np.asarray(boxes, np.float64).reshape(-1, 4)
    b = np.asarray(others, np.float64).reshape(-1, 4)
    a_max, b_max = a[:, :2] + a[:, 2:], b[:, :2] + b[:, 2:]
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a_max[:, None], b_max[None])
    overlap = np.clip(high - low, 0.0, None)
    inter = overlap[..., 0] * overlap[..., 1]
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = False) -> float:
    """AP of one class from its recall and precision after each detection (in score order).

    `use_07_metric`: VOC2007's 11-point interpolation, the mean over t = 0, 0.1, ..., 1 of the best
    precision at recall >= t (0 where recall never reaches t). Otherwise (VOC2010 on) the exact area
    under the precision envelope: precision made monotone decreasing from the right, summed over
    the recall steps.
    """
    recall = np.asarray(recall, np.float64)
    precision = np.asarray(precision, np.float64)
    if use_07_metric:
        total = 0.0
        for t in _RECALL_POINTS_07:
            reached = precision[recall >= t]
            total += float(reached.max()) if reached.size else 0.0
        return total / len(_RECALL_POINTS_07)
    # sentinels: recall 0 and 1 at both ends, precision 0 past the last detection
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def match_detections(
    image_ids: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    ground_truth: dict[int, tuple[np.ndarray, np.ndarray]],
    iou_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """True and false positive flags of one class's detections, in descending score order.

    Detections are sorted by score (stable: equal scores keep their input order). Each one is
    matched to the ground truth of its image with the highest IoU (the first on ties); at
    IoU >= `iou_threshold` it is ignored (both flags 0) when that object is ignored (difficult),
    a true positive when the object is not matched yet (which marks it), else a duplicate and a
    false positive; below the threshold, or on an image without ground truth, a false positive.

    Args:
        image_ids: [N] image of each detection.
        boxes: [N, 4] COCO [x, y, w, h] boxes.
        scores: [N] scores.
        ground_truth: image id -> ([G, 4] boxes, [G] bool ignored) of this class.
        iou_threshold: The overlap a match needs (VOC: 0.5).

    Returns:
        [N] true positive and [N] false positive flags as float64, in descending score order.
    """
    image_ids = np.asarray(image_ids).reshape(-1)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float64).reshape(-1), kind="stable")
    tp = np.zeros(len(order))
    fp = np.zeros(len(order))
    # the overlaps of all detections of an image at once (row `row_of[det]`), then the matching in score order
    members_of: dict[int, list[int]] = defaultdict(list)
    for det, image in enumerate(image_ids.tolist()):
        members_of[int(image)].append(det)
    overlaps_of: dict[int, np.ndarray] = {}
    row_of = np.zeros(len(image_ids), np.int64)
    for image, members in members_of.items():
        if image in ground_truth and len(ground_truth[image][0]):
            overlaps_of[image] = box_iou(boxes[members], ground_truth[image][0])
            row_of[members] = np.arange(len(members))
    matched = {image: np.zeros(len(gt_boxes), bool) for image, (gt_boxes, _) in ground_truth.items()}
    for rank, det in enumerate(order):
        image = int(image_ids[det])
        if image not in overlaps_of:
            fp[rank] = 1.0
            continue
        overlaps = overlaps_of[image][row_of[det]]
        j = int(np.argmax(overlaps))
        if overlaps[j] < iou_threshold:
            fp[rank] = 1.0
        elif ground_truth[image][1][j]:
            continue
        elif not matched[image][j]:
            matched[image][j] = True
            tp[rank] = 1.0
        else:
            fp[rank] = 1.0
    return tp, fp


def _load_ground_truth(ground_truth: COCO | str | os.PathLike) -> COCO:
    if isinstance(ground_truth, COCO):
        return ground_truth
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ground_truth))


def voc_metrics(
    ground_truth: COCO | str | os.PathLike,
    records: Iterable[dict],
    image_ids: Sequence[int] | None = None,
    use_07_metric: bool = False,
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """Pascal VOC AP per class and mAP of COCO result records.

    A class with no positives (no ground truth, or only difficult/crowd objects) in the evaluated
    images has AP NaN, as the devkit's recall (0 / 0) would make it, and is left out of the mean:
    mAP is the mean over the classes with positives (NaN when there are none).

    Args:
        ground_truth: A loaded `COCO` annotation set, or the path of an annotations json.
        records: COCO result records: "image_id", "category_id", "bbox" [x, y, w, h], "score".
        image_ids: Images to evaluate on (ground truth and detections of other images are left
            out); None: every image of the ground truth, and a detection on an image it does not
            hold is an error (pycocotools' loadRes refuses it too).
        use_07_metric: VOC2007's 11-point AP instead of the area (VOC2010 on).
        iou_threshold: The overlap a match needs (VOC: 0.5).

    Returns:
        {"mAP_voc": mean, "AP_voc/<category name>": AP, ...} with every category of the ground truth.

    Raises:
        ValueError: A record's category is not in the ground truth, or (with `image_ids` None) its
            image is not.
    """
    coco = _load_ground_truth(ground_truth)
    images = {int(i) for i in (coco.getImgIds() if image_ids is None else image_ids)}
    categories = sorted(coco.cats)

    per_class: dict[int, dict[int, tuple[list, list]]] = {c: defaultdict(lambda: ([], [])) for c in categories}
    # boxes of a category the ground truth does not list (a reader's unknown class) are not scored
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=sorted(images & set(coco.imgs)), catIds=categories)):
        gt_boxes, ignored = per_class[int(ann["category_id"])][int(ann["image_id"])]
        gt_boxes.append(ann["bbox"])
        ignored.append(bool(ann.get("difficult", 0)) or bool(ann.get("iscrowd", 0)))

    detections: dict[int, tuple[list, list, list]] = {c: ([], [], []) for c in categories}
    for record in records:
        image, category = int(record["image_id"]), int(record["category_id"])
        if category not in detections:
            raise ValueError(f"result record of category {category}, which the ground truth does not have")
        if image not in images:
            if image_ids is None:
                raise ValueError(f"result record of image {image}, which the ground truth does not have")
            continue
        det_images, det_boxes, det_scores = detections[category]
        det_images.append(image)
        det_boxes.append(record["bbox"])
        det_scores.append(float(record["score"]))

    metrics: dict[str, float] = {}
    for category in categories:
        gt = {
            image: (np.asarray(b, np.float64).reshape(-1, 4), np.asarray(ig, bool))
            for image, (b, ig) in per_class[category].items()
        }
        positives = sum(int(np.sum(~ignored)) for _, ignored in gt.values())
        name = f"AP_voc/{coco.cats[category]['name']}"
        if positives == 0:
            metrics[name] = math.nan
            continue
        tp, fp = match_detections(*(np.asarray(part) for part in detections[category]), gt, iou_threshold)
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        recall = tp / positives
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        metrics[name] = voc_ap(recall, precision, use_07_metric)
    measured = [value for value in metrics.values() if not math.isnan(value)]
    return {"mAP_voc": float(np.mean(measured)) if measured else math.nan, **metrics}


def format_voc_metrics(metrics: dict[str, float]) -> str:
    """One line: the mAP, then each class's AP ("n/a" where it has no positives)."""
    parts = [f"mAP_voc {metrics['mAP_voc']:.4f}"]
    for key, value in metrics.items():
        if key.startswith("AP_voc/"):
            parts.append(f"{key.split('/', 1)[1]} " + ("n/a" if math.isnan(value) else f"{value:.4f}"))
    return " | ".join(parts)
