"""The input pipelines of a `Config`, over the plain ones of `cornernet_tf.data.pipeline`.

The config is translated here once, in one place per spec: `split_files` (where a split's
images are), `train_input` (how training samples and their targets are made) and `eval_input`
(the test transform); `canvas_fill` (data.pad_value) serves them and the export's
preprocessing. The dataset functions pass those to the pipeline with the config's batch size and
eval.max_images; their documentation is the pipeline's.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import tensorflow as tf

from cornernet_tf.config import Config
from cornernet_tf.data import augment, pipeline
from cornernet_tf.data.pipeline import (
    CocoFiles,
    DatasetInfo,
    EvalInputSpec,
    SplitFiles,
    TfdsFiles,
    TFRecordFiles,
    TrainInputSpec,
    VocFiles,
    YoloFiles,
)
from cornernet_tf.data.saccade_sampler import SaccadeSampling
from cornernet_tf.detection.settings import TEST_PROCEDURES
from cornernet_tf.objective.targets import TargetSpec

SPLITS = ("train", "val")


def split_files(config: Config, split: str = "val") -> SplitFiles:
    """Where `split` ("train" or "val") of data.dataset is: the shapes dataset's COCO json and
    folder (generated into data.shapes_dir on first use), data.{split}_annotations and
    data.{split}_images, an image set of data.voc_dir (data.voc_{split}_set), a split of
    data.yolo_yaml, a split of the TFDS builder data.tfds_name (data.tfds_{split}_split), or the
    data.{split}_tfrecords pattern; `~` is expanded."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    data = config.data
    if data.dataset == "tfrecord":
        pattern = getattr(data, f"{split}_tfrecords")
        if not pattern:
            raise ValueError(f"data.{split}_tfrecords must be set for dataset=tfrecord")
        return TFRecordFiles(os.path.expanduser(pattern))
    if data.dataset == "shapes":
        from cornernet_tf.data import shapes  # the generator (and OpenCV) only for this dataset

        annotations, images = shapes.ensure_dataset(
            data.shapes_dir,
            data.shapes_train,
            data.shapes_val,
            data.shapes_image_size,
            max_objects=data.shapes_max_objects,
            object_size=tuple(data.shapes_object_size) or None,
        )[split]
        return CocoFiles(str(annotations), str(images))
    if data.dataset == "voc":
        if not data.voc_dir:
            raise ValueError("data.voc_dir must be set for dataset=voc (the folder holding Annotations/)")
        root = os.path.expanduser(data.voc_dir)
        names = tuple(data.class_names) or voc_class_names(root, (data.voc_train_set, data.voc_val_set))
        train_difficult = data.voc_train_difficult and split == "train"  # evaluation ignores them always
        return VocFiles(root, getattr(data, f"voc_{split}_set"), names, train_difficult)
    if data.dataset == "tfds":
        if not data.tfds_name:
            raise ValueError("data.tfds_name must be set for dataset=tfds (a TFDS builder, e.g. voc/2007)")
        data_dir = os.path.expanduser(data.tfds_data_dir) if data.tfds_data_dir else None
        return TfdsFiles(data.tfds_name, getattr(data, f"tfds_{split}_split"), data_dir)
    if data.dataset == "yolo":
        if not data.yolo_yaml:
            raise ValueError("data.yolo_yaml must be set for dataset=yolo (an Ultralytics data.yaml)")
        return YoloFiles(os.path.expanduser(data.yolo_yaml), split)
    annotations, images = getattr(data, f"{split}_annotations"), getattr(data, f"{split}_images")
    if not (annotations and images):
        raise ValueError(f"data.{split}_annotations and data.{split}_images must be set for dataset=coco")
    return CocoFiles(os.path.expanduser(annotations), os.path.expanduser(images))


@functools.lru_cache(maxsize=4)
def voc_class_names(root: str, image_sets: tuple[str, ...]) -> tuple[str, ...]:
    """The class names found in a VOC folder's image sets (sorted; read once per process), for a
    config without data.class_names: training saves them into the run's config."""
    from cornernet_tf.data import voc

    names = voc.class_names_of(root, image_sets)
    if not names:
        raise ValueError(f"{root}: no object in the annotation files of image sets {list(image_sets)}")
    return tuple(names)


def canvas_fill(config: Config) -> augment.Fill:
    """The colour of the canvas around an image, wherever one is padded (test, batch, training
    crops): None for data.pad_value black (the official code's zeros), data.mean for mean
    (mmdetection's: 0 once normalized). The one reader of data.pad_value, so training, evaluation
    and exports cannot disagree."""
    data = config.data
    return tuple(data.mean) if data.pad_value == "mean" else None


def train_input(config: Config) -> TrainInputSpec:
    """How the config's training samples are made: data.* augmentation and reading settings,
    targets for model.num_classes on the model's heatmap size, flavoured by the model type's record:
    center keypoints add center targets and CenterNet's radius formula; attention (CornerNet-Saccade)
    samples crops around a reference object and adds ignore maps and attention targets
    (`saccade_sampling`)."""
    data, model = config.data, config.model
    record = model.record
    targets = TargetSpec(
        num_classes=model.num_classes,
        input_size=tuple(data.input_size),
        output_size=tuple(model.output_size(data.input_size)),
        max_objects=data.max_objects,
        gaussian_iou=data.gaussian_iou,
        with_centers=record.center_keypoints,
        radius_formula=record.radius_formula,
        coordinate_dtype=record.target_coordinate_dtype,
    )
    return TrainInputSpec(
        targets=targets,
        mean=tuple(data.mean),
        std=tuple(data.std),
        scale_range=tuple(data.random_scale),
        random_crop=data.random_crop,
        flip=data.flip,
        color_jitter=data.color_jitter,
        lighting=data.lighting,
        seed=data.seed,
        shuffle_buffer=data.shuffle_buffer,
        num_parallel_calls=data.num_parallel_calls,
        deterministic=data.deterministic,
        saccade=saccade_sampling(config) if record.attention else None,
        fill=canvas_fill(config),
    )


def saccade_sampling(config: Config) -> SaccadeSampling:
    """CornerNet-Saccade's sampler settings: the crop of data.input_size, one attention map per
    hourglass level (coarsest first: cells of model.stride * 2**(depth - 1 - j) input px, for
    objects of data.att_ranges[j] px), boxes shorter than data.min_scale ignored."""
    data, model = config.data, config.model
    output = model.output_size(data.input_size)
    levels = range(model.depth)
    return SaccadeSampling(
        input_size=tuple(data.input_size),
        min_scale=data.min_scale,
        att_ratios=tuple(model.stride * 2 ** (model.depth - 1 - j) for j in levels),
        att_ranges=tuple((lo, hi) for lo, hi in data.att_ranges),
        att_sizes=tuple(tuple(side // 2 ** (model.depth - 1 - j) for side in output) for j in levels),
    )


def eval_input(config: Config, mode: str | None = None) -> EvalInputSpec:
    """The test transform of the test procedure `mode` (a detection.test_mode; default the
    config's): "resize" to data.input_size, "pad" to the model's size divisor, or the image as it
    is, unnormalized, for "saccade" (`detection.settings.TEST_PROCEDURES`)."""
    data = config.data
    procedure = TEST_PROCEDURES[mode or config.detection.test_mode]
    return EvalInputSpec(
        mode=procedure.transform,
        normalize=procedure.normalized_input,
        input_size=tuple(data.input_size),
        size_divisor=config.model.size_divisor,
        mean=tuple(data.mean),
        std=tuple(data.std),
        num_parallel_calls=data.num_parallel_calls,
        fill=canvas_fill(config),
    )


def dataset_info(config: Config, split: str = "val") -> DatasetInfo:
    """`pipeline.dataset_info` of the split."""
    return pipeline.dataset_info(split_files(config, split))


def eval_image_ids(config: Config, split: str = "val") -> list[int]:
    """The ids an evaluation of the split scores: all, or the first eval.max_images when > 0."""
    return pipeline.eval_image_ids(split_files(config, split), config.eval.max_images)


def train_dataset(
    config: Config,
    batch_size: int | None = None,
    input_context: tf.distribute.InputContext | None = None,
    start_step: int = 0,
    finish_on_device: bool = False,
    skipped_samples: int = 0,
) -> tf.data.Dataset:
    """`pipeline.train_dataset` of the training split.

    Args:
        config: The run's config (data, model and train settings).
        batch_size: The global batch; None: train.batch_size.
        input_context: As `pipeline.train_dataset`: per-replica batches of this pipeline's shard.
        start_step: Global steps already taken, to resume the stream.
        finish_on_device: Leave the pixel work and targets to `batch_finisher(config)`.
        skipped_samples: The samples this pipeline dropped before `start_step`.

    Returns:
        The endless dataset of `pipeline.train_dataset`.

    Raises:
        ValueError: The config does not say where the training split is, or as
            `pipeline.train_dataset`.
        FileNotFoundError: As `pipeline.train_dataset`.
    """
    return pipeline.train_dataset(
        split_files(config, "train"),
        train_input(config),
        batch_size or config.train.batch_size,
        input_context=input_context,
        start_step=start_step,
        finish_on_device=finish_on_device,
        skipped_samples=skipped_samples,
    )


def batch_finisher(config: Config) -> Callable[[dict[str, tf.Tensor]], tuple[tf.Tensor, dict[str, tf.Tensor]]]:
    """`pipeline.finish_batch` of the config's training input: turns the batches of
    `train_dataset(config, ..., finish_on_device=True)` into (images, targets)."""
    return functools.partial(pipeline.finish_batch, train_input(config))


def fit_dataset(
    config: Config,
    bounding_box_format: str = "xyxy",
    batch_size: int | None = None,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """The training stream of `train_dataset` (the same images, order and augmentation) as
    `ObjectDetector.fit` takes it: `pipeline.keras_batch` batches, endless (pass steps_per_epoch).

    Args:
        config: The run's config (data, model and train settings).
        bounding_box_format: The format of the boxes yielded.
        batch_size: The global batch; None: train.batch_size.
        input_context: As `train_dataset`.

    Returns:
        Batches of (images [B, H, W, 3] float32 in 0..255, {"boxes", "labels", "skipped"}).

    Raises:
        ValueError, FileNotFoundError: As `train_dataset`.
    """
    spec = train_input(config)
    views = train_dataset(config, batch_size, input_context=input_context, finish_on_device=True)
    return views.map(
        functools.partial(pipeline.keras_batch, spec, bounding_box_format=bounding_box_format),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    ).prefetch(tf.data.AUTOTUNE)


def eval_dataset(
    config: Config,
    split: str = "val",
    batch_size: int = 1,
    scale: float = 1.0,
    mode: str | None = None,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """`pipeline.eval_dataset` of the split in `mode` (default detection.test_mode), over the
    first eval.max_images images when that is > 0.

    Args:
        config: The run's config (data, model, detection and eval settings).
        split: "train" or "val".
        batch_size: Images per batch.
        scale: Test scale of the "pad" mode.
        mode: "resize", "pad" or "saccade"; None: detection.test_mode.
        input_context: As `pipeline.eval_dataset`: this pipeline's share of the images.

    Returns:
        The one-pass dataset of `pipeline.eval_dataset`.

    Raises:
        ValueError: An unknown split or mode, a split the config does not locate, or a test
            scale with "resize".
        FileNotFoundError: As `pipeline.eval_dataset`.
    """
    return pipeline.eval_dataset(
        split_files(config, split),
        eval_input(config, mode),
        batch_size=batch_size,
        scale=scale,
        max_images=config.eval.max_images,
        input_context=input_context,
    )
