"""CornerNet-Saccade sampler against the official `core/sample/cornernet_saccade.py` fixtures
(`saccade_sample.npz`): every unit case, then a full official batch replayed from its recorded
draws, geometry and targets; plus the stateless draws and the pipeline view."""

import json

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.data import augment
from cornernet_tf.data.saccade_sampler import (
    DRAWS,
    RAND_SCALES,
    SaccadeSampling,
    attention_targets,
    bbox_overlaps,
    clip_detections,
    crop_center,
    crop_image,
    crop_placement,
    draw_uniforms,
    longer_side,
    reference_scale,
    saccade_targets,
    saccade_view,
    sample_geometry,
    scale_boxes,
    scale_size,
    target_size_range,
)
from cornernet_tf.objective.targets import TargetSpec, gaussian_radius
from tests.conftest import load_reference, nhwc

INPUT = 255


@pytest.fixture(scope="module")
def ref():
    return load_reference("saccade_sample.npz")


@pytest.fixture(scope="module")
def cases(ref):
    return json.loads(str(ref["cases_json"]))


def randint_bounds(draw: list) -> tuple[int, int]:
    """(low, high) of a recorded `randint(high)`, `randint(low, high)` or `randint(low=, high=)`."""
    _, args, kwargs, _ = draw
    bounds = [*args, *(kwargs[key] for key in ("low", "high") if key in kwargs)]
    return (0, bounds[0]) if len(bounds) == 1 else tuple(bounds)


def uniform_of(draw: list) -> float:
    """The uniform variate in [0, 1) that makes our draw return the recorded result."""
    method, args, _, result = draw
    if method == "uniform":
        return result
    if method == "choice":
        return (args[0].index(result) + 0.5) / len(args[0])
    assert method == "randint", method
    low, high = randint_bounds(draw)
    return (result - low + 0.5) / (high - low)


class Recorded:
    """The recorded official draws of one call, consumed in the official order."""

    def __init__(self, draws: list):
        self.draws = list(draws)
        self.values = dict.fromkeys(DRAWS, 0.5)
        self.taken = {}

    def take(self, name: str, method: str) -> None:
        draw = self.draws.pop(0)
        assert draw[0] == method, (name, draw)
        self.values[name] = uniform_of(draw)
        self.taken[name] = draw

    def crop(self, image_hw: list, has_box: bool) -> bool:
        """`crop_image_dets`' draws: centring, then per drawn axis, x first. Returns centred."""
        self.take("centered", "uniform")
        centered = self.values["centered"] > 0.5
        for axis, side in (("x", image_hw[1]), ("y", image_hw[0])):
            if side > INPUT and self.draws:
                if has_box and centered:
                    self.take(f"jitter_low_{axis}", "randint")
                    self.take(f"jitter_high_{axis}", "randint")
                self.take(f"pick_{axis}", "randint")
        return centered

    def crop_arguments(self) -> tuple[np.ndarray, np.ndarray]:
        jitter = [
            [round(self.values[f"jitter_{end}_{axis}"] * 15 - 0.5) for end in ("low", "high")] for axis in ("y", "x")
        ]
        return np.array(jitter, np.int32), np.array([self.values["pick_y"], self.values["pick_x"]])


# ---- unit cases ----


def test_gaussian_radius_at_half_overlap(ref):
    h, w = ref["gaussian_radius/wh"].T
    radius = gaussian_radius(h, w, 0.5).numpy()
    np.testing.assert_allclose(radius, ref["gaussian_radius/r"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.maximum(radius.astype(np.int64), 0), ref["gaussian_radius/int_r"])


def test_rand_scales_overshoot_to_1_1(cases):
    assert list(RAND_SCALES) == cases["sampler"]["config"]["rand_scales"]


@pytest.mark.parametrize("case", range(12))
def test_reference_scale(ref, cases, case):
    entry = cases["ref_scale"][case]
    dets = ref[f"ref_scale/case{case}/dets"]
    recorded = Recorded(entry["draws"])
    if entry["random_crop"] and recorded.draws:
        recorded.take("skip", "uniform")
    if entry["scale"] is None:
        assert not len(dets) or recorded.values["skip"] > 0.7
        assert not recorded.draws
        return
    recorded.take("reference", "randint")
    recorded.take("target_size", "randint")
    assert randint_bounds(recorded.taken["reference"]) == (0, len(dets))
    box = dets[entry["ref_ind"], :4]
    low, high = target_size_range(longer_side(box))
    assert (int(low), int(high)) == randint_bounds(recorded.taken["target_size"])
    scale = reference_scale(box, recorded.taken["target_size"][3]).numpy()
    assert scale == entry["scale_numpy1"]
    assert np.float32(scale) == np.float32(entry["scale"])


@pytest.mark.parametrize("case", range(9, 12))
def test_no_boxes_no_reference(ref, case):
    draws = {name: tf.constant(0.5, tf.float64) for name in DRAWS}
    geometry = sample_geometry(ref[f"ref_scale/case{case}/dets"][:, :4], [300, 400], draws)
    assert int(geometry["reference"]) == -1
    assert float(geometry["scale"]) in RAND_SCALES


@pytest.mark.parametrize("case", range(21))
def test_crop_image_dets(ref, cases, case):
    entry = cases["crop_image_dets"][case]
    prefix = f"crop_image_dets/case{case}"
    dets = ref[f"{prefix}/dets_in"]
    has_box = entry["ind"] is not None
    box = dets[entry["ind"], :4] if has_box else np.zeros(4, np.float32)
    recorded = Recorded(entry["draws"])
    centered = recorded.crop(entry["image_hw"], has_box)
    assert not recorded.draws
    jitter, pick = recorded.crop_arguments()
    args = (entry["image_hw"], box, has_box, centered, jitter, pick, tuple(entry["input_size"]))
    if entry["error"]:
        assert entry["error"].startswith("ValueError")
        with pytest.raises(tf.errors.InvalidArgumentError, match="low >= high"):
            crop_center(*args)
        return
    center, low, high = crop_center(*args)
    np.testing.assert_array_equal(center.numpy(), entry["center_yx"])
    for axis, index in (("y", 0), ("x", 1)):
        if f"pick_{axis}" in recorded.taken:
            assert randint_bounds(recorded.taken[f"pick_{axis}"]) == (low[index], high[index])
    border, offset, _ = crop_placement(center, tuple(entry["input_size"]), entry["image_hw"])
    np.testing.assert_array_equal(border.numpy(), ref[f"{prefix}/border"])
    cropped = dets[:, :4] - np.tile(offset.numpy()[::-1], 2).astype(np.float32)
    np.testing.assert_array_equal(cropped, ref[f"{prefix}/dets_out"][:, :4])


@pytest.mark.parametrize("case", range(6))
def test_crop_image_placement(ref, cases, case):
    entry = cases["crop_image"][case]
    output = tuple(entry["output_size"]) if entry["output_size"] else None
    out, border, offset = crop_image(ref["crop_image/image"], entry["center_yx"], tuple(entry["size_hw"]), output)
    np.testing.assert_array_equal(out.numpy(), ref[f"crop_image/case{case}/out"])
    np.testing.assert_array_equal(border.numpy(), ref[f"crop_image/case{case}/border"])
    np.testing.assert_array_equal(offset.numpy(), ref[f"crop_image/case{case}/offset"])


@pytest.mark.parametrize("case", range(2))
def test_clip_detections(ref, cases, case):
    prefix = f"clip_detections/case{case}"
    dets = ref[f"{prefix}/dets_in"]
    np.testing.assert_array_equal(ref[f"{prefix}/border"], cases["clip_detections"][case]["border_y0y1x0x1"])
    clipped, keep = clip_detections(dets[:, :4], ref[f"{prefix}/border"])
    np.testing.assert_array_equal(keep.numpy(), ref[f"{prefix}/keep"])
    np.testing.assert_array_equal(clipped.numpy(), ref[f"{prefix}/dets_out"][:, :4])


def test_bbox_overlaps_is_an_area_ratio(ref):
    out = bbox_overlaps(ref["bbox_overlaps/a"][:, :4], ref["bbox_overlaps/b"][:, :4])
    np.testing.assert_array_equal(out.numpy(), ref["bbox_overlaps/out"])


@pytest.mark.parametrize("case", range(4))
def test_scale_image_detections(ref, cases, case):
    entry = cases["scale_image_detections"][case]
    scale = np.dtype(entry["scale_dtype"]).type(entry["scale"])
    np.testing.assert_array_equal(scale_size(entry["image_hw"], scale).numpy(), entry["out_hw"])
    boxes = scale_boxes(ref[f"scale_image_detections/case{case}/dets_in"][:, :4], scale)
    np.testing.assert_array_equal(boxes.numpy(), ref[f"scale_image_detections/case{case}/dets_out"][:, :4])


@pytest.mark.parametrize("case", range(3))
def test_create_attention_mask(ref, cases, case):
    entry = cases["create_attention_mask"][case]
    dets = ref[f"create_attention_mask/case{case}/dets"]
    maps = attention_targets(
        dets[np.newaxis, :, :4],
        [len(dets)],
        tuple(entry["att_ratios"]),
        tuple(map(tuple, entry["att_ranges"])),
        tuple(map(tuple, entry["att_sizes"])),
    )
    for j in range(3):
        np.testing.assert_array_equal(
            maps[f"attention_{j}"].numpy()[0, :, :, 0], ref[f"create_attention_mask/case{case}/att{j}"]
        )


# ---- the official batch, replayed ----


def sampler_inputs(ref, cases):
    """Per sample: (boxes [N, 5] of its db image, image (H, W), the recorded draws as uniforms)."""
    config = cases["sampler"]
    samples = []
    for b, entry in enumerate(config["samples"]):
        image = ref["sampler/image_index"][b]
        assert image == entry["image_index"]
        dets = ref["sampler/db_boxes"][image, : ref["sampler/db_box_count"][image]]
        recorded = Recorded(config["draws"][slice(*entry["draws_slice"])])
        has_box = entry["ref_ind"] >= 0
        if has_box:
            recorded.take("reference", "randint")
            recorded.take("target_size", "randint")
        else:
            recorded.take("fallback_scale", "choice")
        recorded.crop(entry["scaled_hw"], has_box)
        recorded.take("flip", "uniform")
        assert not recorded.draws
        samples.append((dets, ref["sampler/db_image_hw"][image], recorded.values))
    return samples


@pytest.fixture(scope="module")
def replayed(ref, cases):
    sampling = SaccadeSampling(rand_scales=tuple(cases["sampler"]["config"]["rand_scales"]))
    draws = sampler_inputs(ref, cases)
    return [sample_geometry(dets[:, :4], hw, values, sampling) for dets, hw, values in draws], draws


@pytest.mark.parametrize("b", range(3))
def test_sampler_geometry(ref, cases, replayed, b):
    entry = cases["sampler"]["samples"][b]
    geometry, draws = replayed[0][b], replayed[1][b][0]
    prefix = f"sampler/sample{b}"
    assert int(geometry["reference"]) == entry["ref_ind"]
    assert float(geometry["scale"]) == entry["scale_numpy1"]
    np.testing.assert_array_equal(geometry["scaled_hw"].numpy(), entry["scaled_hw"])
    np.testing.assert_array_equal(geometry["center"].numpy(), entry["crop_center_yx"])
    np.testing.assert_array_equal(geometry["border"].numpy(), entry["border_y0y1x0x1"])
    assert bool(geometry["flipped"]) == entry["flipped"]
    np.testing.assert_array_equal(geometry["scaled_boxes"].numpy(), ref[f"{prefix}/dets_scaled"][:, :4])
    np.testing.assert_array_equal(geometry["cropped_boxes"].numpy(), ref[f"{prefix}/dets_cropped"][:, :4])
    np.testing.assert_array_equal(geometry["boxes"].numpy(), ref[f"{prefix}/dets_final"][:, :4])
    np.testing.assert_array_equal(draws[geometry["rows"].numpy(), 4], ref[f"{prefix}/dets_final"][:, 4])
    np.testing.assert_array_equal(geometry["overlaps"].numpy(), ref[f"{prefix}/overlaps"])
    assert len(geometry["boxes"]) == entry["num_dets_final"]


def test_sampler_targets(ref, cases, replayed):
    geometries, draws = replayed
    rows = max(len(g["boxes"]) for g in geometries)
    boxes = np.zeros([3, rows, 4], np.float32)
    classes = np.zeros([3, rows], np.int32)
    positive = np.zeros([3, rows], bool)
    for b, (geometry, (dets, _, _)) in enumerate(zip(geometries, draws, strict=True)):
        n = len(geometry["boxes"])
        boxes[b, :n] = geometry["boxes"].numpy()
        classes[b, :n] = dets[geometry["rows"].numpy(), 4].astype(np.int32) - 1
        positive[b, :n] = geometry["positive"].numpy()
    config = cases["sampler"]["config"]
    spec = TargetSpec(
        num_classes=config["categories"],
        input_size=tuple(config["input_size"]),
        output_size=tuple(config["output_sizes"][0]),
        gaussian_iou=config["gaussian_iou"],
        coordinate_dtype="float64",
    )
    counts = [len(g["boxes"]) for g in geometries]
    targets = saccade_targets(boxes, classes, positive, counts, spec)
    for key, name in (("heatmap", "heats"), ("valid", "valids")):
        for corner in ("tl", "br"):
            np.testing.assert_array_equal(targets[f"{corner}_{key}"].numpy(), nhwc(ref[f"sampler/{corner}_{name}"]))
    for corner in ("tl", "br"):
        np.testing.assert_array_equal(targets[f"{corner}_indices"].numpy(), ref[f"sampler/{corner}_tags"])
        np.testing.assert_allclose(
            targets[f"{corner}_offset"].numpy(), ref[f"sampler/{corner}_regrs"], rtol=0, atol=1e-5
        )
    np.testing.assert_array_equal(targets["mask"].numpy(), ref["sampler/tag_masks"])
    for j in range(3):
        np.testing.assert_array_equal(targets[f"attention_{j}"].numpy(), nhwc(ref[f"sampler/att{j}"]))
    # the batch covers ignored boxes and every attention map
    assert positive.sum() < sum(counts)
    assert all(targets[f"attention_{j}"].numpy().any() for j in range(3))


# ---- stateless draws and the pipeline view ----


def test_draws_are_stateless_uniforms():
    first = draw_uniforms(tf.constant([3, 7], tf.int64))
    again = draw_uniforms(tf.constant([3, 7], tf.int64))
    assert list(first) == list(DRAWS)
    for name in DRAWS:
        assert 0.0 <= float(first[name]) < 1.0
        assert float(first[name]) == float(again[name])


def test_saccade_view_in_tf_data():
    """Views made in tf.data equal eager ones; boxes stay inside the input (S4), also for an
    image without boxes (a scale from rand_scales)."""
    rng = np.random.default_rng(5)
    examples = []
    for size, count in (((300, 400), 6), ((180, 200), 6), ((480, 640), 0)):
        xy = rng.uniform(0, [size[1] * 0.8, size[0] * 0.8], size=(count, 2))
        wh = rng.uniform(4, 150, size=(count, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
        image = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        examples.append((image, boxes, np.arange(count, dtype=np.int32) % 3))

    def view(index, image, boxes, classes):
        return saccade_view(image, boxes, classes, tf.stack([tf.constant(9, tf.int64), index]))

    for index, (image, boxes, classes) in enumerate(examples):
        dataset = tf.data.Dataset.from_tensors((tf.constant(index, tf.int64), image, boxes, classes)).map(view)
        out, kept, kept_classes, positive = next(iter(dataset))
        assert kept.shape[0] == kept_classes.shape[0] == positive.shape[0] <= len(boxes)
        assert np.all(kept.numpy() >= 0) and np.all(kept.numpy() <= 254)
        assert np.all(kept.numpy()[:, 2:] > kept.numpy()[:, :2])
        eager = saccade_view(image, boxes, classes, tf.constant([9, index], tf.int64))
        np.testing.assert_array_equal(eager[1].numpy(), kept.numpy())
        np.testing.assert_array_equal(eager[3].numpy(), positive.numpy())
        np.testing.assert_array_equal(eager[0]["sampling_box"].numpy(), out["sampling_box"].numpy())


@pytest.mark.parametrize("seed", range(6))
def test_rendered_view_shows_the_box_where_its_targets_are(seed):
    """A white box on black: after `render_views`, the view's box (the reference, scaled to a
    longer side in its 32..96 draw range, centred or not, flipped or not) covers the white pixels,
    up to the official flip's one pixel (x' = 254 - x mirrors pixel indices, not edges) and the
    bilinear blending of the edges."""
    image = np.zeros([300, 400, 3], np.uint8)
    image[80:150, 100:160] = 255
    boxes = np.array([[100, 80, 160, 150]], np.float32)
    seed = tf.constant([seed, 1], tf.int64)
    view, kept, _, positive = saccade_view(image, boxes, [0], seed, jitter=False, light=False)
    assert kept.shape[0] == 1 and bool(positive[0])
    x1, y1, x2, y2 = kept.numpy()[0]
    assert 32 - 1e-3 <= max(x2 - x1, y2 - y1) <= 96 + 1e-3
    batch = {key: value[tf.newaxis] for key, value in view.items()}
    pixels = augment.render_views(batch, (255, 255), (0.0,) * 3, (1.0,) * 3).numpy()[0, :, :, 0]
    inside = pixels[int(y1) + 2 : int(y2) - 1, int(x1) + 2 : int(x2) - 1]
    assert inside.min() > 0.99
    outside = np.ones_like(pixels, bool)
    outside[max(int(y1) - 2, 0) : int(y2) + 3, max(int(x1) - 2, 0) : int(x2) + 3] = False
    assert pixels[outside].max() < 0.01
