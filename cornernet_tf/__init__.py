"""CornerNet and CenterNet keypoint detectors in TensorFlow / Keras 3."""

__version__ = "0.1.0"
