"""Checks shared by the CornerNet and CenterNet fidelity tests against the official network."""

import numpy as np
import tensorflow as tf

from tests.conftest import nhwc


def check_last_stack_matches_test_path(ref, out, output_keys, official_names, tol):
    """`out` (the last stack) has exactly `output_keys`, and each output the dtype, shape and
    values of ref/eval_last."""
    assert sorted(out) == sorted(output_keys)
    for key, name in official_names.items():
        expected = nhwc(ref[f"ref/eval_last/{name}"])
        assert out[key].dtype == tf.float32 and out[key].shape == expected.shape
        np.testing.assert_allclose(out[key], expected, **tol, err_msg=key)


def check_every_stack_matches_train_path(ref, model, images, official_names, tol):
    """Both stacks of `model(images, return_all_stacks=True)` match ref/stack{s}."""
    stacks = model(images, return_all_stacks=True)
    assert isinstance(stacks, list) and len(stacks) == 2
    for s, out in enumerate(stacks):
        for key, name in official_names.items():
            np.testing.assert_allclose(out[key], nhwc(ref[f"ref/stack{s}/{name}"]), **tol, err_msg=f"stack {s} {key}")
