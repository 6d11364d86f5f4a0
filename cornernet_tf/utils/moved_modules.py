"""Modules that moved to a sub-package keep importing from their old name for a release.

`import cornernet_tf.decode` (or `from cornernet_tf import decode`) still works: a finder on
`sys.meta_path` answers the old name with the module at its new home, the same object, and a
DeprecationWarning naming the new one. One table, so the old names go away in one change.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Callable

PACKAGE = "cornernet_tf"
# old name below the package -> new name below the package
MOVED_MODULES = {
    "callbacks": "api.callbacks",
    "cli": "utils.cli",
    "coco_metrics": "utils.coco_metrics",
    "decode": "detection.decode",
    "detection_config": "detection.settings",
    "detection_module": "detection.module",
    "detector": "api.detector",
    "files": "utils.files",
    "inference": "detection.inference",
    "losses": "objective.losses",
    "model_versions": "serving.version_writer",
    "models.corner_pool": "models.pooling",
    "object_detector": "api.object_detector",
    "pretrained": "api.pretrained",
    "runtime": "utils.runtime",
    "saccade": "detection.saccade",
    "saccade_settings": "detection.saccade_settings",
    "targets": "objective.targets",
    "torch_checkpoint": "utils.torch_checkpoint",
    "visualize": "utils.visualize",
    "write_errors": "utils.write_errors",
}


class _MovedModuleLoader(importlib.abc.Loader):
    def __init__(self, new_name: str) -> None:
        self.new_name = new_name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.new_name}; the old name goes away in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(self.new_name)

    def exec_module(self, module: types.ModuleType) -> None:
        """The module at its new home is already executed."""


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds `cornernet_tf.<old name>` as the module at its new home."""

    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(PACKAGE + "."):
            return None
        new = MOVED_MODULES.get(fullname[len(PACKAGE) + 1 :])
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _MovedModuleLoader(f"{PACKAGE}.{new}"))


def names_moved_to(old: str, new: str) -> Callable[[str], object]:
    """A module `__getattr__` for `old`, whose functions moved to the module `new`: a name of `new`
    is returned with a DeprecationWarning (imported on first use), any other is an AttributeError."""

    def __getattr__(name: str) -> object:
        module = importlib.import_module(new)
        if name.startswith("__") or not hasattr(module, name):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(
            f"{old}.{name} moved to {new}.{name}; the old name goes away in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(module, name)

    return __getattr__


def install() -> None:
    """Put the finder on sys.meta_path once (after the path finder, so a real module wins)."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
