"""The `image_info` vector: the one description of how a network input relates to its image.

Every evaluation (and serving) image carries a float32 vector [6]:

    [scale_y, scale_x, offset_y, offset_x, original_height, original_width]

with, per axis, ``input_px = image_px * scale + offset`` (continuous pixel-edge coordinates:
0 is the top/left edge of the first pixel), so ``image_px = (input_px - offset) / scale``; the
original size bounds clipping. The evaluation transforms (`augment.eval_resize`/`eval_pad`)
fill it as follows:

- 'resize': scale = input_size / original_size per axis, offset = 0.
- 'pad' (the original test transform at test scale s): scale = int(H * s) / H per axis (s up
  to rounding), offset = the top/left zero border that centres the image in the canvas.

The network's maps are coarser than its input by the *map stride*, input size / output size per
axis (`map_stride`; 511 / 128 for the original, exactly its ratio). So a detection decoded at
map position m lies at image px ``(m * stride - offset) / scale``: `decode.boxes_to_image`,
`points_to_image` and `detections_to_image` take the [B, 6] batch of vectors and the stride.
The original divides by s and clips to int(H * s) / s; dividing by int(H * s) / H and clipping to
H differs only where H * s is not an integer, by less than 1 / s pixel.
"""

from __future__ import annotations

import tensorflow as tf

IMAGE_INFO_SIZE = 6
SCALE_Y, SCALE_X, OFFSET_Y, OFFSET_X, ORIGINAL_HEIGHT, ORIGINAL_WIDTH = range(IMAGE_INFO_SIZE)


def make_image_info(scale_yx: tf.Tensor, offset_yx: tf.Tensor, original_hw: tf.Tensor) -> tf.Tensor:
    """Pack per-axis scale [2], offset [2] and original (height, width) [2] into a [6] vector."""
    parts = [tf.cast(tf.reshape(p, [2]), tf.float32) for p in (scale_yx, offset_yx, original_hw)]
    return tf.concat(parts, axis=0)


def map_stride(input_hw: tf.Tensor, output_hw: tf.Tensor) -> tf.Tensor:
    """Input px per output-map px, (y, x) float32 [2]: input size / output size per axis."""
    return tf.cast(input_hw, tf.float32) / tf.cast(output_hw, tf.float32)


def _xy_columns(image_info: tf.Tensor, x: int, y: int, width: int) -> tf.Tensor:
    """Fields x, y of image_info [..., 6] repeated as (x, y, x, y, ...) to `width`: [..., 1, width]."""
    info = tf.convert_to_tensor(image_info, tf.float32)
    return tf.gather(info, [x, y] * (width // 2), axis=-1)[..., None, :]


def _pairs(coords: tf.Tensor) -> int:
    width = coords.shape[-1]
    if width is None or width % 2:
        raise ValueError(f"coordinates need a static, even last dimension of (x, y) pairs, got shape {coords.shape}")
    return width


def clip_to_image(coords: tf.Tensor, image_info: tf.Tensor) -> tf.Tensor:
    """Clip (x, y) pairs [..., N, 2k] (image px) to [0, original_width] x [0, original_height]."""
    coords = tf.cast(coords, tf.float32)
    limit = _xy_columns(image_info, ORIGINAL_WIDTH, ORIGINAL_HEIGHT, _pairs(coords))
    return tf.clip_by_value(coords, 0.0, limit)


def input_to_image(coords: tf.Tensor, image_info: tf.Tensor, clip: bool = False) -> tf.Tensor:
    """Map (x, y) pairs [..., N, 2k] (boxes x1, y1, x2, y2 or points x, y) from input px to
    original-image px; image_info [..., 6] has the leading dimensions of `coords` minus N.
    With `clip`, the result is clipped to the original image."""
    coords = tf.cast(coords, tf.float32)
    width = _pairs(coords)
    scale = _xy_columns(image_info, SCALE_X, SCALE_Y, width)
    offset = _xy_columns(image_info, OFFSET_X, OFFSET_Y, width)
    mapped = (coords - offset) / scale
    return clip_to_image(mapped, image_info) if clip else mapped


def image_to_input(coords: tf.Tensor, image_info: tf.Tensor) -> tf.Tensor:
    """Map (x, y) pairs [..., N, 2k] from original-image px to input px; inverse of `input_to_image`."""
    coords = tf.cast(coords, tf.float32)
    width = _pairs(coords)
    scale = _xy_columns(image_info, SCALE_X, SCALE_Y, width)
    offset = _xy_columns(image_info, OFFSET_X, OFFSET_Y, width)
    return coords * scale + offset
