"""Evaluation pictures: precision-recall curves per class and a confusion matrix with background.

The curves come from pycocotools' accumulated precision array, so their AP values are the ones
`coco_metrics` reports; the confusion matrix re-matches detections to ground truth per image, as
Ultralytics and mmdetection draw it. Pictures are drawn with OpenCV because the package has no
plotting dependency and a few line charts do not justify adding one. Classes keep the colours
`visualize.class_color` gives their detection boxes. Images are uint8 RGB [H, W, 3].
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cornernet_tf.utils.visualize import class_color, save_png

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BLACK, _DARK_GREY, _GRID_GREY, _WHITE = (0, 0, 0), (60, 60, 60), (225, 225, 225), (255, 255, 255)
# precision-recall chart: canvas and the plot area inside it (pixels); the legend sits right of it
_PR_WIDTH, _PR_HEIGHT = 800, 600
_PR_LEFT, _PR_TOP, _PR_RIGHT, _PR_BOTTOM = 70, 40, 540, 530
_LEGEND_CLASSES = 20
# confusion matrix: cell shades run from near white to dark blue (matplotlib's "Blues" ends)
_CELL_LOW, _CELL_HIGH = np.array([247.0, 251.0, 255.0]), np.array([8.0, 48.0, 107.0])
_MAX_CLASSES_WITH_COUNTS = 30
_NAME_CHARS = 16


def precision_recall_curves(evaluator: COCOeval) -> dict:
    """Precision at pycocotools' recall points per class, from an evaluator after `accumulate()`.

    pycocotools keeps precision [T IoU thresholds, R recall points, K classes, A area ranges,
    M max-dets], -1 where a class has no ground truth. This takes area "all" and the largest
    max-dets (what the AP of the summary uses), and computes AP as the summary does (the mean of
    the entries > -1), so the AP values are the ones pycocotools reports (per class as
    `coco_metrics.per_class_ap`, over classes `evaluator.stats[0]` for IoU 0.5:0.95 and
    `evaluator.stats[1]` for IoU 0.5), and each equals the mean of its curve.

    Returns:
        "recall": [R] recall points (`params.recThrs`); "names" and "category_ids" of the classes in
        `params.catIds` order (a class's index there is its contiguous index, and its colour);
        "precision50" / "precision": per class [R] precision at IoU 0.5 / averaged over the IoU
        thresholds 0.5:0.95, None for a class without ground truth; "ap50" / "ap": their AP (None
        likewise); "mean_precision50" / "mean_precision": the mean curve over classes with ground
        truth, and "map50" / "map" its AP (None when no class has ground truth).
    """
    if "precision" not in evaluator.eval:
        raise ValueError("the evaluator has no precision array: call evaluate() and accumulate() first")
    params = evaluator.params
    at_50 = np.flatnonzero(np.isclose(params.iouThrs, 0.5))
    if not at_50.size:
        raise ValueError(f"IoU 0.5 is not among the evaluator's thresholds {list(params.iouThrs)}")
    precision = np.asarray(evaluator.eval["precision"], np.float64)[:, :, :, 0, -1]  # [T, R, K]
    measured = precision > -1
    with np.errstate(invalid="ignore"):  # classes without ground truth: 0 / 0, replaced by None below
        per_iou_mean = np.where(measured, precision, 0.0).sum(axis=0) / measured.sum(axis=0)  # [R, K]
    has_truth = measured.any(axis=(0, 1))
    curves: dict = {
        "recall": np.asarray(params.recThrs, np.float64),
        "names": [evaluator.cocoGt.cats[category]["name"] for category in params.catIds],
        "category_ids": [int(category) for category in params.catIds],
    }
    at_50_block = precision[at_50[0] : at_50[0] + 1]  # [1, R, K]
    for suffix, block, curve in (("50", at_50_block, at_50_block[0]), ("", precision, per_iou_mean)):
        curves[f"precision{suffix}"] = [curve[:, k].copy() if has_truth[k] else None for k in range(len(has_truth))]
        curves[f"ap{suffix}"] = [_measured_mean(block[:, :, k]) for k in range(len(has_truth))]
        curves[f"mean_precision{suffix}"] = curve[:, has_truth].mean(axis=1) if has_truth.any() else None
        curves[f"map{suffix}"] = _measured_mean(block)
    return curves


def empty_curves() -> dict:
    """`precision_recall_curves` of an evaluation without detections: no curve, axes only."""
    curves: dict = {"recall": np.linspace(0.0, 1.0, 101), "names": [], "category_ids": []}
    curves.update({key: [] for key in ("precision50", "precision", "ap50", "ap")})
    curves.update({key: None for key in ("mean_precision50", "mean_precision", "map50", "map")})
    return curves


def _measured_mean(values: np.ndarray) -> float | None:
    """The mean of the entries > -1, as pycocotools' summary averages precision; None if none."""
    measured = values[values > -1]
    return float(measured.mean()) if measured.size else None


def confusion_matrix(
    ground_truth: COCO,
    records: Sequence[dict],
    image_ids: Sequence[int] | None = None,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.25,
) -> tuple[np.ndarray, list[str]]:
    """Counts of true class against predicted class, with background (Ultralytics' confusion matrix).

    Matching, per image: detections with score >= `score_threshold` are taken by descending score
    (stable, as pycocotools sorts); each goes to the not yet matched non-crowd ground-truth box of
    highest IoU >= `iou_threshold`, whatever its class, so class confusions land off the diagonal.
    A detection that matches none counts in the background row, unless it covers a crowd region
    (pycocotools' crowd overlap: intersection over the detection's area >= `iou_threshold`); then
    it is dropped, as COCOeval ignores it. Ground-truth boxes still unmatched count in the
    background column; crowd boxes are never counted. So each class row sums to that class's
    non-crowd boxes, and the background row to the kept detections that found no box.

    Args:
        ground_truth: Loaded COCO annotations.
        records: COCO result records ("image_id", "category_id", "bbox" [x, y, w, h], "score").
        image_ids: Images to count (records of other images are left out); None: every image.
        iou_threshold: Least IoU of a match.
        score_threshold: Detections with a lower score are left out.

    Returns:
        matrix: int64 [C + 1, C + 1]; rows the true class, columns the predicted class, in sorted
            category id order (the contiguous class index), the last row and column background.
        names: The C category names in that order.
    """
    category_ids = sorted(ground_truth.getCatIds())
    column = {category: k for k, category in enumerate(category_ids)}
    background = len(category_ids)
    matrix = np.zeros((background + 1, background + 1), np.int64)
    images = set(ground_truth.getImgIds() if image_ids is None else (int(i) for i in image_ids))
    detections: dict[int, list[dict]] = {image: [] for image in images}
    for record in records:
        if int(record["image_id"]) in images and record["score"] >= score_threshold:
            if record["category_id"] not in column:
                raise ValueError(f"detection of category {record['category_id']}, not in the ground truth")
            detections[int(record["image_id"])].append(record)
    for image, found in detections.items():
        # boxes of a category the ground truth does not list (a reader's unknown class) are not
        # scored, as pycocotools leaves them out
        annotations = ground_truth.loadAnns(ground_truth.getAnnIds(imgIds=[image], catIds=category_ids))
        truth = [ann for ann in annotations if not ann.get("iscrowd", 0)]
        crowd = [ann for ann in annotations if ann.get("iscrowd", 0)]
        found = [found[i] for i in np.argsort([-r["score"] for r in found], kind="mergesort")]
        matched = np.zeros(len(truth), bool)
        overlaps = _box_iou(found, truth, crowd=False)
        covers_crowd = (_box_iou(found, crowd, crowd=True) >= iou_threshold).any(axis=1)
        for d, record in enumerate(found):
            candidates = np.where(matched, -1.0, overlaps[d])
            best = int(np.argmax(candidates)) if len(truth) else -1
            if best >= 0 and candidates[best] >= iou_threshold:
                matched[best] = True
                matrix[column[truth[best]["category_id"]], column[record["category_id"]]] += 1
            elif not covers_crowd[d]:
                matrix[background, column[record["category_id"]]] += 1
        for ann, hit in zip(truth, matched):
            if not hit:
                matrix[column[ann["category_id"]], background] += 1
    return matrix, [ground_truth.cats[category]["name"] for category in category_ids]


def _box_iou(detections: Sequence[dict], annotations: Sequence[dict], crowd: bool) -> np.ndarray:
    """pycocotools' box IoU [D, G] (for crowd boxes: intersection over the detection's area)."""
    if not detections or not annotations:
        return np.zeros((len(detections), len(annotations)))
    boxes = np.array([d["bbox"] for d in detections], np.float64)
    regions = np.array([a["bbox"] for a in annotations], np.float64)
    return np.asarray(mask_utils.iou(boxes, regions, [int(crowd)] * len(annotations)), np.float64)


def draw_precision_recall(
    curves: dict, path: str | os.PathLike, title: str | None = None, iou: str = "0.5"
) -> np.ndarray:
    """Draw `precision_recall_curves` as a PNG at `path` (written atomically); returns the RGB image.

    One line per class in its detection colour, the mean over classes thicker in dark grey, on
    axes 0..1 with a grid. The legend lists the mean and the 20 classes of highest
    AP ("+N more" for the rest, which are drawn all the same).

    Args:
        curves: As `precision_recall_curves` returns them.
        path: The PNG to write.
        title: Text above the chart; default "Precision-recall, IoU <iou>".
        iou: "0.5" for the curves at IoU 0.5, "0.5:0.95" for those averaged over the thresholds.

    Returns:
        uint8 RGB [600, 800, 3], e.g. for TensorBoard.
    """
    if iou not in ("0.5", "0.5:0.95"):
        raise ValueError(f"iou must be '0.5' or '0.5:0.95', not {iou!r}")
    suffix = "50" if iou == "0.5" else ""
    canvas = np.full((_PR_HEIGHT, _PR_WIDTH, 3), 255, np.uint8)
    _draw_axes(canvas)
    _put_text(canvas, title or f"Precision-recall, IoU {iou}", (_PR_LEFT, 25), 0.6, _BLACK)
    recall = np.asarray(curves["recall"], np.float64)
    drawn = [
        (k, ap)
        for k, (curve, ap) in enumerate(zip(curves[f"precision{suffix}"], curves[f"ap{suffix}"]))
        if curve is not None
    ]
    drawn.sort(key=lambda entry: -entry[1])
    for k, _ in reversed(drawn):  # the best classes end on top
        _polyline(canvas, recall, curves[f"precision{suffix}"][k], class_color(k), 2)
    mean_curve = curves[f"mean_precision{suffix}"]
    entries = []
    if mean_curve is not None:
        _polyline(canvas, recall, mean_curve, _DARK_GREY, 4)
        entries.append((_DARK_GREY, f"all classes {curves[f'map{suffix}']:.3f}"))
    entries += [(class_color(k), f"{_abbreviate(curves['names'][k])} {ap:.3f}") for k, ap in drawn[:_LEGEND_CLASSES]]
    if len(drawn) > _LEGEND_CLASSES:
        entries.append((None, f"+{len(drawn) - _LEGEND_CLASSES} more"))
    _draw_legend(canvas, entries or [(None, "no curves (no ground truth)")], f"AP{suffix}, IoU {iou}")
    save_png(path, canvas)
    return canvas


def _to_pixels(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Chart coordinates 0..1 -> plot-area pixels [N, 2] (x right, y up)."""
    px = _PR_LEFT + np.asarray(x, np.float64) * (_PR_RIGHT - _PR_LEFT)
    py = _PR_BOTTOM - np.asarray(y, np.float64) * (_PR_BOTTOM - _PR_TOP)
    return np.stack([px, py], axis=-1)


def _polyline(canvas: np.ndarray, recall: np.ndarray, precision: np.ndarray, color, thickness: int) -> None:
    points = np.round(_to_pixels(recall, precision) * 16).astype(np.int32)  # 4 fractional bits
    cv2.polylines(canvas, [points], False, color, thickness, cv2.LINE_AA, shift=4)


def _draw_axes(canvas: np.ndarray) -> None:
    """Grid every 0.1, tick labels every 0.2, the frame, and the axis titles."""
    for step in range(11):
        x, y = (int(v) for v in _to_pixels(step / 10, step / 10).round())
        cv2.line(canvas, (x, _PR_TOP), (x, _PR_BOTTOM), _GRID_GREY, 1)
        cv2.line(canvas, (_PR_LEFT, y), (_PR_RIGHT, y), _GRID_GREY, 1)
        cv2.line(canvas, (x, _PR_BOTTOM), (x, _PR_BOTTOM + 5), _BLACK, 1)
        cv2.line(canvas, (_PR_LEFT - 5, y), (_PR_LEFT, y), _BLACK, 1)
        if step % 2 == 0:
            label = f"{step / 10:.1f}"
            (width, height), _ = cv2.getTextSize(label, _FONT, 0.45, 1)
            _put_text(canvas, label, (x - width // 2, _PR_BOTTOM + 10 + height), 0.45, _BLACK)
            _put_text(canvas, label, (_PR_LEFT - 10 - width, y + height // 2), 0.45, _BLACK)
    cv2.rectangle(canvas, (_PR_LEFT, _PR_TOP), (_PR_RIGHT, _PR_BOTTOM), _BLACK, 1)
    (width, _), _ = cv2.getTextSize("Recall", _FONT, 0.55, 1)
    _put_text(canvas, "Recall", ((_PR_LEFT + _PR_RIGHT - width) // 2, _PR_BOTTOM + 50), 0.55, _BLACK)
    _put_text_vertical(canvas, "Precision", 8, (_PR_TOP + _PR_BOTTOM) // 2, 0.55, _BLACK)


def _draw_legend(canvas: np.ndarray, entries: list[tuple[tuple[int, int, int] | None, str]], heading: str) -> None:
    """A swatch and a text per entry, in a column right of the plot area."""
    left, y, line = _PR_RIGHT + 20, _PR_TOP + 12, 22
    _put_text(canvas, heading, (left, y), 0.45, _BLACK)
    for color, text in entries:
        y += line
        if color is not None:
            cv2.rectangle(canvas, (left, y - 9), (left + 22, y - 3), color, -1)
        _put_text(canvas, text, (left + 30, y), 0.45, _BLACK)


def draw_confusion_matrix(
    matrix: np.ndarray, names: Sequence[str], path: str | os.PathLike, normalize: bool = True
) -> np.ndarray:
    """Draw a `confusion_matrix` as a PNG at `path` (written atomically); returns the RGB image.

    Cells are shaded by their share of the row (the true class) when `normalize`, else by count
    over the largest count; counts are printed in the cells for up to 30 classes. Names, shortened
    to 16 characters, label the rows (true) and, rotated, the columns (predicted), each followed by
    "background".

    Args:
        matrix: [C + 1, C + 1] counts, the last row and column background.
        names: The C class names.
        path: The PNG to write.
        normalize: Shade by row share instead of by count.

    Returns:
        uint8 RGB [H, W, 3], e.g. for TensorBoard; the size grows with the number of classes.
    """
    matrix = np.asarray(matrix)
    labels = [_abbreviate(name) for name in names] + ["background"]
    n = len(labels)
    if matrix.shape != (n, n):
        raise ValueError(f"matrix of shape {matrix.shape} for {len(names)} names: expected {(n, n)}")
    if normalize:
        totals = matrix.sum(axis=1, keepdims=True)
        shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    else:
        shares = matrix / max(int(matrix.max()), 1)
    cell = int(np.clip(560 // n, 8, 60))
    name_scale = float(np.clip((cell - 2) / 22, 0.3, 0.45))
    name_width = max(cv2.getTextSize(label, _FONT, name_scale, 1)[0][0] for label in labels)
    left, top = name_width + 40, 50
    size = n * cell
    width, height = max(left + size + 90, 420), top + size + name_width + 50
    canvas = np.full((height, width, 3), 255, np.uint8)
    title = "Confusion matrix" + (" (shaded by row share)" if normalize else "")
    _put_text(canvas, title, (10, 25), 0.6, _BLACK)
    show_counts = n - 1 <= _MAX_CLASSES_WITH_COUNTS
    for row in range(n):
        for col in range(n):
            x, y = left + col * cell, top + row * cell
            canvas[y : y + cell, x : x + cell] = _shade(shares[row, col])
            if show_counts and matrix[row, col]:
                ink = _WHITE if shares[row, col] > 0.5 else _BLACK
                _put_text_centered(canvas, str(int(matrix[row, col])), (x + cell // 2, y + cell // 2), cell, ink)
    # the background row and column set apart, and the frame
    cv2.line(canvas, (left, top + size - cell), (left + size, top + size - cell), _DARK_GREY, 1)
    cv2.line(canvas, (left + size - cell, top), (left + size - cell, top + size), _DARK_GREY, 1)
    cv2.rectangle(canvas, (left, top), (left + size, top + size), _BLACK, 1)
    for k, label in enumerate(labels):
        (text_width, text_height), _ = cv2.getTextSize(label, _FONT, name_scale, 1)
        center = top + k * cell + cell // 2
        _put_text(canvas, label, (left - 6 - text_width, center + text_height // 2), name_scale, _BLACK)
        column_center = left + k * cell + cell // 2
        _put_text_vertical(
            canvas, label, column_center - text_height // 2 - 1, top + size + 6, name_scale, _BLACK, True
        )
    _put_text_vertical(canvas, "True", 6, top + size // 2, 0.55, _BLACK)
    (text_width, _), _ = cv2.getTextSize("Predicted", _FONT, 0.55, 1)
    _put_text(canvas, "Predicted", (left + (size - text_width) // 2, height - 12), 0.55, _BLACK)
    _draw_scale(canvas, left + size + 20, top, size, "1" if normalize else str(int(matrix.max())))
    save_png(path, canvas)
    return canvas


def _shade(share: float) -> np.ndarray:
    return np.round(_CELL_LOW + (_CELL_HIGH - _CELL_LOW) * float(share)).astype(np.uint8)


def _draw_scale(canvas: np.ndarray, x: int, top: int, height: int, high_label: str) -> None:
    """A vertical shade bar from 0 (bottom) to `high_label` (top)."""
    for y in range(height):
        canvas[top + y, x : x + 14] = _shade(1.0 - y / max(height - 1, 1))
    cv2.rectangle(canvas, (x, top), (x + 14, top + height), _BLACK, 1)
    _put_text(canvas, high_label, (x + 18, top + 10), 0.4, _BLACK)
    _put_text(canvas, "0", (x + 18, top + height), 0.4, _BLACK)


def _abbreviate(name: str) -> str:
    return name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 2] + ".."


def _put_text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float, color) -> None:
    cv2.putText(canvas, text, (int(origin[0]), int(origin[1])), _FONT, scale, color, 1, cv2.LINE_AA)


def _put_text_centered(canvas: np.ndarray, text: str, center: tuple[int, int], cell: int, color) -> None:
    """Text centred on `center`, shrunk to fit a cell; left out when it cannot stay readable."""
    scale = 0.45
    (width, height), _ = cv2.getTextSize(text, _FONT, scale, 1)
    while width > cell - 3 or height > cell - 3:
        scale -= 0.05
        if scale < 0.25:
            return
        (width, height), _ = cv2.getTextSize(text, _FONT, scale, 1)
    _put_text(canvas, text, (center[0] - width // 2, center[1] + height // 2), scale, color)


def _put_text_vertical(
    canvas: np.ndarray, text: str, x: int, y: int, scale: float, color, from_top: bool = False
) -> None:
    """Text turned 90 degrees (read bottom to top) with its left edge at `x`: centred on row `y`,
    or, with `from_top`, its end at row `y` (OpenCV only writes horizontally: draw on a mask, turn it)."""
    (width, height), baseline = cv2.getTextSize(text, _FONT, scale, 1)
    mask = np.zeros((height + baseline + 2, width + 2), np.uint8)
    cv2.putText(mask, text, (1, height + 1), _FONT, scale, 255, 1, cv2.LINE_AA)
    mask = np.rot90(mask)
    top = y if from_top else y - mask.shape[0] // 2
    region = canvas[top : top + mask.shape[0], x : x + mask.shape[1]]
    alpha = mask[: region.shape[0], : region.shape[1], None] / 255.0
    region[:] = np.round(region * (1.0 - alpha) + np.asarray(color, np.float64) * alpha).astype(np.uint8)
