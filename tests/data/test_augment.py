"""Augmentation: boxes follow the pixels, exact flips, the original's colour ops, eval transforms."""

import itertools

import cv2
import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.data import augment, image_info
from cornernet_tf.detection import decode

INPUT = (64, 80)  # (height, width), deliberately not square
RAW = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # no normalization: pixels stay in [0, 1]


def _shape_image(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """A white filled shape on black [90, 120, 3] uint8 and its tight box [1, 4] (pixel edges)."""
    image = np.zeros((90, 120, 3), np.uint8)
    if kind == "ellipse":
        cv2.ellipse(image, (70, 40), (16, 10), 20, 0, 360, (255, 255, 255), -1)
    else:
        cv2.fillPoly(image, [np.array([[35, 60], [62, 55], [50, 30]], np.int32)], (255, 255, 255))
    ys, xs = np.nonzero(image[..., 0])
    return image, np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)


def _pixel_box(image: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(image.mean(axis=-1) > 0.5)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def test_crop_border_matches_the_original_get_border():
    def original(border, size):
        i = 1
        while size - border // i <= border // i:
            i *= 2
        return border // i

    for size in [1, 2, 3, 5, 64, 129, 200, 255, 256, 257, 480, 640]:
        assert int(augment.crop_border(tf.constant(size))) == original(128, size), size


@pytest.mark.parametrize("kind", ["ellipse", "triangle"])
def test_boxes_still_bound_the_shape_after_augmentation(kind):
    """Uncut objects: the box is the shape's pixel box (1 px for the original's clip to W - 1,
    0.5 px for bilinear edges). Objects cut by the crop: the clipped box still contains them."""
    image, box = _shape_image(kind)
    limit = np.array([INPUT[1] - 1, INPUT[0] - 1] * 2, np.float32)
    uncut = 0
    for seed in range(16):
        out, boxes, classes = augment.train_transform(
            tf.constant(image),
            tf.constant(box),
            tf.constant([2]),
            tf.constant([seed, 7], tf.int64),
            input_size=INPUT,
            scale_range=(0.6, 1.4),
            random_crop=True,
            flip=True,
            jitter=False,
            light=False,
            **RAW,
        )
        assert out.shape == (*INPUT, 3) and out.dtype == tf.float32
        if boxes.shape[0] == 0:  # the crop missed the object: then almost none of it may show
            assert (out.numpy().mean(axis=-1) > 0.5).sum() <= 2
            continue
        assert classes.numpy().tolist() == [2]
        got, pixels = boxes.numpy()[0], _pixel_box(out.numpy())
        if np.all((got > 0) & (got < limit)):
            uncut += 1
            np.testing.assert_allclose(got, pixels, atol=1.5)
        else:
            assert np.all(got[:2] <= pixels[:2] + 1.5) and np.all(got[2:] >= pixels[2:] - 1.5), (seed, got, pixels)
    assert uncut >= 3


def test_flip_mirrors_image_and_boxes_exactly():
    image, box = _shape_image("triangle")
    window = tf.constant([0, 0, 90, 120])
    flipped = augment.resample_window(tf.constant(image), window, (90, 120), tf.constant(True))
    np.testing.assert_allclose(flipped.numpy(), image[:, ::-1], atol=1e-2)
    moved = augment.transform_boxes(tf.constant(box), window, (90, 120), tf.constant(True)).numpy()
    x1, y1, x2, y2 = box[0]
    np.testing.assert_array_equal(moved, [[120 - x2, y1, 120 - x1, y2]])
    np.testing.assert_array_equal(moved[0], _pixel_box(flipped.numpy() / 255))
    for out_hw in [(64, 80), (110, 150)]:  # at any scale the flip is the exact mirror
        plain = augment.resample_window(tf.constant(image), window, out_hw, tf.constant(False)).numpy()
        mirrored = augment.resample_window(tf.constant(image), window, out_hw, tf.constant(True)).numpy()
        np.testing.assert_allclose(mirrored, plain[:, ::-1], atol=1e-2)


def test_resample_window_is_cv2_bilinear():
    """Equal to cv2.resize of the window except the outermost pixels when upscaling (the
    original clamps reads at the window's edges; we read the black border)."""
    image = np.random.default_rng(1).integers(0, 256, (50, 70, 3)).astype(np.uint8)
    for out_hw in [(64, 80), (31, 45)]:
        ours = augment.resample_window(tf.constant(image), tf.constant([0, 0, 50, 70]), out_hw, tf.constant(False))
        theirs = cv2.resize(image.astype(np.float32), out_hw[::-1], interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(ours.numpy()[1:-1, 1:-1], theirs[1:-1, 1:-1], atol=1e-2)
    downscaled = augment.resample_window(tf.constant(image), tf.constant([0, 0, 50, 70]), (31, 45), tf.constant(False))
    np.testing.assert_allclose(downscaled.numpy(), cv2.resize(image.astype(np.float32), (45, 31)), atol=1e-2)


def test_resample_window_inside_the_image_is_cv2_on_the_crop():
    image = np.random.default_rng(5).integers(0, 256, (60, 80, 3)).astype(np.uint8)
    window = [10, 15, 45, 60]  # strictly inside: the original crops, then resizes
    ours = augment.resample_window(tf.constant(image), tf.constant(window), (25, 30), tf.constant(False))
    theirs = cv2.resize(image[10:45, 15:60].astype(np.float32), (30, 25), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-2)


def test_window_outside_the_image_is_black_and_boxes_shift():
    image = np.full((20, 20, 3), 255, np.uint8)
    for window in ([-10, -10, 30, 30], [-10, 5, 30, 45]):
        out = augment.resample_window(tf.constant(image), tf.constant(window), (40, 40), tf.constant(False)).numpy()
        y0, x0 = window[:2]
        expected = np.zeros((40, 40, 3))
        expected[max(-y0, 0) : 20 - y0, max(-x0, 0) : 20 - x0] = 255
        np.testing.assert_allclose(out, expected, atol=1e-2)
    moved = augment.transform_boxes(
        tf.constant([[0.0, 0.0, 20.0, 20.0]]), tf.constant([-10, -10, 30, 30]), (40, 40), tf.constant(False)
    )
    np.testing.assert_allclose(moved.numpy(), [[10, 10, 30, 30]])


def test_rendering_does_not_depend_on_the_batch_padding():
    """A view renders the same alone and padded into a batch with a larger image."""
    rng = np.random.default_rng(6)
    small = rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)
    kwargs = dict(input_size=INPUT, scale_range=(0.6, 1.4), random_crop=True, flip=True, jitter=True, light=True)
    for seed in range(6):
        view, _, _ = augment.sample_view(
            small, tf.zeros([0, 4]), tf.zeros([0], tf.int32), tf.constant([seed, 1], tf.int64), **kwargs
        )
        alone = augment.render_views({k: v[None] for k, v in view.items()}, INPUT, **RAW)
        padded = dict(view, image=tf.pad(view["image"], [[0, 40], [0, 59], [0, 0]], constant_values=0))
        other = dict(padded, image=tf.constant(rng.integers(0, 256, (80, 109, 3)).astype(np.uint8)))
        batch = {k: tf.stack([other[k], padded[k]]) for k in view}
        np.testing.assert_allclose(augment.render_views(batch, INPUT, **RAW)[1], alone[0], atol=1e-4)


def test_clip_drops_empty_boxes_with_their_classes():
    boxes = tf.constant([[-5.0, 2, 10, 8], [70, 2, 90, 8], [3, 3, 3, 9], [10, 10, 200, 200]])
    kept, classes = augment.clip_boxes(boxes, tf.constant([0, 1, 2, 3]), INPUT)
    np.testing.assert_allclose(kept.numpy(), [[0, 2, 10, 8], [70, 2, 79, 8], [10, 10, 79, 63]])
    assert classes.numpy().tolist() == [0, 1, 3]


def test_random_crop_window_is_deterministic_in_the_seed_and_within_the_scale_range():
    hw = tf.constant([480, 640])
    windows = [augment.random_crop_window(tf.constant([s, 0], tf.int64), hw, (511, 511), (0.6, 1.4)) for s in range(20)]
    sizes = np.array([(w[2] - w[0]).numpy() for w in windows])
    assert sizes.min() >= int(511 * 0.6) and sizes.max() <= int(511 * 1.4)
    centres = np.array([((w[0] + w[2]) / 2).numpy() for w in windows])
    assert centres.min() >= 128 - 1 and centres.max() <= 480 - 128 + 1
    again = augment.random_crop_window(tf.constant([3, 0], tf.int64), tf.constant([480, 640]), (511, 511), (0.6, 1.4))
    np.testing.assert_array_equal(again, windows[3])


def test_full_image_window_is_the_centred_square():
    np.testing.assert_array_equal(augment.full_image_window(tf.constant([100, 150])), [-25, 0, 125, 150])


def _numpy_jitter(image, alphas, order):
    """The original `color_jittering_`, op by op (0 brightness, 1 contrast, 2 saturation)."""
    gs = image @ np.array([0.299, 0.587, 0.114], np.float32)
    gs_mean = gs.mean()
    image = image.copy()
    for op in order:
        a = alphas[op]
        if op == 0:
            image *= a
        elif op == 1:
            image = image * a + gs_mean * (1 - a)
        else:
            image = image * a + gs[..., None] * (1 - a)
    return image


def test_jitter_coefficients_compose_the_sequential_ops_in_every_order():
    image = np.random.default_rng(2).random((9, 11, 3), dtype=np.float32)
    alphas = np.array([1.3, 0.7, 1.15], np.float32)
    gray = image @ np.array([0.299, 0.587, 0.114], np.float32)
    for order in itertools.permutations(range(3)):
        position = np.argsort(order).astype(np.int32)  # step at which each op runs
        gain, c_contrast, c_saturation = (float(v) for v in augment.jitter_coefficients(alphas, position))
        ours = image * gain + c_contrast * gray.mean() + c_saturation * gray[..., None]
        np.testing.assert_allclose(ours, _numpy_jitter(image, alphas, order), atol=1e-5)


def test_color_normalize_equals_the_original_op_sequence():
    images = np.random.default_rng(3).integers(0, 256, (4, 12, 10, 3)).astype(np.float32)
    mean, std = (0.47, 0.45, 0.41), (0.28, 0.27, 0.29)
    params, expected = [], []
    for s, image in enumerate(images):  # a batch: every image with its own draw
        jitter_seed, light_seed = tf.constant([s, 1]), tf.constant([s, 2])
        alphas, position = (t.numpy() for t in augment.draw_jitter(jitter_seed))
        assert sorted(position.tolist()) == [0, 1, 2] and np.all(np.abs(alphas - 1) <= 0.4)
        jittered = _numpy_jitter(image / 255, alphas, np.argsort(position)) + augment.lighting_shift(light_seed).numpy()
        expected.append((jittered - mean) / std)
        params.append(augment.color_params(jitter_seed, light_seed))
    ours = augment.color_normalize(tf.constant(images), tf.stack(params), mean, std, value_scale=1 / 255)
    np.testing.assert_allclose(ours.numpy(), np.stack(expected), atol=1e-5)
    identity = tf.tile(augment.color_params()[None], [4, 1])
    np.testing.assert_array_equal(identity[0], augment.IDENTITY_COLOR)
    plain = augment.color_normalize(tf.constant(images), identity, mean, std, value_scale=1 / 255)
    np.testing.assert_allclose(plain.numpy(), (images / 255 - mean) / std, atol=1e-5)


def test_jitter_orders_are_all_drawn():
    orders = {tuple(augment.draw_jitter(tf.constant([s, 0]))[1].numpy()) for s in range(60)}
    assert len(orders) == 6


def test_lighting_uses_the_bgr_eigenvectors_on_reversed_channels():
    seed = tf.constant([5, 6])
    alpha = tf.random.stateless_normal([3], seed, stddev=0.1).numpy()
    bgr_shift = np.array(augment.EIGENVECTORS_BGR) @ (np.array(augment.EIGENVALUES) * alpha)
    np.testing.assert_allclose(augment.lighting_shift(seed).numpy(), bgr_shift[::-1], atol=1e-7)


def test_normalize_uses_mean_and_std_per_channel():
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.125)
    out = augment.normalize(tf.constant([[[0.1, 0.2, 0.3], [0.6, 0.45, 0.425]]]), mean, std)
    np.testing.assert_allclose(out.numpy(), [[[0, 0, 0], [1, 1, 1]]], atol=1e-6)


def test_train_transform_is_a_function_of_the_seed():
    image, box = _shape_image("ellipse")
    kwargs = dict(input_size=INPUT, scale_range=(0.6, 1.4), random_crop=True, flip=True, jitter=True, light=True, **RAW)
    a = augment.train_transform(image, box, tf.constant([0]), tf.constant([1, 2], tf.int64), **kwargs)
    b = augment.train_transform(image, box, tf.constant([0]), tf.constant([1, 2], tf.int64), **kwargs)
    c = augment.train_transform(image, box, tf.constant([0]), tf.constant([1, 3], tf.int64), **kwargs)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_without_random_crop_the_whole_image_is_kept():
    image, box = _shape_image("triangle")
    out, boxes, _ = augment.train_transform(
        image,
        box,
        tf.constant([0]),
        tf.constant([0, 0], tf.int64),
        input_size=(120, 120),
        scale_range=(1.0, 1.0),
        random_crop=False,
        flip=False,
        jitter=False,
        light=False,
        **RAW,
    )
    np.testing.assert_allclose(boxes.numpy()[0], box[0] + [0, 15, 0, 15])  # 90 high -> 15 px bars
    np.testing.assert_allclose(out.numpy()[15:105], image / 255.0, atol=1e-4)


def test_eval_pad_centres_the_image_like_the_original():
    image = np.random.default_rng(4).integers(0, 256, (100, 150, 3)).astype(np.uint8)
    padded, info = augment.eval_pad(tf.constant(image), size_divisor=128)
    assert padded.shape == (127, 255, 3)  # 100 | 127, 150 | 127
    top, left = 127 // 2 - 50, 255 // 2 - 75
    np.testing.assert_allclose(info.numpy(), [1, 1, top, left, 100, 150])
    np.testing.assert_allclose(padded.numpy()[top : top + 100, left : left + 150], image / 255.0)
    assert padded.numpy().sum() == pytest.approx((image / 255.0).sum(), rel=1e-5)


def test_eval_pad_at_another_scale_and_depth():
    image = tf.zeros([100, 150, 3], tf.uint8)
    padded, info = augment.eval_pad(image, size_divisor=32, scale=0.5)
    assert padded.shape == (63, 95, 3)  # 50 | 31, 75 | 31
    np.testing.assert_allclose(info.numpy(), [0.5, 0.5, 31 - 25, 47 - 37, 100, 150])


def test_eval_resize_info_maps_boxes_back_to_the_image():
    resized, info = augment.eval_resize(tf.zeros([100, 150, 3], tf.uint8), INPUT)
    assert resized.shape == (*INPUT, 3)
    np.testing.assert_allclose(info.numpy(), [0.64, 80 / 150, 0, 0, 100, 150], rtol=1e-6)
    boxes = tf.constant([[[10.0, 20.0, 140.0, 90.0]]])
    to_input = image_info.image_to_input(boxes, info[None])
    np.testing.assert_allclose(to_input.numpy(), [[[10 * 80 / 150, 12.8, 140 * 80 / 150, 57.6]]], rtol=1e-6)
    np.testing.assert_allclose(image_info.input_to_image(to_input, info[None]), boxes, rtol=1e-6)


def test_input_to_image_clips_to_the_original_size():
    info = image_info.make_image_info([2.0, 2.0], [10.0, 4.0], [50, 60])
    boxes = tf.constant([[0.0, 0.0, 200.0, 40.0]])
    np.testing.assert_allclose(image_info.input_to_image(boxes, info), [[-2, -5, 98, 15]])
    np.testing.assert_allclose(image_info.input_to_image(boxes, info, clip=True), [[0, 0, 60, 15]])


def test_eval_pad_info_decodes_like_the_original_pad_rescaling():
    padded, info = augment.eval_pad(tf.zeros([100, 150, 3], tf.uint8), size_divisor=128)
    stride = image_info.map_stride(tf.shape(padded)[:2], [32, 64])
    np.testing.assert_allclose(stride, [127 / 32, 255 / 64])
    map_box = np.array([10.0, 5.0, 60.0, 30.0])  # x1, y1, x2, y2 in the 32 x 64 map
    # test/coco.py: divide by the ratios (out / inp), subtract the border, clip to the image
    ratio_x, ratio_y = 64 / 255, 32 / 127
    border_x, border_y = float(info[3]), float(info[2])
    expected = map_box / [ratio_x, ratio_y, ratio_x, ratio_y] - [border_x, border_y, border_x, border_y]
    got = decode.boxes_to_image(tf.constant([[map_box]], tf.float32), info[None], stride, clip=False)
    np.testing.assert_allclose(got.numpy()[0, 0], expected, rtol=1e-5)
    clipped = decode.boxes_to_image(tf.constant([[map_box]], tf.float32), info[None], stride).numpy()[0, 0]
    np.testing.assert_allclose(clipped, np.clip(expected, 0, [150, 100, 150, 100]), rtol=1e-5)
    # the clip bounds are 0 and the original size (w, h)
    assert expected[0] < 0 and expected[2] > 150 and expected[3] > 100 and clipped[[0, 2, 3]].tolist() == [0, 150, 100]


MEAN = (0.485, 0.456, 0.406)  # a fill: mmdetection's ImageNet mean
STD = (0.229, 0.224, 0.225)


def test_eval_pad_fill_paints_only_the_canvas():
    """A fill colours the canvas outside the image exactly; the image keeps its bits, and
    several RGB images side by side on the channels (the portable graph's batch) each get it."""
    image = tf.constant(np.random.default_rng(7).integers(0, 256, (100, 150, 6)).astype(np.uint8))
    black, info = augment.eval_pad(image, size_divisor=128)
    filled, filled_info = augment.eval_pad(image, size_divisor=128, fill=MEAN)
    np.testing.assert_array_equal(filled_info, info)
    inside = np.zeros((127, 255), bool)
    inside[13:113, 52:202] = True
    np.testing.assert_array_equal(filled.numpy()[inside], black.numpy()[inside])
    np.testing.assert_array_equal(
        filled.numpy()[~inside], np.tile(np.float32(MEAN), 2)[None].repeat((~inside).sum(), 0)
    )
    normalized = augment.normalize(filled[..., :3], MEAN, STD).numpy()
    assert np.all(normalized[~inside] == 0.0)


def test_pad_batch_pads_with_the_fill_or_black():
    parts = [tf.fill([2, 3, 3], 0.5), tf.ones([3, 1, 3])]
    images = tf.ragged.stack([tf.RaggedTensor.from_tensor(part, ragged_rank=1) for part in parts])
    np.testing.assert_array_equal(augment.pad_batch(images), images.to_tensor())
    filled = augment.pad_batch(images, MEAN).numpy()
    np.testing.assert_array_equal(filled[0, :2, :3], np.full((2, 3, 3), 0.5, np.float32))
    np.testing.assert_array_equal(filled[0, 2], np.float32([MEAN] * 3))
    np.testing.assert_array_equal(filled[1, :, 1:], np.float32([[MEAN] * 2] * 3))


def test_rendering_with_a_mean_fill_leaves_the_canvas_at_zero_and_the_image_as_it_was():
    """Training crops with a mean fill: window parts off the image normalize to exactly 0, even
    jittered and lit (the fill is left out of the colour change, as mmdetection pads after its
    photometric distortion); pixels read wholly from the image are those of the black render, in
    a batch padded with a larger image too."""
    rng = np.random.default_rng(8)
    image = tf.constant(rng.integers(0, 256, (20, 30, 3)).astype(np.uint8))
    big = tf.constant(rng.integers(0, 256, (50, 60, 3)).astype(np.uint8))
    color = augment.color_params(tf.constant([1, 2]), tf.constant([3, 4]))
    views = {
        "image": tf.stack([tf.pad(image, [[0, 30], [0, 30], [0, 0]]), big]),
        "image_size": tf.constant([[20, 30], [50, 60]]),
        "sampling_box": tf.stack([augment.sampling_box(tf.constant([-10, -20, 30, 40]), (80, 120), False)] * 2),
        "color": tf.stack([color, color]),
    }
    black = augment.render_views(views, (80, 120), MEAN, STD).numpy()[0]
    filled = augment.render_views(views, (80, 120), MEAN, STD, fill=MEAN).numpy()[0]
    # output px (i, j) reads image px (i / 2 - 10.25, j / 2 - 20.25): rows 0..19, columns 0..29
    np.testing.assert_array_equal(filled[21:59, 41:99], black[21:59, 41:99])
    outside = np.ones((80, 120), bool)
    outside[19:61, 39:101] = False  # the image and the ring where it blends with the canvas
    assert np.all(filled[outside] == 0.0) and np.abs(black[outside]).min() > 0.5
    # row 20 reads image row -0.25: 3/4 image, 1/4 canvas, which is black[0, 0] in the black render
    np.testing.assert_allclose(filled[20, 60], black[20, 60] - 0.25 * black[0, 0], rtol=1e-5, atol=1e-5)
