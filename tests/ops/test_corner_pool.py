"""Corner pooling: the official fixture, scan vs vectorized vs NumPy, gradients, XLA, errors."""

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.ops import compiled_available, corner_pool, corner_pool_pair, resolve_implementation
from cornernet_tf.ops.corner_pool import _compiled_module
from tests.conftest import load_reference, nhwc

DIRECTIONS = ("top", "left", "bottom", "right")
PURE = ("scan", "vectorized")


@pytest.fixture(scope="module")
def ref():
    return {key: nhwc(value) for key, value in load_reference("corner_pool.npz").items()}


def numpy_pool(x: np.ndarray, direction: str) -> np.ndarray:
    """Independent reference: np.maximum.accumulate along the pooled axis."""
    axis = 1 if direction in ("top", "bottom") else 2
    if direction in ("top", "left"):
        return np.flip(np.maximum.accumulate(np.flip(x, axis), axis=axis), axis)
    return np.maximum.accumulate(x, axis=axis)


@pytest.mark.parametrize("implementation", PURE)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_forward_matches_official_fixture_bitwise(ref, implementation, direction):
    out = corner_pool(ref["x"], direction, implementation).numpy()
    np.testing.assert_array_equal(out, ref[direction])


@pytest.mark.parametrize("implementation", PURE)
def test_pair_matches_official_fixture_bitwise(ref, implementation):
    tl = corner_pool_pair(ref["x"], ref["x2"], "top_left", implementation).numpy()
    br = corner_pool_pair(ref["x"], ref["x2"], "bottom_right", implementation).numpy()
    np.testing.assert_array_equal(tl, ref["top_x_plus_left_x2"])
    np.testing.assert_array_equal(br, ref["bottom_x_plus_right_x2"])


@pytest.mark.parametrize("shape", [(2, 1, 9, 3), (2, 9, 1, 3), (1, 13, 6, 4), (1, 16, 17, 2)])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_scan_equals_vectorized_equals_numpy(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    # few distinct values -> many ties; casting keeps them exact in every dtype
    x = tf.cast(rng.integers(-4, 5, size=shape).astype("float32") * 0.25, dtype)
    for direction in DIRECTIONS:
        scan = corner_pool(x, direction, "scan")
        vectorized = corner_pool(x, direction, "vectorized")
        assert scan.dtype == vectorized.dtype == x.dtype
        np.testing.assert_array_equal(scan.numpy(), vectorized.numpy())
        expected = numpy_pool(tf.cast(x, "float32").numpy(), direction)
        np.testing.assert_array_equal(tf.cast(vectorized, "float32").numpy(), expected)


def test_negative_infinity_inputs_are_kept():
    x = tf.constant([[-np.inf, -3.0, -np.inf]], shape=(1, 1, 3, 1))
    np.testing.assert_array_equal(corner_pool(x, "right", "vectorized").numpy().ravel(), [-np.inf, -3.0, -3.0])


def _input_gradient(x, grad_out, direction, implementation):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = corner_pool(x, direction, implementation)
    return tape.gradient(y, x, output_gradients=tf.constant(grad_out)).numpy()


@pytest.mark.parametrize("implementation", PURE)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_gradients_follow_the_official_rule_without_ties(ref, implementation, direction):
    grad = _input_gradient(ref["x"], ref["grad_out"], direction, implementation)
    # channel 1 is tie-free: every rule sends each output's gradient to the same argmax
    np.testing.assert_allclose(grad[..., 1], ref[f"grad_x_{direction}"][..., 1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("implementation", PURE)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_gradients_are_conserved_on_ties(ref, implementation, direction):
    grad = _input_gradient(ref["x"], ref["grad_out"], direction, implementation)
    axis = 1 if direction in ("top", "bottom") else 2
    # each output's gradient lands on one element of its own row/column
    np.testing.assert_allclose(grad.sum(axis=axis), ref["grad_out"].sum(axis=axis), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad.sum(axis=axis), ref[f"grad_x_{direction}"].sum(axis=axis), rtol=1e-5, atol=1e-5)
    # and only on elements equal to some output of their row/column (a window maximum)
    moved = np.moveaxis(ref["x"], axis, -1)
    maxima = np.moveaxis(ref[direction], axis, -1)
    hits = moved[..., :, None] == maxima[..., None, :]
    is_window_max = np.moveaxis(hits.any(axis=-1), -1, axis)
    assert np.all(is_window_max[grad != 0])


def numpy_pool_gradient(x: np.ndarray, grad_out: np.ndarray, direction: str) -> np.ndarray:
    """Independent reference of the original's backward: each output's gradient goes to the
    maximum of its window farthest from it (the last one scanning outwards)."""
    axis = 1 if direction in ("top", "bottom") else 2
    xs, gs = np.moveaxis(x, axis, -1), np.moveaxis(grad_out, axis, -1)
    grad = np.zeros(xs.shape, np.float64)
    length = xs.shape[-1]
    for i in range(length):
        window = np.arange(i, length) if direction in ("top", "left") else np.arange(i, -1, -1)
        values = xs[..., window]
        farthest = len(window) - 1 - np.argmax(values[..., ::-1], axis=-1)  # last maximum of the window
        target = window[farthest]
        np.put_along_axis(
            grad, target[..., None], np.take_along_axis(grad, target[..., None], -1) + gs[..., i : i + 1], -1
        )
    return np.moveaxis(grad, -1, axis)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_vectorized_gradients_follow_the_official_tie_rule(ref, direction):
    grad = _input_gradient(ref["x"], ref["grad_out"], direction, "vectorized")
    np.testing.assert_allclose(grad, ref[f"grad_x_{direction}"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 7, 5, 3), (1, 1, 9, 2), (1, 9, 1, 2), (1, 16, 16, 1)])
@pytest.mark.parametrize("dtype", [tf.float32, tf.float16, tf.bfloat16])
def test_vectorized_gradients_equal_the_numpy_rule_on_ties(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    x = tf.constant(rng.integers(-3, 4, shape), dtype)  # many ties
    grad_out = tf.constant(rng.integers(-8, 9, shape), dtype)  # sums exact in every dtype and order
    for direction in DIRECTIONS:

        def gradient(t, g):
            with tf.GradientTape() as tape:
                tape.watch(t)
                y = corner_pool(t, direction, "vectorized")
            return tape.gradient(y, t, output_gradients=g)

        dynamic = tf.function(gradient, input_signature=[tf.TensorSpec([None] * 4, dtype)] * 2)
        expected = numpy_pool_gradient(x.numpy().astype(np.float32), grad_out.numpy().astype(np.float32), direction)
        for grad in (gradient(x, grad_out), dynamic(x, grad_out)):
            assert grad.dtype == dtype
            np.testing.assert_array_equal(tf.cast(grad, tf.float32).numpy(), expected, err_msg=direction)


def test_vectorized_runs_under_xla_with_gradients(ref):
    x = tf.constant(ref["x"])

    @tf.function(jit_compile=True)
    def pooled_and_grad(t):
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = corner_pool_pair(t, t * 2.0, "top_left", "vectorized")
        return y, tape.gradient(y, t)

    y, grad = pooled_and_grad(x)
    expected = corner_pool(x, "top", "scan") + corner_pool(2 * x, "left", "scan")
    np.testing.assert_array_equal(y.numpy(), expected.numpy())
    assert np.isclose(grad.numpy().sum(), 3 * x.shape.num_elements())


def test_vectorized_accepts_dynamic_spatial_shapes(ref):
    fn = tf.function(
        lambda t: corner_pool(t, "left", "vectorized"),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
    )
    np.testing.assert_array_equal(fn(ref["x"]).numpy(), ref["left"])
    np.testing.assert_array_equal(fn(ref["x"][:, :1, :1]).numpy(), ref["x"][:, :1, :1])


def test_bad_arguments_name_the_valid_values(ref):
    with pytest.raises(ValueError, match="direction 'up'.*'top', 'left', 'bottom', 'right'"):
        corner_pool(ref["x"], "up")
    with pytest.raises(ValueError, match="implementation 'fast'.*'auto', 'op', 'vectorized', 'scan'"):
        corner_pool(ref["x"], "top", "fast")
    with pytest.raises(ValueError, match="rank-4"):
        corner_pool(ref["x"][0], "top")
    with pytest.raises(ValueError, match="corner 'top_right'.*'top_left', 'bottom_right'"):
        corner_pool_pair(ref["x"], ref["x"], "top_right")
    with pytest.raises(ValueError, match="floating-point"):
        corner_pool(tf.zeros((1, 2, 2, 1), tf.int32), "top")


def test_op_and_auto_follow_the_compiled_library(ref):
    available, reason = compiled_available(), _compiled_module()[1]
    if not available:
        assert resolve_implementation("auto") == "vectorized"
        np.testing.assert_array_equal(corner_pool(ref["x"], "top").numpy(), ref["top"])
        with pytest.raises(RuntimeError, match="'op' is unavailable") as err:
            corner_pool(ref["x"], "top", "op")
        assert reason in str(err.value)
        with pytest.raises(RuntimeError, match="'op' is unavailable"):
            corner_pool_pair(ref["x"], ref["x2"], "top_left", "op")
        return
    assert resolve_implementation("auto") == "op"
    for direction in DIRECTIONS:
        np.testing.assert_array_equal(corner_pool(ref["x"], direction, "op").numpy(), ref[direction])
    out = corner_pool_pair(ref["x"], ref["x2"], "bottom_right", "op").numpy()
    np.testing.assert_array_equal(out, ref["bottom_x_plus_right_x2"])
    for direction in DIRECTIONS:  # the compiled op follows the official rule on ties too
        grad = _input_gradient(ref["x"], ref["grad_out"], direction, "op")
        np.testing.assert_array_equal(grad, ref[f"grad_x_{direction}"])
