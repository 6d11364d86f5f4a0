"""tf.data input pipelines: augmented training batches with targets, and evaluation batches.

Nothing here reads a `Config`: the functions take a split's files (`SplitFiles`), a
`TrainInputSpec` (how training samples and their targets are made) or an `EvalInputSpec` (the
test transform), plus plain arguments; `cornernet_tf.tasks.data` builds these from a config.

Split files: `CocoFiles` (an instances json and its image folder; the generated shapes dataset
is one) and `TFRecordFiles` (shards written by `python -m cornernet_tf.data.tfrecord`). Both
become the same example structure {"encoded", "image_id", "boxes", "classes"} before decoding,
so everything after is shared.

Everything in the training path is TF ops (no py_function), so the pipeline runs under
tf.distribute on any number of hosts:

- `train_dataset(files, spec, batch_size, input_context=ctx)` is meant for
  `strategy.distribute_datasets_from_function`: it shards by input pipeline and yields
  per-replica batches. TFRecords are sharded by file when there are at least as many files
  as input pipelines (otherwise by record); file-list sources (shapes, coco) are sharded on
  the list, before any image is read. Without a context the dataset yields global batches
  with tf.data's AUTO auto-shard policy for `strategy.experimental_distribute_dataset`: by
  file for TFRecords, else by element, where every worker decodes and augments everything
  and keeps its share (correct, but use the function form across hosts).
- `train_dataset(..., finish_on_device=True)` stops before the pixel work and the targets;
  the training loop runs `finish_batch(spec, batch)` on them on each replica's device, so the
  host only decodes JPEGs and draws the random choices (docs/benchmarks.md, "Input pipeline").
- Every sample is accounted for. The reader (`coco.load_coco`, or the TFRecord writer) has
  already left out and named the images whose file is missing, empty, not an image or of
  another size than its json entry. An image that still fails to read or decode (a JPEG
  truncated inside its pixel data) never ends the epoch: it is dropped, and each training
  example carries `skipped`, how many dropped samples came right before it in the stream (the
  gap in the sample indices, read in order after a parallel but ordered decode), so the
  training loop counts them exactly whatever the prefetching.
- A JPEG's EXIF orientation is applied after decoding (`image_header.orient`) where the
  reader found that the json describes the turned image, as the original's `cv2.imread` does.
- Randomness is stateless and keyed by (spec.seed, sample index): the image order (a seeded
  permutation per epoch) and every augmentation. The stream is reproducible regardless of
  parallelism with `spec.deterministic`, and `start_step` resumes it without replaying.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from typing import Literal

import keras
import numpy as np
import tensorflow as tf
from pycocotools.coco import COCO

from cornernet_tf.data import augment, coco, image_header, tfrecord, voc, yolo
from cornernet_tf.data.saccade_sampler import SaccadeSampling, saccade_targets, saccade_view
from cornernet_tf.objective.targets import SKIPPED, TargetSpec, build_batch_targets

log = logging.getLogger(__name__)
_ENDLESS = 2**62  # "forever" for Dataset.range


@dataclasses.dataclass(frozen=True)
class CocoFiles:
    """A split as a COCO instances json and its image folder (paths used as given)."""

    annotations: str
    images: str


@dataclasses.dataclass(frozen=True)
class VocFiles:
    """A split as an image set of a Pascal VOC folder (`data/voc.py`): the folder holding
    `Annotations/`, `JPEGImages/` and `ImageSets/Main/`, the image set's name, the class names
    (their order is the class index), and whether `difficult` objects are trained on."""

    root: str
    image_set: str
    class_names: tuple[str, ...]
    train_difficult: bool = False


@dataclasses.dataclass(frozen=True)
class YoloFiles:
    """A split of an Ultralytics YOLO dataset (`data/yolo.py`): its data.yaml and the split's key."""

    yaml: str
    split: str


@dataclasses.dataclass(frozen=True)
class TfdsFiles:
    """A split of a prepared TensorFlow Datasets builder (`data/tfds_source.py`): its name, split and
    data_dir (None: TFDS' default); its images are cached as files on first use."""

    name: str
    split: str
    data_dir: str | None = None


@dataclasses.dataclass(frozen=True)
class TFRecordFiles:
    """A split as TFRecord shards: their file pattern (e.g. `out/train-*.tfrecord`), with the
    sidecar json the writer put beside them."""

    pattern: str


# Where a split is, for each kind of source: the annotation sources (COCO json, VOC, YOLO) are read
# into a `coco.CocoSource` (`annotated_source`), TFRecords are read as records.
SplitFiles = CocoFiles | VocFiles | YoloFiles | TfdsFiles | TFRecordFiles


@dataclasses.dataclass(frozen=True)
class TrainInputSpec(augment.AugmentationSettings):
    """How training samples are made from a split's images.

    targets: what targets are drawn for (classes, input and heatmap sizes, CornerNet or CenterNet
    flavour); its input_size is also the samples' size and its max_objects the boxes a sample
    keeps. mean, std: RGB normalization of pixels in [0, 1]. The augmentation's draws (scale_range,
    random_crop, flip, color_jitter, lighting, fill; keyword-only) are `augment.AugmentationSettings`'s
    (`augment.sample_view`). seed: with the sample
    index, keys the image order and every random draw. shuffle_buffer: TFRecords are permuted in
    blocks of this many records. num_parallel_calls: of the decode and map stages (<= 0:
    tf.data.AUTOTUNE). deterministic: the same stream whatever the parallelism. saccade: when
    set, samples are CornerNet-Saccade's (`saccade_sampler.saccade_view`: a crop around a
    reference object at its official scale, flip, jitter and lighting as above; scale_range and
    random_crop unused), with its ignore maps and attention targets.
    """

    targets: TargetSpec
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    seed: int = 0
    shuffle_buffer: int = 1000
    num_parallel_calls: int = -1
    deterministic: bool = True
    saccade: SaccadeSampling | None = None


@dataclasses.dataclass(frozen=True)
class EvalInputSpec:
    """The test transform of evaluation images.

    mode: the transform (`augment.test_transform`): "resize" (the whole image to input_size),
    "pad" (the original's: the image at the test scale, centred in a zero canvas of side
    s | (size_divisor - 1), size_divisor being the network's stride * 2**depth) or "original"
    (the image as it is). mean, std: RGB normalization of pixels in [0, 1]; normalize: whether to
    apply it (CornerNet-Saccade's test normalizes each crop it makes and takes images in [0, 1]).
    num_parallel_calls: of the decode and transform stages (<= 0: tf.data.AUTOTUNE).
    fill: the "pad" canvas colour and the batches' padding, RGB in [0, 1]; None: black (zeros).
    """

    mode: Literal["resize", "pad", "original"]
    input_size: tuple[int, int]
    size_divisor: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_parallel_calls: int = -1
    fill: augment.Fill = None
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.mode not in augment.TEST_TRANSFORMS:
            raise ValueError(f"mode must be one of {list(augment.TEST_TRANSFORMS)}, got {self.mode!r}")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What training and evaluation need about a split: class names, the COCO category id of
    each class index, the ground truth pycocotools scores against (a json's path, or the
    annotation set of a VOC or YOLO split converted in memory), the ids of every image of the
    split in id order (usable or not: evaluation scores them all), the images the pipeline
    cannot use (`"file: reason"`, left out by the reader or the TFRecord writer) and a
    one-line summary."""

    class_names: list[str]
    category_ids: list[int]
    annotations: str | COCO
    image_ids: list[int]
    unusable: list[str]
    summary: str

    @property
    def num_images(self) -> int:
        return len(self.image_ids)


@functools.lru_cache(maxsize=8)
def annotated_source(files: CocoFiles | VocFiles | YoloFiles | TfdsFiles) -> coco.CocoSource:
    """The split of an annotation source, read once per process (every image's header is probed):
    `coco.load_coco`, `voc.load_voc`, `yolo.load_yolo` or `tfds_source.load_tfds`."""
    if isinstance(files, TfdsFiles):
        from cornernet_tf.data import tfds_source  # tensorflow_datasets is an extra

        return tfds_source.load_tfds(files.name, files.split, files.data_dir)
    if isinstance(files, VocFiles):
        return voc.load_voc(files.root, files.image_set, files.class_names, files.train_difficult)
    if isinstance(files, YoloFiles):
        return yolo.load_yolo(files.yaml, files.split)
    return coco.load_coco(files.annotations, files.images)


def _tfrecord_files(pattern: str) -> list[str]:
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no TFRecord files match {pattern!r}")
    return files


def dataset_info(files: SplitFiles) -> DatasetInfo:
    """Class names, category ids, ground-truth json and size of a split of any source."""
    if isinstance(files, TFRecordFiles):
        meta = tfrecord.read_sidecar(files.pattern)
        return DatasetInfo(
            meta["class_names"],
            meta["category_ids"],
            meta["annotations"],
            tfrecord.split_image_ids(meta),
            meta.get("skipped", []),
            tfrecord.summary(files.pattern, meta),
        )
    source = annotated_source(files)
    return DatasetInfo(
        source.class_names,
        source.category_ids,
        source.ground_truth,
        source.image_ids.tolist(),
        source.problems,
        source.summary(),
    )


def _check_classes(files: SplitFiles, num_classes: int) -> None:
    found = len(dataset_info(files).class_names)
    if found > num_classes:
        raise ValueError(
            f"the train data has {found} classes but model.num_classes is {num_classes}; set model.num_classes={found}"
        )


def _source_tensors(source: coco.CocoSource, rows: np.ndarray) -> dict[str, tf.Tensor]:
    """Paths, ids, orientations, flat boxes/classes and row splits of `rows` of a source, as constants."""
    boxes = [source.boxes[r] for r in rows]
    return {
        "path": tf.constant([source.image_paths[r] for r in rows], tf.string),
        "image_id": tf.constant(source.image_ids[rows], tf.int64),
        "orientation": tf.constant(source.orientation[rows], tf.int32),
        "boxes": tf.constant(np.concatenate(boxes).reshape(-1, 4), tf.float32),
        "classes": tf.constant(np.concatenate([source.classes[r] for r in rows]), tf.int32),
        "splits": tf.constant(np.cumsum([0] + [len(b) for b in boxes]), tf.int64),
    }


def _train_files(
    seed: int, source: coco.CocoSource, num_pipelines: int, pipeline_id: int, first_sample: int
) -> tf.data.Dataset:
    """(index, example) for indices first_sample, first_sample + 1, ... of this pipeline.

    Sample i is image `permutation_e(i mod n)` of this pipeline's n usable images (every
    `num_pipelines`-th), with a fresh seeded permutation per epoch e = i // n: a pure function
    of i, so a resumed run continues the exact stream without replaying it.
    """
    rows = source.usable_rows[pipeline_id::num_pipelines]
    if not len(rows):
        raise ValueError(
            f"{len(source.usable_rows)} usable images of {source.annotations} cannot feed "
            f"{num_pipelines} input pipelines"
        )
    table = _source_tensors(source, rows)
    count = tf.constant(len(rows), tf.int64)

    def pick(index: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), index // count])
        row = tf.random.experimental.index_shuffle(index % count, epoch_seed, count - 1)
        start, end = table["splits"][row], table["splits"][row + 1]
        return index, {
            "path": table["path"][row],
            "image_id": table["image_id"][row],
            "orientation": table["orientation"][row],
            "boxes": table["boxes"][start:end],
            "classes": table["classes"][start:end],
        }

    return tf.data.Dataset.range(first_sample, _ENDLESS).map(pick)


def _permuted(elements: tf.Tensor, seed: tf.Tensor) -> tf.data.Dataset:
    """The rows of `elements` [n, ...] in a stateless random order given by `seed` [2].

    Shuffling whole blocks this way, rather than with `Dataset.shuffle`, keeps the order a pure
    function of the seed (tensor seeds in `Dataset.shuffle` are refused once a global seed is set).
    """
    count = tf.shape(elements, out_type=tf.int64)[0]
    order = tf.random.experimental.index_shuffle(tf.range(count), seed, count - 1)
    return tf.data.Dataset.from_tensor_slices(tf.gather(elements, order))


def _train_records(
    seed: int, shuffle_buffer: int, pattern: str, num_pipelines: int, pipeline_id: int, first_sample: int
) -> tf.data.Dataset:
    """(index, encoded example) of this pipeline's TFRecord stream, from `first_sample` on.

    Epoch e reads this pipeline's files in a seeded order (interleaved 8 at a time) and permutes
    blocks of `shuffle_buffer` records with seeds made of e and the block number, so the stream
    is a function of the sample index; resuming skips (reads without decoding) at most one epoch
    of records.
    """
    files = _tfrecord_files(pattern)
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
        log.warning(
            "%d TFRecord files for %d input pipelines: sharding by record (every pipeline "
            "reads every file); write at least %d shards",
            len(files),
            num_pipelines,
            num_pipelines,
        )
        count = len(range(pipeline_id, total, num_pipelines))
    if not count:
        raise ValueError(f"{pattern!r} holds no records for input pipeline {pipeline_id}")
    names = tf.constant(files)

    def epoch(number: tf.Tensor) -> tf.data.Dataset:
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), number])
        order = tf.random.experimental.index_shuffle(tf.range(len(files), dtype=tf.int64), epoch_seed, len(files) - 1)
        records = tf.data.Dataset.from_tensor_slices(tf.gather(names, order)).interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(len(files), 8),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        if not by_file:
            records = records.shard(num_pipelines, pipeline_id)
        return (
            records.batch(shuffle_buffer)
            .enumerate()
            .flat_map(lambda block, serialized: _permuted(serialized, tf.stack([seed * 1_000_003 + number, block])))
        )

    first_epoch = first_sample // count
    ds = tf.data.Dataset.range(first_epoch, _ENDLESS).flat_map(epoch).skip(first_sample - first_epoch * count)
    ds = ds.map(tfrecord.parse_example, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.enumerate(start=first_sample)


def eval_image_ids(files: SplitFiles, max_images: int = 0) -> list[int]:
    """The ids an evaluation of a split scores: every image of the split, usable or not, or the
    first `max_images` of them (id order) when that is > 0."""
    ids = dataset_info(files).image_ids
    return ids[:max_images] if max_images > 0 else ids


def _eval_examples(files: SplitFiles, max_images: int, num_pipelines: int, pipeline_id: int) -> tf.data.Dataset:
    """(index, example) of this pipeline's share of the usable images among `eval_image_ids`, in id order."""
    last_id = eval_image_ids(files, max_images)[-1]
    if isinstance(files, TFRecordFiles):
        shards = _tfrecord_files(files.pattern)
        by_file = len(shards) >= num_pipelines
        ds = tf.data.TFRecordDataset(shards[pipeline_id::num_pipelines] if by_file else shards)
        if not by_file:
            ds = ds.shard(num_pipelines, pipeline_id)
        ds = ds.map(tfrecord.parse_example, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.take_while(lambda example: example["image_id"] <= last_id)  # records are in id order
    else:
        source = annotated_source(files)
        rows = source.usable_rows[source.image_ids[source.usable_rows] <= last_id]
        table = _source_tensors(source, rows[pipeline_id::num_pipelines])
        splits = table.pop("splits")
        lengths = splits[1:] - splits[:-1]
        table["boxes"] = tf.RaggedTensor.from_row_lengths(table["boxes"], lengths)
        table["classes"] = tf.RaggedTensor.from_row_lengths(table["classes"], lengths)
        ds = tf.data.Dataset.from_tensor_slices(table)
    return ds.enumerate()


def _decode_image(example: dict[str, tf.Tensor]) -> tf.Tensor:
    """RGB uint8 [H, W, 3] of an example holding "encoded" bytes or a file "path", turned by its
    EXIF "orientation"."""
    encoded = example["encoded"] if "encoded" in example else tf.io.read_file(example["path"])
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return image_header.orient(image, example["orientation"])


def _decoded(ds: tf.data.Dataset, parallel: int) -> tf.data.Dataset:
    """(index, example) -> the example with "image" RGB uint8 [H, W, 3] and "index", in input
    order; examples whose file cannot be read or decoded are dropped (`_with_skip_counts` and
    evaluation count them from the gaps they leave in the indices)."""

    def decode(index: tf.Tensor, example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        rest = {key: value for key, value in example.items() if key not in ("encoded", "path")}
        return {**rest, "image": _decode_image(example), "index": index}

    # in order, so a gap in the indices is exactly the examples dropped there
    return ds.map(decode, num_parallel_calls=parallel, deterministic=True).ignore_errors()


def _with_skip_counts(ds: tf.data.Dataset, first_index: int) -> tf.data.Dataset:
    """Give each decoded example `SKIPPED`: how many indices before it (back to the previous
    decoded example, or to `first_index`) were dropped (a sequential scan: exact)."""

    def count(previous: tf.Tensor, example: dict[str, tf.Tensor]) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        index = tf.cast(example["index"], tf.int64)
        return index, {**example, SKIPPED: tf.cast(index - previous - 1, tf.int32)}

    return ds.scan(tf.constant(first_index - 1, tf.int64), count)


def _parallel_calls(num_parallel_calls: int) -> int:
    return num_parallel_calls if num_parallel_calls > 0 else tf.data.AUTOTUNE


def _pipeline_position(input_context: tf.distribute.InputContext | None) -> tuple[int, int]:
    if input_context is None:
        return 1, 0
    return input_context.num_input_pipelines, input_context.input_pipeline_id


def _options(deterministic: bool, input_context: tf.distribute.InputContext | None) -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = deterministic
    policy = tf.data.experimental.AutoShardPolicy
    # With a context the shard is taken here; otherwise let tf.distribute shard TFRecords by
    # file, and anything else (or too few files) by element.
    options.experimental_distribute.auto_shard_policy = policy.OFF if input_context else policy.AUTO
    return options


def finish_batch(spec: TrainInputSpec, batch: dict[str, tf.Tensor]) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """A `train_dataset(..., finish_on_device=True)` batch of `spec` -> (images, targets).

    The batched pixel work (`augment.render_views`) and the targets (`build_batch_targets`):
    what the training loop runs on each replica's device.
    """
    images = augment.render_views(batch, spec.targets.input_size, spec.mean, spec.std, spec.fill)
    if spec.saccade is not None:
        targets = saccade_targets(
            batch["boxes"], batch["classes"], batch["positive"], batch["num_boxes"], spec.targets, spec.saccade
        )
    else:
        targets = build_batch_targets(
            batch["boxes"], batch["classes"], batch["num_boxes"], **dataclasses.asdict(spec.targets)
        )
    targets[SKIPPED] = batch[SKIPPED]
    return images, targets


def keras_batch(
    spec: TrainInputSpec, batch: dict[str, tf.Tensor], bounding_box_format: str = "xyxy"
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """A `train_dataset(..., finish_on_device=True)` batch as `ObjectDetector.fit` takes it.

    The pixel work of `finish_batch` without the normalization, which the detector applies.

    Returns:
        (images [B, H, W, 3] float32 in 0..255, {"boxes": [B, M, 4] in `bounding_box_format` of
        the input, "labels": [B, M] int32, padding rows -1, `SKIPPED`: [B]}).
    """
    height, width = spec.targets.input_size
    images = augment.render_views(batch, (height, width), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), spec.fill) * 255.0
    real = tf.sequence_mask(batch["num_boxes"], spec.targets.max_objects)
    boxes = keras.utils.bounding_boxes.convert_format(
        batch["boxes"], source="xyxy", target=bounding_box_format, height=height, width=width
    )
    return images, {
        "boxes": tf.where(real[..., tf.newaxis], boxes, -1.0),
        "labels": tf.where(real, batch["classes"], -1),
        SKIPPED: batch[SKIPPED],
    }


def train_dataset(
    files: SplitFiles,
    spec: TrainInputSpec,
    batch_size: int,
    input_context: tf.distribute.InputContext | None = None,
    start_step: int = 0,
    finish_on_device: bool = False,
    skipped_samples: int = 0,
) -> tf.data.Dataset:
    """Endless augmented training batches: (images, targets).

    Incomplete batches are dropped, so shapes are static. The stream is a function of the sample
    index (image choice, per-epoch order and augmentation are all seeded by it), so `start_step`
    resumes it where an uninterrupted run would be, without replaying it, once `skipped_samples`
    is given too. Batches are then identical when spec.deterministic is true.

    Args:
        files: The split to read; it may hold at most spec.targets.num_classes classes.
        spec: How samples and their targets are made.
        batch_size: The global batch; with `input_context`, B is its per-replica share.
        input_context: The context `strategy.distribute_datasets_from_function` passes: this
            pipeline then reads only its shard and yields per-replica batches. None yields global
            batches, left to tf.data's AUTO auto-shard policy.
        start_step: Global steps already taken.
        finish_on_device: Stop before the pixel work and the targets; `finish_batch(spec, batch)`
            turns the batches into (images, targets) where it runs (the training loop: on the
            accelerator). About 1 MB per COCO image instead of 3 MB of float pixels and 10 MB of
            80-class heatmaps, and the host only decodes, draws and copies.
        skipped_samples: The samples this pipeline dropped before `start_step` (the sum of their
            `SKIPPED`).

    Returns:
        A dataset of (images, targets): images [B, H, W, 3] float32, normalized; targets: the
        `build_targets` dict, each entry with a leading B (heatmaps [B, h, w, C], indices [B, M]
        int32, offsets [B, M, 2], mask [B, M]), plus ct_* entries when spec.targets.with_centers
        (CenterNet), and `SKIPPED` [B] int32: how many samples of the stream could not be decoded
        just before each one (sum them to count every dropped sample exactly once).
        With `finish_on_device`, a dataset of dicts instead: "image" [B, H', W', 3] uint8 (the
        decoded images, zero-padded to the batch's largest), "image_size" [B, 2] (each one's),
        "sampling_box" [B, 4] and "color" [B, 6] (`augment.sample_view`), "boxes" [B, M, 4]
        input px, "classes" [B, M], "num_boxes" [B] and `SKIPPED` [B] (with spec.saccade also
        "positive" [B, M] bool: the boxes that get corner targets, the others being ignored
        regions).

    Raises:
        ValueError: The split has more classes than spec.targets.num_classes, too few usable
            images or records for the input pipelines, or a TFRecord shard its sidecar json does
            not list.
        FileNotFoundError: No TFRecord file matches the pattern, or its sidecar json is missing.
    """
    _check_classes(files, spec.targets.num_classes)
    per_replica = input_context.get_per_replica_batch_size(batch_size) if input_context else batch_size
    num_pipelines, pipeline_id = _pipeline_position(input_context)
    replicas = input_context.num_replicas_in_sync if input_context else 1
    first_sample = start_step * per_replica * (replicas // num_pipelines) + skipped_samples
    parallel = _parallel_calls(spec.num_parallel_calls)
    max_objects = spec.targets.max_objects

    def make_view(example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        stream_position = example["index"] * num_pipelines + pipeline_id
        seed = tf.stack([tf.constant(spec.seed, tf.int64), stream_position])
        if spec.saccade is not None:
            view, boxes, classes, positive = saccade_view(
                example["image"],
                example["boxes"],
                example["classes"],
                seed,
                sampling=spec.saccade,
                flip=spec.flip,
                jitter=spec.color_jitter,
                light=spec.lighting,
            )
        else:
            view, boxes, classes = augment.sample_view(
                example["image"],
                example["boxes"],
                example["classes"],
                seed,
                input_size=spec.targets.input_size,
                scale_range=spec.scale_range,
                random_crop=spec.random_crop,
                flip=spec.flip,
                jitter=spec.color_jitter,
                light=spec.lighting,
            )
        count = tf.minimum(tf.shape(boxes)[0], max_objects)  # targets keep the first max_objects
        if spec.saccade is not None:
            view["positive"] = tf.pad(positive[:count], [[0, max_objects - count]])
        view["boxes"] = tf.pad(boxes[:count], [[0, max_objects - count], [0, 0]])
        view["classes"] = tf.pad(tf.cast(classes[:count], tf.int32), [[0, max_objects - count]])
        view["num_boxes"] = count
        view[SKIPPED] = example[SKIPPED]
        return view

    if isinstance(files, TFRecordFiles):
        ds = _train_records(spec.seed, spec.shuffle_buffer, files.pattern, num_pipelines, pipeline_id, first_sample)
    else:
        ds = _train_files(spec.seed, annotated_source(files), num_pipelines, pipeline_id, first_sample)
    ds = _with_skip_counts(_decoded(ds, parallel), first_sample)
    ds = ds.map(make_view, num_parallel_calls=parallel, deterministic=spec.deterministic)
    padded_shapes = {
        "image": [None, None, 3],
        "image_size": [2],
        "sampling_box": [4],
        "color": [6],
        "boxes": [max_objects, 4],
        "classes": [max_objects],
        "num_boxes": [],
        SKIPPED: [],
    }
    if spec.saccade is not None:
        padded_shapes["positive"] = [max_objects]
    ds = ds.padded_batch(per_replica, padded_shapes=padded_shapes, drop_remainder=True)
    if not finish_on_device:
        ds = ds.map(
            functools.partial(finish_batch, spec), num_parallel_calls=parallel, deterministic=spec.deterministic
        )
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_options(spec.deterministic, input_context))


def eval_dataset(
    files: SplitFiles,
    spec: EvalInputSpec,
    batch_size: int = 1,
    scale: float = 1.0,
    max_images: int = 0,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """One pass over the usable images of a split: (images, {"image_info", "image_id"}), in id order.

    Padded batches of different sizes are padded (before normalization) at the bottom/right
    with spec.fill (None: zeros), which leaves image_info valid. Images that fail to decode are
    left out: an evaluation scores them as images without detections by comparing the ids it got
    with `eval_image_ids`.

    Args:
        files: The split to read.
        spec: The test transform. spec.mode: "resize" to spec.input_size, or "pad" (the original
            test transform at test `scale`, side | (spec.size_divisor - 1)).
        batch_size: Images per batch.
        scale: Test scale of the "pad" mode; must be 1.0 with "resize".
        max_images: When > 0, keep the first images of the split only (`eval_image_ids`).
        input_context: Of `strategy.distribute_datasets_from_function`: this pipeline then reads
            only its share of the images.

    Returns:
        A dataset of (images, {"image_info", "image_id"}): images [B, H, W, 3] float32
        normalized (without spec.normalize: in [0, 1]); image_info [B, 6] (see `image_info.py`);
        image_id [B] int64.

    Raises:
        ValueError: `scale` is not 1.0 with spec.mode "resize".
        FileNotFoundError: No TFRecord file matches the pattern, or its sidecar json is missing.
    """
    if spec.mode != "pad" and scale != 1.0:
        raise ValueError(f"test scale {scale} needs detection.test_mode=pad, not {spec.mode!r}")
    num_pipelines, pipeline_id = _pipeline_position(input_context)
    parallel = _parallel_calls(spec.num_parallel_calls)

    def transform(example: dict[str, tf.Tensor]) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        image, info = augment.test_transform(
            example["image"], spec.mode, spec.input_size, spec.size_divisor, scale, spec.fill
        )
        return image, {"image_info": info, "image_id": example["image_id"]}

    ds = _decoded(_eval_examples(files, max_images, num_pipelines, pipeline_id), parallel)
    ds = ds.map(transform, num_parallel_calls=parallel)
    if spec.mode == "resize":
        ds = ds.batch(batch_size)
    else:
        ds = ds.ragged_batch(batch_size).map(lambda images, meta: (augment.pad_batch(images, spec.fill), meta))
    if spec.normalize:
        ds = ds.map(lambda images, meta: (augment.normalize(images, spec.mean, spec.std), meta))
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_options(True, input_context))
