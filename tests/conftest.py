"""Shared test helpers: the reference fixtures of the official code, and a Keras layer check."""

from __future__ import annotations

import json
import pathlib

# before TensorFlow loads: the CPU runtime set-up every user of the package gets (runtime.py)
import cornernet_tf  # noqa: F401

# isort: split
import keras
import numpy as np
import tensorflow as tf

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# copies of the fixtures made by running the official code (provenance: their README.md)
REFERENCE_DIR = REPO_ROOT / "tests" / "fixtures" / "official"


def reference_path(name: str) -> pathlib.Path:
    """Path of a fixture made with the official code; fails (never skips) when it is missing."""
    path = REFERENCE_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"reference fixture {name!r} not found at {path} (tests/fixtures/official)")
    return path


def load_reference(name: str) -> dict[str, np.ndarray]:
    """All arrays of a reference .npz, loaded eagerly."""
    with np.load(reference_path(name)) as data:
        return {key: data[key] for key in data.files}


def reference_config(arrays: dict[str, np.ndarray]) -> dict:
    """The hyperparameters stored as JSON in a fixture (`ref/config_json`)."""
    return json.loads(str(arrays["ref/config_json"]))


def nhwc(a: np.ndarray) -> np.ndarray:
    """NCHW (the fixtures' PyTorch layout) -> NHWC."""
    return np.transpose(a, (0, 2, 3, 1))


def check_layer(layer: keras.layers.Layer, input_shape: tuple, expected_output_shape: tuple, **call_kwargs):
    """Config round trip, output shape, compute_output_shape and a gradient to every weight.

    Returns the layer's output on a seeded random input [input_shape].
    """
    x = np.random.default_rng(0).standard_normal(input_shape).astype("float32")
    y = layer(x, **call_kwargs)
    assert tuple(y.shape) == tuple(expected_output_shape)
    assert tuple(layer.compute_output_shape(input_shape)) == tuple(expected_output_shape)

    config = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(json.loads(json.dumps(config)))
    assert clone.get_config() == layer.get_config()
    clone(x, **call_kwargs)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x, **call_kwargs), y)

    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer(x, training=True, **call_kwargs)))
    grads = tape.gradient(loss, layer.trainable_weights)
    missing = [w.path for w, g in zip(layer.trainable_weights, grads) if g is None]
    assert not missing, f"no gradient for {missing}"
    return y


def assert_trains_under_xla(module: keras.layers.Layer) -> None:
    """A jit-compiled gradient step through `module` on a (1, 8, 8, 4) input gives a gradient for
    every trainable weight."""
    x = tf.random.stateless_normal((1, 8, 8, 4), seed=(1, 2))
    module(x)

    @tf.function(jit_compile=True)
    def step(t):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(module(t, training=True) ** 2)
        return tape.gradient(loss, module.trainable_weights)

    assert all(g is not None for g in step(x))
