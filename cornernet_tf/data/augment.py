"""Training augmentation and evaluation transforms as TF ops (usable inside tf.data maps).

Boxes are [N, 4] float32 (x1, y1, x2, y2) in continuous pixel-edge coordinates (a box around
columns a..b inclusive is x1 = a, x2 = b + 1). Random choices come from stateless ops keyed
by a per-example `seed` [2] int, so an example is augmented the same way whatever the
parallelism or the order in which tf.data runs it.

Training, after the original CornerNet (sample/coco.py `kp_detection`, sample/utils.py), runs
in two stages: `sample_view` (per image in tf.data: the random draws and the boxes; the uint8
image passes through untouched) and `render_views` (per batch, where the training loop runs
it on the accelerator: the pixel work), so the input pipeline does little more than decode
JPEGs. `train_transform` is both for one image. In this order:

1. Crop window. With `random_crop`: a scale s ~ U[min, max] of the config (the original draws
   s from the discrete set arange(0.6, 1.4, 0.1)); a window of int(input * s) pixels centred on
   a random pixel (cx, cy) of the image, cx in [b, W - b) with b the largest of 128, 64, 32, ...
   below W / 2 (the original `_get_border`), so the window centre is kept away from the edges
   and windows mostly contain objects. Window parts outside the image are black. Without
   `random_crop`: the square of side max(H, W) centred on the image (`_full_image_crop`).
2. The window is resized bilinearly to `input_size` (half-pixel centres, no antialiasing: the
   original's black crop canvas + cv2.resize INTER_LINEAR; the original's canvas keeps uint8
   after resizing, ours stays float), mirrored with p = 0.5. This is one `crop_and_resize`
   read of the image with a black 1-pixel border (`resample_window`); where the original
   clamps reads at the window's edges it reads the neighbouring pixel, which changes only the
   outermost output pixels when upscaling.
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
`normalize` is applied to whole (padded) batches (`pad_batch`).

The canvas around an image (the window parts outside it, the test padding, a batch's padding)
is black by default, as in the original: zeros before normalization, and in training jittered
with the crop. A `Fill` colour paints it instead and keeps it out of the colour change: the
normalization mean, exactly 0 once normalized, is what mmdetection's test and training crops
show the network (its photometric distortion runs before its crop pads).
"""

from __future__ import annotations

import dataclasses
from typing import Any

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
# The canvas colour outside an image, RGB in [0, 1]; None: black, the original's (module doc).
Fill = tuple[float, float, float] | None


@dataclasses.dataclass(frozen=True, kw_only=True)
class AugmentationSettings:
    """The training augmentation's draws, one definition for the command line's pipeline
    (`pipeline.TrainInputSpec`) and `fit` users' `TrainingAugmentation`, which both extend it.

    scale_range: [min, max] random zoom; random_crop: crop at a random place (else centred);
    flip: random horizontal flip; color_jitter: brightness, contrast and saturation; lighting: PCA
    lighting noise (`sample_view`). fill: the crops' colour outside the image, RGB in [0, 1], kept
    out of the colour change (`render_views`); None: black, jittered with the image.
    """

    scale_range: tuple[float, float] = (0.6, 1.4)
    random_crop: bool = True
    flip: bool = True
    color_jitter: bool = True
    lighting: bool = True
    fill: Fill = None


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
    """Random training window [4] int32 (y0, x0, y1, x1) in image px; see the module doc.

    Args:
        seed: [2] int stateless seed; split into the scale and the two centre coordinates.
        image_hw: [2] (H, W) of the image.
        input_size: (h, w) of the network input; the window is int(input_size * s) pixels.
        scale_range: (min, max) of the uniform scale s.
        border: Largest margin between the window centre and the image edges, halved until it
            is below half the image side (`crop_border`).

    Returns:
        [4] int32 (y0, x0, y1, x1); it may reach past the image, where `resample_window` reads black.
    """
    scale_seed, y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    scale = tf.random.stateless_uniform([], scale_seed, scale_range[0], scale_range[1])
    crop_hw = tf.cast(tf.constant(input_size, tf.float32) * scale, tf.int32)
    height, width = tf.unstack(tf.cast(image_hw, tf.int32))
    center = []
    for axis_seed, side in ((y_seed, height), (x_seed, width)):
        margin = crop_border(side, border)
        center.append(tf.random.stateless_uniform([], axis_seed, margin, side - margin, dtype=tf.int32))
    start = tf.stack(center) - crop_hw // 2
    return tf.concat([start, start + crop_hw], axis=0)


def full_image_window(image_hw: tf.Tensor) -> tf.Tensor:
    """The square window [4] int32 (y0, x0, y1, x1) of side max(H, W) centred on the image."""
    hw = tf.cast(image_hw, tf.int32)
    side = tf.reduce_max(hw)
    start = hw // 2 - side // 2
    return tf.concat([start, start + side], axis=0)


def pad_canvas(images: tf.Tensor) -> tf.Tensor:
    """Images [B, H, W, 3] with a 1-pixel black border: what `resample` samples from.

    The border makes pixels at the image's edges blend with black, as they do on the original's
    black crop canvas. A batch padded with zeros past each image's bottom and right edges (as
    `padded_batch` does) already has that border there, so every image of it renders as it
    would alone.
    """
    return tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])


def sampling_box(window: tf.Tensor, output_size: tuple[int, int], flip: tf.Tensor) -> tf.Tensor:
    """Canvas coordinates [4] float32 (y, x of the first output pixel, y, x of the last) at
    which `resample` reads the output pixels' centres for `window` (y0, x0, y1, x1 int, image px).

    The map is cv2.resize's INTER_LINEAR (half-pixel centres): output pixel i of an axis reads
    window coordinate (i + 0.5) * s - 0.5 with s = window / output, shifted by 1 for the
    `pad_canvas` border. `flip` (bool scalar) swaps the x ends, mirroring the output exactly.
    """
    window = tf.cast(window, tf.float32)
    start, end = window[:2], window[2:]
    step = (end - start) / tf.constant(output_size, tf.float32)  # window px per output px
    first = start + 0.5 + 0.5 * step
    last = end + 0.5 - 0.5 * step
    y_first, x_first = tf.unstack(first)
    y_last, x_last = tf.unstack(last)
    x_first, x_last = tf.where(flip, x_last, x_first), tf.where(flip, x_first, x_last)
    return tf.stack([y_first, x_first, y_last, x_last])


def resample(canvases: tf.Tensor, boxes: tf.Tensor, output_size: tuple[int, int]) -> tf.Tensor:
    """Bilinear resampling of a batch: canvases [B, H, W, 3] (any dtype), `sampling_box`es
    [B, 4] -> [B, h, w, 3] float32 in the canvases' value range; reads outside a canvas are 0.

    One `crop_and_resize`, which takes normalized corner coordinates: a linear map per image,
    so any window, scale and flip is one batched op (cheap on an accelerator).
    """
    extent = tf.cast(tf.shape(canvases)[1:3] - 1, tf.float32)
    normalized = boxes / tf.maximum(tf.tile(extent, [2]), 1.0)
    indices = tf.range(tf.shape(canvases)[0])
    return tf.image.crop_and_resize(canvases, normalized, indices, output_size, method="bilinear")


def image_masks(image_size: tf.Tensor, canvas_hw: tf.Tensor) -> tf.Tensor:
    """[B, H, W, 1] uint8: 1 on each image of a batch padded at the bottom/right to `canvas_hw`
    (image_size [B, 2] its images' (height, width)), 0 on the padding."""
    rows = tf.sequence_mask(image_size[:, 0], canvas_hw[0])
    columns = tf.sequence_mask(image_size[:, 1], canvas_hw[1])
    return tf.cast(rows[:, :, tf.newaxis, tf.newaxis] & columns[:, tf.newaxis, :, tf.newaxis], tf.uint8)


def paint_outside(canvas: tf.Tensor, inside: tf.Tensor, fill: tuple[float, float, float]) -> tf.Tensor:
    """canvas [..., 3k] float (k RGB images side by side on the channels, as the portable graph
    passes them) with `fill` added where `inside` [..., 1] (the image's share of each pixel, in
    [0, 1]) is below 1. Where the canvas is black (0) outside the image, that paints it `fill`;
    inside it adds exactly 0, so the image's pixels keep their bits."""
    colour = tf.tile(tf.constant(fill, canvas.dtype), [tf.shape(canvas)[-1] // 3])
    return canvas + (1.0 - tf.cast(inside, canvas.dtype)) * colour


def pad_batch(images: tf.RaggedTensor, fill: Fill = None) -> tf.Tensor:
    """Ragged images [B, (H), (W), 3] -> dense [B, H_max, W_max, 3], each image at the top left
    (its image_info stays valid) and the rest `fill` (None: zeros, black)."""
    if fill is None:
        return images.to_tensor()
    return images.to_tensor(default_value=tf.constant(fill, images.dtype))


def resample_window(image: tf.Tensor, window: tf.Tensor, output_size: tuple[int, int], flip: tf.Tensor) -> tf.Tensor:
    """Cut `window` (y0, x0, y1, x1 int, image px) out of `image` [H, W, 3], black outside the
    image, and resize it bilinearly to `output_size`, as the original's crop + cv2.resize.

    Where the original clamps reads at the window's edges, this reads the neighbouring
    image pixel (or black): when upscaling, the outermost output pixels may differ.

    Args:
        image: [H, W, 3] image, any dtype.
        window: [4] int (y0, x0, y1, x1) in image px.
        output_size: (h, w) of the result.
        flip: bool scalar; True mirrors the result horizontally.

    Returns:
        [h, w, 3] float32 in the input's value range.
    """
    box = sampling_box(window, output_size, flip)
    return resample(pad_canvas(image[tf.newaxis]), box[tf.newaxis], output_size)[0]


def transform_boxes(boxes: tf.Tensor, window: tf.Tensor, output_size: tuple[int, int], flip: tf.Tensor) -> tf.Tensor:
    """Apply the `resample_window` map to boxes [N, 4] (x1, y1, x2, y2): result in output px.

    Args:
        boxes: [N, 4] float32 (x1, y1, x2, y2) in image px.
        window: [4] int (y0, x0, y1, x1) in image px, the window `resample_window` cuts.
        output_size: (h, w) the window is resized to.
        flip: bool scalar; True mirrors the boxes exactly, x -> w - x.

    Returns:
        [N, 4] float32 (x1, y1, x2, y2) in output px, not clipped (see `clip_boxes`).
    """
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
    """out[..., j] = sum_i images[..., i] * matrix[i, j] + bias[j] over RGB.

    images [..., 3] with one matrix [3, 3] and bias [3], or images [B, ..., 3] with one per
    image ([B, 3, 3], [B, 3]). A matmul: several times faster on CPU than broadcasting over a
    last axis of size 3.
    """
    if matrix.shape.rank == 3:
        flat = tf.matmul(tf.reshape(images, [tf.shape(images)[0], -1, 3]), matrix) + bias[:, tf.newaxis, :]
    else:
        flat = tf.nn.bias_add(tf.matmul(tf.reshape(images, [-1, 3]), matrix), bias)
    return tf.reshape(flat, tf.shape(images))


def channel_means(images: tf.Tensor) -> tf.Tensor:
    """Mean of each channel [B, 3] of images [B, H, W, 3]: summing rows first is about 3x
    faster on CPU than reducing a [B, H * W, 3] view over its long axis."""
    column_sums = tf.reduce_sum(images, axis=1)  # [B, W, 3]
    pixels = tf.cast(tf.shape(images)[1] * tf.shape(images)[2], images.dtype)
    return tf.reduce_sum(column_sums, axis=1) / pixels


def normalize(images: tf.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> tf.Tensor:
    """(x - mean) / std per RGB channel; images [..., 3] float in [0, 1]."""
    inverse = 1.0 / tf.constant(std, tf.float32)
    return pixel_affine(images, tf.linalg.diag(inverse), -tf.constant(mean, tf.float32) * inverse)


IDENTITY_COLOR = (1.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def color_params(jitter_seed: tf.Tensor | None = None, light_seed: tf.Tensor | None = None) -> tf.Tensor:
    """One image's random colour change as [6] float32: (gain, c_contrast, c_saturation,
    lighting shift R, G, B); `IDENTITY_COLOR` without either seed. See `color_normalize`."""
    gain, c_contrast, c_saturation = IDENTITY_COLOR[:3]
    shift = tf.zeros([3])
    if jitter_seed is not None:
        gain, c_contrast, c_saturation = jitter_coefficients(*draw_jitter(jitter_seed))
    if light_seed is not None:
        shift = lighting_shift(light_seed)
    return tf.concat([tf.stack([gain, c_contrast, c_saturation]), shift], axis=0)


def color_normalize(
    images: tf.Tensor,
    params: tf.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    value_scale: float = 1.0,
    fill: Fill = None,
    coverage: tf.Tensor | None = None,
) -> tf.Tensor:
    """Colour jitter, PCA lighting and normalization in one per-pixel affine pass.

    Equivalent to the original's `x = image * value_scale` (to [0, 1]), `color_jittering_`
    (brightness, contrast, saturation with alpha = 1 + U(-0.4, 0.4) in a random order; see
    `jitter_coefficients`; the grey image taken from x), `lighting_`
    (x += eigvec @ (eigval * alpha), alpha ~ N(0, 0.1)), then (x - mean) / std, never clipped.

    With a `fill`, `images` are black outside the image and `coverage` says how much of each
    pixel is image: the rest becomes `fill`, normalized but not jittered (as if the image were
    jittered, then its canvas painted and resampled), so a mean fill is exactly 0 there.

    Args:
        images: [B, H, W, 3] float RGB.
        params: [B, 6] float32 colour change per image, from `color_params`.
        mean: Per-channel RGB mean of pixels in [0, 1].
        std: Per-channel RGB standard deviation of pixels in [0, 1].
        value_scale: Factor that brings `images` to [0, 1] (1 / 255 for uint8 values).
        fill: The canvas colour outside the image; None: black, jittered with the image (the
            original's).
        coverage: [B, H, W, 1] float32 in [0, 1], the image's share of each pixel; needed with
            a `fill`.

    Returns:
        [B, H, W, 3] float32, jittered and normalized.
    """
    gain, c_contrast, c_saturation = (params[:, k, tf.newaxis] for k in range(3))  # [B, 1] each
    shift = params[:, 3:]
    gray_weights = tf.constant(GRAY_WEIGHTS_RGB)
    mean_gray = tf.linalg.matvec(channel_means(images), gray_weights)[:, tf.newaxis] * value_scale
    inverse_std = 1.0 / tf.constant(std, tf.float32)
    # x_j -> (gain x_j + c_sat * sum_i w_i x_i + c_con * mean_grey + shift_j - mean_j) / std_j
    eye = tf.eye(3)[tf.newaxis]
    matrix = gain[:, :, tf.newaxis] * eye + c_saturation[:, :, tf.newaxis] * gray_weights[:, tf.newaxis]
    matrix = matrix * (value_scale * inverse_std)
    bias = (c_contrast * mean_gray + shift - tf.constant(mean, tf.float32)) * inverse_std
    pixels = pixel_affine(images, matrix, bias)
    if fill is None:
        return pixels
    # black (0) maps to `bias`; move the uncovered share of each pixel from there to the fill's value
    outside = (tf.constant(fill, tf.float32) - tf.constant(mean, tf.float32)) * inverse_std
    return pixels + (1.0 - coverage) * (outside - bias[:, tf.newaxis, tf.newaxis, :])


def sample_view(
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
    border: int = BORDER,
) -> tuple[dict[str, tf.Tensor], tf.Tensor, tf.Tensor]:
    """The random part of training augmentation (module doc, steps 1-4), cheap and per image.

    Draws the window, flip and colour change, moves the boxes, and leaves the pixel work to
    `render_views`, which runs batched (on the training device in the training loop).

    Args:
        image: [H, W, 3] uint8; passed through untouched.
        boxes: [N, 4] (x1, y1, x2, y2) in image px.
        classes: [N] class indices.
        seed: [2] int stateless seed of all the random draws.
        input_size: (h, w) of the network input.
        scale_range: (min, max) of the random crop's scale.
        random_crop: Draw a random window (`random_crop_window`); otherwise the square around
            the whole image (`full_image_window`).
        flip: Mirror with p = 0.5.
        jitter: Draw a colour jitter (brightness, contrast, saturation).
        light: Draw a PCA lighting shift.
        border: Largest margin of the random window's centre from the image edges.

    Returns:
        (view, boxes, classes): view {"image": the input image, "image_size": [2] int32 its
        (height, width), "sampling_box": [4] float32, "color": [6] float32}, boxes [M, 4]
        float32 in input px clipped to the input, and classes [M], with M <= N (boxes left empty
        by the crop are dropped).
    """
    window_seed, flip_seed, jitter_seed, light_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    image_hw = tf.shape(image)[:2]
    if random_crop:
        window = random_crop_window(window_seed, image_hw, input_size, scale_range, border)
    else:
        window = full_image_window(image_hw)
    flipped = tf.constant(False)
    if flip:
        flipped = tf.random.stateless_uniform([], flip_seed) < 0.5
    boxes = transform_boxes(tf.cast(boxes, tf.float32), window, input_size, flipped)
    boxes, classes = clip_boxes(boxes, classes, input_size)
    view = {
        "image": image,
        "image_size": image_hw,
        "sampling_box": sampling_box(window, input_size, flipped),
        "color": color_params(jitter_seed if jitter else None, light_seed if light else None),
    }
    return view, boxes, classes


def render_views(
    views: dict[str, tf.Tensor],
    input_size: tuple[int, int],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    fill: Fill = None,
) -> tf.Tensor:
    """The pixel work of a batch of `sample_view`s: resample each window to `input_size`, then
    colour change and normalization.

    Args:
        views: Batched `sample_view` views: "image" [B, H, W, 3] (uint8 0..255 or float 0..1;
            each image at the top left, zeros past its bottom and right edges),
            "image_size" [B, 2] (read with a `fill` only), "sampling_box" [B, 4] and "color" [B, 6].
        input_size: (h, w) of the rendered images.
        mean: Per-channel RGB mean of pixels in [0, 1].
        std: Per-channel RGB standard deviation of pixels in [0, 1].
        fill: The colour of the windows' parts outside their image, left out of the colour
            change (`color_normalize`); None: black, jittered with the image (the original's).

    Returns:
        [B, h, w, 3] float32 normalized images.
    """
    images = views["image"]
    pixels = resample(pad_canvas(images), views["sampling_box"], input_size)
    value_scale = 1.0 / 255.0 if images.dtype == tf.uint8 else 1.0
    coverage = None
    if fill is not None:  # the same bilinear read of a mask: the image's share of each pixel
        masks = image_masks(views["image_size"], tf.shape(images)[1:3])
        coverage = resample(pad_canvas(masks), views["sampling_box"], input_size)
    return color_normalize(pixels, views["color"], mean, std, value_scale, fill, coverage)


def train_transform(
    image: tf.Tensor,
    boxes: tf.Tensor,
    classes: tf.Tensor,
    seed: tf.Tensor,
    *,
    input_size: tuple[int, int],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    fill: Fill = None,
    **sampling: Any,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """One augmented, normalized training example: `sample_view` then `render_views`.

    Args:
        image: [H, W, 3] uint8.
        boxes: [N, 4] (x1, y1, x2, y2) in image px.
        classes: [N] class indices.
        seed: [2] int stateless seed.
        input_size: (h, w) of the network input.
        mean: Per-channel RGB mean of pixels in [0, 1].
        std: Per-channel RGB standard deviation of pixels in [0, 1].
        fill: The crop's colour outside the image (`render_views`); None: black.
        **sampling: The other keyword arguments of `sample_view` (scale_range, random_crop,
            flip, jitter, light, border).

    Returns:
        (image, boxes, classes): image [h, w, 3] float32 normalized with mean/std, boxes [M, 4]
        float32 in input px and classes [M], with M <= N.
    """
    view, boxes, classes = sample_view(image, boxes, classes, seed, input_size=input_size, **sampling)
    batch = {key: value[tf.newaxis] for key, value in view.items()}
    return render_views(batch, input_size, mean, std, fill)[0], boxes, classes


def eval_resize(image: tf.Tensor, input_size: tuple[int, int]) -> tuple[tf.Tensor, tf.Tensor]:
    """Resize the whole image to `input_size` (per-axis scale, bilinear, half-pixel centres).

    image [H, W, 3] uint8 -> ([h, w, 3] float32 in [0, 1], image_info [6] with offset 0). The
    uint8 pixels are resized, then scaled: no float copy of a large image at its original size.
    """
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    resized = tf.image.resize(image, input_size, antialias=False) / 255.0
    scale = tf.constant(input_size, tf.float32) / hw
    return resized, info_lib.make_image_info(scale, tf.zeros([2]), hw)


def _height_width(image: tf.Tensor) -> tf.Tensor:
    """[H, W] int32 of `image` [H, W, C]: a constant where its static shape holds both, so a graph of
    fixed-size images computes the pad geometry when it is built. The portable exports' images have
    a fixed [H, W] but, with a dynamic batch, no static channel count (`tf.shape` then stays an op);
    ONNX opset 17 has no BitwiseOr to compute the canvas at run time."""
    if image.shape[:2].is_fully_defined():
        return tf.constant(image.shape[:2].as_list(), tf.int32)
    return tf.shape(image)[:2]


def eval_pad(image: tf.Tensor, size_divisor: int, scale: float = 1.0, fill: Fill = None) -> tuple[tf.Tensor, tf.Tensor]:
    """The original test transform: resize by `scale`, centre in a canvas of side s | (d - 1),
    black (zeros) or `fill` (mmdetection's test canvas is the normalization mean).

    `size_divisor` d (a power of 2, stride * 2**depth; 128 for CornerNet's stride 4 and depth 5
    gives the original `| 127`) makes (side + 1) a multiple of d, so the output map
    (side + 1) / stride divides by 2**depth. image [H, W, 3] uint8 -> ([S_h, S_w, 3] float32 in [0, 1], image_info [6]).
    """
    if size_divisor & (size_divisor - 1):
        raise ValueError(f"size_divisor must be a power of 2, got {size_divisor}")
    hw = _height_width(image)
    pixels = tf.cast(image, tf.float32) / 255.0
    if scale != 1.0:
        new_hw = tf.cast(tf.cast(hw, tf.float32) * scale, tf.int32)
        pixels = tf.image.resize(pixels, new_hw, antialias=False)
    else:
        new_hw = hw
    canvas_hw = tf.bitwise.bitwise_or(new_hw, size_divisor - 1)
    offset = canvas_hw // 2 - new_hw // 2
    padded = tf.image.pad_to_bounding_box(pixels, offset[0], offset[1], canvas_hw[0], canvas_hw[1])
    if fill is not None:
        inside = tf.image.pad_to_bounding_box(
            tf.ones_like(pixels[..., :1]), offset[0], offset[1], canvas_hw[0], canvas_hw[1]
        )
        padded = paint_outside(padded, inside, fill)
    ratio = tf.cast(new_hw, tf.float32) / tf.cast(hw, tf.float32)
    return padded, info_lib.make_image_info(ratio, offset, hw)


def eval_original(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The image as it is, for CornerNet-Saccade's test (which makes its own crops, and normalizes
    each after padding it with zeros): [H, W, 3] uint8 -> ([H, W, 3] float32 in [0, 1], the
    identity image_info [6])."""
    hw = tf.shape(image)[:2]
    return tf.cast(image, tf.float32) / 255.0, info_lib.make_image_info(tf.ones([2]), tf.zeros([2]), hw)


# The test transforms a test procedure names (`detection.settings.TestProcedure.transform`).
TEST_TRANSFORMS = ("resize", "pad", "original")


def test_transform(
    image: tf.Tensor,
    transform: str,
    input_size: tuple[int, int],
    size_divisor: int,
    scale: float = 1.0,
    fill: Fill = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """`transform` of TEST_TRANSFORMS on one image: `eval_resize` to input_size, `eval_pad` at
    `scale` to the size divisor, or `eval_original`; the one dispatch that the evaluation
    pipeline and the export graph share."""
    if transform == "resize":
        return eval_resize(image, input_size)
    if transform == "original":
        return eval_original(image)
    return eval_pad(image, size_divisor, scale, fill)
