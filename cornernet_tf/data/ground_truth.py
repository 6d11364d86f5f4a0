"""Ground truth as Keras detection users hand it over: {"boxes": [B, N, 4], "labels": [B, N]}.

Rows whose label is -1 are padding (keras-hub's and `keras.utils.bounding_boxes`' convention).
Three steps turn such a batch into what `targets.build_batch_targets` draws:

- `densify` (NumPy, before the graph): per-image lists or ragged tensors -> padded arrays.
- `check_batch` (NumPy, before the graph): the mistakes users make, each a `ValueError` that
  names the sample, the box and the problem (inverted boxes usually mean a wrong format).
- `clip_and_compact` (graph): boxes clipped to the input as the training pipeline clips them
  (`augment.clip_boxes`), boxes left empty dropped and counted, the kept rows moved first.

Boxes reach `check_batch` and `clip_and_compact` as (x1, y1, x2, y2) input pixels; converting
from a `bounding_box_format` is `keras.utils.bounding_boxes.convert_format`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

PADDING = -1  # the label of a padding row


def densify(boxes: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and labels of a batch as padded arrays ([B, N, 4] float32, [B, N] float64 so that
    non-integer labels can still be reported), padding rows -1.

    Takes arrays already padded, `tf.RaggedTensor`s, or sequences with one array (or list) per
    image; N is the most boxes of an image.

    Raises:
        ValueError: Boxes and labels disagree on the number of images or of boxes of an image,
            or a box does not have 4 coordinates.
    """
    per_image_boxes = _rows(boxes)
    per_image_labels = _rows(labels)
    if len(per_image_boxes) != len(per_image_labels):
        raise ValueError(
            f"y has boxes for {len(per_image_boxes)} images but labels for {len(per_image_labels)}; "
            f"give both for every image"
        )
    count = max((len(b) for b in per_image_boxes), default=0)
    dense_boxes = np.full([len(per_image_boxes), count, 4], PADDING, np.float32)
    dense_labels = np.full([len(per_image_boxes), count], PADDING, np.float64)
    for index, (image_boxes, image_labels) in enumerate(zip(per_image_boxes, per_image_labels)):
        image_boxes = np.asarray(image_boxes, np.float32).reshape(-1, 4) if len(image_boxes) else np.zeros([0, 4])
        image_labels = np.asarray(image_labels, np.float64).reshape(-1)
        if len(image_boxes) != len(image_labels):
            raise ValueError(
                f"sample {index}: {len(image_boxes)} boxes but {len(image_labels)} labels; every box needs a label"
            )
        dense_boxes[index, : len(image_boxes)] = image_boxes
        dense_labels[index, : len(image_labels)] = image_labels
    return dense_boxes, dense_labels


def _rows(values: Any) -> list[np.ndarray]:
    """One array per image of a padded array, a ragged tensor or a sequence of per-image values."""
    if isinstance(values, tf.RaggedTensor):
        return [row.numpy() for row in values]
    if isinstance(values, (np.ndarray, tf.Tensor)):
        array = np.asarray(values)
        if array.ndim == 0:
            raise ValueError(f"expected one entry per image, got a scalar {array!r}")
        return list(array)
    if isinstance(values, Sequence) and not isinstance(values, (str, bytes)):
        rows = []
        for row in values:
            array = np.asarray(row, dtype=np.float64)
            if array.size and array.ndim == 2 and array.shape[-1] != 4:
                raise ValueError(f"a box needs 4 coordinates, got rows of {array.shape[-1]}")
            rows.append(array)
        return rows
    raise ValueError(f"expected an array, a tf.RaggedTensor or a list per image, got {type(values).__name__}")


def check_batch(
    images: np.ndarray,
    boxes_xyxy: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    input_size: Sequence[int],
    bounding_box_format: str,
) -> None:
    """Refuse, before any graph runs, a batch that cannot be meant: the first problem found is a
    `ValueError` naming the sample (its index in the batch given), the box and what is wrong.

    Args:
        images: [B, H, W, 3] pixels (uint8, or float in 0..255).
        boxes_xyxy: [B, N, 4] (x1, y1, x2, y2) in input pixels, converted from the user's format.
        labels: [B, N] class indices, -1 for padding rows.
        num_classes: Labels must be below it.
        input_size: The network's (height, width); images must have it.
        bounding_box_format: The format the boxes were given in, for the message.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [batch, height, width, 3] RGB, got shape {list(images.shape)}")
    if tuple(images.shape[1:3]) != tuple(input_size):
        raise ValueError(
            f"images are {images.shape[1]} x {images.shape[2]} but the network takes {input_size[0]} x "
            f"{input_size[1]} (height x width); resize them (with their boxes), e.g. with "
            f"keras.layers.Resizing(..., bounding_box_format=...) or the detector's augmentation"
        )
    if not (images.dtype == np.uint8 or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(f"images must be uint8 or float pixels in 0..255, got {images.dtype}")
    if len(boxes_xyxy) != len(images):
        raise ValueError(f"{len(images)} images but ground truth for {len(boxes_xyxy)}")
    if np.issubdtype(images.dtype, np.floating):
        bad = ~np.isfinite(images).reshape(len(images), -1).all(axis=1)
        if bad.any():
            raise ValueError(f"sample {int(np.argmax(bad))}: the image has NaN or Inf pixel values")
    for index, (image_boxes, image_labels) in enumerate(zip(boxes_xyxy, labels)):
        real = image_labels != PADDING
        for row in np.flatnonzero(real):
            label, box = image_labels[row], image_boxes[row]
            where = f"sample {index}, box {row}"
            if not float(label).is_integer() or label < 0:
                raise ValueError(
                    f"{where}: label {float(label):g} is not a class index "
                    f"(integers 0..{num_classes - 1}; -1 marks padding)"
                )
            if label >= num_classes:
                raise ValueError(f"{where}: label {int(label)} is not below num_classes {num_classes}")
            if not np.isfinite(box).all():
                raise ValueError(f"{where}: the box {box.tolist()} has NaN or Inf coordinates")
            if box[2] < box[0] or box[3] < box[1]:
                raise ValueError(
                    f"{where}: the box is inverted (as x1, y1, x2, y2: {np.round(box, 2).tolist()}); boxes were "
                    f"read as bounding_box_format {bounding_box_format!r}: is that their format?"
                )


def clip_and_compact(
    boxes_xyxy: tf.Tensor, labels: tf.Tensor, input_size: Sequence[int]
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Clip to the input and keep what is left, kept rows first, as training treats boxes.

    Boxes are clipped to [0, size - 1] (the original's rule, `augment.clip_boxes`); a real box
    with no width or height left (degenerate, or wholly outside the image) is dropped.

    Args:
        boxes_xyxy: [B, N, 4] float (x1, y1, x2, y2) in input pixels.
        labels: [B, N] class indices, -1 for padding rows.
        input_size: (height, width) of the network input.

    Returns:
        (boxes [B, N, 4] float32, classes [B, N] int32, num_boxes [B] int32, dropped [B] int32):
        each image's kept boxes in its first num_boxes rows, in their order; dropped counts the
        real boxes left out.
    """
    height, width = input_size
    limit = tf.constant([width - 1, height - 1, width - 1, height - 1], tf.float32)
    clipped = tf.clip_by_value(tf.cast(boxes_xyxy, tf.float32), 0.0, limit)
    real = tf.not_equal(tf.cast(labels, tf.int32), PADDING)
    keep = real & (clipped[..., 2] > clipped[..., 0]) & (clipped[..., 3] > clipped[..., 1])
    order = tf.argsort(tf.cast(~keep, tf.int32), axis=1, stable=True)
    boxes = tf.gather(clipped, order, batch_dims=1)
    classes = tf.gather(tf.cast(labels, tf.int32), order, batch_dims=1)
    num_boxes = tf.reduce_sum(tf.cast(keep, tf.int32), axis=1)
    dropped = tf.reduce_sum(tf.cast(real & ~keep, tf.int32), axis=1)
    return boxes, tf.maximum(classes, 0), num_boxes, dropped
