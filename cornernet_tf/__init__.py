"""CornerNet and CenterNet keypoint detectors in TensorFlow / Keras 3."""

from cornernet_tf import cli as _cli

__version__ = "0.1.0"

# Before any TensorFlow import: quiets `python -m cornernet_tf.<command>`, never a library import.
_cli.start_quietly()
