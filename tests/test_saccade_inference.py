"""saccade.py and decode_corners(no_border) against the official CornerNet-Saccade test code.

Every case of tests/fixtures/official/saccade_test.npz (its README, "CornerNet-Saccade"): the
official functions of core/test/cornernet_saccade.py on synthetic inputs, the Lite `_decode`, the
compiled soft-NMS, and two end-to-end runs of `cornernet_saccade_inference` replayed with the
stored outputs of the simulated network.
"""

from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.detection import decode, saccade
from cornernet_tf.detection.saccade_settings import RGB_MEAN, RGB_STD, SaccadeSettings
from tests.conftest import load_reference, nhwc

NMS_METHODS = {"nms": 0, "linear_soft_nms": 1, "exp_soft_nms": 2}
BGR_MEAN, BGR_STD = RGB_MEAN[::-1], RGB_STD[::-1]  # the official db's statistics, for the BGR fixture image


@functools.cache
def fixture() -> tuple[dict[str, np.ndarray], dict]:
    """The arrays of saccade_test.npz and its `cases_json`."""
    data = load_reference("saccade_test.npz")
    return data, json.loads(str(data["cases_json"]))


def hwc(a: np.ndarray) -> np.ndarray:
    """CHW -> HWC."""
    return np.transpose(a, (1, 2, 0))


def attention_maps(data: dict[str, np.ndarray], prefix: str) -> list[tf.Tensor]:
    """The three attention maps stored under `prefix` (att0..att2, NCHW), as NHWC tensors."""
    return [tf.constant(nhwc(data[f"{prefix}att{j}"])) for j in range(3)]


@pytest.mark.parametrize("case", range(11))
def test_crop_image_matches_crop_image_gpu(case):
    data, cases = fixture()
    c = cases["crop_image_gpu"][case]
    prefix = f"crop_image_gpu/case{case}/"
    expected = hwc(data[prefix + "out"])
    canvas, offset = saccade.crop_image(hwc(data["crop_image_gpu/image"]), c["center_yx"], c["size_hw"], c["out"])
    assert canvas.shape == expected.shape and canvas.dtype == tf.float32
    np.testing.assert_array_equal(offset.numpy(), data[prefix + "offset"])
    np.testing.assert_array_equal(canvas.numpy() != 0, expected != 0)  # the written region
    np.testing.assert_allclose(canvas.numpy(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("case", range(2))
def test_prepare_images_matches_official(case):
    data, cases = fixture()
    prefix = f"prepare_images/case{case}/"
    locations = data[prefix + "locs"]
    assert locations.dtype == cases["prepare_images"][case]["locs_dtype"]
    size = cases["prepare_images"][case]["input_size"][0]
    crops, offsets = saccade.prepare_images(hwc(data["prepare_images/image"]), locations, size)
    expected = nhwc(data[prefix + "images"])
    assert crops.shape == expected.shape and offsets.dtype == tf.float32
    np.testing.assert_array_equal(offsets.numpy(), data[prefix + "offsets"])
    np.testing.assert_array_equal(crops.numpy() != 0, expected != 0)
    np.testing.assert_allclose(crops.numpy(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("case", range(2))
def test_rescale_and_remap_are_exact(case):
    data, cases = fixture()
    c = cases["rescale_remap"][case]
    prefix = f"rescale_remap/case{case}/"
    dets, scales, offsets = data[prefix + "dets_in"], data[prefix + "scales"], data[prefix + "offsets"]
    assert scales.dtype == c["scales_dtype"]
    sizes = c["input_size"][0], c["output_size"][0]
    # with unit scales and no offset only the rescale is left
    rescaled = saccade.rescale_and_remap(dets, np.ones_like(scales), np.zeros_like(offsets), *sizes)
    np.testing.assert_array_equal(rescaled.numpy(), data[prefix + "rescaled"])
    remapped = saccade.rescale_and_remap(dets, scales, offsets, *sizes)
    np.testing.assert_array_equal(remapped.numpy(), data[prefix + "remapped"])


@pytest.mark.parametrize("case", range(2))
def test_attention_nms_matches_att_nms(case):
    data, cases = fixture()
    prefix = f"att_nms/case{case}/"
    kernels = cases["att_nms"][case]["ks"]
    for j, kernel in enumerate(kernels):
        out = saccade.attention_nms(tf.constant(nhwc(data[prefix + f"att{j}"])), kernel)
        np.testing.assert_array_equal(out.numpy(), nhwc(data[prefix + f"out{j}"]))


@pytest.mark.parametrize("case", range(4))
def test_decode_attention_is_exact(case):
    data, cases = fixture()
    c = cases["decode_atts"][case]
    prefix = f"decode_atts/case{case}/"
    out = saccade.decode_attention(
        attention_maps(data, prefix),
        data[prefix + "scales"],
        data[prefix + "offsets"],
        tf.constant(c["image_hw"]),
        c["att_ratios"],
        c["att_scales"],
        c["thresh"],
        ignore_same=c["ignore_same"],
    )
    assert out.dtype == tf.float64 and out.shape == (c["rows_out"], 4)
    np.testing.assert_array_equal(out.numpy(), data[prefix + "out"])


@pytest.mark.parametrize("case", range(2))
def test_reference_locations_are_exact(case):
    data, cases = fixture()
    out = saccade.reference_locations(tf.constant(data[f"get_ref_locs/case{case}/dets"]))
    assert out.dtype == tf.float32 and out.shape[0] == cases["get_ref_locs"][case]["n_out"]
    np.testing.assert_array_equal(out.numpy(), data[f"get_ref_locs/case{case}/out"])


@pytest.mark.parametrize("case", range(5))
def test_location_nms_is_exact(case):
    data, cases = fixture()
    c = cases["location_nms"][case]
    out = saccade.location_nms(data[f"location_nms/case{case}/locations"], c["thresh"])
    assert out.shape == (c["n_out"], 4)
    np.testing.assert_array_equal(out.numpy(), data[f"location_nms/case{case}/out"])


@pytest.mark.parametrize("case", range(7))
def test_official_soft_nms_is_bitwise(case):
    data, cases = fixture()
    c = cases["soft_nms"][case]
    prefix = f"soft_nms/case{case}/"
    boxes, count = saccade.official_soft_nms(
        data[prefix + "boxes_in"][None], None, c["sigma"], c["Nt"], c["threshold"], c["method"]
    )
    assert count.numpy().tolist() == [c["n_keep"]] == [len(data[prefix + "keep"])]
    np.testing.assert_array_equal(data[prefix + "keep"], np.arange(c["n_keep"]))
    # the kept rows, and what the in-place original leaves in the others
    np.testing.assert_array_equal(boxes.numpy()[0], data[prefix + "boxes_out"])


def soft_nms_pyx(boxes: np.ndarray, sigma: float, nt: float, threshold: float, method: int) -> int:
    """nms.pyx's soft_nms transliterated (in place), with the precision of its generated C code."""
    f32, f64 = np.float32, np.float64
    sigma, nt, threshold = f32(sigma), f32(nt), f32(threshold)
    n = boxes.shape[0]
    for i in range(n):
        maxpos, maxscore = i, boxes[i, 4]
        for pos in range(i + 1, n):
            if maxscore < boxes[pos, 4]:
                maxscore, maxpos = boxes[pos, 4], pos
        row_i = boxes[i, :5].copy()
        boxes[i, :5] = boxes[maxpos, :5]
        boxes[maxpos, :5] = row_i
        tx1, ty1, tx2, ty2 = boxes[i, :4]
        pos = i + 1
        while pos < n:
            x1, y1, x2, y2 = boxes[pos, :4]
            area = f32((f64(x2 - x1) + 1) * (f64(y2 - y1) + 1))
            iw = f32(f64(min(tx2, x2) - max(tx1, x1)) + 1)
            if iw > 0:
                ih = f32(f64(min(ty2, y2) - max(ty1, y1)) + 1)
                if ih > 0:
                    ua = f32((f64(tx2 - tx1) + 1) * (f64(ty2 - ty1) + 1) + f64(area) - f64(iw * ih))
                    ov = iw * ih / ua
                    if method == 2:
                        weight = f32(np.exp(f64(-(ov * ov) / sigma)))
                    elif method == 1:
                        weight = f32(1.0 - f64(ov)) if ov > nt else f32(1)
                    else:
                        weight = f32(0) if ov > nt else f32(1)
                    boxes[pos, 4] = weight * boxes[pos, 4]
                    if boxes[pos, 4] < threshold:
                        boxes[pos, :5] = boxes[n - 1, :5]
                        n -= 1
                        pos -= 1
            pos += 1
    return n


@pytest.mark.parametrize("method", [0, 1, 2])
def test_official_soft_nms_equals_the_sequential_scan_on_random_batches(method):
    """Crowded random boxes with many drops, one batch of differently filled rows."""
    rng = np.random.default_rng(method)
    batch, length = 6, 40
    xy = rng.uniform(0, 60, (batch, length, 2))
    boxes = np.concatenate(
        [xy, xy + rng.uniform(5, 40, (batch, length, 2)), rng.uniform(0, 1, (batch, length, 3))], axis=-1
    ).astype(np.float32)
    boxes[:, ::7, 4] = 0.002  # easily decayed below the threshold
    boxes[:, 1::9, 4] = boxes[:, 0::9, 4][:, : boxes[:, 1::9].shape[1]]  # tied scores
    num = np.array([40, 39, 25, 1, 0, 33], np.int32)
    sigma, nt = (0.7, 0.5) if method == 2 else (0.5, 0.3)
    out, count = saccade.official_soft_nms(boxes, num, sigma, nt, 0.001, method)
    for b in range(batch):
        expected = boxes[b].copy()
        n = soft_nms_pyx(expected[: num[b]], sigma, nt, 0.001, method)
        assert count.numpy()[b] == n
        np.testing.assert_array_equal(out.numpy()[b], expected)


def decode_inputs(data: dict[str, np.ndarray]) -> dict[str, tf.Tensor]:
    names = {"heatmap": "heat", "embedding": "tag", "offset": "regr"}
    return {
        f"{corner}_{ours}": tf.constant(nhwc(data[f"decode/in/{corner}_{theirs}"]))
        for corner in ("tl", "br")
        for ours, theirs in names.items()
    }


@pytest.mark.parametrize("case", range(3))
def test_decode_corners_no_border_matches_lite_decode(case):
    data, cases = fixture()
    c = cases["decode"][case]
    dets = decode.decode_corners(
        decode_inputs(data), c["K"], c["kernel"], c["ae_threshold"], c["num_dets"], no_border=c["no_border"]
    )
    rows = saccade.decoded_to_official(dets).numpy()
    expected = data[f"decode/case{case}/detections"]
    assert rows.shape == expected.shape
    for b, n in enumerate(data[f"decode/case{case}/num_valid"]):
        assert n == c["num_valid"][b] and (rows[b, :n, 4] > -1).all() and (rows[b, n:, 4] == -1).all()
        # only rows scored > -1 are determined; equal scores come in an implementation-defined order
        mine, ref = rows[b, :n], expected[b, :n]
        np.testing.assert_allclose(mine[:, 4], ref[:, 4], rtol=1e-6)
        order = [int(np.argmin(np.abs(mine - row).max(axis=1))) for row in ref]
        assert sorted(order) == list(range(n))
        np.testing.assert_allclose(mine[order, :4], ref[:, :4], rtol=0, atol=1e-5)
        np.testing.assert_allclose(mine[order, 4:7], ref[:, 4:7], rtol=1e-6)
        np.testing.assert_array_equal(mine[order, 7], ref[:, 7])


def test_no_border_rejects_the_pairs_with_a_corner_on_the_border():
    """The planted objects (image, class, integer corners) with a corner on the map border vanish."""
    data, _ = fixture()
    outputs = decode_inputs(data)
    height, width = outputs["tl_heatmap"].shape[1:3]
    objects = np.concatenate([data["decode/border_objects"], data["decode/planted_objects"]])
    x1, y1, x2, y2 = objects[:, 2:].T
    on_border = (x1 == 0) | (y1 == 0) | (x2 == width - 1) | (y2 == height - 1)
    assert on_border[: len(data["decode/border_objects"])].all()
    for no_border in (False, True):
        rows = saccade.decoded_to_official(decode.decode_corners(outputs, 12, 3, 0.3, 12, no_border=no_border)).numpy()
        for (image, cls, *corners), border in zip(objects, on_border):
            valid = rows[image][rows[image][:, 4] > -1]
            found = ((np.floor(valid[:, :4]) == corners).all(axis=1) & (valid[:, 7] == cls)).any()
            assert found == (not (no_border and border)), (image, cls, corners, no_border)


def official_settings(case: dict) -> SaccadeSettings:
    """The db configuration of an end-to-end case as settings, with the db's BGR statistics."""
    config = case["config"]
    return SaccadeSettings(
        init_sizes=tuple(config["init_sizes"]),
        input_size=config["input_size"][0],
        output_size=config["output_sizes"][0][0],
        att_thresholds=tuple(config["att_thresholds"]),
        att_scales=tuple(tuple(zooms) for zooms in config["att_scales"]),
        att_ratios=tuple(config["att_ratios"]),
        att_nms_ks=tuple(config["att_nms_ks"]),
        att_max_crops=config["att_max_crops"],
        ref_dets=config["ref_dets"],
        k=config["top_k"],
        num_dets=config["num_dets"],
        ae_threshold=config["ae_threshold"],
        nms_kernel=config["nms_kernel"],
        nms_threshold=config["nms_threshold"],
        nms_method=NMS_METHODS[config["nms_algorithm"]],
        max_detections=config["max_per_image"],
        num_classes=config["categories"],
        mean=BGR_MEAN,
        std=BGR_STD,
    )


class ReplayNetwork:
    """Answers call c with the simulated network's stored outputs `net{c}`, recording the crops."""

    def __init__(self, data: dict[str, np.ndarray], prefix: str):
        self.data, self.prefix = data, prefix
        self.calls: list[tuple[tf.Tensor, bool]] = []

    def __call__(self, crops: tf.Tensor, with_attention: bool) -> tuple[tf.Tensor, list[tf.Tensor] | None]:
        net = f"{self.prefix}net{len(self.calls)}/"
        self.calls.append((crops, with_attention))
        dets = tf.constant(self.data[net + "dets"])
        return dets, attention_maps(self.data, net) if with_attention else None


E2E = [(0, "official"), (1, "two_rounds")]


def run_e2e(index: int, name: str, signature: list | None | bool = False) -> tuple[dict, ReplayNetwork, dict, dict]:
    """The pipeline on an end-to-end case; `signature`: False runs eagerly, else a tf.function with it."""
    data, cases = fixture()
    case = cases["e2e"][index]
    prefix = f"e2e/{name}/"
    assert case["name"] == name and json.loads(str(data[prefix + "db_overrides_json"])) == case["db_overrides"]
    settings = official_settings(case)
    assert not settings.problems()
    network = ReplayNetwork(data, prefix)

    def detect(image: tf.Tensor) -> dict:
        return saccade.saccade_detect(image, network, settings)

    if signature is not False:
        detect = tf.function(detect, input_signature=signature)
    return detect(tf.constant(data[prefix + "image"])), network, data, case


@pytest.mark.parametrize("index, name", E2E)
def test_saccade_detect_replays_the_official_inference(index, name):
    result, network, data, case = run_e2e(index, name)
    prefix = f"e2e/{name}/"
    rounds = len(case["crops_per_round"])
    # one network call per round, with attention except in the last
    assert [with_att for _, with_att in network.calls] == [not call["no_att"] for call in case["network_calls"]]
    assert len(result["locations"]) == len(result["offsets"]) == rounds
    for r in range(rounds):
        locations = data[f"{prefix}prepare{r}/locs"]
        assert result["locations"][r].dtype == locations.dtype
        np.testing.assert_array_equal(result["locations"][r].numpy(), locations)
        np.testing.assert_array_equal(result["offsets"][r].numpy(), data[f"{prefix}prepare{r}/offsets"])
        crops = network.calls[r][0].numpy() * np.float32(BGR_STD) + np.float32(BGR_MEAN)  # before normalization
        assert len(crops) == case["crops_per_round"][r]
        sums = crops.astype(np.float64).sum(axis=(1, 2))
        np.testing.assert_allclose(sums, data[f"{prefix}prepare{r}/crop_sums"], rtol=1e-5)

    final = data[prefix + "final"]
    assert len(final) == case["final_boxes"] == len(result["scores"])
    np.testing.assert_array_equal(result["classes"].numpy() + 1, final[:, 0])
    np.testing.assert_allclose(result["boxes"].numpy(), final[:, 1:5], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result["scores"].numpy(), final[:, 5], rtol=1e-5)
    counts = np.bincount(result["classes"].numpy(), minlength=case["config"]["categories"])
    np.testing.assert_array_equal(counts, data[prefix + "final_counts"])


@pytest.mark.parametrize("index, name", E2E)
def test_each_official_intermediate_call(index, name):
    """The stored intermediate calls of the end-to-end runs, through the functions the pipeline uses."""
    data, cases = fixture()
    case = cases["e2e"][index]
    config = case["config"]
    prefix = f"e2e/{name}/"
    for r in range(len(case["crops_per_round"])):
        p = f"{prefix}round{r}/"
        out = saccade.rescale_and_remap(
            data[p + "dets_network"], data[p + "scales"], data[f"{prefix}prepare{r}/offsets"], 255, 64
        )
        np.testing.assert_array_equal(out.numpy(), data[p + "dets_image"])
    for k in range(len(case["location_nms"])):
        p = f"{prefix}decode_atts{k}/"
        out = saccade.decode_attention(
            attention_maps(data, p),
            data[p + "scales"],
            data[p + "offsets"],
            tf.constant(case["image_hw"]),
            config["att_ratios"],
            config["att_scales"][k],
            config["att_thresholds"][k],
            ignore_same=k > 0,
        )
        np.testing.assert_array_equal(out.numpy(), data[p + "out"])
        refs = saccade.reference_locations(data[f"{prefix}ref_locs{k}/dets"])
        np.testing.assert_array_equal(refs.numpy(), data[f"{prefix}ref_locs{k}/out"])
        np.testing.assert_array_equal(
            data[f"{prefix}location_nms{k}/in"], np.concatenate([data[p + "out"], refs.numpy()])
        )
        nms = saccade.location_nms(data[f"{prefix}location_nms{k}/in"], 16)
        np.testing.assert_array_equal(nms.numpy(), data[f"{prefix}location_nms{k}/out"])


def test_a_round_without_locations_keeps_the_first_pass():
    """No attention cell and no detection above 0.5: the official loop stops after the first pass,
    and the network is not run on an empty round."""
    data, cases = fixture()
    first = data["e2e/official/net0/dets"].copy()
    first[..., 4] = np.minimum(first[..., 4], 0.45)
    calls = []

    def network(crops: tf.Tensor, with_attention: bool) -> tuple[tf.Tensor, list[tf.Tensor] | None]:
        calls.append(crops.shape[0])
        assert len(calls) == 1, "the network ran on a round without crops"
        return tf.constant(first), [tf.zeros([2, s, s, 1]) for s in (16, 32, 64)]

    settings = official_settings(cases["e2e"][0])
    result = saccade.saccade_detect(data["e2e/official/image"], network, settings)
    assert calls == [2] and result["locations"][1].shape == (0, 4)
    first_pass = saccade.rescale_and_remap(
        first, data["e2e/official/prepare0/locs"][:, 2], data["e2e/official/prepare0/offsets"], 255, 64
    ).numpy()
    first_pass = first_pass.reshape(-1, 8)[first_pass.reshape(-1, 8)[:, 4] > 0.3]
    expected = merge_numpy(first_pass, 80, 100)
    assert len(expected) > 0
    np.testing.assert_array_equal(result["classes"].numpy(), expected[:, 0])
    np.testing.assert_array_equal(result["boxes"].numpy(), expected[:, 1:5])
    np.testing.assert_array_equal(result["scores"].numpy(), expected[:, 5])


@pytest.mark.parametrize("max_crops, counts", [(20, [2, 14, 6]), (14, [2, 14, 0]), (10, [2, 10, 0])])
def test_att_max_crops_bounds_the_crops_after_the_first_pass(max_crops, counts):
    """The two-round replay with a smaller budget: the next locations in order, until it is spent."""
    data, cases = fixture()
    settings = dataclasses.replace(official_settings(cases["e2e"][1]), att_max_crops=max_crops)
    network = ReplayNetwork(data, "e2e/two_rounds/")  # answers with more crops than asked: the first ones count
    result = saccade.saccade_detect(data["e2e/two_rounds/image"], network, settings)
    assert [len(locations) for locations in result["locations"]] == counts
    assert [crops.shape[0] for crops, _ in network.calls] == [n for n in counts if n]  # no call on no crops
    for r, n in enumerate(counts[:2]):
        np.testing.assert_array_equal(result["locations"][r].numpy(), data[f"e2e/two_rounds/prepare{r}/locs"][:n])
    if counts[2]:
        np.testing.assert_array_equal(result["locations"][2].numpy(), data["e2e/two_rounds/prepare2/locs"][: counts[2]])


@pytest.mark.parametrize("signature", [[tf.TensorSpec([None, None, 3], tf.uint8)], None])
def test_saccade_detect_in_a_graph_equals_eager(signature):
    """Unknown image size (as exported), and a static one, where more of the graph folds to constants."""
    eager, *_ = run_e2e(*E2E[0])
    graph, network, *_ = run_e2e(*E2E[0], signature=signature)
    # the first pass has one crop per init size; later rounds a crop count known only when run
    assert [crops.shape.as_list() for crops, _ in network.calls] == [[2, 255, 255, 3], [None, 255, 255, 3]]
    for key in ("boxes", "scores", "classes"):
        np.testing.assert_array_equal(graph[key].numpy(), eager[key].numpy())
    for key in ("locations", "offsets"):
        for ours, theirs in zip(graph[key], eager[key]):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_channel_order_only_has_to_agree_with_the_statistics():
    """An RGB image with RGB statistics (the package's models) gives the BGR run's crops and boxes."""
    bgr, bgr_network, data, case = run_e2e(*E2E[0])
    settings = dataclasses.replace(official_settings(case), mean=RGB_MEAN, std=RGB_STD)
    network = ReplayNetwork(data, "e2e/official/")
    rgb = saccade.saccade_detect(data["e2e/official/image"][..., ::-1].copy(), network, settings)
    for (ours, _), (theirs, _) in zip(network.calls, bgr_network.calls):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy()[..., ::-1])
    for key in ("boxes", "scores", "classes"):
        np.testing.assert_array_equal(rgb[key].numpy(), bgr[key].numpy())


def test_default_settings_are_the_official_configuration():
    _, cases = fixture()
    official = dataclasses.replace(SaccadeSettings(), mean=BGR_MEAN, std=BGR_STD)
    assert official_settings(cases["e2e"][0]) == official and not official.problems()
    assert SaccadeSettings(att_thresholds=(0.3, 0.3)).problems()  # one att_scales entry per round
    with pytest.raises(ValueError, match="saccade_detect: unusable settings: att_scales needs one entry per"):
        saccade.saccade_detect(np.zeros((8, 8, 3), np.uint8), None, SaccadeSettings(att_thresholds=(0.3, 0.3)))


def merge_numpy(dets: np.ndarray, num_classes: int, max_per_image: int) -> np.ndarray:
    """The official merge, with the transliterated soft-NMS."""
    per_class = [dets[dets[:, 7] == j][:, :7].astype(np.float32) for j in range(num_classes)]
    per_class = [rows[: soft_nms_pyx(rows, 0.7, 0.5, 0.001, 2), :5] for rows in per_class]
    scores = np.hstack([rows[:, 4] for rows in per_class])
    if len(scores) > max_per_image:
        kth = len(scores) - max_per_image
        cut = np.partition(scores, kth)[kth]
        per_class = [rows[rows[:, 4] >= cut] for rows in per_class]
    return np.concatenate([np.c_[np.full(len(rows), j), rows] for j, rows in enumerate(per_class)])


def test_merge_keeps_ties_at_the_max_per_image_cut():
    rng = np.random.default_rng(5)
    count = 40
    x = np.arange(count, dtype=np.float32) * 20
    side = np.where(np.arange(count) % 4 == 0, 45, 10).astype(np.float32)  # every 4th box overlaps others
    scores = rng.choice(np.float32([0.2, 0.4, 0.6, 0.8]), count)  # many ties
    classes = rng.integers(0, 4, count).astype(np.float32)
    classes[:3] = [7, -1, 1.5]  # not a class: ignored
    dets = np.stack([x, x, x + side, x + side, scores, scores, scores, classes], axis=1)
    expected = merge_numpy(dets, 4, 25)
    assert len(expected) > 25  # the ties at the cut stay
    boxes, kept_scores, kept_classes = saccade.merge_detections(dets, 4, max_per_image=25)
    np.testing.assert_array_equal(kept_classes.numpy(), expected[:, 0])
    np.testing.assert_array_equal(boxes.numpy(), expected[:, 1:5])
    np.testing.assert_array_equal(kept_scores.numpy(), expected[:, 5])
    empty = saccade.merge_detections(np.zeros([0, 8], np.float32), 4)
    assert [t.shape[0] for t in empty] == [0, 0, 0]
