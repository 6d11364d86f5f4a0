"""Pascal VOC AP (VOC2007 11-point and VOC2010 area): hand-computed cases, the protocol's rules
(duplicates, difficult objects, classes without positives, image restriction), and random data
against a loop-by-loop re-derivation that works on the devkit's inclusive pixel boxes."""

import contextlib
import io
import json
import math

import numpy as np
import pytest
from pycocotools.coco import COCO

from cornernet_tf.utils.voc_metrics import box_iou, format_voc_metrics, match_detections, voc_ap, voc_metrics


def _coco(images, categories, annotations) -> COCO:
    """An in-memory COCO ground truth; annotations are (image, category, [x, y, w, h], extra fields)."""
    anns = []
    for i, (image, category, box, extra) in enumerate(annotations, start=1):
        anns.append(
            {
                "id": i,
                "image_id": image,
                "category_id": category,
                "bbox": list(map(float, box)),
                "area": float(box[2] * box[3]),
                "iscrowd": 0,
                **extra,
            }
        )
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i, "width": 200, "height": 200, "file_name": f"{i}.jpg"} for i in images],
        "categories": [{"id": c, "name": name} for c, name in categories.items()],
        "annotations": anns,
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _det(image, category, box, score) -> dict:
    return {"image_id": image, "category_id": category, "bbox": list(map(float, box)), "score": score}


CATS = {1: "cat", 2: "dog", 3: "bird"}
DIFFICULT = {"difficult": 1}


@pytest.fixture
def hand_case():
    """cat: 3 positives and a difficult one on image 1; dog: one on image 2; bird: none."""
    gt = _coco(
        [1, 2],
        CATS,
        [
            (1, 1, [0, 0, 10, 10], {}),  # A
            (1, 1, [20, 0, 10, 10], {}),  # B
            (1, 1, [40, 0, 10, 10], {}),  # C
            (1, 1, [60, 0, 10, 10], DIFFICULT),  # D
            (2, 2, [0, 0, 20, 20], {}),
        ],
    )
    records = [
        _det(1, 1, [0, 0, 10, 10], 0.9),  # on A: TP
        _det(1, 1, [0, 0, 10, 10], 0.8),  # on A again: duplicate, FP
        _det(1, 1, [60, 0, 10, 10], 0.7),  # on difficult D: ignored
        _det(1, 1, [100, 100, 10, 10], 0.6),  # nothing: FP
        _det(1, 1, [20, 0, 10, 10], 0.5),  # on B: TP
        _det(1, 1, [45, 0, 10, 10], 0.4),  # C at IoU 50 / 150 = 1/3: FP
        _det(1, 1, [42, 0, 10, 10], 0.3),  # C at IoU 80 / 120 = 2/3: TP
        _det(1, 2, [0, 0, 20, 20], 0.95),  # dog on image 1, which has none: FP
        _det(2, 2, [0, 0, 20, 10], 0.9),  # dog at IoU 200 / 400 = 0.5 exactly: TP (>= 0.5)
        _det(1, 3, [0, 0, 5, 5], 0.9),  # bird: no ground truth at all
    ]
    return gt, records


# cat, in score order: TP FP (ignored) FP TP FP TP; 3 positives (D is difficult)
#   cumTP 1 1 1 1 2 2 3, cumFP 0 1 1 2 2 3 3
#   recall    1/3 1/3 1/3 1/3 2/3 2/3 1
#   precision 1   1/2 1/2 1/3 1/2 2/5 1/2
# area: envelope 1 up to recall 1/3, then 1/2 -> 1/3 * 1 + 1/3 * 1/2 + 1/3 * 1/2 = 2/3
# 11-point: t = 0, .1, .2, .3 -> 1 (recall 1/3 reaches them); t = .4 ... 1 (7 points) -> 1/2
#   -> (4 * 1 + 7 * 1/2) / 11 = 7.5 / 11
# dog: FP TP, 1 positive -> recall 0 1, precision 0 1/2
# area: 1 * 1/2 = 1/2; 11-point: every t has max precision 1/2 -> 1/2
# bird: no positives -> NaN, left out of the mean
CAT_AREA, CAT_07 = 2 / 3, 7.5 / 11
DOG_AREA, DOG_07 = 0.5, 0.5


def test_hand_computed_area(hand_case):
    metrics = voc_metrics(*hand_case)
    assert metrics["AP_voc/cat"] == pytest.approx(CAT_AREA, abs=1e-12)
    assert metrics["AP_voc/dog"] == pytest.approx(DOG_AREA, abs=1e-12)
    assert math.isnan(metrics["AP_voc/bird"])
    assert metrics["mAP_voc"] == pytest.approx((CAT_AREA + DOG_AREA) / 2, abs=1e-12)  # 7/12
    assert list(metrics) == ["mAP_voc", "AP_voc/cat", "AP_voc/dog", "AP_voc/bird"]


def test_hand_computed_11_point(hand_case):
    metrics = voc_metrics(*hand_case, use_07_metric=True)
    assert metrics["AP_voc/cat"] == pytest.approx(CAT_07, abs=1e-12)
    assert metrics["AP_voc/dog"] == pytest.approx(DOG_07, abs=1e-12)
    assert math.isnan(metrics["AP_voc/bird"])
    assert metrics["mAP_voc"] == pytest.approx((CAT_07 + DOG_07) / 2, abs=1e-12)  # 13/22


def test_voc_ap_by_hand():
    # precision 1, 1/2, 2/3 at recall 1/4, 1/4, 1/2 (4 positives)
    recall, precision = np.array([0.25, 0.25, 0.5]), np.array([1.0, 0.5, 2 / 3])
    # area: 1/4 * 1 + 1/4 * 2/3 = 5/12
    assert voc_ap(recall, precision) == pytest.approx(5 / 12, abs=1e-12)
    # 11-point: t = 0, .1, .2 -> 1; t = .3, .4, .5 -> 2/3; t = .6 ... 1 -> 0  => (3 + 3 * 2/3) / 11 = 5/11
    assert voc_ap(recall, precision, use_07_metric=True) == pytest.approx(5 / 11, abs=1e-12)
    # no detections: 0 in both
    assert voc_ap(np.zeros(0), np.zeros(0)) == 0.0 and voc_ap(np.zeros(0), np.zeros(0), True) == 0.0


def test_11_point_thresholds_are_the_references_k_times_0_1():
    # thresholds as np.arange(0, 1.1, 0.1) builds them (the devkit's Python ports, mmdetection,
    # detectron2): the 4th is 0.30000000000000004, above a recall of exactly 3/10, so 3 of 10
    # positives found at precision 1 give (t = 0, .1, .2) -> 3/11, not 4/11
    recall = np.array([1, 2, 3]) / 10
    assert voc_ap(recall, np.ones(3), use_07_metric=True) == pytest.approx(3 / 11, abs=1e-12)


def test_perfect_detections_score_one():
    rng = np.random.default_rng(0)
    anns = [
        (int(i), int(c), [*rng.integers(0, 150, 2), *rng.integers(5, 40, 2)], {})
        for i, c in zip(range(1, 9), [1, 2] * 4)
    ]
    anns += [(1, 3, [0, 0, 5, 5], DIFFICULT)]  # a difficult bird nobody finds: no positives, no harm
    gt = _coco(range(1, 9), CATS, anns)
    records = [_det(i, c, box, 0.5) for i, c, box, extra in anns if not extra]
    for use_07 in (False, True):
        metrics = voc_metrics(gt, records, use_07_metric=use_07)
        assert metrics["mAP_voc"] == pytest.approx(1.0) and metrics["AP_voc/cat"] == pytest.approx(1.0)
        assert math.isnan(metrics["AP_voc/bird"])


def test_no_detections_score_zero(hand_case):
    metrics = voc_metrics(hand_case[0], [])
    assert metrics["mAP_voc"] == 0.0 and metrics["AP_voc/cat"] == 0.0 and math.isnan(metrics["AP_voc/bird"])


def test_duplicate_detection_is_a_false_positive():
    gt = {7: (np.array([[10.0, 10.0, 20.0, 20.0]]), np.array([False]))}
    # equal scores keep their input order (stable sort): the first one matches
    tp, fp = match_detections(
        np.array([7, 7]), np.array([[10, 10, 20, 20], [11, 10, 20, 20]]), np.array([0.5, 0.5]), gt
    )
    assert tp.tolist() == [1.0, 0.0] and fp.tolist() == [0.0, 1.0]
    # the higher score matches first, whatever the input order
    tp, fp = match_detections(
        np.array([7, 7]), np.array([[11, 10, 20, 20], [10, 10, 20, 20]]), np.array([0.4, 0.6]), gt
    )
    assert tp.tolist() == [1.0, 0.0] and fp.tolist() == [0.0, 1.0]


def test_best_match_is_the_highest_iou_even_when_taken():
    # the detection overlaps gt 0 best (taken by the first detection) and gt 1 at IoU >= 0.5 too:
    # the protocol does not fall back to the second best, so it is a false positive
    gt = {1: (np.array([[0.0, 0, 10, 10], [1.0, 0, 10, 10]]), np.array([False, False]))}
    tp, fp = match_detections(np.array([1, 1]), np.array([[0, 0, 10, 10], [0, 0, 10, 10]]), np.array([0.9, 0.8]), gt)
    assert tp.tolist() == [1.0, 0.0] and fp.tolist() == [0.0, 1.0]


@pytest.mark.parametrize("flag", [{"difficult": 1}, {"iscrowd": 1}, {"difficult": 1, "iscrowd": 1}])
def test_difficult_objects_are_ignored(flag):
    gt = {1: (np.array([[0.0, 0, 10, 10], [50.0, 0, 10, 10]]), np.array([False, True]))}
    tp, fp = match_detections(np.array([1, 1]), np.array([[50, 0, 10, 10], [0, 0, 10, 10]]), np.array([0.9, 0.8]), gt)
    assert tp.tolist() == [0.0, 1.0] and fp.tolist() == [0.0, 0.0]  # on the difficult one: neither

    # end to end: detecting the difficult object (twice, above the real one) or not changes nothing,
    # and it is not a positive (recall reaches 1 with the one normal object found)
    coco = _coco([1], CATS, [(1, 1, [0, 0, 10, 10], {}), (1, 1, [50, 0, 10, 10], flag)])
    found = [_det(1, 1, [0, 0, 10, 10], 0.5)]
    on_difficult = [_det(1, 1, [50, 0, 10, 10], 0.9), _det(1, 1, [51, 0, 10, 10], 0.8)]
    for use_07 in (False, True):
        assert voc_metrics(coco, found, use_07_metric=use_07)["AP_voc/cat"] == pytest.approx(1.0)
        assert voc_metrics(coco, on_difficult + found, use_07_metric=use_07)["AP_voc/cat"] == pytest.approx(1.0)
    # a class whose only object is difficult has no positives
    only = _coco([1], CATS, [(1, 2, [0, 0, 10, 10], flag), (1, 1, [0, 0, 10, 10], {})])
    assert math.isnan(voc_metrics(only, [_det(1, 2, [0, 0, 10, 10], 0.9)])["AP_voc/dog"])


def test_class_without_ground_truth_is_left_out_of_the_mean():
    gt = _coco([1], CATS, [(1, 1, [0, 0, 10, 10], {}), (1, 2, [30, 30, 10, 10], {})])
    # cat found (1), dog missed (0), bird has no ground truth but a detection: NaN, not 0
    records = [_det(1, 1, [0, 0, 10, 10], 0.9), _det(1, 3, [30, 30, 10, 10], 0.9)]
    metrics = voc_metrics(gt, records)
    assert metrics["AP_voc/cat"] == 1.0 and metrics["AP_voc/dog"] == 0.0 and math.isnan(metrics["AP_voc/bird"])
    assert metrics["mAP_voc"] == pytest.approx(0.5)
    nothing = voc_metrics(_coco([1], CATS, []), records)
    assert math.isnan(nothing["mAP_voc"])


def test_image_ids_restrict_ground_truth_and_detections(hand_case):
    gt, records = hand_case
    only_2 = voc_metrics(gt, records, image_ids=[2])
    # image 2 alone: dog found at IoU 0.5 (its FP was on image 1); cat has no positives there
    assert only_2["AP_voc/dog"] == 1.0 and math.isnan(only_2["AP_voc/cat"]) and only_2["mAP_voc"] == 1.0
    # the same as a ground truth that holds only image 2 and the detections on it
    alone = _coco([2], CATS, [(2, 2, [0, 0, 20, 20], {})])
    same = voc_metrics(alone, [r for r in records if r["image_id"] == 2])
    assert same.keys() == only_2.keys()
    assert all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(same.values(), only_2.values()))
    both = voc_metrics(gt, records, image_ids=[1, 2])
    assert both["mAP_voc"] == pytest.approx(voc_metrics(gt, records)["mAP_voc"])


def test_unknown_image_or_category_is_an_error(hand_case):
    gt, records = hand_case
    with pytest.raises(ValueError, match="image 9"):
        voc_metrics(gt, [*records, _det(9, 1, [0, 0, 1, 1], 0.1)])
    with pytest.raises(ValueError, match="category 4"):
        voc_metrics(gt, [*records, _det(1, 4, [0, 0, 1, 1], 0.1)])
    # with image_ids, detections of other images are simply left out
    assert voc_metrics(gt, [*records, _det(9, 1, [0, 0, 1, 1], 0.9)], image_ids=[1, 2]) == voc_metrics(gt, records)


def test_ground_truth_from_a_path(hand_case, tmp_path):
    gt, records = hand_case
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt.dataset))
    assert voc_metrics(path, records)["mAP_voc"] == pytest.approx(voc_metrics(gt, records)["mAP_voc"])


def test_format_is_one_line(hand_case):
    line = format_voc_metrics(voc_metrics(*hand_case))
    assert "\n" not in line
    assert line == "mAP_voc 0.5833 | cat 0.6667 | dog 0.5000 | bird n/a"


# --- the independent re-derivation -------------------------------------------------------------


def _devkit_iou(a, b) -> float:
    """The devkit's overlap of two inclusive 1-based pixel boxes (xmin, ymin, xmax, ymax)."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
    return inter / union


def _to_coco(box) -> list[float]:
    """An inclusive pixel box as COCO [x, y, w, h]: x = xmin - 1, w = xmax - xmin + 1."""
    return [box[0] - 1.0, box[1] - 1.0, box[2] - box[0] + 1.0, box[3] - box[1] + 1.0]


def _brute_force_ap(gts, dets, use_07) -> float:
    """gts: [(image, box, difficult)], dets: [(image, box, score)] of one class, pixel boxes."""
    npos = sum(1 for _, _, difficult in gts if not difficult)
    if npos == 0:
        return math.nan
    used = [False] * len(gts)
    tp, fp = [], []
    for k in sorted(range(len(dets)), key=lambda k: -dets[k][2]):  # sorted() is stable
        image, box, _ = dets[k]
        best, best_j = -math.inf, None
        for j, (gt_image, gt_box, _) in enumerate(gts):
            if gt_image == image:
                iou = _devkit_iou(box, gt_box)
                if iou > best:
                    best, best_j = iou, j
        hit = fp_hit = 0
        if best_j is not None and best >= 0.5:
            if gts[best_j][2]:
                pass
            elif not used[best_j]:
                used[best_j], hit = True, 1
            else:
                fp_hit = 1
        else:
            fp_hit = 1
        tp.append(hit)
        fp.append(fp_hit)
    recall, precision, sum_tp, sum_fp = [], [], 0, 0
    for hit, miss in zip(tp, fp):
        sum_tp, sum_fp = sum_tp + hit, sum_fp + miss
        recall.append(sum_tp / npos)
        precision.append(sum_tp / max(sum_tp + sum_fp, np.finfo(np.float64).eps))
    if use_07:
        total = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            total += max([p for r, p in zip(recall, precision) if r >= t], default=0.0)
        return total / 11
    # each recall step times the best precision at that recall or beyond
    ap, previous = 0.0, 0.0
    for i, r in enumerate(recall):
        if r > previous:
            ap += (r - previous) * max(precision[i:])
            previous = r
    return ap


def _random_case(seed):
    rng = np.random.default_rng(seed)
    images, n_classes = list(range(1, 6)), 4
    gts = []  # (image, category, pixel box, flags)
    for image in images:
        for _ in range(rng.integers(0, 6)):
            x, y = rng.integers(1, 40, 2)
            w, h = rng.integers(3, 20, 2)
            flags = {}
            if rng.random() < 0.2:
                flags = [{"difficult": 1}, {"iscrowd": 1}, {"difficult": 1, "iscrowd": 1}][rng.integers(3)]
            gts.append((image, int(rng.integers(1, n_classes + 1)), (x, y, x + w - 1, y + h - 1), flags))
    dets = []  # (image, category, pixel box, score)
    for image, category, (x1, y1, x2, y2), _ in gts:
        for _ in range(rng.integers(0, 3)):  # jittered copies: matches, duplicates, near misses
            dx, dy, dw, dh = rng.integers(-3, 4, 4)
            dets.append(
                (image, category, (x1 + dx, y1 + dy, max(x1 + dx, x2 + dx + dw), max(y1 + dy, y2 + dy + dh)), 0)
            )
    for _ in range(rng.integers(0, 12)):  # background detections anywhere, some of any class
        image, category = int(rng.choice(images)), int(rng.integers(1, n_classes + 1))
        x, y = rng.integers(1, 50, 2)
        w, h = rng.integers(2, 20, 2)
        dets.append((image, category, (x, y, x + w - 1, y + h - 1), 0))
    # few score values: many ties, which the stable sort must break by input order
    dets = [(i, c, box, float(rng.integers(1, 6)) / 5) for i, c, box, _ in dets]
    order = rng.permutation(len(dets))
    return images, n_classes, gts, [dets[k] for k in order]


@pytest.mark.parametrize("seed", range(40))
def test_random_data_matches_the_brute_force(seed):
    images, n_classes, gts, dets = _random_case(seed)
    categories = {c: f"class{c}" for c in range(1, n_classes + 1)}
    coco = _coco(images, categories, [(i, c, _to_coco(box), flags) for i, c, box, flags in gts])
    records = [_det(i, c, _to_coco(box), s) for i, c, box, s in dets]
    subsets = [None, images[: 1 + seed % 4]]
    for image_ids in subsets:
        keep = set(images if image_ids is None else image_ids)
        for use_07 in (False, True):
            metrics = voc_metrics(coco, records, image_ids=image_ids, use_07_metric=use_07)
            expected = {}
            for c, name in categories.items():
                class_gts = [(i, box, bool(f)) for i, cc, box, f in gts if cc == c and i in keep]
                class_dets = [(i, box, s) for i, cc, box, s in dets if cc == c and i in keep]
                expected[name] = _brute_force_ap(class_gts, class_dets, use_07)
                got = metrics[f"AP_voc/{name}"]
                if math.isnan(expected[name]):
                    assert math.isnan(got)
                else:
                    assert got == pytest.approx(expected[name], abs=1e-12), (name, use_07, image_ids)
            measured = [v for v in expected.values() if not math.isnan(v)]
            if measured:
                assert metrics["mAP_voc"] == pytest.approx(sum(measured) / len(measured), abs=1e-12)
            else:
                assert math.isnan(metrics["mAP_voc"])


def test_continuous_iou_equals_the_devkits_inclusive_pixel_iou():
    rng = np.random.default_rng(3)
    for _ in range(300):
        a, b = [(*xy, *(xy + rng.integers(0, 15, 2))) for xy in rng.integers(1, 20, (2, 2))]
        assert box_iou(np.array([_to_coco(a)]), np.array([_to_coco(b)]))[0, 0] == _devkit_iou(a, b)
