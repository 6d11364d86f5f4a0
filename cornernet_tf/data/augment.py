"""Training augmentation and evaluation transforms as TF ops (usable inside tf.data maps).

Boxes are [N, 4] float32 (x1, y1, x2, y2) in continuous pixel-edge coordinates (a box around
columns a..b inclusive is x1 = a, x2 = b + 1). Random choices come from stateless ops keyed
by a per-example `seed` [2] int, so an example is augmented the same way whatever the
parallelism or the order in which tf.data runs it.

Training (`train_transform`), after the original CornerNet (sample/coco.py `kp_detection`,
sample/utils.py), in this order:

1. Crop window. With `random_crop`: a scale s ~ U[min, max] of the config (the original draws
   s from the discrete set arange(0.6, 1.4, 0.1)); a window of int(input * s) pixels centred on
   a random pixel (cx, cy) of the image, cx in [b, W - b) with b the largest of 128, 64, 32, ...
   below W / 2 (the original `_get_border`), so the window centre is kept away from the edges
   and windows mostly contain objects. Window parts outside the image are black. Without
   `random_crop`: the square of side max(H, W) centred on the image (`_full_image_crop`).
2. The window is cut onto a black canvas of its size and resized bilinearly to `input_size`
   (half-pixel centres, no antialiasing: the original's crop + cv2.resize INTER_LINEAR; the
   original's canvas keeps uint8 after resizing, ours stays float). A horizontal flip
   (p = 0.5) reverses the uint8 canvas, before the resize.
3. Boxes follow the same affine map, are clipped to [0, input - 1] as the original does, and
   boxes with no width or height left are dropped. Flipped boxes are mirrored exactly,
   x -> W - x; the original's `W - 1 - x` shifts continuous boxes by one pixel.
4. Colour jitter (brightness, contrast, saturation, each with alpha = 1 + U(-0.4, 0.4), in a
   random order, against the grey image of the unjittered input), PCA lighting noise
   (ImageNet eigenvalues/eigenvectors, alpha ~ N(0, 0.1)) and normalization
   (x - mean) / std, on x in [0, 1], never clipped. The three compose into one per-pixel
   affine map, applied in a single pass (`color_normalize`). The original applies lighting
   only together with colour jitter; here each has its flag.

Evaluation: `eval_resize` and `eval_pad` return the image in [0, 1] and its `image_info`;
`normalize` is applied to whole (padded) batches.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from cornernet_tf.data import image_info as info_lib

BORDER = 128  # the original's `border` for the random crop centre
JITTER_STRENGTH = 0.4
LIGHTING_STD = 0.1
# ImageNet PCA of RGB pixel values in [0, 1] (db/coco.py). The original lists the eigenvector
# rows in BGR channel order (it works on cv2 images); the rows are reversed here for RGB.
EIGENVALUES = (0.2141788, 0.01817699, 0.00341571)
EIGENVECTORS_BGR = (
    (-0.58752847, -0.69563484, 0.41340352),
    (-0.5832747, 0.00994535, -0.81221408),
    (-0.56089297, 0.71832671, 0.41158938),
)
EIGENVECTORS_RGB = EIGENVECTORS_BGR[::-1]
GRAY_WEIGHTS_RGB = (0.299, 0.587, 0.114)  # cv2.COLOR_BGR2GRAY, in RGB order


def crop_border(size: tf.Tensor, border: int = BORDER) -> tf.Tensor:
    """Largest of border, border/2, border/4, ..., 0 that is below size / 2 (int32 scalar)."""
    candidates = tf.constant([border >> k for k in range(border.bit_length())] + [0], tf.int32)
    fits = tf.cast(size, tf.int32) > 2 * candidates
    return tf.gather(candidates, tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32))


def random_crop_window(
    seed: tf.Tensor,
    image_hw: tf.Tensor,
    input_size: tuple[int, int],
    scale_range: tuple[float, float],
    border: int = BORDER,
) -> tf.Tensor:
    """Random training window [4] int32 (y0, x0, y1, x1) in image px; see the module doc."""
    scale_seed, y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    scale = tf.random.stateless_uniform([], scale_seed, scale_range[0], scale_range[1])
    crop_hw = tf.cast(tf.constant(input_size, tf.float32) * scale, tf.int32)
    height, width = tf.unstack(tf.cast(image_hw, tf.int32))
    center = []
    for axis_seed, side in ((y_seed, height), (x_seed, width)):
        margin = crop_border(side, border)
        center.append(
            tf.random.stateless_uniform([], axis_seed, margin, side - margin, dtype=tf.int32)
        )
    start = tf.stack(center) - crop_hw // 2
    return tf.concat([start, start + crop_hw], axis=0)


def full_image_window(image_hw: tf.Tensor) -> tf.Tensor:
    """The square window [4] int32 (y0, x0, y1, x1) of side max(H, W) centred on the image."""
    hw = tf.cast(image_hw, tf.int32)
    side = tf.reduce_max(hw)
    start = hw // 2 - side // 2
    return tf.concat([start, start + side], axis=0)


def resample_window(image: tf.Tensor, window: tf.Tensor, output_size: tuple[int, int], flip: tf.Tensor) -> tf.Tensor:
    """Cut `window` (y0, x0, y1, x1 int, image px) out of `image` [H, W, 3] onto a black canvas
    and resize it bilinearly to `output_size`, as the original's crop + cv2.resize.

    `flip` (bool scalar) mirrors the canvas horizontally. Returns [h, w, 3] float32 in the
    input's value range (0..255 for uint8). Parts outside the image are 0.
    """
    hw = tf.shape(image)[:2]
    start, end = window[:2], window[2:]
    inner_start = tf.maximum(start, 0)
    inner_end = tf.maximum(tf.minimum(end, hw), inner_start)
    inside = image[inner_start[0]:inner_end[0], inner_start[1]:inner_end[1]]
    pad_before = inner_start - start
    pad_after = end - inner_end
    paddings = tf.concat([tf.stack([pad_before, pad_after], axis=1), [[0, 0]]], axis=0)
    canvas = tf.pad(inside, paddings)
    canvas = tf.cond(flip, lambda: tf.reverse(canvas, [1]), lambda: canvas)
    return tf.image.resize(canvas, output_size, method="bilinear", antialias=False)


def transform_boxes(boxes: tf.Tensor, window: tf.Tensor, output_size: tuple[int, int], flip: tf.Tensor) -> tf.Tensor:
    """Apply the `resample_window` map to boxes [N, 4] (x1, y1, x2, y2): result in output px."""
    y0, x0, y1, x1 = tf.unstack(tf.cast(window, tf.float32))
    out_h, out_w = (float(s) for s in output_size)
    scale = tf.stack([out_w / (x1 - x0), out_h / (y1 - y0)])
    origin = tf.stack([x0, y0])
    points = (tf.reshape(boxes, [-1, 2, 2]) - origin) * scale  # [N, corner, (x, y)]
    moved = tf.reshape(points, [-1, 4])
    mirrored = tf.stack([out_w - moved[:, 2], moved[:, 1], out_w - moved[:, 0], moved[:, 3]], axis=1)
    return tf.where(flip, mirrored, moved)


def clip_boxes(boxes: tf.Tensor, classes: tf.Tensor, size: tuple[int, int]) -> tuple[tf.Tensor, tf.Tensor]:
    """Clip boxes [N, 4] to [0, size - 1] (the original's rule) and drop those left empty.

    Returns (boxes [M, 4], classes [M]) with M <= N.
    """
    height, width = size
    limit = tf.constant([width - 1, height - 1, width - 1, height - 1], tf.float32)
    clipped = tf.clip_by_value(boxes, 0.0, limit)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return tf.boolean_mask(clipped, keep), tf.boolean_mask(classes, keep)


def draw_jitter(seed: tf.Tensor, strength: float = JITTER_STRENGTH) -> tuple[tf.Tensor, tf.Tensor]:
    """Random alphas [3] = 1 + U(-strength, strength) for brightness, contrast, saturation and
    the step [3] int32 at which each runs (a uniform random order, as `random.shuffle`)."""
    alpha_seed, order_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    alphas = 1.0 + tf.random.stateless_uniform([3], alpha_seed, -strength, strength)
    return alphas, tf.argsort(tf.random.stateless_uniform([3], order_seed))


def lighting_shift(seed: tf.Tensor, std: float = LIGHTING_STD) -> tf.Tensor:
    """AlexNet PCA lighting: the RGB shift [3] eigvec @ (eigval * alpha), alpha ~ N(0, std)."""
    alpha = tf.random.stateless_normal([3], seed, stddev=std)
    return tf.linalg.matvec(tf.constant(EIGENVECTORS_RGB), tf.constant(EIGENVALUES) * alpha)


def jitter_coefficients(alphas: tf.Tensor, position: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Brightness, contrast, saturation run as blends, composed into one affine map.

    Op k (0 brightness, 1 contrast, 2 saturation) runs at step `position[k]` and blends
    x <- a_k x + (1 - a_k) t_k with t = 0, the mean grey, the grey image (grey taken once from
    the input, as the original). The composition is x * gain + c_contrast * mean_grey +
    c_saturation * grey, c_k = (1 - a_k) times the alphas of the ops that run after op k.
    alphas, position: [3]. Returns scalars (gain, c_contrast, c_saturation).
    """
    later = position[None, :] > position[:, None]  # later[k, j]: op j runs after op k
    after = tf.reduce_prod(tf.where(later, alphas[None, :], 1.0), axis=1)
    weights = (1.0 - alphas) * after
    return tf.reduce_prod(alphas), weights[1], weights[2]


def pixel_affine(images: tf.Tensor, matrix: tf.Tensor, bias: tf.Tensor) -> tf.Tensor:
    """out[..., j] = sum_i images[..., i] * matrix[i, j] + bias[j]; images [..., 3].

    A [P, 3] x [3, 3] matmul: several times faster on CPU than broadcasting over a last axis
    of size 3.
    """
    flat = tf.nn.bias_add(tf.matmul(tf.reshape(images, [-1, 3]), matrix), bias)
    return tf.reshape(flat, tf.shape(images))


def channel_means(image: tf.Tensor) -> tf.Tensor:
    """Mean of each channel [3] of image [H, W, 3]: summing rows first is about 3x faster on
    CPU than reducing a [H * W, 3] view over its long axis."""
    column_sums = tf.reduce_sum(image, axis=0)  # [W, 3]
    pixels = tf.cast(tf.shape(image)[0] * tf.shape(image)[1], image.dtype)
    return tf.reduce_sum(column_sums, axis=0) / pixels


def normalize(images: tf.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> tf.Tensor:
    """(x - mean) / std per RGB channel; images [..., 3] float in [0, 1]."""
    inverse = 1.0 / tf.constant(std, tf.float32)
    return pixel_affine(images, tf.linalg.diag(inverse), -tf.constant(mean, tf.float32) * inverse)


def color_normalize(
    image: tf.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    jitter_seed: Optional[tf.Tensor] = None,
    light_seed: Optional[tf.Tensor] = None,
    value_scale: float = 1.0,
) -> tf.Tensor:
    """Colour jitter, PCA lighting and normalization in one per-pixel affine pass.

    Equivalent to the original's `x = image * value_scale` (to [0, 1]), then
    `color_jittering_` (brightness, contrast, saturation with alpha = 1 + U(-0.4, 0.4) in a
    random order; see `jitter_coefficients`) if `jitter_seed` is given, then `lighting_`
    (x += eigvec @ (eigval * alpha), alpha ~ N(0, 0.1)) if `light_seed` is given, then
    (x - mean) / std. No clipping, as the original. image [H, W, 3] float -> same shape.
    """
    scale = tf.constant(value_scale, tf.float32)
    gain, c_contrast, c_saturation = tf.constant(1.0), tf.constant(0.0), tf.constant(0.0)
    shift = tf.zeros([3])
    gray_weights = tf.constant(GRAY_WEIGHTS_RGB)
    if jitter_seed is not None:
        gain, c_contrast, c_saturation = jitter_coefficients(*draw_jitter(jitter_seed))
        mean_gray = tf.tensordot(channel_means(image), gray_weights, 1) * scale
        shift += c_contrast * mean_gray
    if light_seed is not None:
        shift += lighting_shift(light_seed)
    inverse_std = 1.0 / tf.constant(std, tf.float32)
    # x_j -> (gain x_j + c_sat * sum_i w_i x_i + shift_j - mean_j) / std_j, x in [0, 1]
    matrix = (gain * tf.eye(3) + c_saturation * gray_weights[:, None]) * scale * inverse_std[None, :]
    bias = (shift - tf.constant(mean, tf.float32)) * inverse_std
    return pixel_affine(image, matrix, bias)


def train_transform(
    image: tf.Tensor,
    boxes: tf.Tensor,
    classes: tf.Tensor,
    seed: tf.Tensor,
    *,
    input_size: tuple[int, int],
    scale_range: tuple[float, float],
    random_crop: bool,
    flip: bool,
    jitter: bool,
    light: bool,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    border: int = BORDER,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """One augmented, normalized training example (module doc, steps 1-4).

    image [H, W, 3] uint8, boxes [N, 4] image px, classes [N], seed [2] int.
    Returns image [h, w, 3] float32 normalized with mean/std, boxes [M, 4] input px and
    classes [M], with (h, w) = input_size and M <= N.
    """
    window_seed, flip_seed, jitter_seed, light_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 4)
    )
    image_hw = tf.shape(image)[:2]
    if random_crop:
        window = random_crop_window(window_seed, image_hw, input_size, scale_range, border)
    else:
        window = full_image_window(image_hw)
    flipped = tf.constant(False)
    if flip:
        flipped = tf.random.stateless_uniform([], flip_seed) < 0.5
    pixels = resample_window(image, window, input_size, flipped)
    boxes = transform_boxes(tf.cast(boxes, tf.float32), window, input_size, flipped)
    boxes, classes = clip_boxes(boxes, classes, input_size)
    out = color_normalize(
        pixels, mean, std,
        jitter_seed=jitter_seed if jitter else None,
        light_seed=light_seed if light else None,
        value_scale=1.0 / 255.0 if image.dtype == tf.uint8 else 1.0,
    )
    return out, boxes, classes


def eval_resize(image: tf.Tensor, input_size: tuple[int, int]) -> tuple[tf.Tensor, tf.Tensor]:
    """Resize the whole image to `input_size` (per-axis scale, bilinear, half-pixel centres).

    image [H, W, 3] uint8 -> ([h, w, 3] float32 in [0, 1], image_info [6] with offset 0).
    """
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    resized = tf.image.resize(tf.cast(image, tf.float32) / 255.0, input_size, antialias=False)
    scale = tf.constant(input_size, tf.float32) / hw
    return resized, info_lib.make_image_info(scale, tf.zeros([2]), hw)


def eval_pad(image: tf.Tensor, size_divisor: int, scale: float = 1.0) -> tuple[tf.Tensor, tf.Tensor]:
    """The original test transform: resize by `scale`, centre in a zero canvas of side s | (d - 1).

    `size_divisor` d (a power of 2, 4 * 2**depth; 128 for depth 5 gives the original `| 127`)
    makes (side + 1) a multiple of d, so the stride-4 output map (side + 1) / 4 divides by
    2**depth. image [H, W, 3] uint8 -> ([S_h, S_w, 3] float32 in [0, 1], image_info [6]).
    """
    if size_divisor & (size_divisor - 1):
        raise ValueError(f"size_divisor must be a power of 2, got {size_divisor}")
    hw = tf.shape(image)[:2]
    pixels = tf.cast(image, tf.float32) / 255.0
    if scale != 1.0:
        new_hw = tf.cast(tf.cast(hw, tf.float32) * scale, tf.int32)
        pixels = tf.image.resize(pixels, new_hw, antialias=False)
    else:
        new_hw = hw
    canvas_hw = tf.bitwise.bitwise_or(new_hw, size_divisor - 1)
    offset = canvas_hw // 2 - new_hw // 2
    padded = tf.image.pad_to_bounding_box(pixels, offset[0], offset[1], canvas_hw[0], canvas_hw[1])
    ratio = tf.cast(new_hw, tf.float32) / tf.cast(hw, tf.float32)
    return padded, info_lib.make_image_info(ratio, offset, hw)
