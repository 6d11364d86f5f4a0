"""PredictionHead: the original's make_kp_layer (3x3 conv + bias + ReLU, then 1x1 conv + bias)."""

import numpy as np

from cornernet_tf.models.heads import PredictionHead
from tests.conftest import check_layer


def test_head_structure_shapes_and_round_trip():
    head = PredictionHead(hidden_dim=6, out_dim=3, bias_init=-2.19)
    check_layer(head, (2, 8, 10, 5), (2, 8, 10, 3))
    assert head.conv.conv.use_bias and head.conv.bn is None
    assert head.conv.conv.kernel.shape == (3, 3, 5, 6)
    assert head.out.kernel.shape == (1, 1, 6, 3) and head.out.use_bias


def test_heatmap_bias_starts_at_the_prior():
    head = PredictionHead(4, 2, bias_init=-2.19)
    head.build((None, None, None, 4))
    np.testing.assert_allclose(head.out.bias.numpy(), [-2.19, -2.19])
    for w in head.conv.weights + [head.out.kernel]:
        w.assign(np.zeros(w.shape))
    out = head(np.random.default_rng(0).standard_normal((1, 3, 3, 4)).astype("float32"))
    np.testing.assert_allclose(out, np.full((1, 3, 3, 2), -2.19), rtol=1e-6)
