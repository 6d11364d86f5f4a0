"""`ObjectDetector`: CornerNet, CenterNet and CornerNet-Squeeze the Keras way.

    detector = ObjectDetector.from_preset("shapes_tiny", bounding_box_format="xywh")
    detector.compile()                                   # the config's optimizer and loss weights
    detector.fit(images, {"boxes": boxes, "labels": labels}, epochs=10)
    found = detector.predict(images)                     # {"boxes", "labels", "confidence", "num_detections"}
    detector.save_to_preset("my_detector")               # or detector.save("my_detector.keras")

A `keras.Model` around one network of a `Config`, following keras-hub's detector tasks
(`bounding_box_format`, padded {"boxes", "labels"} ground truth with -1 rows, the predict dict,
presets). Underneath it runs the command line's code, not a copy: targets are drawn in the
training step by `targets.build_batch_targets` with the config's `TargetSpec`; the loss is
`training.loop.global_batch_losses`, normalised by counts of the global batch, so under
`tf.distribute.MirroredStrategy` (built in `strategy.scope()`) it trains like one device on the
global batch; `predict` decodes with the config's `detection` section through the export's
`DetectionModule` (resize or pad, flip, scales, soft-NMS).

Images go in as RGB pixels in 0..255 (uint8 or float) at the network's input size for training
and evaluation, at any size for `predict` (boxes come back in those images' pixels). The
detector normalizes them with data.mean and data.std. Ground-truth boxes partly outside the
image are clipped, boxes left empty (degenerate, wholly outside) and boxes past
data.max_objects are dropped and counted (`dropped_boxes` in the logs). Arrays are checked
before the graph runs (`ground_truth.check_batch`); a `tf.data.Dataset` is checked in the graph.

Multi-worker clusters train with `python -m cornernet_tf.train --strategy multi_worker`:
Keras 3 `fit` does not run under MultiWorkerMirroredStrategy (keras-team/keras#20585).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from cornernet_tf.config import Config, config_from_dict, load_config
from cornernet_tf.data import augment, ground_truth
from cornernet_tf.data.keras_augment import TrainingAugmentation
from cornernet_tf.detection.module import DetectionModule
from cornernet_tf.objective.targets import SKIPPED, build_batch_targets
from cornernet_tf.tasks import data as task_data
from cornernet_tf.tasks.export import class_names, detection_module
from cornernet_tf.tasks.model import build_model
from cornernet_tf.tasks.training import build_optimizer
from cornernet_tf.training.loop import global_batch_losses, synchronize_batchnorm

# keras.utils.bounding_boxes.convert_format's formats
BOX_FORMATS = (
    "xyxy",
    "yxyx",
    "xywh",
    "center_xywh",
    "center_yxhw",
    "rel_xyxy",
    "rel_yxyx",
    "rel_xywh",
    "rel_center_xywh",
)
# name in the logs -> part of `global_batch_losses`
LOSS_PARTS = {"loss": "total", "focal": "focal", "pull": "pull", "push": "push", "offset": "offset"}
LOSS_WEIGHTS = ("pull_weight", "push_weight", "offset_weight")


def as_config(config: Config | Mapping[str, Any] | str | os.PathLike) -> Config:
    """A `Config` from itself, its dict (`Config.to_dict`), a YAML path or a bundled config name."""
    if isinstance(config, Config):
        return config_from_dict(config.to_dict())
    if isinstance(config, Mapping):
        return config_from_dict(dict(config))
    return load_config(config)


def check_box_format(bounding_box_format: str) -> str:
    """The format, lower-cased, if `keras.utils.bounding_boxes` knows it; else a ValueError."""
    name = str(bounding_box_format).lower()
    if name not in BOX_FORMATS:
        raise ValueError(f"bounding_box_format {bounding_box_format!r} is not one of {list(BOX_FORMATS)}")
    return name


@keras.saving.register_keras_serializable(package="cornernet_tf")
class ObjectDetector(keras.Model):
    """A CornerNet-family detector with Keras' `compile` / `fit` / `evaluate` / `predict` / `save`.

    Build it with `from_preset` (a bundled config name, a preset folder, a training run folder or
    converted weights) or directly from a config, optionally around an existing network of it.
    """

    def __init__(
        self,
        config: Config | Mapping[str, Any] | str | os.PathLike = "shapes_tiny",
        bounding_box_format: str = "xyxy",
        network: keras.Model | None = None,
        loss_weights: Mapping[str, float] | None = None,
        **kwargs,
    ):
        """Args:
            config: The run's `Config`, its dict, a YAML path or a bundled config name: the
                network (model.*), how images are normalized (data.mean, data.std), how targets
                are drawn (data.max_objects, data.gaussian_iou), the optimizer `compile()`
                builds (train.*) and how `predict` decodes (detection.*).
            bounding_box_format: Of the boxes `fit` and `evaluate` take and `predict` returns
                (`BOX_FORMATS`, `keras.utils.bounding_boxes`' names).
            network: A network of `config` (e.g. with loaded weights); None builds a new one.
            loss_weights: Overrides of train.pull_weight, train.push_weight, train.offset_weight.
            **kwargs: keras.Model's (name, dtype, trainable).

        Raises:
            ValueError: An unknown box format or loss weight, a network that is not of the config,
                or an unusable config (`ConfigError`).
        """
        super().__init__(**kwargs)
        self.config = as_config(config)
        self.bounding_box_format = check_box_format(bounding_box_format)
        model = self.config.model
        if network is None:
            network = build_model(model)
        elif getattr(network, "num_classes", None) != model.num_classes or getattr(network, "nstack", None) != (
            model.nstack
        ):
            raise ValueError(
                f"network {network.name!r} is not a network of this config (model.num_classes {model.num_classes}, "
                f"model.nstack {model.nstack}); build it with cornernet_tf.tasks.model.build_model(config.model)"
            )
        self.network = network
        if self.config.train.sync_batchnorm:
            synchronize_batchnorm(self.network)
        unknown = sorted(set(loss_weights or {}) - set(LOSS_WEIGHTS))
        if unknown:
            raise ValueError(f"loss_weights: unknown {unknown}; valid keys are {list(LOSS_WEIGHTS)}")
        self.loss_weights = {name: float(getattr(self.config.train, name)) for name in LOSS_WEIGHTS}
        self.loss_weights.update({name: float(value) for name, value in (loss_weights or {}).items()})
        self.train_spec = task_data.train_input(self.config)
        self.target_spec = self.train_spec.targets
        self.input_size = tuple(self.config.data.input_size)
        self.class_names = class_names(self.config)
        self._detector_metrics = [keras.metrics.Mean(name=name) for name in LOSS_PARTS]
        self._detector_metrics += [keras.metrics.Sum(name="dropped_boxes"), keras.metrics.Sum(name="skipped_samples")]
        self.build((None, *self.input_size, 3))

    # ---- building ----

    @classmethod
    def from_preset(
        cls,
        preset: str | os.PathLike,
        num_classes: int | None = None,
        load_weights: bool = True,
        config: Config | str | os.PathLike | None = None,
        **kwargs,
    ) -> ObjectDetector:
        """A detector from a bundled config name ("shapes_tiny", "cornernet_hg104_coco", ...: no
        weights), a preset folder (`save_to_preset`), a training run folder, a checkpoint, or a
        `.weights.h5` file of converted weights (with `config`). See `presets.load_preset`."""
        from cornernet_tf.api import presets  # presets builds detectors: imported on use

        return presets.load_preset(
            cls, preset, num_classes=num_classes, load_weights=load_weights, config=config, **kwargs
        )

    def save_to_preset(self, directory: str | os.PathLike) -> None:
        """Write a preset folder that `from_preset` and the command lines (`--weights DIR`) open:
        config.json, model.weights.h5 (the network's), config.yaml, class_names.txt,
        metadata.json. See `presets.save_preset`."""
        from cornernet_tf.api import presets

        presets.save_preset(self, directory)

    def augmentation(self, seed: int = 0) -> TrainingAugmentation:
        """The config's training augmentation (data.random_scale, random_crop, flip, color_jitter,
        lighting) for (image, y) samples in this detector's box format; see
        `data.keras_augment.TrainingAugmentation`."""
        return TrainingAugmentation.from_spec(self.train_spec, self.bounding_box_format, seed)

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "config": self.config.to_dict(),
            "bounding_box_format": self.bounding_box_format,
            "loss_weights": dict(self.loss_weights),
        }

    # ---- compile ----

    def compile(self, optimizer: keras.optimizers.Optimizer | str | None = None, **kwargs) -> None:
        """Keras' compile with working defaults: without `optimizer`, the config's (Adam or AdamW,
        train.learning_rate with train.lr_schedule over train.steps, clipping: the paper's for
        the COCO configs). The loss is the detector's own (`loss_weights` at construction), so
        `loss` and `metrics` cannot be given; `jit_compile` defaults to False (XLA measured slower
        on CPU, and the compiled corner pool has no XLA kernel)."""
        for name in ("loss", "loss_weights", "metrics", "weighted_metrics"):
            if kwargs.get(name) is not None:
                raise ValueError(
                    f"compile({name}=...): an ObjectDetector computes its own loss (focal, pull, push, offset); "
                    f"set loss weights with ObjectDetector(..., loss_weights={{'pull_weight': ...}})"
                )
        kwargs.setdefault("jit_compile", False)
        super().compile(optimizer=optimizer or build_optimizer(self.config.train), **kwargs)

    def compile_from_config(self, config: dict[str, Any]) -> None:
        """What `keras.models.load_model` calls: compile again with the saved optimizer."""
        optimizer = config.get("optimizer")
        self.compile(optimizer=keras.saving.deserialize_keras_object(optimizer) if optimizer else None)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        """The loss parts (loss, focal, pull, push, offset) and the boxes and samples left out."""
        return list(self._detector_metrics)

    # ---- forward ----

    def normalize(self, images: tf.Tensor) -> tf.Tensor:
        """RGB pixels in 0..255 -> the network's input (data.mean, data.std of [0, 1] pixels)."""
        data = self.config.data
        return augment.normalize(tf.cast(images, tf.float32) / 255.0, tuple(data.mean), tuple(data.std))

    def call(self, images: tf.Tensor, training: bool = False) -> dict[str, tf.Tensor]:
        """The last stack's maps (heatmap logits, embeddings, offsets) of images in 0..255."""
        return self.network(self.normalize(images), training=training)

    def build(self, input_shape: Any = None) -> None:
        """The network is built (any image size); the detector adds no weights of its own."""
        if not self.network.built:
            self.network.build((None, None, None, 3))
        self.built = True

    # ---- train / evaluate ----

    def _batch_targets(self, y: Mapping[str, tf.Tensor]) -> tuple[dict[str, tf.Tensor], tf.Tensor, tf.Tensor]:
        """Ground truth in the detector's format -> (targets, dropped boxes, skipped samples) of this batch."""
        height, width = self.input_size
        labels = tf.cast(y["labels"], tf.int32)
        boxes = keras.utils.bounding_boxes.convert_format(
            tf.cast(y["boxes"], tf.float32), source=self.bounding_box_format, target="xyxy", height=height, width=width
        )
        real = tf.not_equal(labels, ground_truth.PADDING)
        checks = [
            tf.debugging.assert_less(
                tf.where(real, labels, 0),
                self.target_spec.num_classes,
                message=f"a label is not below num_classes {self.target_spec.num_classes}",
            ),
            tf.debugging.assert_greater_equal(labels, -1, message="a label is below -1 (-1 marks padding rows)"),
            tf.debugging.Assert(
                tf.reduce_all(~real | ((boxes[..., 2] >= boxes[..., 0]) & (boxes[..., 3] >= boxes[..., 1]))),
                [f"a box is inverted as bounding_box_format {self.bounding_box_format!r}: is that its format?"],
            ),
        ]
        with tf.control_dependencies(checks):
            boxes, classes, num_boxes, dropped = ground_truth.clip_and_compact(boxes, labels, self.input_size)
        max_objects = self.target_spec.max_objects
        dropped += tf.maximum(num_boxes - max_objects, 0)
        targets = build_batch_targets(
            boxes, classes, tf.minimum(num_boxes, max_objects), **dataclasses.asdict(self.target_spec)
        )
        skipped = tf.reduce_sum(tf.cast(y[SKIPPED], tf.float32)) if SKIPPED in y else tf.constant(0.0)
        return targets, tf.reduce_sum(tf.cast(dropped, tf.float32)), skipped

    def _batch_losses(self, data: Any, training: bool) -> tuple[dict[str, tf.Tensor], tf.Tensor, tf.Tensor]:
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        if y is None:
            raise ValueError("an ObjectDetector trains on (images, {'boxes': ..., 'labels': ...}); y is missing")
        targets, dropped, skipped = self._batch_targets(y)
        losses = global_batch_losses(self.network, self.normalize(x), targets, training, **self.loss_weights)
        return losses, dropped, skipped

    def _record(self, losses: Mapping[str, tf.Tensor], dropped: tf.Tensor, skipped: tf.Tensor) -> dict[str, tf.Tensor]:
        """Update the trackers. A replica's loss is its share of the global batch's, so it is
        scaled by the replica count: the trackers' mean over replicas is then the global loss."""
        context = tf.distribute.get_replica_context()
        replicas = float(context.num_replicas_in_sync if context is not None else 1)
        for tracker, part in zip(self._detector_metrics, LOSS_PARTS.values()):
            tracker.update_state(losses[part] * replicas)
        self._detector_metrics[-2].update_state(dropped)
        self._detector_metrics[-1].update_state(skipped)
        return {tracker.name: tracker.result() for tracker in self._detector_metrics}

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            losses, dropped, skipped = self._batch_losses(data, training=True)
            loss = self.optimizer.scale_loss(losses["total"])
        gradients = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._record(losses, dropped, skipped)

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        return self._record(*self._batch_losses(data, training=False))

    def fit(self, x: Any = None, y: Any = None, validation_data: Any = None, **kwargs) -> keras.callbacks.History:
        """Keras' fit; arrays (and lists per image, ragged tensors) are densified and checked
        first, each problem a ValueError naming the sample (`ground_truth.check_batch`).
        CornerNet-Saccade trains with `python -m cornernet_tf.train` only: its samples are crops
        around a reference object, with ignore maps and attention targets, which the Keras-style
        {"boxes", "labels"} batches and `TrainingAugmentation` do not make."""
        if not self.config.model.record.trains_with_fit:
            raise ValueError(
                "ObjectDetector.fit does not train CornerNet-Saccade (its sampler crops around reference objects "
                "and draws attention targets); train it with python -m cornernet_tf.train --config <saccade config>, "
                "then ObjectDetector.from_preset(<model_dir>) predicts with it"
            )
        x, y = self.checked_batch(x, y)
        if isinstance(x, tf.data.Dataset):
            kwargs.setdefault("shuffle", False)  # a dataset shuffles itself; Keras would warn
        if isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
            validation_data = self.checked_batch(*validation_data)
        return super().fit(x, y, validation_data=validation_data, **kwargs)

    def evaluate(self, x: Any = None, y: Any = None, **kwargs) -> Any:
        """Keras' evaluate (the loss parts in inference mode), with `fit`'s checks of arrays."""
        x, y = self.checked_batch(x, y)
        return super().evaluate(x, y, **kwargs)

    def checked_batch(self, x: Any, y: Any) -> tuple[Any, Any]:
        """(x, y) as `fit` passes them on: arrays checked and y densified; datasets, generators
        and `keras.utils.PyDataset`s unchanged (checked in the graph)."""
        if isinstance(x, (tf.data.Dataset, keras.utils.PyDataset)) or y is None and not _is_array(x):
            return x, y
        if not isinstance(y, Mapping) or not {"boxes", "labels"} <= set(y):
            raise ValueError(
                f"y must be a dict with 'boxes' [batch, N, 4] and 'labels' [batch, N] (padded with -1), got "
                f"{type(y).__name__}{' with keys ' + str(sorted(y)) if isinstance(y, Mapping) else ''}"
            )
        images = np.asarray(x)
        boxes, labels = ground_truth.densify(y["boxes"], y["labels"])
        height, width = self.input_size
        xyxy = np.asarray(
            keras.utils.bounding_boxes.convert_format(
                boxes, source=self.bounding_box_format, target="xyxy", height=height, width=width
            )
        )
        ground_truth.check_batch(
            images, xyxy, labels, self.config.model.num_classes, self.input_size, self.bounding_box_format
        )
        return images, {"boxes": boxes, "labels": labels.astype(np.int32)}

    # ---- predict ----

    @property
    def detection_module(self) -> DetectionModule:
        """The export's module around this network (the config's preprocessing and `detection`)."""
        module = self.__dict__.get("_detection_module")
        if module is None:
            module = detection_module(self.network, self.config)
            object.__setattr__(self, "_detection_module", module)  # not a tracked dependency
        return module

    def predict_step(self, data: Any) -> dict[str, tf.Tensor]:
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        found = self.detection_module.detect_pixels(x)
        height, width = tf.unstack(tf.cast(tf.shape(x)[1:3], tf.float32))
        ymin, xmin, ymax, xmax = tf.unstack(found["detection_boxes"], axis=-1)
        boxes = keras.utils.bounding_boxes.convert_format(
            tf.stack([xmin * width, ymin * height, xmax * width, ymax * height], axis=-1),
            source="xyxy",
            target=self.bounding_box_format,
            height=height,
            width=width,
        )
        count = tf.cast(found["num_detections"], tf.int32)
        valid = tf.sequence_mask(count, tf.shape(found["detection_scores"])[1])
        return {
            "boxes": tf.where(valid[..., tf.newaxis], boxes, -1.0),
            "labels": tf.where(valid, tf.cast(found["detection_classes"], tf.int32) - 1, -1),
            "confidence": tf.where(valid, found["detection_scores"], -1.0),
            "num_detections": count,
        }

    def predict(self, x: Any, **kwargs) -> dict[str, np.ndarray]:
        """Detections of RGB images [B, H, W, 3] of any one size (uint8, or float 0..255), decoded
        with the config's `detection` settings as the export decodes: {"boxes" [B, M, 4] in the
        images' pixels and this detector's format, "labels" [B, M] (0-based), "confidence"
        [B, M], "num_detections" [B]}; rows past num_detections are -1."""
        if _is_array(x):
            images = np.asarray(x)
            if images.ndim != 4 or images.shape[-1] != 3:
                raise ValueError(f"predict takes RGB images [batch, height, width, 3], got shape {list(images.shape)}")
            x = images
        return super().predict(x, **kwargs)


def _is_array(value: Any) -> bool:
    return isinstance(value, (np.ndarray, tf.Tensor, list, tuple))
