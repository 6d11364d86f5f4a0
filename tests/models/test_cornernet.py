"""CornerNet against the official network (cornernet_tiny fixture), plus model-level behaviour."""

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.config import ModelConfig, load_config
from cornernet_tf.model_types import MODEL_TYPES
from cornernet_tf.models import OUTPUT_KEYS, CornerNet, PredictionHead
from cornernet_tf.tasks.model import build_model
from tests.models.fidelity import (
    CORNERNET_ACTIVATIONS,
    TOL,
    check_activations,
    check_every_stack_matches_train_path,
    check_last_stack_matches_test_path,
    fidelity_fixtures,
    official_output_names,
)

OFFICIAL_NAMES = official_output_names("regr")


ref, tiny, images = fidelity_fixtures("cornernet_tiny.npz")


def test_last_stack_matches_the_official_test_path(ref, tiny, images):
    check_last_stack_matches_test_path(ref, tiny(images), OUTPUT_KEYS, OFFICIAL_NAMES, TOL)


def test_every_stack_matches_the_official_train_path(ref, tiny, images):
    check_every_stack_matches_train_path(ref, tiny, images, OFFICIAL_NAMES, TOL)


def test_intermediate_activations_match(ref, tiny, images):
    check_activations(ref, tiny, images, CORNERNET_ACTIVATIONS, TOL)


def test_inference_path_uses_only_the_last_stack_heads(tiny, images):
    before = tiny(images[:1])
    saved = [w.numpy() for w in tiny.tl_heats[0].weights]
    try:
        for w in tiny.tl_heats[0].weights:
            w.assign(np.full(w.shape, np.nan))
        after = tiny(images[:1])
        for key in OUTPUT_KEYS:
            np.testing.assert_array_equal(after[key], before[key])
        assert np.isnan(tiny(images[:1], return_all_stacks=True)[0]["tl_heatmap"]).all()
    finally:
        for w, value in zip(tiny.tl_heats[0].weights, saved):
            w.assign(value)


def test_odd_non_square_input(tiny):
    out = tiny(np.zeros((1, 127, 255, 3), "float32"))
    assert out["tl_heatmap"].shape == (1, 32, 64, 3)
    assert out["br_offset"].shape == (1, 32, 64, 2)
    assert out["tl_embedding"].shape == (1, 32, 64, 1)


def test_config_round_trip_gives_the_same_network(tiny, images):
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(tiny)))
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, CornerNet) and clone.get_config() == tiny.get_config()
    assert clone.built  # from the serialized build config
    clone.set_weights(tiny.get_weights())
    out, expected = clone(images[:1]), tiny(images[:1])
    for key in OUTPUT_KEYS:
        np.testing.assert_array_equal(out[key], expected[key])


def test_build_model_reads_the_config_and_trains_one_step():
    config = load_config("shapes_tiny").model
    model = build_model(config, corner_pool="vectorized")
    assert model.supports_jit and model.depth == config.depth
    assert model.tl_heats[0].out.bias.numpy() == pytest.approx([config.heatmap_bias] * config.num_classes)
    x = tf.random.stateless_normal((2, 64, 64, 3), seed=(0, 1))
    with tf.GradientTape() as tape:
        stacks = model(x, training=True, return_all_stacks=True)
        loss = tf.add_n([tf.reduce_mean(v**2) for out in stacks for v in out.values()])
    grads = tape.gradient(loss, model.trainable_weights)
    assert all(g is not None for g in grads)


@pytest.mark.parametrize("model_type", sorted(MODEL_TYPES))
def test_head_dim_sets_the_width_of_every_prediction_head(model_type):
    config = ModelConfig(model_type, 2, depth=1, nstack=2, dims=[8, 8], modules=[1, 1], cnv_dim=6, pre_dims=[4, 8])

    def widths(model: CornerNet) -> set[int]:
        layers = [layer for name in model.stack_layer_names for layer in getattr(model, name)]
        return {layer.hidden_dim for layer in layers if isinstance(layer, PredictionHead)}

    assert widths(build_model(config, corner_pool="vectorized")) == {8}  # None: dims[0], the official rule
    model = build_model(dataclasses.replace(config, head_dim=12), corner_pool="vectorized")
    assert widths(model) == {12}
    assert {head.hidden_dim for heads in getattr(model, "att_modules", []) for head in heads} <= {config.att_dim}
    assert widths(type(model).from_config(model.get_config())) == {12}


@pytest.mark.parametrize("implementation", ["scan", "auto"])
def test_other_corner_pools_agree_and_declare_xla_support(tiny, images, implementation):
    model = CornerNet.from_config({**tiny.get_config(), "corner_pool": implementation})
    pools = model.tl_cnvs + model.br_cnvs
    assert model.supports_jit == all(p.resolved_implementation == "vectorized" for p in pools)
    if not model.supports_jit:  # Keras refuses to XLA-compile it
        with pytest.warns(UserWarning, match="jit_compile"):
            model.compile(jit_compile=True)
        assert model.jit_compile is False
    model.build((None, None, None, 3))
    model.set_weights(tiny.get_weights())
    np.testing.assert_array_equal(model(images[:1])["br_heatmap"], tiny(images[:1])["br_heatmap"])


def test_mixed_precision_outputs_float32():
    model = CornerNet(2, 1, [8, 8], [1, 1], 8, [4, 8], 4, corner_pool="vectorized", dtype="mixed_bfloat16")
    out = model(np.zeros((1, 16, 16, 3), "float32"))
    assert all(v.dtype == tf.float32 for v in out.values())
    assert model.backbone.pre[0].conv.compute_dtype == "bfloat16"
    assert all(w.dtype == "float32" for w in model.weights)
