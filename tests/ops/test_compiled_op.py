"""The compiled corner-pool op (cornernet_tf/ops/compiled.py, custom_ops/corner_pool).

Checked against the official fixture (forward bitwise, gradients exactly, ties included), an
independent NumPy transcription of the official rule, the pure-TF implementations, numeric
gradients, and in use: a Keras layer under fit and a GradientTape loop, and a SavedModel loaded
in a fresh process. The library must be built: when it is missing or older than its sources, the
session fixture builds it (in place, else into a temporary folder); a failed build FAILS the
tests with the compiler's reason.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.ops import compiled
from tests.conftest import REPO_ROOT, load_reference, nhwc

DIRECTIONS = ("top", "bottom", "left", "right")
SOURCES = REPO_ROOT / "custom_ops" / "corner_pool"


def _load_build_module():
    spec = importlib.util.spec_from_file_location("_corner_pool_build", REPO_ROOT / "custom_ops" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stale(library: Path) -> bool:
    if not library.is_file():
        return True
    newest = max(p.stat().st_mtime for p in SOURCES.glob("*") if p.is_file())
    return newest > library.stat().st_mtime


@pytest.fixture(scope="session")
def lib(tmp_path_factory):
    """The loaded op module; builds the library first when it is missing or stale."""
    if compiled.loaded_library() is None and _stale(compiled.library_path()):
        build = _load_build_module()
        target = compiled.library_path().parent
        if not os.access(target, os.W_OK):
            target = tmp_path_factory.mktemp("corner_pool_op")
        try:
            path = build.build_library(target)
        except build.BuildError as err:
            pytest.fail(f"the corner-pool op does not build: {err} (log: {target / build.LOG_NAME})")
        return compiled.load_library(path)
    try:
        return compiled.load_library()
    except RuntimeError as err:
        pytest.fail(f"the corner-pool op library does not load: {err}")


@pytest.fixture(scope="module")
def ref():
    return {key: nhwc(value) for key, value in load_reference("corner_pool.npz").items()}


def _pure_tf():
    """cornernet_tf/ops/corner_pool.py (the pure-TF implementations)."""
    return importlib.import_module("cornernet_tf.ops.corner_pool")


# --- an independent reference: the official rule transcribed with NumPy ------------------------


def _scan_view(a: np.ndarray, direction: str) -> np.ndarray:
    """a [N, H, W, C] viewed as [L, ...] in scan order (from the far edge)."""
    axis = 1 if direction in ("top", "bottom") else 2
    view = np.moveaxis(a, axis, 0)
    return view[::-1] if direction in ("top", "left") else view


def numpy_pool(x: np.ndarray, direction: str) -> np.ndarray:
    y = np.empty_like(x)
    xs, ys = _scan_view(x, direction), _scan_view(y, direction)
    ys[...] = np.maximum.accumulate(xs, axis=0)  # propagates NaN, like the op
    return y


def numpy_pool_grad(x: np.ndarray, dy: np.ndarray, direction: str) -> np.ndarray:
    """Official backward: argmax from the far edge, replaced only by strictly greater values (a NaN
    replaces a number once); dx[argmax] sums dy in scan order in float32 (0 + ... for a new one)."""
    dx = np.zeros_like(x)
    xs, gs, ds = _scan_view(x, direction), _scan_view(dy, direction), _scan_view(dx, direction)
    rest = np.indices(xs.shape[1:])
    m, acc = xs[0].copy(), gs[0].copy()
    arg = np.zeros(xs.shape[1:], dtype=np.int64)
    for i in range(1, xs.shape[0]):
        v = xs[i]
        replaced = (v > m) | (np.isnan(v) & ~np.isnan(m))
        where = np.nonzero(replaced)
        ds[(arg[where],) + where] = acc[where]
        m = np.where(replaced, v, m)
        arg = np.where(replaced, i, arg)
        acc = np.where(replaced, np.float32(0) + gs[i], acc + gs[i]).astype(np.float32)
    ds[(arg,) + tuple(rest)] = acc
    return dx


def _ties(shape, seed) -> np.ndarray:
    return np.random.default_rng(seed).integers(-2, 3, size=shape).astype(np.float32)


def _tie_free(shape, direction, seed) -> np.ndarray:
    """Distinct values along the pooled axis (small integers: exact in float16 and bfloat16)."""
    axis = 1 if direction in ("top", "bottom") else 2
    keys = np.random.default_rng(seed).random(shape)
    return (np.argsort(keys, axis=axis) - shape[axis] // 2).astype(np.float32)


def _grad(fn, *inputs, dy):
    inputs = [tf.convert_to_tensor(t) for t in inputs]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        y = fn(*inputs)
    return y, tape.gradient(y, inputs, output_gradients=tf.convert_to_tensor(dy, y.dtype))


# --- the official fixture ------------------------------------------------------------------------


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_fixture_forward_is_bitwise_and_gradient_exact(lib, ref, direction):
    y, (dx,) = _grad(lambda x: compiled.corner_pool(x, direction), ref["x"], dy=ref["grad_out"])
    np.testing.assert_array_equal(y.numpy(), ref[direction])
    # the official tie rule, bit for bit (channel 0 and 2 are full of ties, x[1, 2] is constant)
    np.testing.assert_array_equal(dx.numpy(), ref[f"grad_x_{direction}"])
    assert y.dtype == tf.float32 and y.shape == ref["x"].shape


@pytest.mark.parametrize(
    "corner,first,second,key",
    [
        ("top_left", "top", "left", "top_x_plus_left_x2"),
        ("bottom_right", "bottom", "right", "bottom_x_plus_right_x2"),
    ],
)
def test_fixture_fused_pair_and_its_gradients(lib, ref, corner, first, second, key):
    y, (da, db) = _grad(lambda a, b: compiled.fused_corner_pool(a, b, corner), ref["x"], ref["x2"], dy=ref["grad_out"])
    np.testing.assert_array_equal(y.numpy(), ref[key])
    np.testing.assert_array_equal(da.numpy(), ref[f"grad_x_{first}"])  # a = x, same dy
    _, (want_db,) = _grad(lambda b: compiled.corner_pool(b, second), ref["x2"], dy=ref["grad_out"])
    np.testing.assert_array_equal(db.numpy(), want_db.numpy())
    # the composition of single pools gives the same bits
    composed, (ca, cb) = _grad(
        lambda a, b: compiled.corner_pool(a, first) + compiled.corner_pool(b, second),
        ref["x"],
        ref["x2"],
        dy=ref["grad_out"],
    )
    np.testing.assert_array_equal(y.numpy(), composed.numpy())
    np.testing.assert_array_equal(da.numpy(), ca.numpy())
    np.testing.assert_array_equal(db.numpy(), cb.numpy())


# --- independent NumPy reference: many ties, odd sizes, several CPU blocks, NaN -----------------


@pytest.mark.parametrize("shape", [(2, 40, 50, 70), (1, 1, 33, 5), (1, 29, 1, 3), (3, 5, 7, 1), (1, 300, 2, 40)])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_matches_numpy_transcription_of_the_official_rule(lib, shape, direction):
    x = _ties(shape, seed=sum(shape))
    dy = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    y = lib.corner_pool(x, direction=direction)
    dx = lib.corner_pool_grad(x, dy, direction=direction)
    np.testing.assert_array_equal(y.numpy(), numpy_pool(x, direction))
    np.testing.assert_array_equal(dx.numpy(), numpy_pool_grad(x, dy, direction))


@pytest.mark.parametrize("shape", [(1, 128, 128, 136), (1, 64, 130, 255)], ids=["aligned", "unaligned"])
def test_large_outputs_streamed_past_the_cache(lib, shape):
    """Float outputs of 8 MB or more are written with non-temporal stores (rows 16-byte aligned
    or not): same numbers."""
    x = _ties(shape, seed=41)
    dy = np.random.default_rng(42).standard_normal(shape).astype(np.float32)
    for direction in DIRECTIONS:
        np.testing.assert_array_equal(lib.corner_pool(x, direction=direction).numpy(), numpy_pool(x, direction))
        np.testing.assert_array_equal(
            lib.corner_pool_grad(x, dy, direction=direction).numpy(), numpy_pool_grad(x, dy, direction)
        )


@pytest.mark.parametrize(
    "shape",
    [(1, 20, 30, 70), (3, 9, 5, 1), (2, 1, 17, 40), (1, 64, 128, 272)],
    ids=["channel-blocks", "C=1", "1xN", "streamed"],
)
@pytest.mark.parametrize("corner", ["top_left", "bottom_right"])
def test_fused_single_pass_matches_composition(lib, shape, corner):
    first, second = ("top", "left") if corner == "top_left" else ("bottom", "right")
    a, b = _ties(shape, seed=51), np.random.default_rng(52).standard_normal(shape).astype(np.float32)
    y = lib.fused_corner_pool(a, b, corner=corner).numpy()
    np.testing.assert_array_equal(y, numpy_pool(a, first) + numpy_pool(b, second))
    for dtype in (tf.float16, tf.bfloat16):
        ah, bh = tf.cast(a, dtype), tf.cast(b, dtype)
        want = lib.corner_pool(ah, direction=first) + lib.corner_pool(bh, direction=second)
        np.testing.assert_array_equal(lib.fused_corner_pool(ah, bh, corner=corner).numpy(), want.numpy())


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_nan_propagates_and_takes_the_gradient(lib, direction):
    x = _ties((2, 9, 11, 3), seed=5)
    x[np.random.default_rng(6).random(x.shape) < 0.05] = np.nan
    dy = np.random.default_rng(7).standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(lib.corner_pool(x, direction=direction).numpy(), numpy_pool(x, direction))
    np.testing.assert_array_equal(
        lib.corner_pool_grad(x, dy, direction=direction).numpy(), numpy_pool_grad(x, dy, direction)
    )


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_half_types_round_once(lib, dtype, direction):
    shape = (2, 17, 13, 6)
    x = _ties(shape, seed=11) * 0.37
    dy = np.random.default_rng(12).standard_normal(shape).astype(np.float32)
    xh, dyh = tf.cast(x, dtype), tf.cast(dy, dtype)
    x32, dy32 = tf.cast(xh, tf.float32).numpy(), tf.cast(dyh, tf.float32).numpy()
    y = lib.corner_pool(xh, direction=direction)
    dx = lib.corner_pool_grad(xh, dyh, direction=direction)
    assert y.dtype == dtype and dx.dtype == dtype
    np.testing.assert_array_equal(tf.cast(y, tf.float32).numpy(), numpy_pool(x32, direction))
    # sums made in float32 in scan order, rounded once
    want = tf.cast(tf.cast(numpy_pool_grad(x32, dy32, direction), dtype), tf.float32).numpy()
    np.testing.assert_array_equal(tf.cast(dx, tf.float32).numpy(), want)


# --- the pure-TF implementations -------------------------------------------------------------------

SHAPES = [(2, 7, 9, 3), (1, 1, 17, 4), (1, 19, 1, 4), (2, 12, 33, 5)]
DTYPES = [tf.float32, tf.float16, tf.bfloat16]


@pytest.mark.parametrize("implementation", ["vectorized", "scan"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_agrees_with_pure_tf_paths(lib, shape, dtype, implementation):
    pure = _pure_tf()
    for direction in DIRECTIONS:
        # tie-free along the pooled axis: forward and gradient agree exactly (integer dy sums are
        # exact in every dtype)
        x = tf.cast(_tie_free(shape, direction, seed=3), dtype)
        dy = tf.cast(np.random.default_rng(4).integers(-3, 4, size=shape), dtype)
        y_op, (g_op,) = _grad(lambda t: compiled.corner_pool(t, direction), x, dy=dy)
        y_tf, (g_tf,) = _grad(lambda t: pure.corner_pool(t, direction, implementation), x, dy=dy)
        assert y_op.dtype == dtype and g_op.dtype == dtype
        np.testing.assert_array_equal(y_op.numpy(), y_tf.numpy())
        np.testing.assert_array_equal(g_op.numpy(), g_tf.numpy())
        # with ties the forward is still bitwise equal; the gradient may go to another maximal
        # element, but every line keeps its total
        xt = tf.cast(_ties(shape, seed=8), dtype)
        y_op, (g_op,) = _grad(lambda t: compiled.corner_pool(t, direction), xt, dy=dy)
        y_tf, (g_tf,) = _grad(lambda t: pure.corner_pool(t, direction, implementation), xt, dy=dy)
        np.testing.assert_array_equal(y_op.numpy(), y_tf.numpy())
        axis = 1 if direction in ("top", "bottom") else 2
        line_totals = tf.reduce_sum(tf.cast(dy, tf.float32), axis=axis).numpy()
        for g in (g_op, g_tf):
            np.testing.assert_array_equal(tf.reduce_sum(tf.cast(g, tf.float32), axis=axis).numpy(), line_totals)


@pytest.mark.parametrize("corner", ["top_left", "bottom_right"])
def test_fused_agrees_with_pure_tf_pair(lib, corner):
    pure = _pure_tf()
    shape = (2, 11, 14, 6)
    direction = "top" if corner == "top_left" else "bottom"
    a = _tie_free(shape, direction, seed=21)
    b = _tie_free(shape, "left", seed=22)  # distinct along W
    dy = np.random.default_rng(23).integers(-3, 4, size=shape).astype(np.float32)
    y_op, g_op = _grad(lambda p, q: compiled.fused_corner_pool(p, q, corner), a, b, dy=dy)
    y_tf, g_tf = _grad(lambda p, q: pure.corner_pool_pair(p, q, corner, "vectorized"), a, b, dy=dy)
    np.testing.assert_array_equal(y_op.numpy(), y_tf.numpy())
    for got, want in zip(g_op, g_tf):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_numeric_gradient(lib, direction):
    x = _tie_free((1, 4, 5, 2), direction, seed=31) * 0.5  # gaps of 0.5 >> the finite-difference step
    theoretical, numerical = tf.test.compute_gradient(
        lambda t: compiled.corner_pool(t, direction), [tf.constant(x)], delta=1e-2
    )
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=2e-3)


def test_numeric_gradient_fused(lib):
    a = _tie_free((1, 4, 5, 2), "top", seed=32) * 0.5
    b = _tie_free((1, 4, 5, 2), "left", seed=33) * 0.5
    theoretical, numerical = tf.test.compute_gradient(
        lambda p, q: compiled.fused_corner_pool(p, q, "top_left"), [tf.constant(a), tf.constant(b)], delta=1e-2
    )
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, atol=2e-3)


# --- shapes and errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(0, 4, 4, 2), (1, 0, 3, 2), (2, 3, 0, 1), (1, 3, 3, 0)])
def test_empty_tensors(lib, shape):
    x = tf.zeros(shape)
    for direction in DIRECTIONS:
        y, (dx,) = _grad(lambda t: compiled.corner_pool(t, direction), x, dy=tf.zeros(shape))
        assert y.shape == shape and dx.shape == shape
    assert compiled.fused_corner_pool(x, x, "top_left").shape == shape


def test_library_and_log_names_are_the_build_script_ones():
    build = _load_build_module()
    assert (compiled.LIBRARY_NAME, compiled.BUILD_LOG_NAME) == (build.LIBRARY_NAME, build.LOG_NAME)


def test_bad_inputs_raise_clear_errors(lib):
    x = tf.zeros((2, 3, 4, 5))
    with pytest.raises(ValueError, match="direction 'up'.*'top', 'left', 'bottom', 'right'"):
        compiled.corner_pool(x, "up")
    with pytest.raises(ValueError, match="corner 'top_right'"):
        compiled.fused_corner_pool(x, x, "top_right")
    with pytest.raises(ValueError, match="rank-4 NHWC"):
        compiled.corner_pool(tf.zeros((3, 4, 5)), "top")
    with pytest.raises(ValueError, match="int32"):
        compiled.corner_pool(tf.zeros((1, 2, 2, 1), tf.int32), "top")
    # the raw ops validate too: rank, shapes, attribute values
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="rank-4 NHWC"):
        lib.corner_pool(tf.zeros((3, 4, 5)), direction="top")
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="input 'b' has shape"):
        lib.fused_corner_pool(x, tf.zeros((2, 3, 4, 6)), corner="top_left")
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="input 'dy' has shape"):
        lib.corner_pool_grad(x, tf.zeros((2, 3, 5, 5)), direction="left")
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="direction"):
        lib.corner_pool(x, direction="up")
    # in a graph the shape function rejects a bad rank when the function is traced
    fn = tf.function(
        lambda t: lib.corner_pool(t, direction="top"), input_signature=[tf.TensorSpec([None, None, None], tf.float32)]
    )
    with pytest.raises(ValueError, match="rank-4 NHWC"):
        fn.get_concrete_function()
    # unknown rank: checked when it runs
    fn = tf.function(lambda t: lib.corner_pool(t, direction="top"), input_signature=[tf.TensorSpec(None, tf.float32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="rank-4 NHWC"):
        fn(tf.zeros((2, 3)))
    np.testing.assert_array_equal(fn(x).numpy(), x.numpy())


def test_no_xla(lib):
    """The op has no XLA kernel: jit-compiling it fails loudly (layers must set supports_jit=False)."""
    fn = tf.function(lambda t: compiled.corner_pool(t, "top"), jit_compile=True)
    with pytest.raises(Exception, match="CornerPool"):
        fn(tf.zeros((1, 2, 2, 1)))


# --- in use: Keras training, SavedModel --------------------------------------------------------------


class TinyCornerModule(keras.layers.Layer):
    """A tiny corner module on the compiled op: conv -> top(a) + left(b) -> conv."""

    def __init__(self, filters: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.supports_jit = False  # the op has no XLA kernel
        self.conv_a = keras.layers.Conv2D(filters, 3, padding="same")
        self.conv_b = keras.layers.Conv2D(filters, 3, padding="same")
        self.head = keras.layers.Conv2D(1, 1)

    def build(self, input_shape):
        self.conv_a.build(input_shape)
        self.conv_b.build(input_shape)
        self.head.build(tuple(input_shape[:-1]) + (self.filters,))

    def call(self, x):
        pooled = compiled.fused_corner_pool(self.conv_a(x), self.conv_b(x), "top_left")
        return self.head(pooled + compiled.corner_pool(self.conv_a(x), "right"))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (1,)


def _toy_data(n=16, size=12):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, size, size, 3)).astype(np.float32)
    # target: a cumulative max of a channel (learnable by the block)
    y = np.maximum.accumulate(x[..., :1][:, ::-1], axis=1)[:, ::-1]
    return x, y


def test_keras_fit_trains_through_the_op(lib):
    keras.utils.set_random_seed(0)
    x, y = _toy_data()
    model = keras.Sequential([keras.Input((12, 12, 3)), TinyCornerModule()])
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="mse")
    before = model.evaluate(x, y, verbose=0)
    history = model.fit(x, y, batch_size=8, epochs=8, verbose=0)
    assert not model.jit_compile
    losses = history.history["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < 0.8 * before


def test_custom_gradient_tape_loop_trains(lib):
    keras.utils.set_random_seed(1)
    x, y = _toy_data()
    layer = TinyCornerModule()
    optimizer = keras.optimizers.Adam(0.02)
    layer(x[:1])

    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(layer(xb) - yb))
        grads = tape.gradient(loss, layer.trainable_variables)
        optimizer.apply_gradients(zip(grads, layer.trainable_variables))
        return loss, grads

    first, grads = step(x, y)
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)
    for _ in range(15):
        loss, _ = step(x, y)
    assert float(loss) < 0.8 * float(first)


def test_savedmodel_loads_in_a_fresh_process_after_load_library(lib, tmp_path):
    class PoolModule(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, x):
            return compiled.fused_corner_pool(x, 2.0 * x, "bottom_right") + compiled.corner_pool(x, "top")

    module = PoolModule()
    x = np.random.default_rng(3).standard_normal((2, 5, 6, 3)).astype(np.float32)
    export = tmp_path / "model"
    tf.saved_model.save(module, str(export))
    assert b"FusedCornerPool" in (export / "saved_model.pb").read_bytes()  # the graph really uses the op
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "want.npy", module(x).numpy())

    script = f"""
import json, sys, warnings
import numpy as np
import tensorflow as tf
from cornernet_tf.ops import compiled

report = {{}}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    report["available_without_library"] = compiled.is_available()
    compiled.is_available()
report["warnings"] = [str(w.message) for w in caught]
report["reason"] = compiled.unavailable_reason()
compiled.load_library({str(compiled.loaded_library())!r})
model = tf.saved_model.load({str(export)!r})
got = model(tf.constant(np.load({str(tmp_path / "x.npy")!r}))).numpy()
report["equal"] = bool(np.array_equal(got, np.load({str(tmp_path / "want.npy")!r})))
print("REPORT " + json.dumps(report))
"""
    env = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="2",
        CORNERNET_TF_CORNER_POOL_LIBRARY=str(tmp_path / "missing" / "_corner_pool_ops.so"),
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT ") :])
    # without the library: unavailable, one clear warning, the reason names the file
    assert report["available_without_library"] is False
    assert len(report["warnings"]) == 1 and "pure-TF corner pool" in report["warnings"][0]
    assert "missing/_corner_pool_ops.so not found" in report["reason"]
    # after load_library() the SavedModel loads and computes the same numbers
    assert report["equal"]
