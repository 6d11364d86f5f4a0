"""CornerNet-Squeeze against the official CornerNet-Lite network (squeeze_tiny fixture), its layers
(fire module, transposed-conv upsampling), other shapes, and one training step on its tiny config."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.config import load_config
from cornernet_tf.models import OUTPUT_KEYS, CornerNetSqueeze, FireModule, SqueezeHourglassModule
from cornernet_tf.tasks.data import train_dataset
from cornernet_tf.tasks.training import build_trainer
from tests.conftest import check_layer
from tests.models.fidelity import (
    SQUEEZE_ACTIVATIONS,
    TOL,
    check_activations,
    check_every_stack_matches_train_path,
    check_last_stack_matches_test_path,
    fidelity_fixtures,
    official_output_names,
)
from tests.training.conftest import shapes_dir  # noqa: F401 (a fixture)

OFFICIAL_NAMES = official_output_names("off")


ref, tiny, images = fidelity_fixtures("squeeze_tiny.npz")


def test_the_fixture_is_a_squeeze_at_stride_8(tiny, images):
    assert isinstance(tiny, CornerNetSqueeze) and tiny.stride == 8 and tiny.depth == 3
    assert images.shape == (1, 191, 255, 3)
    assert tiny.tl_heats[0].conv.conv.kernel.shape == (1, 1, 16, 16)  # 1x1 heads


def test_last_stack_matches_the_official_test_path(ref, tiny, images):
    check_last_stack_matches_test_path(ref, tiny(images), OUTPUT_KEYS, OFFICIAL_NAMES, TOL)


def test_every_stack_matches_the_official_train_path(ref, tiny, images):
    check_every_stack_matches_train_path(ref, tiny, images, OFFICIAL_NAMES, TOL)


def test_intermediate_activations_match(ref, tiny, images):
    check_activations(ref, tiny, images, SQUEEZE_ACTIVATIONS, TOL)


def _pytorch_conv_transpose_k4_s2_p1(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """PyTorch's ConvTranspose2d(k=4, stride=2, padding=1) by its definition, NHWC:
    out[2i - 1 + ky, 2j - 1 + kx, o] += x[i, j, c] * weight[c, o, ky, kx]."""
    batch, height, width, _ = x.shape
    full = np.zeros((batch, 2 * height + 2, 2 * width + 2, weight.shape[1]), np.float64)
    for ky in range(4):
        for kx in range(4):
            tap = np.einsum("bhwc,co->bhwo", x, weight[:, :, ky, kx])
            full[:, ky : ky + 2 * height : 2, kx : kx + 2 * width : 2] += tap
    return full[:, 1:-1, 1:-1] + bias


def test_up2_is_pytorchs_transposed_conv(ref, tiny):
    """The fixture's hg.hgs.0.low2.up2 (16 channels) on an odd 3 x 5 map."""
    up2 = tiny.backbone.kps[0].low2.up2
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 16)).astype("float32")
    weight, bias = ref["hg.hgs.0.low2.up2.weight"], ref["hg.hgs.0.low2.up2.bias"]
    expected = _pytorch_conv_transpose_k4_s2_p1(x, weight, bias)
    assert up2(x).shape == (2, 6, 10, 16)
    np.testing.assert_allclose(up2(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("inp", "filters", "strides", "out_hw", "skip"),
    [(8, 8, 1, (7, 10), True), (8, 12, 1, (7, 10), False), (8, 8, 2, (4, 5), False)],
)
def test_fire_module(inp, filters, strides, out_hw, skip):
    layer = FireModule(filters, strides)
    y = check_layer(layer, (2, 7, 10, inp), (2, *out_hw, filters))
    assert layer.identity_skip is skip and layer.conv_3x3.kernel.shape == (3, 3, filters // 2, 1)
    assert float(tf.reduce_min(y)) >= 0.0  # ReLU output
    with pytest.raises(ValueError, match="even filters"):
        FireModule(7)


def test_fire_module_has_no_relu_after_bn1_and_adds_the_input_on_the_skip():
    layer = FireModule(4)
    layer.build((None, None, None, 4))
    layer.conv1.kernel.assign(-np.eye(4, 2, dtype="float32")[None, None])  # negative squeeze
    layer.conv_1x1.kernel.assign(np.eye(2, dtype="float32")[None, None])
    layer.conv_3x3.kernel.assign(np.zeros((3, 3, 2, 1), "float32"))
    x = np.ones((1, 3, 3, 4), "float32")
    # bn (identity at init, eps 1e-5) -> channels 0..1 carry -1 (a ReLU after bn1 would give 0)
    y = layer(x).numpy()
    np.testing.assert_allclose(y[..., :2], 0.0, atol=1e-4)  # ReLU(-1 + 1)
    np.testing.assert_allclose(y[..., 2:], 1.0, atol=1e-4)  # ReLU(0 + 1)


def test_other_depth_stacks_modules_batch_and_an_odd_non_square_input():
    model = CornerNetSqueeze(2, 3, [8, 12, 16], [2, 1, 3], 12, [4, 8], 4, corner_pool="vectorized")
    images = np.random.default_rng(1).standard_normal((2, 95, 159, 3)).astype("float32")  # maps 12 x 20
    stacks = model(images, return_all_stacks=True)
    assert len(stacks) == 3 and model.depth == 2 and len(model.backbone.kps[0].up1) == 2
    for out in stacks:
        assert {k: tuple(v.shape) for k, v in out.items()} == {
            "tl_heatmap": (2, 12, 20, 2),
            "br_heatmap": (2, 12, 20, 2),
            "tl_embedding": (2, 12, 20, 1),
            "br_embedding": (2, 12, 20, 1),
            "tl_offset": (2, 12, 20, 2),
            "br_offset": (2, 12, 20, 2),
        }
    assert model.backbone.compute_output_shape((2, 95, 159, 3)) == [(2, 12, 20, 12)] * 3
    np.testing.assert_array_equal(model(images)["tl_heatmap"], stacks[-1]["tl_heatmap"])


def test_config_round_trip_gives_the_same_network(tiny, images):
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(tiny)))
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, CornerNetSqueeze) and clone.get_config() == tiny.get_config()
    assert isinstance(clone.backbone.kps[1].low2, SqueezeHourglassModule)
    clone.set_weights(tiny.get_weights())
    out, expected = clone(images), tiny(images)
    for key in OUTPUT_KEYS:
        np.testing.assert_array_equal(out[key], expected[key])


def test_squeeze_shapes_tiny_builds_and_trains_one_step(shapes_dir, tmp_path):  # noqa: F811
    overrides = [
        f"data.shapes_dir={shapes_dir}/squeeze",
        "data.shapes_train=4",
        "data.shapes_val=2",
        "data.shapes_image_size=64",
        "data.input_size=[64, 64]",
        "data.deterministic=true",
        "train.batch_size=2",
        "train.steps=1",
        "train.warmup_steps=0",
        "train.log_every=1",
        "train.eval_every=0",
    ]
    config = load_config("squeeze_shapes_tiny", overrides)
    assert config.model.type == "squeeze" and config.model.stride == 8
    batch = next(iter(train_dataset(config)))
    assert batch[1]["tl_heatmap"].shape == (2, 8, 8, 3)
    fixed = tf.data.Dataset.from_tensors(batch).repeat()
    # Seeded as the train command seeds it: at the innermost 1 x 1 level a BatchNorm over two
    # samples can, for some initialisations, pass nothing through its ReLU and so get no gradient.
    keras.utils.set_random_seed(config.train.seed)
    trainer = build_trainer(
        config, tf.distribute.get_strategy(), tmp_path, dataset_fn=lambda ctx, start, skipped: fixed
    )
    assert isinstance(trainer.model, CornerNetSqueeze)
    first = {k: float(v) for k, v in trainer.test_step(*batch).items()}
    before = [w.numpy() for w in trainer.model.trainable_weights]
    assert trainer.fit() == 1
    assert all(np.isfinite(v) for v in first.values()) and first["focal"] > 0, first
    changed = [not np.array_equal(w.numpy(), b) for w, b in zip(trainer.model.trainable_weights, before)]
    assert all(changed), [w.path for w, c in zip(trainer.model.trainable_weights, changed) if not c]


def test_mixed_precision_outputs_float32():
    model = CornerNetSqueeze(2, 1, [8, 8], [1, 1], 8, [4, 8], 4, corner_pool="vectorized", dtype="mixed_bfloat16")
    out = model(np.zeros((1, 32, 32, 3), "float32"))
    assert all(v.dtype == tf.float32 and v.shape[1:3] == (4, 4) for v in out.values())
    assert model.backbone.kps[0].up2.compute_dtype == "bfloat16"
    assert all(w.dtype == "float32" for w in model.weights)
