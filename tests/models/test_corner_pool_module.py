"""CornerPoolModule (the original's `pool`): structure, pool directions, implementations, XLA."""

import numpy as np
import pytest

from cornernet_tf.models.pooling import CornerPoolModule
from cornernet_tf.ops.corner_pool import corner_pool
from tests.conftest import assert_trains_under_xla, check_layer


def module_with_identity_convs(corner: str) -> CornerPoolModule:
    """1-channel module whose 3x3 convs are centre taps, 1x1 conv zero and BNs near-identity,
    so out = scale * (pool1(x) + pool2(x)) for x >= 0."""
    module = CornerPoolModule(cnv_dim=1, pool_dim=1, corner=corner, implementation="scan")
    module.build((None, None, None, 1))
    for w in module.weights:
        w.assign(np.ones(w.shape) if w.path.endswith(("gamma", "moving_variance")) else np.zeros(w.shape))
    for conv in (module.p1_conv1.conv, module.p2_conv1.conv, module.p_conv1, module.conv2.conv):
        conv.kernel.assign(np.ones((1, 1, 1, 1)) * np.pad(np.ones((1, 1)), 1)[:, :, None, None])
    return module


@pytest.mark.parametrize(
    ("corner", "directions"), [("top_left", ("top", "left")), ("bottom_right", ("bottom", "right"))]
)
def test_module_pools_in_the_corner_directions(corner, directions):
    module = module_with_identity_convs(corner)
    x = np.abs(np.random.default_rng(0).standard_normal((1, 6, 7, 1))).astype("float32")
    expected = corner_pool(x, directions[0], "scan") + corner_pool(x, directions[1], "scan")
    # the p*_conv1 BN, p_bn1 and conv2's BN each scale by (1 + eps)^-1/2
    scale = (1 + 1e-5) ** -1.5
    np.testing.assert_allclose(module(x, training=False), expected.numpy() * scale, rtol=1e-5)


def test_module_shapes_round_trip_and_implementations_agree():
    module = CornerPoolModule(cnv_dim=6, pool_dim=4, corner="bottom_right", implementation="vectorized")
    check_layer(module, (2, 8, 5, 6), (2, 8, 5, 6))
    other = CornerPoolModule(cnv_dim=6, pool_dim=4, corner="bottom_right", implementation="scan")
    x = np.random.default_rng(0).standard_normal((2, 8, 5, 6)).astype("float32")
    other(x)
    other.set_weights(module.get_weights())
    np.testing.assert_array_equal(other(x), module(x))


def test_module_declares_xla_support_by_implementation():
    assert CornerPoolModule(4, 4, implementation="vectorized").supports_jit
    assert not CornerPoolModule(4, 4, implementation="scan").supports_jit
    auto = CornerPoolModule(4, 4, implementation="auto")
    assert auto.supports_jit == (auto.resolved_implementation == "vectorized")


def test_vectorized_module_trains_under_xla():
    module = CornerPoolModule(4, 3, implementation="vectorized")
    assert_trains_under_xla(module)


def test_module_rejects_unknown_corner_and_implementation():
    with pytest.raises(ValueError, match="top_left"):
        CornerPoolModule(4, 4, corner="top_right")
    with pytest.raises(ValueError, match="vectorized"):
        CornerPoolModule(4, 4, implementation="cuda")
