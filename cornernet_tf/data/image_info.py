"""The `image_info` vector: how an evaluation input relates to its original image.

Every evaluation (and serving) image carries a float32 vector [6]:

    [scale_y, scale_x, offset_y, offset_x, original_height, original_width]

with, per axis, ``input_px = image_px * scale + offset`` (continuous pixel-edge coordinates:
0 is the top/left edge of the first pixel). So ``image_px = (input_px - offset) / scale``.
The two evaluation transforms fill it as follows (see `augment.eval_resize`/`eval_pad`):

- 'resize': scale = input_size / original_size per axis, offset = 0.
- 'pad': scale = resized / original (1 at test scale 1), offset = the top/left zero border
  that centres the image in the padded canvas.

Decoding works in output-map pixels. `decode.py` takes the geometry as a dict in map units
({"scale_yx", "offset_yx", "image_size"}, map = image * scale + offset); `to_map_geometry`
builds it from a batch's image_info and its input/output sizes (ratio output / input per
axis, as the original: 128 / 511). `input_to_image` maps boxes already in input px.
"""

from __future__ import annotations

import tensorflow as tf

IMAGE_INFO_SIZE = 6
SCALE_Y, SCALE_X, OFFSET_Y, OFFSET_X, ORIGINAL_HEIGHT, ORIGINAL_WIDTH = range(IMAGE_INFO_SIZE)


def make_image_info(scale_yx: tf.Tensor, offset_yx: tf.Tensor, original_hw: tf.Tensor) -> tf.Tensor:
    """Pack per-axis scale [2], offset [2] and original (height, width) [2] into a [6] vector."""
    parts = [tf.cast(tf.reshape(p, [2]), tf.float32) for p in (scale_yx, offset_yx, original_hw)]
    return tf.concat(parts, axis=0)


def _xyxy_affine(image_info: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Scale and offset laid out as x1, y1, x2, y2: two [..., 1, 4] tensors."""
    info = tf.convert_to_tensor(image_info, tf.float32)
    scale = tf.gather(info, [SCALE_X, SCALE_Y, SCALE_X, SCALE_Y], axis=-1)[..., None, :]
    offset = tf.gather(info, [OFFSET_X, OFFSET_Y, OFFSET_X, OFFSET_Y], axis=-1)[..., None, :]
    return scale, offset


def input_to_image(boxes: tf.Tensor, image_info: tf.Tensor, clip: bool = False) -> tf.Tensor:
    """Map boxes [..., N, 4] (x1, y1, x2, y2, input px) to original-image px.

    `image_info` is [..., 6] with the same leading dimensions as `boxes` minus N. With `clip`,
    coordinates are clipped to [0, width] and [0, height] of the original image.
    """
    scale, offset = _xyxy_affine(image_info)
    mapped = (tf.cast(boxes, tf.float32) - offset) / scale
    if not clip:
        return mapped
    info = tf.convert_to_tensor(image_info, tf.float32)
    limit = tf.gather(info, [ORIGINAL_WIDTH, ORIGINAL_HEIGHT] * 2, axis=-1)[..., None, :]
    return tf.clip_by_value(mapped, 0.0, limit)


def image_to_input(boxes: tf.Tensor, image_info: tf.Tensor) -> tf.Tensor:
    """Map boxes [..., N, 4] (x1, y1, x2, y2, original px) to input px; inverse of `input_to_image`."""
    scale, offset = _xyxy_affine(image_info)
    return tf.cast(boxes, tf.float32) * scale + offset


def to_map_geometry(image_info: tf.Tensor, input_hw: tf.Tensor, output_hw: tf.Tensor) -> dict[str, tf.Tensor]:
    """decode.py's geometry for a batch: image_info [B, 6], the batch's input (height, width)
    and the model's output (height, width) -> {"scale_yx" [B, 2], "offset_yx" [B, 2],
    "image_size" [B, 2]} with output-map px = image px * scale + offset."""
    info = tf.convert_to_tensor(image_info, tf.float32)
    ratio = tf.cast(output_hw, tf.float32) / tf.cast(input_hw, tf.float32)
    return {
        "scale_yx": info[:, SCALE_Y:SCALE_X + 1] * ratio,
        "offset_yx": info[:, OFFSET_Y:OFFSET_X + 1] * ratio,
        "image_size": info[:, ORIGINAL_HEIGHT:ORIGINAL_WIDTH + 1],
    }
