"""decode.py against the official fixtures, NumPy transliterations of the official rules, and properties."""

import json

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.detection import decode
from tests.conftest import nhwc, reference_path


def load_case_file(name: str) -> tuple[dict[str, tf.Tensor], list[dict], np.lib.npyio.NpzFile]:
    """Fixture inputs as our NHWC output dict, the case settings, and the raw npz."""
    data = np.load(reference_path(name))
    names = {"heatmap": "heat", "embedding": "tag", "offset": "regr"}
    outputs = {
        f"{corner}_{ours}": tf.constant(nhwc(data[f"in/{corner}_{theirs}"]))
        for corner in ("tl", "br", "ct")
        for ours, theirs in names.items()
        if f"in/{corner}_{theirs}" in data.files
    }
    return outputs, json.loads(str(data["cases_json"])), data


def as_rows(dets: dict[str, tf.Tensor]) -> np.ndarray:
    """Our detections in the official layout [B, N, 8]: x1 y1 x2 y2 score tl br class."""
    columns = [dets["scores"], dets["tl_scores"], dets["br_scores"], tf.cast(dets["classes"], tf.float32)]
    return np.concatenate([dets["boxes"].numpy()] + [c.numpy()[..., None] for c in columns], axis=-1)


def pair_up(mine: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """`mine` reordered to follow `ref` row by row (nearest row): for tied scores, whose order is free."""
    used = np.zeros(len(mine), bool)
    order = []
    for row in ref:
        distance = np.where(used, np.inf, np.abs(mine - row).max(axis=1))
        order.append(int(np.argmin(distance)))
        used[order[-1]] = True
    return mine[order]


def assert_matches_official(dets: dict[str, tf.Tensor], expected: np.ndarray, num_valid: np.ndarray, ties: list[int]):
    ours = as_rows(dets)
    valid = dets["valid"].numpy()
    np.testing.assert_array_equal(valid.sum(axis=1), num_valid)
    for b, n in enumerate(num_valid):
        assert valid[b, :n].all() and not valid[b, n:].any(), "valid rows must come first"
        assert (ours[b, n:, 4] == -1).all()
        mine, ref = ours[b, :n], expected[b, :n]
        if ties[b]:  # bit-equal scores: their relative order is implementation-defined
            np.testing.assert_allclose(mine[:, 4], ref[:, 4], rtol=1e-6)
            mine = pair_up(mine, ref)
        np.testing.assert_allclose(mine[:, :4], ref[:, :4], rtol=0, atol=1e-5)
        np.testing.assert_allclose(mine[:, 4:7], ref[:, 4:7], rtol=1e-6, atol=0)
        np.testing.assert_array_equal(mine[:, 7], ref[:, 7])


@pytest.mark.parametrize("name", ["decode.npz", "centernet_decode.npz"])
@pytest.mark.parametrize("case", range(4))
def test_decode_corners_matches_official(name, case):
    outputs, cases, data = load_case_file(name)
    c = cases[case]
    dets = decode.decode_corners(outputs, c["K"], c["kernel"], c["ae_threshold"], c["num_dets"])
    assert dets["boxes"].shape == (2, c["num_dets"], 4) and dets["classes"].dtype == tf.int32
    expected = data[f"case{case}/detections"]
    assert_matches_official(dets, expected, data[f"case{case}/num_valid"], c["valid_exact_ties"])


@pytest.mark.parametrize("case", range(4))
def test_decode_centers_matches_official(case):
    outputs, cases, data = load_case_file("centernet_decode.npz")
    c = cases[case]
    centers = decode.decode_centers(outputs, c["K"], c["kernel"])
    expected = data[f"case{case}/center"]
    np.testing.assert_allclose(centers["centers"].numpy(), expected[..., :2], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(centers["classes"].numpy(), expected[..., 2])
    np.testing.assert_allclose(centers["scores"].numpy(), expected[..., 3], rtol=1e-6, atol=0)


def test_decode_corners_under_tf_function_and_xla():
    outputs, cases, data = load_case_file("decode.npz")
    c = cases[2]
    settings = dict(k=c["K"], nms_kernel=c["kernel"], ae_threshold=c["ae_threshold"], num_dets=c["num_dets"])
    for jit in (False, True):
        run = tf.function(lambda o: decode.decode_corners(o, **settings), jit_compile=jit)
        assert_matches_official(run(outputs), data["case2/detections"], data["case2/num_valid"], [0, 0])
    centers = tf.function(lambda o: decode.decode_centers(o, 20, 3), jit_compile=True)
    outputs, _, data = load_case_file("centernet_decode.npz")
    np.testing.assert_allclose(centers(outputs)["centers"].numpy(), data["case0/center"][..., :2], atol=1e-5)


def encode_objects(objects, batch=2, size=24, num_classes=3) -> dict[str, tf.Tensor]:
    """Head outputs with exact corner peaks: objects are (image, class, x1, y1, x2, y2, logit).

    Background logits are -8, background embeddings 0; object i has embedding 3 (i + 1) at both
    corners and the fractional part of each corner in its offset.
    """
    outputs = {}
    for corner in ("tl", "br"):
        heat = np.full((batch, size, size, num_classes), -8.0, np.float32)
        tag = np.zeros((batch, size, size, 1), np.float32)
        offset = np.zeros((batch, size, size, 2), np.float32)
        for i, (b, cls, x1, y1, x2, y2, logit) in enumerate(objects):
            x, y = (x1, y1) if corner == "tl" else (x2, y2)
            ix, iy = int(x), int(y)
            heat[b, iy, ix, cls] = logit
            tag[b, iy, ix, 0] = 3.0 * (i + 1)
            offset[b, iy, ix] = (x - ix, y - iy)
        outputs.update({f"{corner}_heatmap": heat, f"{corner}_embedding": tag, f"{corner}_offset": offset})
    return {key: tf.constant(value) for key, value in outputs.items()}


OBJECTS = [  # image, class, x1, y1, x2, y2, peak logit; dyadic fractions, so flips are exact
    (0, 0, 2.25, 3.5, 10.75, 12.125, 6.0),
    (0, 2, 5.5, 1.25, 20.5, 22.75, 5.0),
    (0, 0, 12.0, 14.5, 18.25, 19.0, 4.0),
    (1, 1, 0.5, 0.5, 23.5, 23.5, 3.0),
]


def test_encode_decode_round_trip():
    """Exact peaks at known corners with per-object embeddings and offsets decode to those boxes."""
    dets = decode.decode_corners(encode_objects(OBJECTS), k=10, num_dets=20)
    for b in range(2):
        expected = [o for o in OBJECTS if o[0] == b]
        n = len(expected)
        np.testing.assert_allclose(dets["boxes"].numpy()[b, :n], [o[2:6] for o in expected], atol=1e-6)
        np.testing.assert_array_equal(dets["classes"].numpy()[b, :n], [o[1] for o in expected])
        scores = [1 / (1 + np.exp(-o[6])) for o in expected]
        np.testing.assert_allclose(dets["scores"].numpy()[b, :n], scores, rtol=1e-6)
        assert (dets["scores"].numpy()[b, n:] < 0.01).all()


def test_flip_merge_unflips_the_decode_of_a_flipped_image():
    """Objects flipped (x1' = W - x2, x2' = W - x1), encoded and decoded, merge back onto the originals."""
    size = 24
    flipped = [(b, c, size - x2, y1, size - x1, y2, logit) for b, c, x1, y1, x2, y2, logit in OBJECTS]
    plain, mirrored = encode_objects(OBJECTS, size=size), encode_objects(flipped, size=size)
    batch = {key: tf.concat([plain[key], mirrored[key]], axis=0) for key in plain}
    merged = decode.flip_merge(decode.decode_corners(batch, k=10, num_dets=20), size)
    assert merged["boxes"].shape == (2, 40, 4)
    for b in range(2):
        n = sum(o[0] == b for o in OBJECTS)
        for part in (slice(0, n), slice(20, 20 + n)):
            expected = [o for o in OBJECTS if o[0] == b]
            np.testing.assert_allclose(merged["boxes"].numpy()[b, part], [o[2:6] for o in expected], atol=1e-6)
            np.testing.assert_array_equal(merged["classes"].numpy()[b, part], [o[1] for o in expected])


# CenterNet rescoring ---------------------------------------------------------------------------


def rescore_reference(boxes, scores, classes, valid, centers, center_scores, center_classes, area_threshold=22500.0):
    """The README's "After _decode" rules, one box at a time (float32 like the original)."""
    scores = scores.copy()
    keep = np.zeros_like(valid)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        if not valid[i]:
            scores[i] = -1
            continue
        n = 3 if (x2 - x1) * (y2 - y1) <= np.float32(area_threshold) else 5
        if n == 3:
            lx, rx, ty, by = (2 * x1 + x2) / 3, (x1 + 2 * x2) / 3, (2 * y1 + y2) / 3, (y1 + 2 * y2) / 3
        else:
            lx, rx, ty, by = (3 * x1 + 2 * x2) / 5, (2 * x1 + 3 * x2) / 5, (3 * y1 + 2 * y2) / 5, (2 * y1 + 3 * y2) / 5
        for (cx, cy), cs, cc in zip(centers, center_scores, center_classes):
            if lx < cx < rx and ty < cy < by and cc == classes[i]:
                scores[i] = (scores[i] * 2 + cs) / 3
                keep[i] = True
                break
        else:
            scores[i] = -1
    return scores, keep


def rescore(boxes, scores, classes, valid, centers, center_scores, center_classes):
    dets = {"boxes": boxes, "scores": scores, "classes": classes, "valid": valid}
    ctrs = {"centers": centers, "scores": center_scores, "classes": center_classes}

    def as_tensors(arrays):
        return {key: tf.constant(value) for key, value in arrays.items()}

    out = decode.centernet_rescore(as_tensors(dets), as_tensors(ctrs))
    return out["scores"].numpy(), out["valid"].numpy()


def test_centernet_rescore_matches_numpy_rules_on_random_inputs():
    rng = np.random.default_rng(7)
    b, n, k = 2, 300, 100
    xy = rng.uniform(0, 300, (b, n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 260, (b, n, 2))], -1).astype(np.float32)
    scores = rng.uniform(0, 1, (b, n)).astype(np.float32)
    classes = rng.integers(0, 3, (b, n)).astype(np.int32)
    valid = rng.uniform(size=(b, n)) < 0.9
    # Half the centers near the middle of a box (most match it), half anywhere.
    middles = (boxes[:, : k // 2, :2] + boxes[:, : k // 2, 2:]) / 2
    near = middles + rng.normal(0, 8, middles.shape)
    centers = np.concatenate([near, rng.uniform(0, 500, (b, k // 2, 2))], 1).astype(np.float32)
    center_scores = np.sort(rng.uniform(0, 1, (b, k)).astype(np.float32))[:, ::-1].copy()
    center_classes = np.concatenate([classes[:, : k // 2], rng.integers(0, 3, (b, k // 2))], 1).astype(np.int32)
    got_scores, got_valid = rescore(boxes, scores, classes, valid, centers, center_scores, center_classes)
    for i in range(b):
        want_scores, want_valid = rescore_reference(
            boxes[i], scores[i], classes[i], valid[i], centers[i], center_scores[i], center_classes[i]
        )
        np.testing.assert_array_equal(got_valid[i], want_valid)
        np.testing.assert_array_equal(got_scores[i], want_scores)
        assert 0.1 * n < want_valid.sum() < 0.9 * n  # both outcomes exercised
        large = (boxes[i, :, 2] - boxes[i, :, 0]) * (boxes[i, :, 3] - boxes[i, :, 1]) > 22500
        assert want_valid[large].any() and want_valid[~large].any()


def test_centernet_rescore_hand_made_cases():
    # Small boxes (30 x 30, n = 3, region (10, 20) open) and one large box (200 x 200, n = 5).
    boxes = np.array([[[0, 0, 30, 30], [0, 0, 30, 30], [0, 0, 30, 30], [0, 0, 30, 30], [0, 0, 200, 200]]], np.float32)
    scores = np.array([[0.6, 0.6, 0.6, 0.6, 0.9]], np.float32)
    classes = np.array([[1, 2, 0, 1, 1]], np.int32)
    valid = np.array([[True, True, True, False, True]])
    centers = np.array([[[15, 15], [10, 15], [15, 15], [70, 70], [100, 100]]], np.float32)
    center_scores = np.array([[0.9, 0.8, 0.3, 0.7, 0.6]], np.float32)
    center_classes = np.array([[1, 0, 0, 1, 1]], np.int32)
    got_scores, got_valid = rescore(boxes, scores, classes, valid, centers, center_scores, center_classes)
    np.testing.assert_array_equal(got_valid[0], [True, False, True, False, True])
    # box 0: the first center matches; box 1: no class-2 center -> removed; box 2: the first
    # class-0 center lies on the open boundary x = 10, the next one matches; box 3 was invalid;
    # box 4 (large: n = 5, region (80, 120)) is not matched by (70, 70), inside the n = 3 region.
    np.testing.assert_allclose(got_scores[0], [(1.2 + 0.9) / 3, -1, (1.2 + 0.3) / 3, -1, (1.8 + 0.6) / 3], rtol=1e-6)


# Geometry ----------------------------------------------------------------------------------------


def official_rescale(boxes, ratio_yx, border_yx, size_hw, scale):
    """test/coco.py `_rescale_dets` followed by `/= scale` (one image)."""
    boxes = boxes.copy()
    boxes[:, 0::2] = np.clip(boxes[:, 0::2] / ratio_yx[1] - border_yx[1], 0, size_hw[1])
    boxes[:, 1::2] = np.clip(boxes[:, 1::2] / ratio_yx[0] - border_yx[0], 0, size_hw[0])
    return boxes / scale


@pytest.mark.parametrize("scale", [1.0, 0.5, 1.5])
def test_boxes_to_image_undoes_the_official_pad(scale):
    """A 300 x 400 image at test scale s, padded to `size | 127`, output (input + 1) // 4."""
    height, width = 300, 400
    new_h, new_w = int(height * scale), int(width * scale)
    inp = np.array([new_h | 127, new_w | 127])
    ratio = ((inp + 1) // 4) / inp
    border = inp // 2 - np.array([new_h // 2, new_w // 2])  # crop_image: content starts here
    rng = np.random.default_rng(int(scale * 10))
    boxes = rng.uniform(-5, 140, (50, 4)).astype(np.float32)
    # input = image * s + border; clip at the resized size int(H * s), in image px
    info = tf.constant([[scale, scale, *border, new_h / scale, new_w / scale]], tf.float32)
    got = decode.boxes_to_image(tf.constant(boxes[None]), info, stride=1 / ratio).numpy()[0]
    np.testing.assert_allclose(got, official_rescale(boxes, ratio, border, (new_h, new_w), scale), atol=1e-3)
    assert got.min() >= 0 and got[:, 0::2].max() <= new_w / scale + 1e-4


def test_boxes_to_image_resize_mode_and_batch():
    # 512 x 512 inputs, stride 4: map px per image px (128 / 300, 128 / 400) and (0.5, 0.25)
    info = tf.constant([[512 / 300, 512 / 400, 0, 0, 300, 400], [2.0, 1.0, 0, 0, 256, 512]])
    boxes = tf.constant([[[0.0, 0.0, 128.0, 128.0]], [[10.0, 20.0, 200.0, 40.0]]])
    np.testing.assert_allclose(
        decode.boxes_to_image(boxes, info, 4.0).numpy(), [[[0, 0, 400, 300]], [[40, 40, 512, 80]]], rtol=1e-6
    )
    np.testing.assert_allclose(decode.boxes_to_image(boxes, info, 4.0, clip=False).numpy()[1, 0, 2], 800, rtol=1e-6)


def test_points_to_image_uses_the_stride_per_axis():
    info = tf.constant([[2.0, 0.5, 10.0, 4.0, 100, 100]])  # input y = 2 * y + 10, input x = x / 2 + 4
    points = tf.constant([[[3.0, 5.0], [0.0, 0.0]]])
    got = decode.points_to_image(points, info, stride=[4.0, 8.0]).numpy()  # (y, x)
    np.testing.assert_allclose(got, [[[(3 * 8 - 4) / 0.5, (5 * 4 - 10) / 2], [-8, -5]]], rtol=1e-6)


def test_detections_to_image_rejects_far_outside_boxes_and_keeps_centers_unclipped():
    info = tf.constant([[1.0, 1.0, 0.0, 0.0, 100.0, 100.0]])
    dets = {
        "boxes": tf.constant([[[-4.9, 0, 50, 50], [-5.0, 0, 50, 50], [10, 10, 105.0, 50], [10, 10, 104.5, 50]]]),
        "scores": tf.constant([[0.9, 0.8, 0.7, 0.6]]),
        "classes": tf.zeros([1, 4], tf.int32),
        "valid": tf.ones([1, 4], tf.bool),
    }
    out = decode.detections_to_image(dets, info, 1.0, reject_margin=5.0)
    np.testing.assert_array_equal(out["valid"].numpy(), [[True, False, False, True]])
    np.testing.assert_allclose(out["scores"].numpy(), [[0.9, -1, -1, 0.6]])
    np.testing.assert_allclose(out["boxes"].numpy()[0, [0, 3]], [[0, 0, 50, 50], [10, 10, 100, 50]])
    centers = {"centers": tf.constant([[[-3.0, 120.0]]]), "scores": tf.ones([1, 1])}
    np.testing.assert_allclose(decode.detections_to_image(centers, info, 1.0)["centers"].numpy(), [[[-3, 120]]])


def test_flip_merge_layout_for_boxes_and_centers():
    dets = {
        "boxes": tf.constant([[[1.0, 2.0, 3.0, 4.0]], [[10.0, 2.0, 30.0, 4.0]]]),
        "scores": tf.constant([[0.5], [0.4]]),
        "centers": tf.constant([[[5.0, 6.0]], [[100.0, 6.0]]]),
    }
    merged = decode.flip_merge(dets, 128)
    np.testing.assert_allclose(merged["boxes"].numpy(), [[[1, 2, 3, 4], [98, 2, 118, 4]]])
    np.testing.assert_allclose(merged["centers"].numpy(), [[[5, 6], [28, 6]]])
    np.testing.assert_allclose(merged["scores"].numpy(), [[0.5, 0.4]])


# Soft-NMS --------------------------------------------------------------------------------------


def inclusive_iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(iw, 0) * max(ih, 0)
    return inter / ((a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter)


def run_soft_nms(boxes, scores, classes, **kwargs):
    boxes, scores = tf.constant([boxes], tf.float32), tf.constant([scores], tf.float32)
    out = decode.soft_nms(boxes, scores, tf.constant([classes], tf.int32), **kwargs)
    return {k: v.numpy()[0] for k, v in out.items()}


def test_soft_nms_decays_overlapping_same_class_boxes_only():
    boxes = [[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 10]]
    scores = [0.9, 0.8, 0.7, 0.6, 0.85]
    classes = [0, 0, 1, 0, 0]
    out = run_soft_nms(boxes, scores, classes, sigma=0.5, max_detections=10)
    iou = inclusive_iou(boxes[0], boxes[1])
    assert out["valid"].sum() == 5 and not out["valid"][5:].any()
    # Box 0 decays box 1 by w = exp(-iou^2 / 0.5) and its duplicate box 4 (iou = 1) by exp(-2);
    # box 1 (0.8 w = 0.199) is then picked before box 4 (0.115) and decays it once more by w.
    weight = np.exp(-(iou**2) / 0.5)
    want = {0: 0.9, 2: 0.7, 3: 0.6, 1: 0.8 * weight, 4: 0.85 * np.exp(-2.0) * weight}
    order = sorted(want, key=want.get, reverse=True)
    np.testing.assert_allclose(out["scores"][:5], [want[i] for i in order], rtol=1e-5)
    np.testing.assert_array_equal(out["classes"][:5], [classes[i] for i in order])
    np.testing.assert_array_equal(out["boxes"][:5], [boxes[i] for i in order])
    assert (out["scores"][5:] == -1).all() and (out["boxes"][5:] == 0).all()


def test_soft_nms_prunes_decayed_scores_and_respects_valid_and_max_detections():
    boxes = [[0, 0, 10, 10], [0, 0, 10, 10], [30, 30, 40, 40], [60, 60, 70, 70]]
    out = run_soft_nms(boxes, [0.9, 0.005, 0.0005, 0.5], [0, 0, 0, 0], score_threshold=0.001)
    # 0.005 * exp(-2) < 0.001 is pruned; 0.0005 never overlaps anything and stays, as in the original.
    np.testing.assert_allclose(out["scores"][:3], [0.9, 0.5, 0.0005])
    assert out["valid"].sum() == 3
    valid = tf.constant([[False, True, True, True]])
    out = run_soft_nms(boxes, [0.9, 0.8, 0.7, 0.6], [0, 0, 0, 0], valid=valid, max_detections=2)
    np.testing.assert_allclose(out["scores"], [0.8, 0.7])


def test_soft_nms_equals_tf_soft_nms_per_class_with_converted_sigma():
    """Against NonMaxSuppressionV5 (weight exp(-0.5 iou^2 / s'), s' = sigma / 2, +1 on x2, y2) per class."""
    rng = np.random.default_rng(3)
    n, sigma = 400, 0.5
    xy = rng.uniform(0, 150, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(4, 60, (n, 2))], -1).astype(np.float32)
    scores = rng.uniform(0.01, 1, n).astype(np.float32)
    classes = rng.integers(0, 4, n).astype(np.int32)
    expected = []
    for c in range(4):
        members = np.flatnonzero(classes == c)
        yx = boxes[members][:, [1, 0, 3, 2]] + np.float32([0, 0, 1, 1])
        _, picked, count = tf.raw_ops.NonMaxSuppressionV5(
            boxes=yx,
            scores=scores[members],
            max_output_size=100,
            iou_threshold=1.0,
            score_threshold=0.001,
            soft_nms_sigma=sigma / 2,
            pad_to_max_output_size=True,
        )
        expected.extend(picked.numpy()[: count.numpy()])
    expected = np.sort(expected)[::-1][:100]
    for jit in (False, True):
        run = tf.function(decode.soft_nms, jit_compile=jit)
        out = run(tf.constant(boxes[None]), tf.constant(scores[None]), tf.constant(classes[None]), sigma=sigma)
        np.testing.assert_allclose(out["scores"].numpy()[0], expected, rtol=1e-5)


def official_soft_nms(boxes, scores, sigma=0.5, threshold=0.001):
    """external/nms.pyx `soft_nms(method=2)`, loop for loop (one class); returns the kept scores."""
    rows = np.concatenate([boxes, scores[:, None]], axis=1).astype(np.float32)
    count = len(rows)
    for i in range(count):
        if i >= count:
            break
        best = i + int(np.argmax(rows[i:count, 4]))  # first maximum, like the strict `<` scan
        rows[[i, best]] = rows[[best, i]]
        tx1, ty1, tx2, ty2 = rows[i, :4]
        pos = i + 1
        while pos < count:
            x1, y1, x2, y2 = rows[pos, :4]
            iw = min(tx2, x2) - max(tx1, x1) + 1
            ih = min(ty2, y2) - max(ty1, y1) + 1
            if iw > 0 and ih > 0:
                ua = (tx2 - tx1 + 1) * (ty2 - ty1 + 1) + (x2 - x1 + 1) * (y2 - y1 + 1) - iw * ih
                ov = iw * ih / ua
                rows[pos, 4] *= np.exp(-(ov * ov) / sigma)
                if rows[pos, 4] < threshold:
                    rows[pos] = rows[count - 1]
                    count -= 1
                    pos -= 1
            pos += 1
    return rows[:count, 4]


def test_soft_nms_matches_the_official_loop_with_duplicates_and_low_scores():
    rng = np.random.default_rng(11)
    n = 300
    xy = rng.uniform(0, 120, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(2, 50, (n, 2))], -1).astype(np.float32)
    boxes[n // 2 :: 3] = boxes[: n // 6]  # exact duplicates: iou = 1, decayed, not dropped
    scores = rng.uniform(0, 1, n).astype(np.float32) ** 3  # many scores near the 0.001 cut
    classes = rng.integers(0, 3, n).astype(np.int32)
    kept = np.concatenate([official_soft_nms(boxes[classes == c], scores[classes == c]) for c in range(3)])
    expected = np.sort(kept)[::-1]
    assert 100 < len(expected) < n - 10, "some boxes pruned, more than 100 kept"
    out = run_soft_nms(boxes, scores, classes, max_detections=n)
    assert out["valid"].sum() == len(expected)
    np.testing.assert_allclose(out["scores"][: len(expected)], expected, rtol=1e-5)
    np.testing.assert_allclose(run_soft_nms(boxes, scores, classes)["scores"], expected[:100], rtol=1e-5)
