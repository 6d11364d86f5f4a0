"""CornerNet and CenterNet keypoint detectors in TensorFlow / Keras 3."""

from cornernet_tf.utils import cli as _cli
from cornernet_tf.utils import moved_modules as _moved_modules
from cornernet_tf.utils import runtime as _runtime

__version__ = "0.1.0"

# Before any TensorFlow import: TensorFlow's CPU allocator (see runtime.py), and the quiet start
# of `python -m cornernet_tf.<command>` (never of a library import).
_runtime.configure()
_cli.start_quietly()
# `cornernet_tf.decode` and the other modules that moved into sub-packages, for a release
_moved_modules.install()

__all__ = ["Detector", "ImageDetections", "ObjectDetector", "TrainingAugmentation", "CocoEvaluation"]
# public name -> the module that defines it
_HOMES = {
    "Detector": "api.detector",
    "ImageDetections": "api.detector",
    "ObjectDetector": "api.object_detector",
    "TrainingAugmentation": "data.keras_augment",
    "CocoEvaluation": "api.callbacks",
}


def __getattr__(name: str):
    """The public classes, imported on first use so that importing the package stays free of
    TensorFlow (and the quiet start keeps working)."""
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"cornernet_tf.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'cornernet_tf' has no attribute {name!r}")
