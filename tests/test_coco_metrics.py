"""COCO metrics: perfect detections score 1, none score 0, worse boxes score lower."""

import json

import numpy as np
import pytest

from cornernet_tf.coco_metrics import METRIC_NAMES, coco_metrics, detections_to_coco, write_results
from cornernet_tf.data import shapes


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
        records += detections_to_coco(ann["image_id"], box, np.array([0.9]), np.array([ann["category_id"] - 1]), category_ids)
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
