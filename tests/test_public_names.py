"""The names users import, as README.md, docs/ and the notebooks show them, stay importable.

A name that moves keeps working from its old home for a release, with a DeprecationWarning.
"""

from __future__ import annotations

import importlib
import json
import pathlib
import re
import warnings

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
IMPORT = re.compile(r"^\s*from (cornernet_tf[\w.]*) import \(?([\w ,\n]+?)\)?\s*(?:#.*)?$", re.M)


def _texts() -> dict[str, str]:
    texts = {path.name: path.read_text() for path in [REPO_ROOT / "README.md", *sorted(REPO_ROOT.glob("docs/*.md"))]}
    for notebook in sorted(REPO_ROOT.glob("notebooks/*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        texts[notebook.name] = "\n".join("".join(cell["source"]) for cell in cells)
    return texts


def public_imports() -> list[tuple[str, str, str]]:
    """(document, module, name) of every `from cornernet_tf... import name` the docs show."""
    found = set()
    for document, text in _texts().items():
        for module, names in IMPORT.findall(text):
            for name in re.split(r"[,\s]+", names.strip()):
                if name and name != "as":
                    found.add((document, module, name))
    return sorted(found)


PUBLIC = public_imports()


def test_the_docs_show_the_main_names():
    shown = {(module, name) for _, module, name in PUBLIC}
    for pair in [("cornernet_tf", "Detector"), ("cornernet_tf", "ObjectDetector"), ("cornernet_tf", "CocoEvaluation")]:
        assert pair in shown, pair


@pytest.mark.parametrize("document,module,name", PUBLIC, ids=[f"{d}:{m}.{n}" for d, m, n in PUBLIC])
def test_every_name_the_docs_show_imports(document, module, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        imported = importlib.import_module(module)
        assert hasattr(imported, name) or importlib.import_module(f"{module}.{name}"), f"{document}: {module}.{name}"


def test_build_model_from_its_old_home_still_works_and_warns():
    from cornernet_tf.config import load_config
    from cornernet_tf.tasks import model

    with pytest.warns(DeprecationWarning, match="moved to cornernet_tf.tasks.model.build_model"):
        from cornernet_tf.models import build_model
    assert build_model is model.build_model
    network = build_model(load_config("shapes_tiny").model)
    assert network.num_classes == 3
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        getattr(importlib.import_module("cornernet_tf.models"), "no_such_name")  # noqa: B009


MOVED = sorted(__import__("cornernet_tf.utils.moved_modules", fromlist=["MOVED_MODULES"]).MOVED_MODULES.items())


@pytest.mark.parametrize("old,new", MOVED, ids=[old for old, _ in MOVED])
def test_a_moved_module_still_imports_from_its_old_name_and_warns(old, new):
    import sys

    sys.modules.pop(f"cornernet_tf.{old}", None)
    with pytest.warns(DeprecationWarning, match=f"cornernet_tf.{old} moved to cornernet_tf.{new}"):
        moved = importlib.import_module(f"cornernet_tf.{old}")
    assert moved is importlib.import_module(f"cornernet_tf.{new}")


def test_names_of_the_old_presets_and_convert_modules_still_import_and_warn():
    from cornernet_tf.api import presets
    from cornernet_tf.tasks import official_weights

    with pytest.warns(DeprecationWarning, match="moved to cornernet_tf.api.presets.load_preset"):
        from cornernet_tf.presets import load_preset
    assert load_preset is presets.load_preset
    with pytest.warns(DeprecationWarning, match="moved to cornernet_tf.tasks.official_weights.official_entries"):
        from cornernet_tf.convert import official_entries
    assert official_entries is official_weights.official_entries
    with pytest.raises(ImportError):
        from cornernet_tf.convert import no_such_name  # noqa: F401
    with pytest.warns(DeprecationWarning, match="cornernet_tf.models.MODEL_TYPES moved"):
        from cornernet_tf.models import MODEL_TYPES
    assert MODEL_TYPES["squeeze"].__name__ == "CornerNetSqueeze"
