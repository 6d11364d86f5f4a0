"""Checks shared by the CornerNet, CenterNet and CornerNet-Squeeze fidelity tests against the
official network."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.tasks.model import build_model
from cornernet_tf.tasks.official_weights import config_from_official, load_official_weights
from tests.conftest import load_reference, nhwc, reference_config

TOL = {"atol": 1e-3, "rtol": 1e-3}


def official_output_names(offset: str) -> dict[str, str]:
    """Our output key -> the fixture's name; the offsets are `*_regr` in the CornerNet and
    CenterNet fixtures, `*_off` in CornerNet-Lite's."""
    names = {"heatmap": "heat", "embedding": "tag", "offset": offset}
    return {f"{corner}_{ours}": f"{corner}_{theirs}" for corner in ("tl", "br") for ours, theirs in names.items()}


def converted_model(ref) -> keras.Model:
    """The fixture's official network (its type detected from the keys), converted, with the
    vectorized corner pool."""
    params = {key: value for key, value in ref.items() if not key.startswith("ref/")}
    model = build_model(config_from_official(reference_config(ref), keys=params), corner_pool="vectorized")
    load_official_weights(model, params)
    return model


def official_input(ref) -> np.ndarray:
    """The fixture's BGR NCHW input as our RGB NHWC input."""
    return nhwc(ref["ref/image"])[..., ::-1].copy()


def fidelity_fixtures(fixture_name: str):
    """Module-scoped fixtures `ref` (the arrays of a tiny official fixture), `tiny` (its network,
    converted) and `images` (its input, RGB NHWC); assign them at module level:
    `ref, tiny, images = fidelity_fixtures("cornernet_tiny.npz")`."""

    @pytest.fixture(scope="module", name="ref")
    def ref():
        return load_reference(fixture_name)

    @pytest.fixture(scope="module", name="tiny")
    def tiny(ref):
        return converted_model(ref)

    @pytest.fixture(scope="module", name="images")
    def images(ref):
        return official_input(ref)

    return ref, tiny, images


def check_last_stack_matches_test_path(ref, out, output_keys, official_names, tol):
    """`out` (the last stack) has exactly `output_keys`, and each output the dtype, shape and
    values of ref/eval_last."""
    assert sorted(out) == sorted(output_keys)
    for key, name in official_names.items():
        expected = nhwc(ref[f"ref/eval_last/{name}"])
        assert out[key].dtype == tf.float32 and out[key].shape == expected.shape
        np.testing.assert_allclose(out[key], expected, **tol, err_msg=key)


def check_every_stack_matches_train_path(ref, model, images, official_names, tol):
    """Both stacks of `model(images, return_all_stacks=True)` match ref/stack{s}; `official_names`
    maps our output keys to the fixture's."""
    stacks = model(images, return_all_stacks=True)
    assert isinstance(stacks, list) and len(stacks) == 2
    for s, out in enumerate(stacks):
        for key, name in official_names.items():
            np.testing.assert_allclose(out[key], nhwc(ref[f"ref/stack{s}/{name}"]), **tol, err_msg=f"stack {s} {key}")


# our activation name -> the official module whose output it is, per fixture layout
CORNERNET_ACTIVATIONS = {
    "pre": "pre.out",
    "hourglass0": "kps.0.out",
    "cnv0": "cnvs.0.out",
    "tl_pool0": "tl_cnvs.0.out",
    "br_pool0": "br_cnvs.0.out",
    "inter0_in": "inters.0.in",
    "inter0": "inters.0.out",
}
SQUEEZE_ACTIVATIONS = {
    "pre": "hg.pre.out",
    "hourglass0": "hg.hgs.0.out",
    "cnv0": "hg.cnvs.0.out",
    "tl_pool0": "tl_modules.0.out",
    "br_pool0": "br_modules.0.out",
    "inter0_in": "hg.inters.0.in",
    "inter0": "hg.inters.0.out",
}


def stack0_activations(model, images) -> dict:
    """The stem, hourglass 0, its 3x3 conv, stack 0's corner pools and the first inter-stack merge
    (before and after its residual) of a CornerNet-like model, keyed as in *_ACTIVATIONS."""
    backbone = model.backbone
    pre = images
    for layer in backbone.pre:
        pre = layer(pre)
    hourglass = backbone.kps[0](pre)
    cnv = backbone.cnvs[0](hourglass)
    inter_in = tf.nn.relu(
        backbone.inters_bn[0](backbone.inters_conv[0](pre)) + backbone.cnvs_bn[0](backbone.cnvs_conv[0](cnv))
    )
    return {
        "pre": pre,
        "hourglass0": hourglass,
        "cnv0": cnv,
        "tl_pool0": model.tl_cnvs[0](cnv),
        "br_pool0": model.br_cnvs[0](cnv),
        "inter0_in": inter_in,
        "inter0": backbone.inters[0](inter_in),
    }


def check_activations(ref, model, images, official_activations: dict, tol) -> None:
    """`stack0_activations` match ref/act/<official name> for every entry of official_activations."""
    ours = stack0_activations(model, images)
    assert sorted(ours) == sorted(official_activations)
    for name, official in official_activations.items():
        np.testing.assert_allclose(ours[name], nhwc(ref[f"ref/act/{official}"]), **tol, err_msg=official)
