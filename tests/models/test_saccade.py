"""CornerNet-Saccade against the official CornerNet-Lite network (saccade_tiny fixture): the heads
and attention maps of the test path, every stack of the train path, the hourglass levels the
attention heads see; other depths, stack counts and input sizes."""

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.config import ModelConfig
from cornernet_tf.models import OUTPUT_KEYS, CornerNetSaccade, SaccadeHourglassModule, attention_keys
from cornernet_tf.tasks.model import build_model
from tests.conftest import nhwc
from tests.models.fidelity import (
    TOL,
    check_every_stack_matches_train_path,
    check_last_stack_matches_test_path,
    fidelity_fixtures,
    official_output_names,
)

OFFICIAL_NAMES = official_output_names("off")
ATTENTION_NAMES = {f"attention_{j}": f"att{j}" for j in range(3)}

ref, tiny, images = fidelity_fixtures("saccade_tiny.npz")


def test_the_fixture_is_a_saccade_at_stride_4_with_three_attention_levels(tiny, images):
    assert isinstance(tiny, CornerNetSaccade) and tiny.stride == 4 and tiny.depth == 3 and tiny.nstack == 2
    assert tiny.attention_strides == (16, 8, 4)
    assert images.shape == (1, 127, 191, 3)
    assert tiny.tl_heats[0].conv.conv.kernel.shape == (3, 3, 16, 16)  # 3x3 heads
    assert tiny.att_modules[1][0].conv.conv.kernel.shape == (3, 3, 24, 12)  # att_dim 12 on the 24-wide level


def test_last_stack_matches_the_official_test_path(ref, tiny, images):
    out = tiny(images)
    check_last_stack_matches_test_path(ref, out, OUTPUT_KEYS + attention_keys(3), OFFICIAL_NAMES, TOL)
    for key, name in ATTENTION_NAMES.items():  # the test path returns sigmoid maps; ours are logits
        expected = nhwc(ref[f"ref/eval_last/{name}"])
        assert out[key].dtype == tf.float32 and out[key].shape == expected.shape
        np.testing.assert_allclose(tf.sigmoid(out[key]), expected, **TOL, err_msg=key)


def test_every_stack_matches_the_official_train_path(ref, tiny, images):
    check_every_stack_matches_train_path(ref, tiny, images, {**OFFICIAL_NAMES, **ATTENTION_NAMES}, TOL)


def test_every_hourglass_level_and_the_stack_merge_match(ref, tiny, images):
    backbone = tiny.backbone
    pre = images
    for layer in backbone.pre:
        pre = layer(pre)
    np.testing.assert_allclose(pre, nhwc(ref["ref/act/hg.pre.out"]), **TOL)
    features, levels = backbone(images, return_levels=True)
    assert [len(stack) for stack in levels] == [3, 3]
    for s in range(2):
        assert [level.shape[1:] for level in levels[s]] == [(8, 12, 24), (16, 24, 24), (32, 48, 16)]
        for j in range(2):
            np.testing.assert_allclose(levels[s][j], nhwc(ref[f"ref/act/hg.hgs.{s}.ups{j}"]), **TOL)
        np.testing.assert_allclose(levels[s][2], nhwc(ref[f"ref/act/hg.hgs.{s}.out"]), **TOL)
    cnv = features[0]
    np.testing.assert_allclose(cnv, nhwc(ref["ref/act/hg.cnvs.0.out"]), **TOL)
    np.testing.assert_allclose(tiny.tl_cnvs[0](cnv), nhwc(ref["ref/act/tl_modules.0.out"]), **TOL)
    np.testing.assert_allclose(tiny.br_cnvs[0](cnv), nhwc(ref["ref/act/br_modules.0.out"]), **TOL)
    inter_in = tf.nn.relu(
        backbone.inters_bn[0](backbone.inters_conv[0](pre)) + backbone.cnvs_bn[0](backbone.cnvs_conv[0](cnv))
    )
    np.testing.assert_allclose(inter_in, nhwc(ref["ref/act/hg.inters.0.in"]), **TOL)
    np.testing.assert_allclose(backbone.inters[0](inter_in), nhwc(ref["ref/act/hg.inters.0.out"]), **TOL)


def test_hourglass_module_returns_every_level_innermost_first():
    module = SaccadeHourglassModule([8, 12, 16], [1, 1, 2])
    x = np.random.default_rng(0).standard_normal((2, 12, 20, 8)).astype("float32")
    levels = module(x)
    assert [tuple(level.shape) for level in levels] == [(2, 6, 10, 12), (2, 12, 20, 8)]
    assert module.compute_output_shape((2, 12, 20, 8)) == [(2, 6, 10, 12), (2, 12, 20, 8)]
    # its last level is exactly what the plain hourglass of the same weights returns
    plain = module.low2
    assert isinstance(plain, SaccadeHourglassModule) and len(plain(levels[0])) == 1


@pytest.mark.parametrize(
    ("depth", "nstack", "input_hw", "attention_hw"),
    [(2, 1, (63, 95), [(8, 12), (16, 24)]), (4, 3, (127, 191), [(4, 6), (8, 12), (16, 24), (32, 48)])],
)
def test_other_depths_stack_counts_and_odd_inputs(depth, nstack, input_hw, attention_hw):
    dims = [8, 12, 12, 16, 16][: depth + 1]
    config = ModelConfig(
        type="saccade",
        num_classes=2,
        depth=depth,
        nstack=nstack,
        dims=dims,
        modules=[1] * (depth + 1),
        cnv_dim=8,
        pre_dims=[4, 8],
        pool_dim=4,
        att_dim=6,
    )
    model = build_model(config, corner_pool="vectorized")
    x = np.random.default_rng(1).standard_normal((2, *input_hw, 3)).astype("float32")
    stacks = model(x, return_all_stacks=True)
    assert len(stacks) == nstack
    for out in stacks:
        assert list(out) == list(OUTPUT_KEYS + attention_keys(depth))
        assert [tuple(out[key].shape) for key in attention_keys(depth)] == [(2, *hw, 1) for hw in attention_hw]
        assert out["tl_heatmap"].shape[1:3] == attention_hw[-1]
    restored = CornerNetSaccade.from_config(model.get_config())
    restored.build((None, None, None, 3))
    assert restored.att_dim == 6 and len(restored.att_modules) == nstack
