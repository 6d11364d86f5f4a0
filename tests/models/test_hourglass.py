"""HourglassModule and HourglassBackbone: structure of the original, shapes, config round trip."""

import numpy as np
import pytest

from cornernet_tf.models.hourglass import HourglassBackbone, HourglassModule
from cornernet_tf.models.layers import Residual
from tests.conftest import check_layer


def residual_count(module: HourglassModule) -> int:
    low2 = residual_count(module.low2) if isinstance(module.low2, HourglassModule) else len(module.low2)
    return len(module.up1) + len(module.low1) + low2 + len(module.low3)


def test_module_structure_follows_the_original():
    module = HourglassModule([4, 6, 8], [2, 1, 3])
    check_layer(module, (1, 8, 12, 4), (1, 8, 12, 4))
    assert module.depth == 2
    assert [r.filters for r in module.up1] == [4, 4]
    assert [(r.filters, r.strides) for r in module.low1] == [(6, 2), (6, 1)]
    assert [r.filters for r in module.low3] == [6, 4]
    inner = module.low2
    assert isinstance(inner, HourglassModule) and inner.dims == [6, 8]
    assert [(r.filters, r.strides) for r in inner.low1] == [(8, 2)]
    assert all(isinstance(r, Residual) and r.filters == 8 for r in inner.low2) and len(inner.low2) == 3
    assert residual_count(module) == 2 + 2 + (1 + 1 + 3 + 1) + 2
    assert module.up2.interpolation == "nearest"


def test_module_rejects_mismatched_dims_and_modules():
    with pytest.raises(ValueError, match="len\\(dims\\) == len\\(modules\\)"):
        HourglassModule([4, 6, 8], [2, 2])


@pytest.mark.parametrize("nstack", [1, 2, 3])
def test_backbone_returns_one_feature_map_per_stack(nstack):
    backbone = HourglassBackbone(nstack, [8, 8, 12], [1, 1, 1], cnv_dim=10, pre_dims=[4, 8])
    features = backbone(np.zeros((2, 64, 32, 3), "float32"))
    assert len(features) == nstack
    assert all(tuple(f.shape) == (2, 16, 8, 10) for f in features)
    assert len(backbone.inters) == len(backbone.inters_conv) == len(backbone.cnvs_bn) == nstack - 1
    assert backbone.compute_output_shape((2, 64, 32, 3)) == [(2, 16, 8, 10)] * nstack


@pytest.mark.parametrize(
    ("dims", "size", "out"),
    [([8, 8, 8, 12], (127, 255), (32, 64)), ([8] * 6, (127, 255), (32, 64)), ([8, 12], (511, 135), (128, 34))],
)
def test_backbone_accepts_odd_non_square_inputs(dims, size, out):
    backbone = HourglassBackbone(1, dims, [1] * len(dims), cnv_dim=6, pre_dims=[4, 8])
    (features,) = backbone(np.zeros((1, *size, 3), "float32"))
    assert tuple(features.shape) == (1, *out, 6)


def test_backbone_config_round_trip_and_gradients():
    backbone = HourglassBackbone(2, [8, 8, 12], [1, 1, 1], cnv_dim=10, pre_dims=[4, 8], name="hg")
    x = np.random.default_rng(0).standard_normal((1, 32, 32, 3)).astype("float32")
    config = backbone.get_config()
    assert {k: config[k] for k in ("nstack", "dims", "modules", "cnv_dim", "pre_dims")} == {
        "nstack": 2,
        "dims": [8, 8, 12],
        "modules": [1, 1, 1],
        "cnv_dim": 10,
        "pre_dims": [4, 8],
    }
    clone = HourglassBackbone.from_config(config)
    backbone(x)
    clone(x)
    clone.set_weights(backbone.get_weights())
    for a, b in zip(backbone(x), clone(x)):
        np.testing.assert_array_equal(a, b)


def test_backbone_rejects_pre_dims_that_do_not_feed_the_hourglass():
    with pytest.raises(ValueError, match="pre_dims"):
        HourglassBackbone(1, [8, 12], [1, 1], cnv_dim=6, pre_dims=[4, 6])
