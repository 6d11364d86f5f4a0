"""Fixtures shared by the CornerNet and CenterNet conversion tests, built per model type."""

import pytest

from cornernet_tf.config import load_config
from cornernet_tf.models import build_model
from tests.conftest import load_reference, reference_path


def read_state_dict_tsv(name: str) -> tuple[list[tuple[str, tuple[int, ...], str]], int]:
    """(key, shape, kind) rows in official order, and the total parameter count of the footer."""
    rows, total = [], None
    for line in reference_path(name).read_text().splitlines():
        if line.startswith("#"):
            fields = dict(f.split("=") for f in line[1:].split() if "=" in f)
            total = int(fields["total_parameter_count"]) if "total_parameter_count" in fields else total
            continue
        key, shape, _dtype, kind = line.split("\t")
        rows.append((key, tuple(int(s) for s in shape.split(",")) if shape else (), kind))
    return rows, total


def official_fixtures(model_type: str):
    """Module-scoped fixtures hg104, hg104_rows, tiny_ref, tiny_params for "cornernet" or "centernet";
    assign them at module level: `hg104, hg104_rows, tiny_ref, tiny_params = official_fixtures(...)`."""

    @pytest.fixture(scope="module", name="hg104")
    def hg104():
        return build_model(load_config(f"{model_type}_hg104_coco").model, corner_pool="vectorized")

    @pytest.fixture(scope="module", name="hg104_rows")
    def hg104_rows():
        return read_state_dict_tsv(f"{model_type}_hg104_state_dict.tsv")

    @pytest.fixture(scope="module", name="tiny_ref")
    def tiny_ref():
        return load_reference(f"{model_type}_tiny.npz")

    @pytest.fixture(scope="module", name="tiny_params")
    def tiny_params(tiny_ref):
        return {k: v for k, v in tiny_ref.items() if not k.startswith("ref/")}

    return hg104, hg104_rows, tiny_ref, tiny_params
