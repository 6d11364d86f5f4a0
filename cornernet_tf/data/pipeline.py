"""tf.data input pipelines: augmented training batches with targets, and evaluation batches.

Sources (`config.data.dataset`): `shapes` (generated on first use, then read as COCO), `coco`
(an instances json and its image folder) and `tfrecord` (shards written by
`python -m cornernet_tf.data.tfrecord`). All three become the same example structure
{"encoded", "image_id", "boxes", "classes"} before decoding, so everything after is shared.

Everything in the training path is TF ops (no py_function), so the pipeline runs under
tf.distribute on any number of hosts:

- `train_dataset(config, input_context=ctx)` is meant for
  `strategy.distribute_datasets_from_function`: it shards by input pipeline and yields
  per-replica batches. TFRecords are sharded by file when there are at least as many files
  as input pipelines (otherwise by record); file-list sources (shapes, coco) are sharded on
  the list, before any image is read. Without a context the dataset yields global batches
  with tf.data's AUTO auto-shard policy for `strategy.experimental_distribute_dataset`: by
  file for TFRecords, else by element, where every worker decodes and augments everything
  and keeps its share (correct, but use the function form across hosts).
- `train_dataset(config, ..., finish_on_device=True)` stops before the pixel work and the
  targets; the training loop runs `finish_batch` on them on each replica's device, so the
  host only decodes JPEGs and draws the random choices (docs/benchmarks.md, "Input pipeline").
- Images that cannot be read or decoded (truncated, corrupt, missing) are dropped with a
  warning in the log, never ending the epoch; pass a `SkipCounter` to count them.
- Randomness is stateless and keyed by (data.seed, sample index): the image order (a seeded
  permutation per epoch) and every augmentation. The stream is reproducible regardless of
  parallelism with `data.deterministic`, and `start_step` resumes it without replaying.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from cornernet_tf.config import Config
from cornernet_tf.data import augment, coco, tfrecord
from cornernet_tf.targets import build_batch_targets

log = logging.getLogger(__name__)
_ENDLESS = 2**62  # "forever" for Dataset.range


class SkipCounter:
    """Counts examples dropped because their image could not be read or decoded.

    Backed by CPU variables updated inside the pipeline (create it outside any
    `strategy.scope()`): the decoded count and the span of stream positions they came from, so
    skipped = span - decoded. Exact once the pipeline has drained (an evaluation pass) and at
    any time for a deterministic pipeline; otherwise reordering can overcount it briefly by at
    most the examples in flight.
    """

    def __init__(self) -> None:
        with tf.init_scope(), tf.device("/cpu:0"):
            self._kept = tf.Variable(0, dtype=tf.int64, trainable=False, name="decoded_examples")
            self._first = tf.Variable(_ENDLESS, dtype=tf.int64, trainable=False, name="first_position")
            self._end = tf.Variable(0, dtype=tf.int64, trainable=False, name="end_position")

    def record(self, index: tf.Tensor) -> tf.Operation:
        """Note that the example at stream position `index` decoded (call in a sequential map)."""
        index = tf.cast(index, tf.int64)
        return tf.group(
            self._kept.assign_add(1),
            self._first.assign(tf.minimum(self._first, index)),
            self._end.assign(tf.maximum(self._end, index + 1)),
        )

    @property
    def kept(self) -> int:
        return int(self._kept.numpy())

    @property
    def skipped(self) -> int:
        span = int(self._end.numpy()) - int(self._first.numpy())
        return max(span - self.kept, 0)

    def summary(self) -> str:
        return f"{self.kept} images decoded, {self.skipped} skipped (unreadable or undecodable)"


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What evaluation needs about a split: class names, the COCO category id of each class
    index, the ground-truth json (for pycocotools) and the number of images."""

    class_names: list[str]
    category_ids: list[int]
    annotations: str
    num_images: int


@functools.lru_cache(maxsize=8)
def _load_coco_cached(annotations: str, images: str) -> coco.CocoSource:
    return coco.load_coco(annotations, images)


def _coco_source(config: Config, split: str) -> coco.CocoSource:
    data = config.data
    if data.dataset == "shapes":
        from cornernet_tf.data import shapes

        layout = shapes.ensure_dataset(data.shapes_dir, data.shapes_train, data.shapes_val, data.shapes_image_size)
        annotations, images = layout[split]
        return _load_coco_cached(str(annotations), str(images))
    annotations, images = getattr(data, f"{split}_annotations"), getattr(data, f"{split}_images")
    if not (annotations and images):
        raise ValueError(f"data.{split}_annotations and data.{split}_images must be set for dataset=coco")
    return _load_coco_cached(os.path.expanduser(annotations), os.path.expanduser(images))


def _tfrecord_pattern(config: Config, split: str) -> str:
    pattern = getattr(config.data, f"{split}_tfrecords")
    if not pattern:
        raise ValueError(f"data.{split}_tfrecords must be set for dataset=tfrecord")
    return os.path.expanduser(pattern)


def _check_split(split: str) -> None:
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")


def dataset_info(config: Config, split: str = "val") -> DatasetInfo:
    """Class names, category ids, ground-truth json and size of a split of any source."""
    _check_split(split)
    if config.data.dataset == "tfrecord":
        meta = tfrecord.read_sidecar(_tfrecord_pattern(config, split))
        return DatasetInfo(meta["class_names"], meta["category_ids"], meta["annotations"], meta["num_examples"])
    source = _coco_source(config, split)
    return DatasetInfo(source.class_names, source.category_ids, source.annotations, len(source))


def _check_classes(config: Config, split: str) -> None:
    found = len(dataset_info(config, split).class_names)
    if found > config.model.num_classes:
        raise ValueError(
            f"the {split} data has {found} classes but model.num_classes is {config.model.num_classes}; "
            f"set model.num_classes={found}"
        )


def _read_file(index: tf.Tensor, example: dict[str, tf.Tensor]) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    example = dict(example)
    example["encoded"] = tf.io.read_file(example.pop("path"))
    return index, example


def _source_tensors(source: coco.CocoSource, rows: np.ndarray) -> dict[str, tf.Tensor]:
    """Paths, ids, flat boxes/classes and row splits of `rows` of a source, as constants."""
    boxes = [source.boxes[r] for r in rows]
    return {
        "path": tf.constant([source.image_paths[r] for r in rows], tf.string),
        "image_id": tf.constant(source.image_ids[rows], tf.int64),
        "boxes": tf.constant(np.concatenate(boxes).reshape(-1, 4), tf.float32),
        "classes": tf.constant(np.concatenate([source.classes[r] for r in rows]), tf.int32),
        "splits": tf.constant(np.cumsum([0] + [len(b) for b in boxes]), tf.int64),
    }


def _train_files(
    config: Config, source: coco.CocoSource, num_pipelines: int, pipeline_id: int, first_sample: int
) -> tf.data.Dataset:
    """(index, example) for indices first_sample, first_sample + 1, ... of this pipeline.

    Sample i is image `permutation_e(i mod n)` of this pipeline's n images (every
    `num_pipelines`-th), with a fresh seeded permutation per epoch e = i // n: a pure function
    of i, so a resumed run continues the exact stream without replaying it.
    """
    rows = np.arange(pipeline_id, len(source), num_pipelines)
    if not len(rows):
        raise ValueError(f"{len(source)} images cannot feed {num_pipelines} input pipelines")
    table = _source_tensors(source, rows)
    count = tf.constant(len(rows), tf.int64)

    def pick(index: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        seed = tf.stack([tf.constant(config.data.seed, tf.int64), index // count])
        row = tf.random.experimental.index_shuffle(index % count, seed, count - 1)
        start, end = table["splits"][row], table["splits"][row + 1]
        return index, {
            "path": table["path"][row],
            "image_id": table["image_id"][row],
            "boxes": table["boxes"][start:end],
            "classes": table["classes"][start:end],
        }

    return tf.data.Dataset.range(first_sample, _ENDLESS).map(pick).map(_read_file)


def _permuted(elements: tf.Tensor, seed: tf.Tensor) -> tf.data.Dataset:
    """The rows of `elements` [n, ...] in a stateless random order given by `seed` [2].

    Shuffling whole blocks this way, rather than with `Dataset.shuffle`, keeps the order a pure
    function of the seed (tensor seeds in `Dataset.shuffle` are refused once a global seed is set).
    """
    count = tf.shape(elements, out_type=tf.int64)[0]
    order = tf.random.experimental.index_shuffle(tf.range(count), seed, count - 1)
    return tf.data.Dataset.from_tensor_slices(tf.gather(elements, order))


def _train_records(
    config: Config, pattern: str, num_pipelines: int, pipeline_id: int, first_sample: int
) -> tf.data.Dataset:
    """(index, encoded example) of this pipeline's TFRecord stream, from `first_sample` on.

    Epoch e reads this pipeline's files in a seeded order (interleaved 8 at a time) and permutes
    blocks of `data.shuffle_buffer` records with seeds made of e and the block number, so the stream is a function of the sample index; resuming
    skips (reads without decoding) at most one epoch of records.
    """
    data = config.data
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no TFRecord files match data.train_tfrecords={pattern!r}")
    sizes = tfrecord.read_sidecar(pattern)["shard_sizes"]
    unknown = [f for f in files if os.path.basename(f) not in sizes]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not listed in its sidecar json; rewrite the TFRecords")
    total = sum(sizes[os.path.basename(f)] for f in files)
    by_file = len(files) >= num_pipelines
    if by_file:
        files = files[pipeline_id::num_pipelines]
        count = sum(sizes[os.path.basename(f)] for f in files)
    else:
        log.warning("%d TFRecord files for %d input pipelines: sharding by record (every pipeline "
                    "reads every file); write at least %d shards", len(files), num_pipelines, num_pipelines)
        count = len(range(pipeline_id, total, num_pipelines))
    if not count:
        raise ValueError(f"{pattern!r} holds no records for input pipeline {pipeline_id}")
    names = tf.constant(files)

    def epoch(number: tf.Tensor) -> tf.data.Dataset:
        seed = tf.stack([tf.constant(data.seed, tf.int64), number])
        order = tf.random.experimental.index_shuffle(tf.range(len(files), dtype=tf.int64), seed, len(files) - 1)
        records = tf.data.Dataset.from_tensor_slices(tf.gather(names, order)).interleave(
            tf.data.TFRecordDataset, cycle_length=min(len(files), 8), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        if not by_file:
            records = records.shard(num_pipelines, pipeline_id)
        return records.batch(data.shuffle_buffer).enumerate().flat_map(
            lambda block, serialized: _permuted(serialized, tf.stack([data.seed * 1_000_003 + number, block]))
        )

    first_epoch = first_sample // count
    ds = tf.data.Dataset.range(first_epoch, _ENDLESS).flat_map(epoch).skip(first_sample - first_epoch * count)
    ds = ds.map(tfrecord.parse_example, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.enumerate(start=first_sample)


def _eval_examples(config: Config, split: str, num_pipelines: int, pipeline_id: int) -> tf.data.Dataset:
    """(index, example) of this pipeline's share of a split, once, in id order."""
    if config.data.dataset == "tfrecord":
        files = sorted(tf.io.gfile.glob(_tfrecord_pattern(config, split)))
        if not files:
            raise FileNotFoundError(f"no TFRecord files match data.{split}_tfrecords")
        by_file = len(files) >= num_pipelines
        ds = tf.data.TFRecordDataset(files[pipeline_id::num_pipelines] if by_file else files)
        if not by_file:
            ds = ds.shard(num_pipelines, pipeline_id)
        ds = ds.map(tfrecord.parse_example, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        source = _coco_source(config, split)
        table = _source_tensors(source, np.arange(pipeline_id, len(source), num_pipelines))
        splits = table.pop("splits")
        lengths = splits[1:] - splits[:-1]
        table["boxes"] = tf.RaggedTensor.from_row_lengths(table["boxes"], lengths)
        table["classes"] = tf.RaggedTensor.from_row_lengths(table["classes"], lengths)
        ds = tf.data.Dataset.from_tensor_slices(table)
    if config.eval.max_images > 0:
        ds = ds.take(config.eval.max_images)
    ds = ds.enumerate()
    return ds if config.data.dataset == "tfrecord" else ds.map(_read_file)


def _decoded(
    ds: tf.data.Dataset, parallel: int, deterministic: bool, skip_counter: Optional[SkipCounter]
) -> tf.data.Dataset:
    """(index, example) -> example with "image" RGB uint8 [H, W, 3] and "index"; examples that
    fail to read or decode are dropped (and counted)."""

    def decode(index: tf.Tensor, example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        example = dict(example)
        example["image"] = tf.io.decode_image(example.pop("encoded"), channels=3, expand_animations=False)
        example["index"] = index
        return example

    ds = ds.map(decode, num_parallel_calls=parallel, deterministic=deterministic)
    ds = ds.ignore_errors(log_warning=True)
    if skip_counter is not None:

        def count(example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            with tf.control_dependencies([skip_counter.record(example["index"])]):
                return {k: tf.identity(v) for k, v in example.items()}

        ds = ds.map(count)
    return ds


def _pipeline_position(input_context: Optional[tf.distribute.InputContext]) -> tuple[int, int]:
    if input_context is None:
        return 1, 0
    return input_context.num_input_pipelines, input_context.input_pipeline_id


def _options(deterministic: bool, input_context: Optional[tf.distribute.InputContext]) -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = deterministic
    policy = tf.data.experimental.AutoShardPolicy
    # With a context the shard is taken here; otherwise let tf.distribute shard TFRecords by
    # file, and anything else (or too few files) by element.
    options.experimental_distribute.auto_shard_policy = policy.OFF if input_context else policy.AUTO
    return options


def _target_options(config: Config) -> dict:
    """`build_batch_targets` arguments from the config (CornerNet or CenterNet flavour)."""
    data, centernet = config.data, config.model.type == "centernet"
    return dict(
        num_classes=config.model.num_classes, input_size=tuple(data.input_size), output_size=tuple(data.output_size),
        max_objects=data.max_objects, gaussian_iou=data.gaussian_iou, with_centers=centernet,
        radius_formula="centernet" if centernet else "cornernet",
    )


def finish_batch(config: Config, batch: dict[str, tf.Tensor]) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """A `train_dataset(..., finish_on_device=True)` batch -> (images, targets).

    The batched pixel work (`augment.render_views`) and the targets (`build_batch_targets`):
    what the training loop runs on each replica's device.
    """
    data = config.data
    images = augment.render_views(batch, tuple(data.input_size), tuple(data.mean), tuple(data.std))
    targets = build_batch_targets(batch["boxes"], batch["classes"], batch["num_boxes"], **_target_options(config))
    return images, targets


def train_dataset(
    config: Config,
    batch_size: Optional[int] = None,
    input_context: Optional[tf.distribute.InputContext] = None,
    skip_counter: Optional[SkipCounter] = None,
    start_step: int = 0,
    finish_on_device: bool = False,
) -> tf.data.Dataset:
    """Endless augmented training batches: (images, targets).

    images [B, H, W, 3] float32, normalized; targets: the `build_targets` dict, each entry with
    a leading B (heatmaps [B, h, w, C], indices [B, M] int32, offsets [B, M, 2], mask [B, M]),
    plus ct_* entries for model.type centernet. `batch_size` is the global batch (default
    train.batch_size); with `input_context`, B is its per-replica share and this pipeline
    reads only its shard. Incomplete batches are dropped, so shapes are static.

    With `finish_on_device`, batches stop before the pixel work and the targets, and
    `finish_batch(config, batch)` turns them into (images, targets) where it runs (the
    training loop: on the accelerator). Such a batch holds "image" [B, H', W', 3] uint8 (the
    decoded images, zero-padded to the batch's largest), "sampling_box" [B, 4] and "color"
    [B, 6] (`augment.sample_view`), "boxes" [B, M, 4] input px, "classes" [B, M] and
    "num_boxes" [B]: about 1 MB per COCO image instead of 3 MB of float pixels and 10 MB of
    80-class heatmaps, and the host only decodes, draws and copies.

    The stream is a function of the sample index (image choice, per-epoch order and
    augmentation are all seeded by it), so `start_step` = global steps already taken resumes
    it where an uninterrupted run would be, without replaying it. Batches are then identical
    when data.deterministic is true and no image was skipped as undecodable.
    """
    data = config.data
    _check_classes(config, "train")
    global_batch = batch_size or config.train.batch_size
    per_replica = input_context.get_per_replica_batch_size(global_batch) if input_context else global_batch
    num_pipelines, pipeline_id = _pipeline_position(input_context)
    replicas = input_context.num_replicas_in_sync if input_context else 1
    first_sample = start_step * per_replica * (replicas // num_pipelines)
    parallel = data.num_parallel_calls if data.num_parallel_calls > 0 else tf.data.AUTOTUNE
    max_objects = data.max_objects

    def make_view(example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        stream_position = example["index"] * num_pipelines + pipeline_id
        seed = tf.stack([tf.constant(data.seed, tf.int64), stream_position])
        view, boxes, classes = augment.sample_view(
            example["image"], example["boxes"], example["classes"], seed,
            input_size=tuple(data.input_size), scale_range=tuple(data.random_scale), random_crop=data.random_crop,
            flip=data.flip, jitter=data.color_jitter, light=data.lighting,
        )
        count = tf.minimum(tf.shape(boxes)[0], max_objects)  # targets keep the first max_objects
        view["boxes"] = tf.pad(boxes[:count], [[0, max_objects - count], [0, 0]])
        view["classes"] = tf.pad(tf.cast(classes[:count], tf.int32), [[0, max_objects - count]])
        view["num_boxes"] = count
        return view

    if data.dataset == "tfrecord":
        ds = _train_records(config, _tfrecord_pattern(config, "train"), num_pipelines, pipeline_id, first_sample)
    else:
        ds = _train_files(config, _coco_source(config, "train"), num_pipelines, pipeline_id, first_sample)
    ds = _decoded(ds, parallel, data.deterministic, skip_counter)
    ds = ds.map(make_view, num_parallel_calls=parallel, deterministic=data.deterministic)
    padded_shapes = {"image": [None, None, 3], "sampling_box": [4], "color": [6],
                     "boxes": [max_objects, 4], "classes": [max_objects], "num_boxes": []}
    ds = ds.padded_batch(per_replica, padded_shapes=padded_shapes, drop_remainder=True)
    if not finish_on_device:
        ds = ds.map(functools.partial(finish_batch, config), num_parallel_calls=parallel,
                    deterministic=data.deterministic)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_options(data.deterministic, input_context))


def eval_dataset(
    config: Config,
    split: str = "val",
    batch_size: int = 1,
    scale: float = 1.0,
    mode: Optional[str] = None,
    input_context: Optional[tf.distribute.InputContext] = None,
    skip_counter: Optional[SkipCounter] = None,
) -> tf.data.Dataset:
    """One pass over a split: (images, {"image_info", "image_id"}), in id order.

    images [B, H, W, 3] float32 normalized; image_info [B, 6] (see `image_info.py`); image_id
    [B] int64. `mode` (default eval.test_mode): "resize" to data.input_size, or "pad" (the
    original test transform at test `scale`, side | (4 * 2**model.depth - 1)); padded batches
    of different sizes are zero-padded (before normalization) at the bottom/right, which leaves
    image_info valid. eval.max_images > 0 keeps the first images only.
    """
    _check_split(split)
    data = config.data
    mode = mode or config.eval.test_mode
    if mode == "resize" and scale != 1.0:
        raise ValueError(f"test scale {scale} needs eval.test_mode=pad; 'resize' always resizes to data.input_size")
    if mode not in ("resize", "pad"):
        raise ValueError(f"mode must be 'resize' or 'pad', got {mode!r}")
    num_pipelines, pipeline_id = _pipeline_position(input_context)
    parallel = data.num_parallel_calls if data.num_parallel_calls > 0 else tf.data.AUTOTUNE
    size_divisor = 4 * 2**config.model.depth

    def transform(example: dict[str, tf.Tensor]) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        if mode == "resize":
            image, info = augment.eval_resize(example["image"], tuple(data.input_size))
        else:
            image, info = augment.eval_pad(example["image"], size_divisor, scale)
        return image, {"image_info": info, "image_id": example["image_id"]}

    ds = _decoded(_eval_examples(config, split, num_pipelines, pipeline_id), parallel, True, skip_counter)
    ds = ds.map(transform, num_parallel_calls=parallel)
    if mode == "resize":
        ds = ds.batch(batch_size)
    else:
        ds = ds.padded_batch(batch_size, padded_shapes=([None, None, 3], {"image_info": [6], "image_id": []}))
    ds = ds.map(lambda images, meta: (augment.normalize(images, data.mean, data.std), meta))
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_options(True, input_context))
