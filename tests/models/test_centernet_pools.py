"""CenterNet's pool modules (cascade corner pooling, center pooling) against the official ones
(centernet_pools fixture), their pure compositions, serialization and XLA."""

import json

import numpy as np
import pytest

from cornernet_tf.models.pooling import (
    CascadeCornerPoolModule,
    CenterPoolModule,
    cascade_pool,
    center_pool,
    column_max,
    row_max,
)
from cornernet_tf.ops import compiled_available, corner_pool
from cornernet_tf.tasks.official_weights import _pool as pool_entries
from tests.conftest import assert_trains_under_xla, check_layer, load_reference, nhwc

IMPLEMENTATIONS = [
    "scan",
    "vectorized",
    pytest.param("op", marks=pytest.mark.skipif(not compiled_available(), reason="compiled op not built")),
]
# fixture name -> (our module class, its corner argument)
MODULES = {
    "tl_pool": (CascadeCornerPoolModule, {"corner": "top_left"}),
    "br_pool": (CascadeCornerPoolModule, {"corner": "bottom_right"}),
    "center_pool": (CenterPoolModule, {}),
}


@pytest.fixture(scope="module")
def ref():
    return load_reference("centernet_pools.npz")


@pytest.fixture(scope="module")
def comp(ref):
    return {key[len("comp/") :]: nhwc(value) for key, value in ref.items() if key.startswith("comp/")}


def official_module(ref: dict, name: str, implementation: str):
    """Our module with the fixture's weights, assigned through the conversion's key mapping."""
    cls, kwargs = MODULES[name]
    config = json.loads(str(ref["config_json"]))
    dim, pool_dim = config["dim"], config["pool_dim"]
    if cls is CascadeCornerPoolModule:
        kwargs = {**kwargs, "implementation": implementation}
    module = cls(dim, pool_dim, **kwargs)
    module.build((None, None, None, dim))
    entries = list(pool_entries(name, module))
    assert len(entries) == len(module.weights)
    for key, variable, transform in entries:
        variable.assign(transform(ref[key.replace(".", "/", 1)]))
    return module


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_match_the_official_ones(ref, name, implementation):
    module = official_module(ref, name, implementation)
    out = module(nhwc(ref["x"]), training=False)
    np.testing.assert_allclose(out, nhwc(ref[f"{name}/out"]), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_cascade_compositions_are_exact(comp, implementation):
    a, b = comp["a"], comp["b"]
    cases = {
        "cascade_top_of_b_plus_left_a": ("top", "left"),
        "cascade_left_of_b_plus_top_a": ("left", "top"),
        "cascade_bottom_of_b_plus_right_a": ("bottom", "right"),
        "cascade_right_of_b_plus_bottom_a": ("right", "bottom"),
    }
    for name, (direction, look_direction) in cases.items():
        out = cascade_pool(b, a, direction, look_direction, implementation)
        np.testing.assert_array_equal(out, comp[name], err_msg=name)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_center_compositions_are_exact_and_equal_the_cumulative_pools(comp, implementation):
    a, b = comp["a"], comp["b"]
    np.testing.assert_array_equal(np.broadcast_to(column_max(a), a.shape), comp["center_vertical_a"])
    np.testing.assert_array_equal(np.broadcast_to(row_max(a), a.shape), comp["center_horizontal_a"])
    np.testing.assert_array_equal(center_pool(a, b), comp["center_pool_a_b"])
    # the original's form, Bottom(Top(a)) + Right(Left(b)), through the corner-pool contract
    vertical = corner_pool(corner_pool(a, "top", implementation), "bottom", implementation)
    horizontal = corner_pool(corner_pool(b, "left", implementation), "right", implementation)
    np.testing.assert_array_equal(vertical + horizontal, comp["center_pool_a_b"])


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_round_trip_and_train(name):
    cls, kwargs = MODULES[name]
    module = cls(cnv_dim=6, pool_dim=4, **kwargs)
    check_layer(module, (2, 8, 5, 6), (2, 8, 5, 6))
    assert module.get_config()["pool_dim"] == 4


def test_cascade_module_declares_xla_support_by_implementation_center_always():
    assert CascadeCornerPoolModule(4, 4, implementation="vectorized").supports_jit
    assert not CascadeCornerPoolModule(4, 4, implementation="scan").supports_jit
    assert CenterPoolModule(4, 4).supports_jit
    with pytest.raises(ValueError, match="top_left"):
        CascadeCornerPoolModule(4, 4, corner="top_right")


@pytest.mark.parametrize("name", ["tl_pool", "center_pool"])
def test_vectorized_modules_train_under_xla(name):
    cls, kwargs = MODULES[name]
    if cls is CascadeCornerPoolModule:
        kwargs = {**kwargs, "implementation": "vectorized"}
    module = cls(4, 3, **kwargs)
    assert_trains_under_xla(module)
