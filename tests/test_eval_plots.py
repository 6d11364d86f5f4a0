"""eval_plots.py: precision-recall curves are pycocotools' own numbers, the confusion matrix counts
every box once by the documented matching, and both pictures are written as the images returned."""

import contextlib
import io

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cornernet_tf.utils import eval_plots
from cornernet_tf.utils.coco_metrics import per_class_ap
from cornernet_tf.utils.visualize import class_color

# ids out of order and with gaps: the class order is params.catIds (sorted ids), not the list order
CATEGORIES = [{"id": 9, "name": "bird"}, {"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 7, "name": "zebra"}]


def _coco(images, annotations, categories=CATEGORIES) -> COCO:
    """A pycocotools COCO built in memory; `annotations` as (image, category, [x, y, w, h], crowd)."""
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i, "width": 100, "height": 100} for i in images],
        "annotations": [
            {"id": n + 1, "image_id": i, "category_id": c, "bbox": list(b), "area": b[2] * b[3], "iscrowd": crowd}
            for n, (i, c, b, crowd) in enumerate(annotations)
        ],
        "categories": categories,
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _record(image, category, box, score):
    return {"image_id": image, "category_id": category, "bbox": list(box), "score": score}


def _evaluate(ground_truth: COCO, detections: COCO) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(ground_truth, detections, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


@pytest.fixture(scope="module")
def ground_truth():
    return _coco(
        [1, 2, 3],
        [
            (1, 1, (10, 10, 30, 30), 0),
            (1, 3, (50, 50, 40, 40), 0),
            (1, 1, (0, 60, 40, 40), 1),  # a crowd of cats
            (2, 1, (20, 20, 20, 20), 0),
            (2, 1, (60, 10, 30, 30), 0),
            (2, 3, (5, 50, 30, 40), 0),
            (3, 9, (10, 10, 20, 20), 0),  # a bird nobody finds
            (3, 3, (40, 40, 50, 50), 0),
        ],
    )


@pytest.fixture(scope="module")
def evaluator(ground_truth):
    records = [
        _record(1, 1, (10, 10, 30, 30), 0.9),
        _record(2, 1, (21, 21, 20, 20), 0.8),  # IoU 0.82
        _record(2, 1, (66, 10, 30, 30), 0.3),  # IoU 0.67
        _record(3, 1, (70, 5, 20, 20), 0.85),  # nothing there
        _record(1, 1, (2, 62, 30, 30), 0.7),  # inside the crowd: ignored
        _record(1, 3, (53, 50, 40, 40), 0.6),  # IoU 0.86
        _record(2, 3, (5, 50, 30, 40), 0.95),
        _record(1, 3, (10, 10, 30, 30), 0.5),  # a cat called dog
        _record(3, 3, (44, 44, 50, 50), 0.4),  # IoU 0.74
        _record(2, 7, (0, 0, 10, 10), 0.4),  # a zebra where no zebra is
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        detections = ground_truth.loadRes(records)
    return _evaluate(ground_truth, detections)


def _measured_mean(values):
    return float(values[values > -1].mean()) if (values > -1).any() else None


def test_curves_match_the_precision_array_and_pycocotools_ap(evaluator):
    curves = eval_plots.precision_recall_curves(evaluator)
    assert curves["names"] == ["cat", "dog", "zebra", "bird"] and curves["category_ids"] == [1, 3, 7, 9]
    np.testing.assert_array_equal(curves["recall"], np.linspace(0.0, 1.0, 101))

    # independent re-derivation: -1 as NaN, NaN-aware means
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    masked = np.where(precision > -1, precision, np.nan)
    at_50 = int(np.flatnonzero(np.isclose(evaluator.params.iouThrs, 0.5))[0])
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
        averaged = np.nanmean(masked, axis=0)  # zebra: all NaN
    for expected, key in ((masked[at_50], "precision50"), (averaged, "precision")):
        for k, curve in enumerate(curves[key]):
            if np.isnan(expected[:, k]).all():
                assert curve is None
            else:
                np.testing.assert_allclose(curve, expected[:, k], rtol=1e-12)
        has_truth = ~np.isnan(expected).all(axis=0)
        np.testing.assert_allclose(curves[f"mean_{key}"], expected[:, has_truth].mean(axis=1), rtol=1e-12)
    assert curves["precision"][2] is None and curves["ap50"][2] is None, "zebra has no ground truth"
    assert not curves["precision50"][3].any() and curves["ap50"][3] == 0.0, "bird: ground truth, never found"
    assert 0.0 < curves["ap"][0] < curves["ap50"][0], "cat boxes are off by more than IoU 0.5 demands"

    # AP as pycocotools computes it: mean over the entries > -1; the curves' means give the same
    reported = per_class_ap(evaluator)
    for k, name in enumerate(curves["names"]):
        for key, block in (("ap50", precision[at_50, :, k]), ("ap", precision[:, :, k])):
            measured = _measured_mean(block)
            if measured is None:  # no ground truth of the class
                assert curves[key][k] is None
            else:
                assert curves[key][k] == pytest.approx(measured, rel=1e-12, abs=0)
            assert curves[key][k] == (
                None if reported[f"{key.upper()}/{name}"] == -1 else reported[f"{key.upper()}/{name}"]
            )
            if curves[key][k] is not None:
                assert curves[key.replace("ap", "precision")][k].mean() == pytest.approx(curves[key][k], rel=1e-12)
    assert curves["map"] == pytest.approx(evaluator.stats[0], rel=1e-12)
    assert curves["map50"] == pytest.approx(evaluator.stats[1], rel=1e-12)
    assert curves["mean_precision"].mean() == pytest.approx(evaluator.stats[0], rel=1e-12)


def test_curves_need_an_accumulated_evaluator(ground_truth):
    with pytest.raises(ValueError, match="accumulate"):
        eval_plots.precision_recall_curves(COCOeval(ground_truth, ground_truth, "bbox"))


AB = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]


def test_confusion_matrix_hand_made_case():
    truth = _coco(
        [1, 2, 3],
        [
            (1, 1, (0, 0, 20, 20), 0),
            (1, 2, (50, 50, 20, 20), 0),
            (1, 1, (0, 50, 20, 20), 0),  # only found below the score threshold
            (1, 2, (60, 0, 40, 40), 1),  # a crowd of b
            (2, 2, (10, 10, 30, 30), 0),
            (3, 2, (0, 0, 10, 10), 0),  # an image left out by image_ids
        ],
        AB,
    )
    records = [
        _record(1, 1, (1, 1, 20, 20), 0.5),  # the same a again, after the better one took it: false positive
        _record(1, 1, (0, 0, 20, 20), 0.9),  # true positive
        _record(1, 1, (50, 50, 20, 20), 0.8),  # b taken for a
        _record(1, 2, (30, 30, 10, 10), 0.7),  # nothing there: background row
        _record(1, 1, (0, 50, 20, 20), 0.1),  # under the score threshold: the a stays missed
        _record(1, 2, (65, 5, 20, 20), 0.6),  # inside the crowd: dropped
        _record(2, 2, (10, 10, 30, 30), 0.95),  # true positive
        _record(3, 1, (0, 0, 10, 10), 0.9),  # image 3 is not counted
    ]
    matrix, names = eval_plots.confusion_matrix(truth, records, image_ids=[1, 2])
    assert names == ["a", "b"]
    # rows true a, b, background; columns predicted a, b, background
    np.testing.assert_array_equal(matrix, [[1, 0, 1], [1, 1, 0], [1, 1, 0]])
    # every image: image 3's b taken for a; a threshold of 0.05 keeps the a below 0.25
    everything, _ = eval_plots.confusion_matrix(truth, records, None, score_threshold=0.05)
    np.testing.assert_array_equal(everything, [[2, 0, 0], [2, 1, 0], [1, 1, 0]])
    with pytest.raises(ValueError, match="category 5"):
        eval_plots.confusion_matrix(truth, [_record(1, 5, (0, 0, 5, 5), 0.9)], [1])


@pytest.mark.parametrize("with_crowd", [False, True])
def test_confusion_matrix_counts_every_box_once(with_crowd):
    rng = np.random.default_rng(3 + with_crowd)
    annotations, records = [], []
    for image in range(1, 9):
        for _ in range(rng.integers(0, 6)):
            x, y = rng.uniform(0, 70, 2)
            w, h = rng.uniform(8, 30, 2)
            category = int(rng.choice([1, 3, 7, 9]))
            annotations.append((image, category, (x, y, w, h), 0))
            if rng.random() < 0.8:  # found, maybe with a wrong class, maybe off
                box = (x + rng.normal(0, 3), y + rng.normal(0, 3), w, h)
                label = category if rng.random() < 0.7 else int(rng.choice([1, 3, 7, 9]))
                records.append(_record(image, label, box, float(rng.random())))
        if with_crowd:
            annotations.append((image, 1, (0, 0, 50, 50), 1))
        for _ in range(rng.integers(0, 3)):  # false positives
            x, y = rng.uniform(0, 80, 2)
            records.append(_record(image, int(rng.choice([1, 3, 7, 9])), (x, y, 15, 15), float(rng.random())))
    truth = _coco(range(1, 9), annotations)
    matrix, names = eval_plots.confusion_matrix(truth, records, list(range(1, 9)), 0.5, 0.25)
    assert names == ["cat", "dog", "zebra", "bird"]
    classes = len(names)
    for k, category in enumerate([1, 3, 7, 9]):
        boxes = sum(1 for _, c, _, crowd in annotations if c == category and not crowd)
        assert matrix[k].sum() == boxes, "each non-crowd box once: matched to a class or missed"
    assert matrix[classes, classes] == 0
    kept = [r for r in records if r["score"] >= 0.25]
    matched = matrix[:classes, :classes].sum()
    if with_crowd:  # a detection on a crowd region may be dropped
        assert matrix[classes].sum() <= len(kept) - matched
    else:
        assert matrix[classes].sum() == len(kept) - matched, "background row: kept detections left unmatched"
        for k, category in enumerate([1, 3, 7, 9]):
            assert matrix[:, k].sum() == sum(1 for r in kept if r["category_id"] == category)


def _read_png(path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _pixels_of(image: np.ndarray, color) -> int:
    return int((image == np.array(color, np.uint8)).all(axis=-1).sum())


@pytest.mark.parametrize("iou", ["0.5", "0.5:0.95"])
def test_draw_precision_recall_writes_the_returned_image(evaluator, tmp_path, iou):
    curves = eval_plots.precision_recall_curves(evaluator)
    image = eval_plots.draw_precision_recall(curves, tmp_path / "pr.png", iou=iou)
    assert image.dtype == np.uint8 and image.shape == (600, 800, 3)
    np.testing.assert_array_equal(_read_png(tmp_path / "pr.png"), image)
    chart = image[:, :540]  # the plot area, left of the legend
    for k in (0, 1, 3):  # cat, dog, bird (zebra has no curve)
        assert _pixels_of(chart, class_color(k)) > 30, f"the curve of class {k} in its detection colour"
    assert _pixels_of(image[:, 540:], class_color(2)) == 0, "no legend entry for zebra"
    with pytest.raises(ValueError, match="iou"):
        eval_plots.draw_precision_recall(curves, tmp_path / "bad.png", iou="0.75")


def test_draw_precision_recall_without_detections_or_classes(ground_truth, tmp_path):
    nothing = COCO()
    nothing.dataset = {**ground_truth.dataset, "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        nothing.createIndex()
    curves = eval_plots.precision_recall_curves(_evaluate(ground_truth, nothing))
    assert curves["map50"] == 0.0 and not curves["mean_precision50"].any()
    image = eval_plots.draw_precision_recall(curves, tmp_path / "zero.png", title="no detections")
    np.testing.assert_array_equal(_read_png(tmp_path / "zero.png"), image)

    empty = eval_plots.empty_curves()
    image = eval_plots.draw_precision_recall(empty, tmp_path / "empty.png")
    np.testing.assert_array_equal(_read_png(tmp_path / "empty.png"), image)
    assert _pixels_of(image, (225, 225, 225)) > 1000, "the grid"
    assert _pixels_of(image[:, :540], (0, 0, 0)) > 1000, "the frame, ticks and labels"


def test_draw_confusion_matrix(tmp_path):
    matrix = np.array([[3, 0, 1], [1, 2, 0], [0, 4, 0]])
    image = eval_plots.draw_confusion_matrix(matrix, ["a", "b"], tmp_path / "cm.png")
    np.testing.assert_array_equal(_read_png(tmp_path / "cm.png"), image)
    darkest, lightest = (8, 48, 107), (247, 251, 255)
    assert _pixels_of(image, darkest) > 100, "background row: all its detections called b, share 1"
    assert _pixels_of(image, lightest) > 100, "empty cells"
    counts = eval_plots.draw_confusion_matrix(matrix, ["a", "b"], tmp_path / "counts.png", normalize=False)
    assert _pixels_of(counts, darkest) > 100 and not np.array_equal(counts, image)

    many = 40
    names = [f"class number {k} with a long name" for k in range(many)]
    big = np.random.default_rng(0).integers(0, 5, (many + 1, many + 1))
    image = eval_plots.draw_confusion_matrix(big, names, tmp_path / "big.png")
    np.testing.assert_array_equal(_read_png(tmp_path / "big.png"), image)
    assert image.shape[0] > 600 and image.shape[1] > 600
    with pytest.raises(ValueError, match="expected"):
        eval_plots.draw_confusion_matrix(big, names[:-1], tmp_path / "bad.png")


def test_boxes_of_a_category_the_ground_truth_does_not_list_are_not_scored():
    """A reader's unknown class (category id 0 in VOC/YOLO ground truth) is left out, as pycocotools does."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    from cornernet_tf.utils.voc_metrics import voc_metrics

    truth = COCO()
    truth.dataset = {
        "images": [{"id": 1, "width": 50, "height": 50}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 0, "bbox": [20, 20, 10, 10], "area": 100, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "a"}],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        truth.createIndex()
    records = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9}]
    matrix, names = eval_plots.confusion_matrix(truth, records)
    assert matrix.tolist() == [[1, 0], [0, 0]] and names == ["a"]
    assert voc_metrics(truth, records) == {"mAP_voc": 1.0, "AP_voc/a": 1.0}
