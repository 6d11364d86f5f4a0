"""mmdetection CornerNet checkpoints: key layout, RGB stem, every stack of a tiny model against
mmdetection's outputs, all-or-nothing errors, the CLI, our preprocessing (data.pad_value mean) of
its raw images against its batch, and where our decoding differs from its test."""

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf import convert
from cornernet_tf.config import ModelConfig, load_config
from cornernet_tf.data import augment
from cornernet_tf.data import image_info as info_lib
from cornernet_tf.detection import decode
from cornernet_tf.tasks.export import detection_module
from cornernet_tf.tasks.model import build_model
from cornernet_tf.tasks.official_weights import (
    checkpoint_layout,
    load_official_weights,
    mmdetection_entries,
    official_entries,
)
from tests.conftest import load_reference, nhwc, reference_config, reference_path
from tests.convert_fixtures import check_every_official_key_maps, check_parameter_count, read_state_dict_tsv

CONFIG = "cornernet_hg104_mmdet_coco"
TSV = "mmdet_cornernet_hg104_state_dict.tsv"
# our output names -> the fixture's (CornerHead.forward's lists)
OUTPUT_NAMES = {
    "tl_heatmap": "tl_heat",
    "br_heatmap": "br_heat",
    "tl_embedding": "tl_emb",
    "br_embedding": "br_emb",
    "tl_offset": "tl_off",
    "br_offset": "br_off",
}


@pytest.fixture(scope="module")
def ref():
    return load_reference("mmdet_cornernet_tiny.npz")


@pytest.fixture(scope="module")
def params(ref):
    return {k: v for k, v in ref.items() if not k.startswith("ref/")}


@pytest.fixture(scope="module")
def tiny_overrides(ref) -> list[str]:
    """The bundled config's --set overrides for the fixture's network (HourglassNet's and
    CornerHead's constructor arguments); its hard-coded widths must be the config's own."""
    config = reference_config(ref)
    h, fixed = config["hyperparameters"], config["hard_coded_in_mmdet"]
    bundled = load_config(CONFIG).model
    assert bundled.pool_dim == fixed["BiCornerPool.feat_channels"] == 128
    assert bundled.head_dim == fixed["CornerHead._make_layers.feat_channels"] == 256
    return [
        f"model.num_classes={h['num_classes']}",
        f"model.depth={h['downsample_times']}",
        f"model.nstack={h['num_stacks']}",
        f"model.dims={h['stage_channels']}",
        f"model.modules={h['stage_blocks']}",
        f"model.cnv_dim={h['feat_channel']}",
        f"model.pre_dims={fixed['stem_channels']}",
    ]


@pytest.fixture(scope="module")
def tiny_model(tiny_overrides, params):
    model = build_model(load_config(CONFIG, tiny_overrides).model, corner_pool="vectorized")
    load_official_weights(model, params)
    return model


@pytest.fixture(scope="module")
def hg104():
    return build_model(load_config(CONFIG).model, corner_pool="vectorized")


def test_hg104_parameter_count_matches_mmdetections_model(hg104):
    check_parameter_count(hg104, read_state_dict_tsv(TSV), 201035212)


def test_hg104_every_mmdetection_key_maps_onto_the_weight_of_its_official_key(hg104):
    rows, _ = read_state_dict_tsv(TSV)
    check_every_official_key_maps(hg104, rows, mmdetection_entries)
    lines = reference_path(TSV).read_text().splitlines()
    official_key = {fields[0]: fields[4] for fields in (line.split("\t") for line in lines if not line.startswith("#"))}
    ours = {
        mmdet: official for (official, _, _), (mmdet, _, _) in zip(official_entries(hg104), mmdetection_entries(hg104))
    }
    assert ours == {k: v for k, v in official_key.items() if not k.endswith("num_batches_tracked")}


def test_checkpoint_layout():
    mmdet_rows, _ = read_state_dict_tsv(TSV)
    official_rows, _ = read_state_dict_tsv("cornernet_hg104_state_dict.tsv")
    assert checkpoint_layout(key for key, _, _ in mmdet_rows) == "mmdetection"
    assert checkpoint_layout([f"module.{key}" for key, _, _ in mmdet_rows]) == "mmdetection"
    assert checkpoint_layout(key for key, _, _ in official_rows) == "official"
    assert checkpoint_layout(["hg.pre.0.conv.weight", "att_modules.0.0.1.bias"]) == "official"


def test_tiny_model_reproduces_every_stack_of_mmdetection(tiny_model, ref):
    assert sum(int(np.prod(w.shape)) for w in tiny_model.trainable_weights) == 2126240
    images = nhwc(ref["ref/inputs"])  # RGB, normalized, as mmdetection's backbone receives it
    for s, outputs in enumerate(tiny_model(images, return_all_stacks=True)):
        for ours, theirs in OUTPUT_NAMES.items():
            expected = nhwc(ref[f"ref/stack{s}/{theirs}"])
            np.testing.assert_allclose(outputs[ours], expected, rtol=1e-3, atol=1e-3, err_msg=f"stack {s} {ours}")


def test_the_stem_keeps_mmdetections_rgb_input_channels(tiny_model, params):
    mmdet = params["backbone.stem.0.conv.weight"]  # OIHW, I in RGB order
    np.testing.assert_array_equal(tiny_model.backbone.pre[0].conv.kernel.numpy(), np.transpose(mmdet, (2, 3, 1, 0)))


def test_missing_extra_and_foreign_keys_fail_all_or_nothing(tiny_model, params):
    before = [w.numpy() for w in tiny_model.weights]
    key = "bbox_head.tl_pool.1.aftpool_conv.bn.running_var"
    with pytest.raises(ValueError, match=rf"^mmdetection weights .* missing from the checkpoint: {key} \(for "):
        load_official_weights(tiny_model, {k: v for k, v in params.items() if k != key})
    extra = {**params, "bbox_head.tl_heat.2.0.conv.bias": np.zeros(256, "float32")}
    with pytest.raises(
        ValueError, match=r"1 checkpoint key\(s\) not used by the model: bbox_head\.tl_heat\.2\.0\.conv\.bias"
    ):
        load_official_weights(tiny_model, extra)
    retinanet = {"backbone.conv1.weight": np.zeros((64, 3, 7, 7)), "bbox_head.retina_cls.bias": np.zeros(720)}
    with pytest.raises(ValueError, match="an mmdetection checkpoint, but not of CornerNet"):
        load_official_weights(tiny_model, retinanet)
    for w, value in zip(tiny_model.weights, before):
        np.testing.assert_array_equal(w.numpy(), value)

    small = ModelConfig("centernet", 3, depth=1, nstack=1, dims=[8, 8], modules=[1, 1], cnv_dim=8, pre_dims=[4, 8])
    centernet = build_model(small, corner_pool="vectorized")
    with pytest.raises(ValueError, match=r"an mmdetection cornernet checkpoint but a centernet model \(set model"):
        load_official_weights(centernet, params)


def test_cli_converts_an_mmdetection_npz(tiny_model, tiny_overrides, params, tmp_path, capsys):
    checkpoint = tmp_path / "mmdet.npz"
    np.savez(checkpoint, **params)
    out = tmp_path / "tiny.weights.h5"
    overrides = [arg for override in tiny_overrides for arg in ("--set", override)]
    assert convert.main(["--config", CONFIG, "--checkpoint", str(checkpoint), "--out", str(out), *overrides]) == 0
    assert "wrote" in capsys.readouterr().out
    model = build_model(load_config(CONFIG, tiny_overrides).model, corner_pool="vectorized")
    model.load_weights(out)
    for ours, loaded in zip(tiny_model.weights, model.weights, strict=True):
        np.testing.assert_array_equal(loaded.numpy(), ours.numpy(), err_msg=ours.path)


def _image_info(ref, i: int) -> tf.Tensor:
    """image_info [1, 6] of fixture image i in mmdetection's canvas (its `border`: top, left)."""
    top, _, left, _ = ref[f"ref/pipeline/{i}/border"]
    height, width = ref[f"ref/raw_image/{i}"].shape[:2]
    return tf.constant([[1, 1, top, left, height, width]], tf.float32)


@pytest.mark.parametrize("i, rejected", [(0, 0), (1, 8)])
def test_our_decode_gives_mmdetections_pairs_but_those_it_rejects_after_scaling(ref, i, rejected):
    """docs/converting_weights.md: on the stored last-stack maps, our (the official) pairing keeps
    every pair mmdetection keeps, in its order, plus the ones its br <= tl test rejects after
    mapping to the image and clamping at 0."""
    maps = {ours: nhwc(ref[f"ref/stack1/{theirs}"][i : i + 1]) for ours, theirs in OUTPUT_NAMES.items()}
    dets = decode.decode_corners(maps, k=100, nms_kernel=3, ae_threshold=0.5, num_dets=1000)
    image_info = _image_info(ref, i)
    stride = info_lib.map_stride(ref["ref/inputs"].shape[2:], maps["tl_heatmap"].shape[1:3])
    valid = dets["valid"][0].numpy()
    boxes = np.maximum(decode.boxes_to_image(dets["boxes"], image_info, stride, clip=False)[0].numpy()[valid], 0)
    kept = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    assert (~kept).sum() == rejected
    theirs = ref[f"ref/nms/{i}/in_bboxes"]
    np.testing.assert_allclose(boxes[kept], theirs[:, :4], atol=1e-4, rtol=0)
    np.testing.assert_allclose(dets["scores"][0].numpy()[valid][kept], theirs[:, 4], rtol=1e-6)
    np.testing.assert_array_equal(dets["classes"][0].numpy()[valid][kept], ref[f"ref/nms/{i}/in_labels"])


@pytest.mark.parametrize("i", [0, 1])
def test_our_soft_nms_without_the_plus_one_area_gives_mmdetections_results(ref, i):
    """mmcv's soft-NMS (gaussian, sigma 0.5, min_score 1e-3, offset 0) on mmdetection's own pairs
    is ours with pixel_inclusive=False; our test path counts areas with +1 as the official code."""
    pairs, labels = ref[f"ref/nms/{i}/in_bboxes"], ref[f"ref/nms/{i}/in_labels"]
    kept = decode.soft_nms(
        pairs[None, :, :4], pairs[None, :, 4], labels[None].astype("int32"), sigma=0.5, pixel_inclusive=False
    )
    assert kept["valid"][0].numpy().all()
    np.testing.assert_array_equal(kept["boxes"][0], ref[f"ref/result/{i}/bboxes"])
    np.testing.assert_allclose(kept["scores"][0], ref[f"ref/result/{i}/scores"], rtol=1e-5)
    np.testing.assert_array_equal(kept["classes"][0], ref[f"ref/result/{i}/labels"])


def _our_inputs(model, config, ref) -> tuple[np.ndarray, np.ndarray]:
    """The fixture's raw images as the export module (Detector, SavedModel) feeds our network:
    its test transform, the batch padded to one size, normalized -> (images, image_info)."""
    module = detection_module(model, config)
    pairs = [module.transforms(tf.constant(ref[f"ref/raw_image/{i}"][..., ::-1].copy()))[0] for i in range(2)]  # BGR
    ragged = tf.ragged.stack([tf.RaggedTensor.from_tensor(image, ragged_rank=1) for image, _ in pairs])
    images = module.normalize(augment.pad_batch(ragged, module.preprocessing.fill))
    return images.numpy(), np.stack([info.numpy() for _, info in pairs])


def _outside(ref) -> np.ndarray:
    """[2, 127, 255] True on mmdetection's canvas around each image (its `border`)."""
    outside = np.ones(ref["ref/inputs"].shape[:1] + ref["ref/inputs"].shape[2:], bool)
    for i in range(len(outside)):
        top, bottom, left, right = ref[f"ref/pipeline/{i}/border"].astype(int)
        outside[i, top:bottom, left:right] = False
    return outside


def test_our_preprocessing_of_the_raw_images_is_mmdetections_batch(tiny_model, tiny_overrides, ref):
    """data.pad_value mean: the canvas around the image is mmdetection's mean colour, exactly 0
    once normalized; the official black canvas (-mean / std) is what changed every result."""
    config = load_config(CONFIG, tiny_overrides)
    assert config.data.pad_value == "mean"
    images, image_info = _our_inputs(tiny_model, config, ref)
    expected, outside = nhwc(ref["ref/inputs"]), _outside(ref)
    assert outside.mean() > 0.2
    np.testing.assert_allclose(images[~outside], expected[~outside], rtol=0, atol=1e-5)
    np.testing.assert_allclose(images[outside], expected[outside], rtol=0, atol=1e-5)
    assert np.all(images[outside] == 0.0)
    borders = np.stack([ref[f"ref/pipeline/{i}/border"][[0, 2]] for i in range(2)])
    np.testing.assert_array_equal(image_info[:, info_lib.OFFSET_Y : info_lib.OFFSET_X + 1], borders)

    black, _ = _our_inputs(tiny_model, load_config(CONFIG, [*tiny_overrides, "data.pad_value=black"]), ref)
    np.testing.assert_array_equal(black[~outside], images[~outside])
    np.testing.assert_allclose(
        black[outside], np.broadcast_to(-np.divide(config.data.mean, config.data.std), (outside.sum(), 3)), rtol=1e-6
    )


def test_our_preprocessing_gives_mmdetections_head_outputs(tiny_model, tiny_overrides, ref):
    images, _ = _our_inputs(tiny_model, load_config(CONFIG, tiny_overrides), ref)
    for s, outputs in enumerate(tiny_model(images, return_all_stacks=True)):
        for ours, theirs in OUTPUT_NAMES.items():
            expected = nhwc(ref[f"ref/stack{s}/{theirs}"])
            np.testing.assert_allclose(outputs[ours], expected, rtol=1e-3, atol=1e-3, err_msg=f"stack {s} {ours}")


def _kept(ours: dict[str, np.ndarray], boxes: np.ndarray, labels: np.ndarray, tolerance: float) -> int:
    """How many of mmdetection's results (boxes clipped to the image, as ours are) are among ours:
    the same class and box within `tolerance` px."""
    return sum(
        bool(np.any((ours["classes"] == label) & (np.abs(ours["boxes"] - box).max(axis=1) <= tolerance)))
        for box, label in zip(boxes, labels)
    )


def test_most_single_view_results_are_mmdetections_from_the_raw_images(tiny_model, tiny_overrides, ref):
    """docs/converting_weights.md: from the raw images, 89 and 85 of mmdetection's 100 results per
    image are ours within 0.003 px (the rest differ in clipping, pairing and soft-NMS area); with
    the black canvas, none."""
    kept = {"mean": [], "black": []}
    for pad_value in kept:
        config = load_config(CONFIG, [*tiny_overrides, "detection.flip=false", f"data.pad_value={pad_value}"])
        module = detection_module(tiny_model, config)
        for i in range(2):
            image = ref[f"ref/raw_image/{i}"][..., ::-1].copy()
            height, width = image.shape[:2]
            found = {k: v.numpy()[0] for k, v in module.detect_pixels(tf.constant(image[None])).items()}
            count = int(found["num_detections"])
            ours = {
                "boxes": found["detection_boxes"][:count][:, [1, 0, 3, 2]] * [width, height, width, height],
                "classes": found["detection_classes"][:count].astype(int) - 1,
            }
            theirs = np.clip(ref[f"ref/result/{i}/bboxes"], 0, [width, height, width, height])
            kept[pad_value].append(_kept(ours, theirs, ref[f"ref/result/{i}/labels"], tolerance=3e-3))
    assert min(kept["mean"]) >= 80 and kept["black"] == [0, 0], kept
