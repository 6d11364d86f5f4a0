"""COCO metrics: perfect detections score 1, none score 0, worse boxes score lower; AP per class
equals pycocotools restricted to that class."""

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cornernet_tf.data import shapes
from cornernet_tf.utils.coco_metrics import (
    METRIC_NAMES,
    coco_metrics,
    detections_to_coco,
    format_metrics,
    write_results,
)


@pytest.fixture(scope="module")
def ground_truth(tmp_path_factory):
    layout = shapes.ensure_dataset(tmp_path_factory.mktemp("gt") / "ds", 4, 12, 96, seed=1)
    return layout["val"][0]


def _gt_records(path, shift=0.0, drop_every=0):
    data = json.loads(path.read_text())
    category_ids = [c["id"] for c in data["categories"]]
    records = []
    for i, ann in enumerate(data["annotations"]):
        if drop_every and i % drop_every == 0:
            continue
        x, y, w, h = ann["bbox"]
        box = np.array([[x + shift, y + shift, x + w + shift, y + h + shift]])
        records += detections_to_coco(
            ann["image_id"], box, np.array([0.9]), np.array([ann["category_id"] - 1]), category_ids
        )
    return records


def test_ground_truth_as_detections_scores_one(ground_truth):
    metrics = coco_metrics(ground_truth, _gt_records(ground_truth))
    assert set(metrics) == set(METRIC_NAMES)
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AR100"] == pytest.approx(1.0)


def test_worse_detections_score_lower(ground_truth):
    perfect = coco_metrics(ground_truth, _gt_records(ground_truth))["AP"]
    shifted = coco_metrics(ground_truth, _gt_records(ground_truth, shift=3.0))["AP"]
    missing = coco_metrics(ground_truth, _gt_records(ground_truth, drop_every=2))
    assert shifted < perfect
    assert 0.3 < missing["AR100"] < 0.7


def test_no_detections_scores_zero(ground_truth):
    assert all(value == 0.0 for value in coco_metrics(ground_truth, []).values())


def test_results_json_is_written_atomically(tmp_path, ground_truth):
    records = _gt_records(ground_truth)
    path = write_results(tmp_path / "out" / "results.json", records)
    assert json.loads(path.read_text()) == records
    assert not list(path.parent.glob("*.tmp"))


def _pycocotools_category(ground_truth, records, category_id):
    """AP and AP50 of one category, from pycocotools restricted to it (params.catIds)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ground_truth))
        evaluator = COCOeval(gt, gt.loadRes([dict(r) for r in records]), "bbox")
        evaluator.params.catIds = [category_id]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats[0], evaluator.stats[1]


def test_per_class_ap_equals_pycocotools_per_category(ground_truth):
    records = _gt_records(ground_truth, shift=2.0, drop_every=3)
    for i, record in enumerate(records):  # spread the scores and mislabel some, so classes differ
        record["score"] = round(0.2 + 0.7 * ((i * 37) % 11) / 10, 5)
        if i % 5 == 0:
            record["category_id"] = record["category_id"] % 3 + 1
    metrics = coco_metrics(ground_truth, [dict(r) for r in records], per_class=True)
    categories = {c["id"]: c["name"] for c in json.loads(ground_truth.read_text())["categories"]}
    assert list(metrics)[:12] == list(METRIC_NAMES)
    assert list(metrics)[12:] == [f"{key}/{name}" for name in categories.values() for key in ("AP", "AP50")]
    values = []
    for category_id, name in categories.items():
        ap, ap50 = _pycocotools_category(ground_truth, records, category_id)
        assert metrics[f"AP/{name}"] == pytest.approx(ap, abs=1e-12)
        assert metrics[f"AP50/{name}"] == pytest.approx(ap50, abs=1e-12)
        values.append(ap)
    assert len(set(values)) > 1 and 0 < min(values), "a test with classes that differ"
    assert np.mean(values) == pytest.approx(metrics["AP"], abs=1e-12)  # COCO's AP: the mean over classes
    table = format_metrics(metrics)
    assert all(name in table for name in categories.values()) and "AP50" in table


def test_per_class_without_detections_is_zero(ground_truth):
    metrics = coco_metrics(ground_truth, [], per_class=True)
    assert len(metrics) == 12 + 2 * 3 and all(value == 0.0 for value in metrics.values())
