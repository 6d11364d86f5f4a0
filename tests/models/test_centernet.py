"""CenterNet against the official network (centernet_tiny fixture), plus model-level behaviour."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.config import load_config
from cornernet_tf.models import CENTERNET_OUTPUT_KEYS, CascadeCornerPoolModule, CenterNet
from cornernet_tf.tasks.model import build_model
from tests.conftest import nhwc
from tests.models.fidelity import (
    TOL,
    check_every_stack_matches_train_path,
    check_last_stack_matches_test_path,
    fidelity_fixtures,
)
from tests.models.test_cornernet import OFFICIAL_NAMES as CORNERNET_NAMES

# our output key -> the fixture's name
OFFICIAL_NAMES = {**CORNERNET_NAMES, "ct_heatmap": "ct_heat", "ct_offset": "ct_regr"}


ref, tiny, images = fidelity_fixtures("centernet_tiny.npz")


def test_last_stack_matches_the_official_test_path(ref, tiny, images):
    assert isinstance(tiny, CenterNet)
    out = tiny(images)
    assert list(out) == list(CENTERNET_OUTPUT_KEYS)
    check_last_stack_matches_test_path(ref, out, CENTERNET_OUTPUT_KEYS, OFFICIAL_NAMES, TOL)


def test_every_stack_matches_the_official_train_path(ref, tiny, images):
    check_every_stack_matches_train_path(ref, tiny, images, OFFICIAL_NAMES, TOL)


def test_pool_module_activations_match(ref, tiny, images):
    backbone = tiny.backbone
    cnv = backbone.cnvs[0](backbone.kps[0](backbone.pre[1](backbone.pre[0](images))))
    np.testing.assert_allclose(cnv, nhwc(ref["ref/act/cnvs.0.out"]), **TOL)
    for name in ("tl_cnvs", "br_cnvs", "ct_cnvs"):
        out = getattr(tiny, name)[0](cnv)
        np.testing.assert_allclose(out, nhwc(ref[f"ref/act/{name}.0.out"]), **TOL, err_msg=name)


def test_config_round_trip_gives_the_same_network(tiny, images):
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(tiny)))
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, CenterNet) and clone.get_config() == tiny.get_config()
    assert all(isinstance(pool, CascadeCornerPoolModule) for pool in clone.tl_cnvs + clone.br_cnvs)
    clone.set_weights(tiny.get_weights())
    out, expected = clone(images[:1]), tiny(images[:1])
    for key in CENTERNET_OUTPUT_KEYS:
        np.testing.assert_array_equal(out[key], expected[key])


def test_scan_corner_pools_agree_and_refuse_xla(tiny, images):
    model = CenterNet.from_config({**tiny.get_config(), "corner_pool": "scan"})
    assert tiny.supports_jit and not model.supports_jit
    model.build((None, None, None, 3))
    model.set_weights(tiny.get_weights())
    np.testing.assert_array_equal(model(images[:1])["ct_heatmap"], tiny(images[:1])["ct_heatmap"])


def test_build_model_reads_the_type_and_trains_one_step():
    config = load_config("centernet_shapes_tiny").model
    model = build_model(config, corner_pool="vectorized")
    assert isinstance(model, CenterNet) and model.supports_jit
    assert model.ct_heats[0].out.bias.numpy() == pytest.approx([config.heatmap_bias] * config.num_classes)
    assert not model.ct_regrs[0].out.bias.numpy().any()
    x = tf.random.stateless_normal((2, 64, 64, 3), seed=(0, 1))
    with tf.GradientTape() as tape:
        stacks = model(x, training=True, return_all_stacks=True)
        loss = tf.add_n([tf.reduce_mean(v**2) for out in stacks for v in out.values()])
    assert stacks[0]["ct_heatmap"].shape == (2, 16, 16, 3) and stacks[0]["ct_offset"].shape == (2, 16, 16, 2)
    grads = tape.gradient(loss, model.trainable_weights)
    assert all(g is not None for g in grads)


def test_mixed_precision_outputs_float32():
    model = CenterNet(2, 1, [8, 8], [1, 1], 8, [4, 8], 4, corner_pool="vectorized", dtype="mixed_bfloat16")
    out = model(np.zeros((1, 16, 16, 3), "float32"))
    assert list(out) == list(CENTERNET_OUTPUT_KEYS)
    assert all(v.dtype == tf.float32 for v in out.values())
    assert model.ct_cnvs[0].p1_conv1.conv.compute_dtype == "bfloat16"
    assert all(w.dtype == "float32" for w in model.weights)
