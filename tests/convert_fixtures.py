"""Fixtures shared by the CornerNet, CenterNet, CornerNet-Squeeze and CornerNet-Saccade conversion tests, built per
model type."""

import numpy as np
import pytest

from cornernet_tf.config import load_config
from cornernet_tf.tasks.model import build_model
from cornernet_tf.tasks.official_weights import official_entries
from tests.conftest import load_reference, reference_path


def read_state_dict_tsv(name: str) -> tuple[list[tuple[str, tuple[int, ...], str]], int]:
    """(key, shape, kind) rows in state_dict order, and the total parameter count of the footer
    (columns past kind, such as the mmdetection tsv's official_key, are left out)."""
    rows, total = [], None
    for line in reference_path(name).read_text().splitlines():
        if line.startswith("#"):
            fields = dict(f.split("=") for f in line[1:].split() if "=" in f)
            total = int(fields["total_parameter_count"]) if "total_parameter_count" in fields else total
            continue
        key, shape, _dtype, kind, *_ = line.split("\t")
        rows.append((key, tuple(int(s) for s in shape.split(",")) if shape else (), kind))
    return rows, total


# model type -> (bundled config of the full official model, its state_dict tsv, the tiny fixture)
OFFICIAL_FILES = {
    "cornernet": ("cornernet_hg104_coco", "cornernet_hg104_state_dict.tsv", "cornernet_tiny.npz"),
    "centernet": ("centernet_hg104_coco", "centernet_hg104_state_dict.tsv", "centernet_tiny.npz"),
    "squeeze": ("squeeze_coco", "cornernet_squeeze_state_dict.tsv", "squeeze_tiny.npz"),
    "saccade": ("saccade_coco", "cornernet_saccade_state_dict.tsv", "saccade_tiny.npz"),
}


def official_fixtures(model_type: str):
    """Module-scoped fixtures hg104 (the full official model: Hourglass-104, or CornerNet-Squeeze),
    hg104_rows, tiny_ref, tiny_params for a type of OFFICIAL_FILES; assign them at module level:
    `hg104, hg104_rows, tiny_ref, tiny_params = official_fixtures(...)`."""
    config_name, tsv_name, tiny_name = OFFICIAL_FILES[model_type]

    @pytest.fixture(scope="module", name="hg104")
    def hg104():
        return build_model(load_config(config_name).model, corner_pool="vectorized")

    @pytest.fixture(scope="module", name="hg104_rows")
    def hg104_rows():
        return read_state_dict_tsv(tsv_name)

    @pytest.fixture(scope="module", name="tiny_ref")
    def tiny_ref():
        return load_reference(tiny_name)

    @pytest.fixture(scope="module", name="tiny_params")
    def tiny_params(tiny_ref):
        return {k: v for k, v in tiny_ref.items() if not k.startswith("ref/")}

    return hg104, hg104_rows, tiny_ref, tiny_params


def check_parameter_count(model, rows_and_total, expected_total: int) -> None:
    """The tsv's footer, the sum of its parameter rows and `model`'s trainable weights all hold
    `expected_total` values."""
    rows, total = rows_and_total
    assert total == expected_total
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == total
    assert sum(int(np.prod(shape)) for _, shape, kind in rows if kind == "parameter") == total


def check_every_official_key_maps(model, rows, entries_of=official_entries) -> None:
    """Every state_dict key of the tsv (step counters aside) maps onto its own weight of
    `model`, and its transform turns the checkpoint's shape into the weight's; `entries_of`
    walks the model in the tsv's key layout (`convert.mmdetection_entries` for mmdetection's)."""
    official = {key: shape for key, shape, _ in rows if not key.endswith("num_batches_tracked")}
    entries = list(entries_of(model))
    assert [key for key, _, _ in entries if key not in official] == []
    assert sorted(key for key, _, _ in entries) == sorted(official)
    assert len({id(v) for _, v, _ in entries}) == len(model.weights) == len(official)
    for key, variable, transform in entries:
        assert transform(np.zeros(official[key], "float32")).shape == tuple(variable.shape), key
