"""Input pipelines: batch structure, targets from real boxes, bad files, sharding, tf.distribute,
and the task layer's config -> spec translation."""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.config import load_config
from cornernet_tf.data import pipeline, shapes, tfrecord
from cornernet_tf.data.coco import load_coco
from cornernet_tf.objective.targets import TargetSpec
from cornernet_tf.tasks import data as data_tasks

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SHAPES = {"shapes_train": 8, "shapes_val": 4, "shapes_image_size": 64}
PLAIN = ["data.random_crop=false", "data.flip=false", "data.color_jitter=false", "data.lighting=false"]


def _config(*overrides: str):
    return load_config("shapes_tiny", list(overrides))


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("shapes") / "ds"
    shapes.ensure_dataset(root, SHAPES["shapes_train"], SHAPES["shapes_val"], SHAPES["shapes_image_size"])
    return str(root)


def _shapes_config(shapes_dir: str, *overrides: str):
    return _config(f"data.shapes_dir={shapes_dir}", *(f"data.{k}={v}" for k, v in SHAPES.items()), *overrides)


def _coco_overrides(annotations, images) -> list[str]:
    return [
        "data.dataset=coco",
        f"data.train_annotations={annotations}",
        f"data.train_images={images}",
        f"data.val_annotations={annotations}",
        f"data.val_images={images}",
    ]


def _coco_config(annotations, images, *overrides: str):
    return _config(*_coco_overrides(annotations, images), *overrides)


def test_train_batches_have_the_documented_shapes_and_dtypes(shapes_dir):
    config = _shapes_config(shapes_dir)
    images, targets = next(iter(data_tasks.train_dataset(config, batch_size=3)))
    assert images.shape == (3, 128, 128, 3) and images.dtype == tf.float32
    expected = {
        "tl_heatmap": ((3, 32, 32, 3), tf.float32),
        "br_heatmap": ((3, 32, 32, 3), tf.float32),
        "tl_indices": ((3, 16), tf.int32),
        "br_indices": ((3, 16), tf.int32),
        "tl_offset": ((3, 16, 2), tf.float32),
        "br_offset": ((3, 16, 2), tf.float32),
        "mask": ((3, 16), tf.float32),
        "skipped": ((3,), tf.int32),
    }
    assert {k: (tuple(v.shape), v.dtype) for k, v in targets.items()} == expected
    assert -3.0 < float(tf.reduce_mean(images)) < 3.0  # normalized, not [0, 255]


def test_batches_finished_on_device_equal_the_host_batches(shapes_dir):
    """finish_on_device ships uint8 images and boxes; finish_batch makes the same batch."""
    config = _shapes_config(shapes_dir, "data.deterministic=true", "model.type=centernet")
    raw = next(iter(data_tasks.train_dataset(config, batch_size=3, finish_on_device=True)))
    assert raw["image"].dtype == tf.uint8 and tuple(raw["image"].shape) == (3, 64, 64, 3)  # decoded, no border
    assert raw["boxes"].shape == (3, 16, 4) and raw["classes"].shape == (3, 16) and raw["num_boxes"].shape == (3,)
    counts = raw["num_boxes"].numpy()
    assert np.all(counts > 0) and not raw["boxes"].numpy()[0, counts[0] :].any()
    images, targets = data_tasks.batch_finisher(config)(raw)
    host_images, host_targets = next(iter(data_tasks.train_dataset(config, batch_size=3)))
    np.testing.assert_array_equal(images.numpy(), host_images.numpy())
    assert targets.keys() == host_targets.keys()
    for key in targets:
        np.testing.assert_array_equal(targets[key].numpy(), host_targets[key].numpy(), err_msg=key)
    assert targets["mask"].numpy().sum(axis=1).tolist() == counts.tolist()


def test_centernet_adds_center_targets(shapes_dir):
    config = _shapes_config(shapes_dir, "model.type=centernet")
    _, targets = next(iter(data_tasks.train_dataset(config, batch_size=2)))
    assert targets["ct_heatmap"].shape == (2, 32, 32, 3) and targets["ct_indices"].shape == (2, 16)


def test_targets_peak_at_the_box_corners(coco_writer, encode_image):
    image = encode_image(np.full((64, 64, 3), 90, np.uint8))
    boxes = [[8, 12, 32, 32], [30, 5, 30, 20]]  # xywh; x 2 into the 128 input, / 4 into the 32 map
    path, images_dir = coco_writer(
        [("a.png", image, 64, 64)], [(1, 1, boxes[0], 0), (1, 3, boxes[1], 0)], [(1, "a"), (2, "b"), (3, "c")]
    )
    config = _coco_config(path, images_dir, *PLAIN)
    _, targets = next(iter(data_tasks.train_dataset(config, batch_size=1)))
    targets = {k: v.numpy()[0] for k, v in targets.items()}
    # input px: [16, 24, 80, 88] and [60, 10, 120, 50]; map: (4, 6)-(20, 22) and (15, 2.5)-(30, 12.5)
    for name, cells, offsets in (
        ("tl", [(6, 4, 0), (2, 15, 2)], [[0, 0], [0, 0.5]]),
        ("br", [(22, 20, 0), (12, 30, 2)], [[0, 0], [0, 0.5]]),
    ):
        heatmap = targets[f"{name}_heatmap"]
        assert [heatmap[c] for c in cells] == [1.0, 1.0]
        assert (heatmap == 1.0).sum() == 2
        assert targets[f"{name}_indices"][:2].tolist() == [y * 32 + x for y, x, _ in cells]
        np.testing.assert_allclose(targets[f"{name}_offset"][:2], offsets)
    assert targets["mask"].tolist() == [1.0, 1.0] + [0.0] * 14


def test_eval_dataset_resize_and_pad(shapes_dir):
    config = _shapes_config(shapes_dir)
    batches = list(data_tasks.eval_dataset(config, batch_size=3))
    assert [b[0].shape[0] for b in batches] == [3, 1]
    ids = np.concatenate([b[1]["image_id"].numpy() for b in batches])
    assert ids.tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(batches[0][1]["image_info"][0], [2, 2, 0, 0, 64, 64])
    images, meta = next(iter(data_tasks.eval_dataset(config, mode="pad", batch_size=2)))
    assert images.shape == (2, 95, 95, 3)  # 64 | 31 for depth 3: (95 + 1) / 4 = 24 = 3 * 2**3
    np.testing.assert_allclose(meta["image_info"][0], [1, 1, 15, 15, 64, 64])
    corner = images[0, 0, 0].numpy() * config.data.std + config.data.mean
    np.testing.assert_allclose(corner, 0.0, atol=1e-6)  # the border is black before normalization


def test_a_mean_canvas_normalizes_to_zero_in_eval_batches_and_training_crops(coco_writer, encode_image):
    """data.pad_value mean (mmdetection's canvas): the test padding and a batch's padding are 0
    once normalized, the images' pixels those of the black canvas; training crops are the image
    faded into 0 (c * image + (1 - c) * 0, c the image's share of each pixel)."""
    colour = np.array([200, 30, 120], np.uint8)
    sizes = [(30, 40), (70, 50)]
    files = [(f"{i}.png", encode_image(np.broadcast_to(colour, (*hw, 3)).copy()), *hw) for i, hw in enumerate(sizes)]
    path, images_dir = coco_writer(files, [(1, 1, [2, 2, 8, 8], 0), (2, 1, [2, 2, 8, 8], 0)], [(1, "a")])
    black, mean = _coco_config(path, images_dir), _coco_config(path, images_dir, "data.pad_value=mean")
    assert data_tasks.eval_input(black).fill is None and data_tasks.train_input(black).fill is None
    fill = tuple(mean.data.mean)
    assert data_tasks.eval_input(mean).fill == data_tasks.train_input(mean).fill == fill
    (ours, meta), (reference, _) = (
        next(iter(data_tasks.eval_dataset(c, mode="pad", batch_size=2))) for c in (mean, black)
    )
    assert ours.shape == (2, 95, 63, 3)  # heights 30 | 31 = 31 and 70 | 31 = 95; widths 40 | 31 = 50 | 31 = 63
    inside = np.zeros(ours.shape[:3], bool)
    for row, (_, _, top, left, height, width) in enumerate(meta["image_info"].numpy().astype(int)):
        inside[row, top : top + height, left : left + width] = True
    np.testing.assert_array_equal(ours.numpy()[inside], reference.numpy()[inside])
    assert np.all(ours.numpy()[~inside] == 0.0) and np.all(reference.numpy()[~inside] != 0.0)

    crops, _ = next(iter(data_tasks.train_dataset(_coco_config(path, images_dir, "data.pad_value=mean", *PLAIN[2:]))))
    image = (colour / 255.0 - mean.data.mean) / mean.data.std
    share = crops.numpy() / image  # per pixel, the same in all channels
    np.testing.assert_allclose(share, share[..., :1].repeat(3, -1), atol=1e-5)
    assert share.min() == 0.0 and share.max() == pytest.approx(1.0)


def test_decoded_images_are_rgb_whatever_their_channels(coco_writer, encode_image):
    rgba = np.zeros((30, 30, 4), np.uint8)
    rgba[...] = (200, 100, 50, 0)
    rgba[:15, :, 3] = 255
    grey = np.full((30, 20), 77, np.uint8)
    images = [("rgba.png", encode_image(rgba), 30, 30), ("grey.png", encode_image(grey), 30, 20)]
    annotations = [(1, 1, [2, 2, 8, 8], 0), (2, 1, [2, 2, 8, 8], 0), (2, 1, [60, 5, 10, 10], 0)]  # the last is outside
    path, images_dir = coco_writer(images, annotations, [(1, "a")])
    assert load_coco(path, images_dir).counts["outside_boxes"] == 1
    config = _coco_config(path, images_dir)
    pixels = {
        int(m["image_id"][0]): im[0].numpy() * config.data.std + config.data.mean
        for im, m in data_tasks.eval_dataset(config)
    }
    np.testing.assert_allclose(pixels[1][64, 64], np.array([200, 100, 50]) / 255, atol=1e-5)  # alpha dropped
    np.testing.assert_allclose(pixels[2][..., 0], pixels[2][..., 2], atol=1e-5)  # grey -> RGB
    np.testing.assert_allclose(pixels[2][64, 64], 77 / 255, atol=1e-5)


@pytest.fixture
def split_with_bad_files(coco_writer, encode_image):
    """8 images: truncated JPEGs (a readable header, pixel data cut) first and last, an empty file
    and a text file in the middle; ids 1..8."""
    rng = np.random.default_rng(0)
    good = [encode_image(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), ".jpg") for _ in range(4)]
    cut = good[0][: len(good[0]) // 2]
    images = [
        ("cut_first.jpg", cut, 40, 50),
        ("a.jpg", good[0], 40, 50),
        ("empty.jpg", b"", 40, 50),
        ("b.jpg", good[1], 40, 50),
        ("text.jpg", b"no image", 40, 50),
        ("c.jpg", good[2], 40, 50),
        ("d.jpg", good[3], 40, 50),
        ("cut_last.jpg", cut, 40, 50),
    ]
    annotations = [(i, 1, [5, 5, 10, 10], 0) for i in range(1, 9)]
    return coco_writer(images, annotations, [(1, "a")])


def test_eval_dataset_yields_the_decodable_images(split_with_bad_files):
    config = _coco_config(*split_with_bad_files)
    assert _eval_ids(config) == [2, 4, 6, 7]
    assert data_tasks.eval_image_ids(config, "val") == list(range(1, 9))  # what an evaluation scores
    assert _eval_ids(load_config("shapes_tiny", [*_coco_overrides(*split_with_bad_files), "eval.max_images=5"])) == [
        2,
        4,
    ]


def _stream_ids(config, count: int) -> list[int]:
    """Image ids of the first `count` samples of the training stream (before decoding)."""
    source = load_coco(config.data.train_annotations, config.data.train_images)
    stream = pipeline._train_files(config.data.seed, source, 1, 0, first_sample=0)
    return [int(example["image_id"]) for _, example in stream.take(count)]


@pytest.mark.parametrize("finish_on_device", [False, True])
def test_training_batches_count_every_undecodable_sample_exactly(split_with_bad_files, finish_on_device):
    """The summed `skipped` of the first k batches is the number of truncated samples that came
    before the last sample they hold, derived independently from the stream's image order."""
    config = _coco_config(*split_with_bad_files, "data.deterministic=true")
    batches = list(data_tasks.train_dataset(config, batch_size=2, finish_on_device=finish_on_device).take(6))
    counts = [(b[1] if isinstance(b, tuple) else b)[pipeline.SKIPPED].numpy() for b in batches]
    assert all(c.shape == (2,) for c in counts)

    expected = _expected_skip_counts(config, 12)
    assert np.concatenate(counts).tolist() == expected
    assert sum(expected) >= 2  # 12 decoded samples span two epochs of 4 good and 2 truncated images


def _expected_skip_counts(config, samples: int) -> list[int]:
    """For each of the first `samples` decoded samples of split_with_bad_files' training stream,
    how many truncated images (ids 1 and 8) came just before it, from the stream's image order."""
    expected, pending = [], 0
    for image_id in _stream_ids(config, 40):
        if image_id in {1, 8}:
            pending += 1
            continue
        expected.append(pending)
        pending = 0
        if len(expected) == samples:
            break
    return expected


def _eval_ids(config, **kwargs) -> list[int]:
    return [int(i) for _, meta in data_tasks.eval_dataset(config, **kwargs) for i in meta["image_id"]]


def test_input_context_shards_files_and_splits_the_batch(shapes_dir, tmp_path):
    config = _shapes_config(shapes_dir)
    contexts = [tf.distribute.InputContext(2, i, 4) for i in range(2)]
    ids = [_eval_ids(config, input_context=c) for c in contexts]
    assert sorted(ids[0] + ids[1]) == [1, 2, 3, 4] and not set(ids[0]) & set(ids[1])
    images, _ = next(iter(data_tasks.train_dataset(config, batch_size=8, input_context=contexts[1])))
    assert images.shape[0] == 2  # 8 over 4 replicas

    source = load_coco(*shapes.ensure_dataset(shapes_dir, *SHAPES.values())["val"])
    tfrecord.write_tfrecords(source, str(tmp_path), "val", num_shards=2, progress=lambda _: None)
    records = _config(
        "data.dataset=tfrecord",
        f"data.train_tfrecords={tmp_path}/val-*.tfrecord",
        f"data.val_tfrecords={tmp_path}/val-*.tfrecord",
    )
    ids = [_eval_ids(records, input_context=c) for c in contexts]
    assert ids == [[1, 2], [3, 4]]  # one file each
    assert _eval_ids(records, batch_size=3) == [1, 2, 3, 4]
    images, targets = next(iter(data_tasks.train_dataset(records, batch_size=2)))
    assert images.shape == (2, 128, 128, 3) and targets["mask"].shape == (2, 16)
    info = data_tasks.dataset_info(records)
    assert info.class_names == list(shapes.CLASS_NAMES) and info.num_images == 4


def _batches(config, count: int, **kwargs) -> list[np.ndarray]:
    return [images.numpy() for images, _ in data_tasks.train_dataset(config, batch_size=2, **kwargs).take(count)]


def test_start_step_resumes_the_exact_stream(shapes_dir, tmp_path):
    config = _shapes_config(shapes_dir, "data.deterministic=true")
    full = _batches(config, 6)  # 12 samples: one and a half epochs of the 8 images
    resumed = _batches(config, 2, start_step=4)
    np.testing.assert_array_equal(resumed, full[4:6])
    assert not np.array_equal(full[0], full[4])  # epochs are reshuffled, crops re-drawn

    source = load_coco(*shapes.ensure_dataset(shapes_dir, *SHAPES.values())["train"])
    tfrecord.write_tfrecords(source, str(tmp_path), "train", num_shards=3, progress=lambda _: None)
    records = _config(
        "data.dataset=tfrecord",
        f"data.train_tfrecords={tmp_path}/train-*.tfrecord",
        "data.deterministic=true",
        "data.shuffle_buffer=4",
    )
    full = _batches(records, 6)
    np.testing.assert_array_equal(_batches(records, 2, start_step=3), full[3:5])


def test_every_image_once_per_epoch(shapes_dir):
    source = load_coco(*shapes.ensure_dataset(shapes_dir, *SHAPES.values())["train"])
    stream = pipeline._train_files(_shapes_config(shapes_dir).data.seed, source, 1, 0, first_sample=0)
    ids = [int(example["image_id"]) for _, example in stream.take(16)]
    assert sorted(ids[:8]) == sorted(ids[8:]) == list(range(1, 9)) and ids[:8] != ids[8:]


_DISTRIBUTED = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from cornernet_tf.config import load_config
    from cornernet_tf.tasks import data as data_tasks
    config = load_config("shapes_tiny", sys.argv[1:])
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    dist = strategy.distribute_datasets_from_function(
        lambda ctx: data_tasks.train_dataset(config, batch_size=4, input_context=ctx))
    images, targets = next(iter(dist))
    objects = strategy.run(tf.function(lambda im, t: tf.reduce_sum(t["mask"])), args=(images, targets))
    rebatched, _ = next(iter(strategy.experimental_distribute_dataset(data_tasks.train_dataset(config, batch_size=4))))
    print(json.dumps({
        "rebatched": [list(t.shape) for t in strategy.experimental_local_results(rebatched)],
        "replicas": strategy.num_replicas_in_sync,
        "images": [list(t.shape) for t in strategy.experimental_local_results(images)],
        "heatmaps": [list(t.shape) for t in strategy.experimental_local_results(targets["tl_heatmap"])],
        "objects": float(strategy.reduce("SUM", objects, axis=None)),
        "skipped": int(strategy.reduce("SUM", strategy.run(tf.reduce_sum, args=(targets["skipped"],)), axis=None)),
    }))
""")


def test_mirrored_strategy_gets_per_replica_batches(shapes_dir):
    overrides = [
        f"data.shapes_dir={shapes_dir}",
        "data.deterministic=true",
        *(f"data.{k}={v}" for k, v in SHAPES.items()),
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run(
        [sys.executable, "-c", _DISTRIBUTED, *overrides],
        cwd=REPO_ROOT,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["images"] == result["rebatched"] == [[2, 128, 128, 3]] * 2
    assert result["heatmaps"] == [[2, 32, 32, 3]] * 2
    assert result["objects"] >= 4 and result["skipped"] == 0


def test_resuming_past_skipped_samples_continues_the_exact_stream(split_with_bad_files):
    """A run resumed at step s with the samples it skipped before continues where an
    uninterrupted run would be, although its stream dropped truncated images."""
    config = _coco_config(*split_with_bad_files, "data.deterministic=true", *PLAIN)
    full = [
        (images.numpy(), targets[pipeline.SKIPPED].numpy())
        for images, targets in data_tasks.train_dataset(config, batch_size=2).take(6)
    ]
    skipped_before = int(sum(counts.sum() for _, counts in full[:3]))
    assert skipped_before > 0
    resumed = [
        images.numpy()
        for images, _ in data_tasks.train_dataset(
            config, batch_size=2, start_step=3, skipped_samples=skipped_before
        ).take(3)
    ]
    np.testing.assert_array_equal(resumed, [images for images, _ in full[3:]])


# The original's RGB normalization (the data section's defaults).
MEAN, STD = (0.47026115, 0.44719302, 0.40789654), (0.27809835, 0.27408164, 0.28863828)


def _shapes_train_spec(**changes) -> pipeline.TrainInputSpec:
    """The training input of shapes_tiny (deterministic), written out by hand."""
    targets = TargetSpec(num_classes=3, input_size=(128, 128), output_size=(32, 32), max_objects=16, gaussian_iou=0.3)
    spec = pipeline.TrainInputSpec(
        targets=targets, mean=MEAN, std=STD, scale_range=(0.8, 1.2), lighting=False, deterministic=True
    )
    return dataclasses.replace(spec, **changes)


def test_the_task_layer_translates_the_config_into_the_pipeline_specs(shapes_dir):
    config = _shapes_config(shapes_dir, "data.deterministic=true")
    assert data_tasks.train_input(config) == _shapes_train_spec()
    centernet = data_tasks.train_input(_shapes_config(shapes_dir, "data.deterministic=true", "model.type=centernet"))
    assert centernet.targets == dataclasses.replace(
        _shapes_train_spec().targets, with_centers=True, radius_formula="centernet"
    )
    assert data_tasks.eval_input(config) == pipeline.EvalInputSpec("resize", (128, 128), 32, MEAN, STD)
    squeeze = _shapes_config(shapes_dir, "model.type=squeeze")  # stride 8: a 16-cell heatmap, pad to 64 - 1
    assert data_tasks.train_input(squeeze).targets.output_size == (16, 16)
    assert data_tasks.eval_input(squeeze, "pad") == pipeline.EvalInputSpec("pad", (128, 128), 64, MEAN, STD)
    layout = shapes.ensure_dataset(shapes_dir, *SHAPES.values())
    assert [data_tasks.split_files(config, split) for split in ("train", "val")] == [
        pipeline.CocoFiles(str(layout[split][0]), str(layout[split][1])) for split in ("train", "val")
    ]


def test_datasets_from_hand_made_specs_equal_the_config_ones(shapes_dir):
    """The pipeline needs no Config: its specs and plain arguments give the task layer's batches."""
    layout = shapes.ensure_dataset(shapes_dir, *SHAPES.values())
    train_files, val_files = (
        pipeline.CocoFiles(str(json_path), str(images)) for json_path, images in (layout["train"], layout["val"])
    )
    config = _shapes_config(shapes_dir, "data.deterministic=true", "eval.max_images=3")
    for (images, targets), (task_images, task_targets) in zip(
        pipeline.train_dataset(train_files, _shapes_train_spec(), batch_size=2).take(2),
        data_tasks.train_dataset(config, batch_size=2).take(2),
    ):
        np.testing.assert_array_equal(images.numpy(), task_images.numpy())
        assert targets.keys() == task_targets.keys()
        for key in targets:
            np.testing.assert_array_equal(targets[key].numpy(), task_targets[key].numpy(), err_msg=key)

    spec = pipeline.EvalInputSpec("pad", (128, 128), 32, MEAN, STD)
    batches = list(pipeline.eval_dataset(val_files, spec, batch_size=2, max_images=3))
    task_batches = list(data_tasks.eval_dataset(config, batch_size=2, mode="pad"))
    assert [int(i) for _, meta in batches for i in meta["image_id"]] == [1, 2, 3]
    assert pipeline.eval_image_ids(val_files, max_images=3) == data_tasks.eval_image_ids(config) == [1, 2, 3]
    assert len(batches) == len(task_batches) == 2
    for (images, meta), (task_images, task_meta) in zip(batches, task_batches):
        np.testing.assert_array_equal(images.numpy(), task_images.numpy())
        np.testing.assert_array_equal(meta["image_info"].numpy(), task_meta["image_info"].numpy())
    assert pipeline.dataset_info(val_files) == data_tasks.dataset_info(config)


def test_unusable_settings_are_named(shapes_dir):
    coco = _config("data.dataset=coco", "data.train_annotations=a.json", "data.train_images=images")
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        data_tasks.split_files(coco, "test")
    with pytest.raises(ValueError, match="data.val_annotations and data.val_images must be set for dataset=coco"):
        data_tasks.dataset_info(coco, "val")
    records = _config("data.dataset=tfrecord", "data.train_tfrecords=train-*.tfrecord")
    with pytest.raises(ValueError, match="data.val_tfrecords must be set for dataset=tfrecord"):
        data_tasks.eval_dataset(records)
    with pytest.raises(ValueError, match=r"mode must be one of \['resize', 'pad', 'original'\], got 'crop'"):
        pipeline.EvalInputSpec("crop", (128, 128), 32, MEAN, STD)
    layout = shapes.ensure_dataset(shapes_dir, *SHAPES.values())
    val_files = pipeline.CocoFiles(str(layout["val"][0]), str(layout["val"][1]))
    with pytest.raises(ValueError, match="test scale 2.0 needs detection.test_mode=pad"):
        pipeline.eval_dataset(val_files, pipeline.EvalInputSpec("resize", (128, 128), 32, MEAN, STD), scale=2.0)
    two_classes = _shapes_train_spec(targets=dataclasses.replace(_shapes_train_spec().targets, num_classes=2))
    with pytest.raises(ValueError, match="has 3 classes but model.num_classes is 2; set model.num_classes=3"):
        pipeline.train_dataset(val_files, two_classes, batch_size=2)


SACCADE = ["model.type=saccade", "data.input_size=[255, 255]"]


def test_saccade_batches_hold_ignore_maps_and_attention_targets_and_finish_on_device_alike(shapes_dir):
    config = _shapes_config(shapes_dir, "data.deterministic=true", *SACCADE)
    spec = data_tasks.train_input(config)
    assert spec.saccade.att_ratios == (16, 8, 4) and spec.saccade.att_sizes == ((16, 16), (32, 32), (64, 64))
    assert spec.targets.coordinate_dtype == "float64"
    raw = next(iter(data_tasks.train_dataset(config, batch_size=3, finish_on_device=True)))
    assert raw["positive"].dtype == tf.bool and raw["positive"].shape == (3, 16)
    images, targets = data_tasks.batch_finisher(config)(raw)
    assert images.shape == (3, 255, 255, 3)
    shapes_of = {key: tuple(value.shape) for key, value in targets.items()}
    assert shapes_of["tl_valid"] == shapes_of["tl_heatmap"] == (3, 64, 64, 3)
    assert [shapes_of[f"attention_{j}"] for j in range(3)] == [(3, 16, 16, 1), (3, 32, 32, 1), (3, 64, 64, 1)]
    # every box of a sample marks an attention cell; only its positive boxes get object rows
    positives = raw["positive"].numpy() & (np.arange(16) < raw["num_boxes"].numpy()[:, None])
    assert targets["mask"].numpy().sum(axis=1).tolist() == positives.sum(axis=1).tolist()
    assert sum(targets[f"attention_{j}"].numpy().sum() for j in range(3)) >= raw["num_boxes"].numpy().sum()
    host_images, host_targets = next(iter(data_tasks.train_dataset(config, batch_size=3)))
    np.testing.assert_array_equal(images.numpy(), host_images.numpy())
    for key in targets:
        np.testing.assert_array_equal(targets[key].numpy(), host_targets[key].numpy(), err_msg=key)


def test_saccade_stream_counts_skipped_samples_and_resumes_exactly(split_with_bad_files):
    config = _coco_config(*split_with_bad_files, "data.deterministic=true", *SACCADE)
    full = [
        (images.numpy(), targets["attention_2"].numpy(), targets[pipeline.SKIPPED].numpy())
        for images, targets in data_tasks.train_dataset(config, batch_size=2).take(6)
    ]
    assert np.concatenate([counts for *_, counts in full]).tolist() == _expected_skip_counts(config, 12)
    skipped_before = int(sum(counts.sum() for *_, counts in full[:3]))
    assert skipped_before > 0
    resumed = [
        (images.numpy(), targets["attention_2"].numpy())
        for images, targets in data_tasks.train_dataset(
            config, batch_size=2, start_step=3, skipped_samples=skipped_before
        ).take(3)
    ]
    for (images, attention), (want_images, want_attention, _) in zip(resumed, full[3:], strict=True):
        np.testing.assert_array_equal(images, want_images)
        np.testing.assert_array_equal(attention, want_attention)


def test_saccade_needs_255_crops_and_one_attention_range_per_level():
    with pytest.raises(ValueError, match=r"data.input_size must be \[255, 255\], got \[128, 128\]"):
        _config("model.type=saccade")
    with pytest.raises(ValueError, match=r"data.att_ranges needs one \[min, max\] object side per attention map"):
        _config(*SACCADE, "data.att_ranges=[[0, 32]]")
