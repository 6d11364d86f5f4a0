"""Keras callbacks for `ObjectDetector.fit`.

`CocoEvaluation` scores the detector on a validation set with pycocotools every N epochs and
puts the 12 COCO metrics into the epoch's logs, so `History`, `ModelCheckpoint(monitor=...)`,
`EarlyStopping` and a `TensorBoard` callback listed after it all see them:

    callbacks = [CocoEvaluation((val_images, val_y), every_n_epochs=5), keras.callbacks.TensorBoard("logs")]
    detector.fit(train, epochs=50, callbacks=callbacks)
    history.history["val_AP"]

Every image is scored, images without ground truth and images without detections included, as
`python -m cornernet_tf.evaluate` scores a split. Ground-truth boxes are taken in the pixels of
the images given; a box without width or height cannot be matched and is left out.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from pycocotools.coco import COCO

from cornernet_tf.data.ground_truth import PADDING, densify
from cornernet_tf.utils.coco_metrics import coco_metrics, detections_to_coco


class CocoEvaluation(keras.callbacks.Callback):
    """COCO AP of the model on `validation_data` after every `every_n_epochs`-th epoch, logged
    as `<prefix><metric>` (val_AP, val_AP50, ...) and kept in `last_metrics`."""

    def __init__(
        self,
        validation_data: tuple[Any, Mapping[str, Any]] | tf.data.Dataset,
        every_n_epochs: int = 1,
        batch_size: int = 8,
        prefix: str = "val_",
        verbose: bool = True,
    ):
        """Args:
        validation_data: (images [N, H, W, 3], {"boxes", "labels"}) arrays (or lists per
            image), or a `tf.data.Dataset` of such batches; boxes in the detector's
            `bounding_box_format`, in the pixels of the images given.
        every_n_epochs: Evaluate after every this many epochs (and never in between).
        batch_size: Images per `predict` call for arrays.
        prefix: Put before each metric name in the logs.
        verbose: Print one line with AP and AP50 after each evaluation.
        """
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.validation_data = validation_data
        self.every_n_epochs = every_n_epochs
        self.batch_size = batch_size
        self.prefix = prefix
        self.verbose = verbose
        self.last_metrics: dict[str, float] = {}

    def _batches(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(images, boxes, labels) batches of the validation data, boxes and labels densified."""
        data = self.validation_data
        if isinstance(data, tf.data.Dataset):
            for images, y in data:
                boxes, labels = densify(y["boxes"], y["labels"])
                yield np.asarray(images), boxes, labels
            return
        images, y = data
        boxes, labels = densify(y["boxes"], y["labels"])
        for start in range(0, len(images), self.batch_size):
            end = start + self.batch_size
            yield np.asarray(images[start:end]), boxes[start:end], labels[start:end]

    def evaluate(self) -> dict[str, float]:
        """The 12 COCO metrics of the model on the validation data now."""
        model = self.model
        box_format = model.bounding_box_format
        ground_truth: list[dict] = []
        records: list[dict] = []
        images_info: list[dict] = []
        for images, boxes, labels in self._batches():
            found = model.predict_on_batch(images)
            height, width = images.shape[1:3]
            for row in range(len(images)):
                image_id = len(images_info) + 1
                images_info.append({"id": image_id, "height": int(height), "width": int(width)})
                real = labels[row] != PADDING
                ground_truth += _annotations(
                    image_id, _to_xyxy(boxes[row][real], box_format, height, width), labels[row][real]
                )
                count = int(found["num_detections"][row])
                records += detections_to_coco(
                    image_id,
                    _to_xyxy(found["boxes"][row, :count], box_format, height, width),
                    found["confidence"][row, :count],
                    found["labels"][row, :count],
                    _category_ids(len(model.class_names)),
                )
        names = model.class_names
        dataset = {
            "images": images_info,
            "annotations": [{**annotation, "id": index + 1} for index, annotation in enumerate(ground_truth)],
            "categories": [{"id": index + 1, "name": name} for index, name in enumerate(names)],
        }
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO()
            coco.dataset = dataset
            coco.createIndex()
        return coco_metrics(coco, records)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if (epoch + 1) % self.every_n_epochs:
            return
        self.last_metrics = self.evaluate()
        if logs is not None:
            logs.update({f"{self.prefix}{name}": value for name, value in self.last_metrics.items()})
        if self.verbose:
            ap, ap50 = self.last_metrics["AP"], self.last_metrics["AP50"]
            print(f"epoch {epoch + 1}: COCO {self.prefix}AP {ap:.4f}, {self.prefix}AP50 {ap50:.4f}")


def _to_xyxy(boxes: np.ndarray, box_format: str, height: int, width: int) -> np.ndarray:
    """Boxes [N, 4] of `box_format` -> (x1, y1, x2, y2) pixels, NumPy."""
    if not len(boxes):
        return np.zeros([0, 4], np.float32)
    return np.asarray(
        keras.utils.bounding_boxes.convert_format(
            np.asarray(boxes, np.float32), source=box_format, target="xyxy", height=height, width=width
        )
    )


def _category_ids(num_classes: int) -> list[int]:
    """COCO category id of each class index: index + 1."""
    return list(range(1, num_classes + 1))


def _annotations(image_id: int, boxes_xyxy: np.ndarray, labels: Iterable) -> list[dict]:
    """COCO ground-truth annotations (no id yet) of one image; boxes without width or height,
    which no detection can overlap, are left out (training drops them too)."""
    return [
        {
            "image_id": image_id,
            "category_id": int(label) + 1,
            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
            "area": float((x2 - x1) * (y2 - y1)),
            "iscrowd": 0,
        }
        for (x1, y1, x2, y2), label in zip(boxes_xyxy, labels)
        if x2 > x1 and y2 > y1
    ]
