"""`export_info.json`: what a runtime needs to feed a portable export and read its outputs."""

from __future__ import annotations

import importlib.metadata
import json
import pathlib

from cornernet_tf import __version__
from cornernet_tf.config import Config
from cornernet_tf.export import class_names
from cornernet_tf.portable.graph import INPUT_NAME, OUTPUT_NAMES, PortableDetector

FILE_NAME = "export_info.json"
QUANTIZATION_DETAILS = {
    "none": "float32",
    "fp16": "float16 weights, float32 compute",
    "int8": "int8 weights (dynamic range): activations quantized at run time where a kernel supports it",
}
_PACKAGES = {"tflite": ("tensorflow", "keras", "ai-edge-litert"), "onnx": ("tensorflow", "keras", "tf2onnx", "onnx")}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def export_info(detector: PortableDetector, config: Config, fmt: str, model_file: str, quantize: str,
                extra: dict | None = None) -> dict:
    """The description of one export (see docs/export_and_serving.md)."""
    batch = detector.batch_size
    max_detections = config.export.max_detections
    return {
        "format": fmt,
        "model_file": model_file,
        "quantization": quantize,
        "quantization_detail": QUANTIZATION_DETAILS[quantize],
        "input": {
            "name": INPUT_NAME, "dtype": "uint8", "layout": "NHWC", "color": "RGB",
            "shape": [batch if batch is not None else "batch", *detector.image_size, 3],
        },
        "preprocessing": {
            "in_graph": True, "test_mode": config.export.test_mode,
            "network_input_size": list(config.data.input_size),
            "normalization": {"scale": 1 / 255, "mean": list(config.data.mean), "std": list(config.data.std)},
        },
        "outputs": {
            "order": list(OUTPUT_NAMES),
            "detection_boxes": [batch, max_detections, 4], "detection_classes": [batch, max_detections],
            "detection_scores": [batch, max_detections], "num_detections": [batch],
            "boxes": "ymin, xmin, ymax, xmax divided by the image height / width",
            "classes": "1-based class ids, 0 on empty rows",
        },
        "class_names": class_names(config),
        "model": {"config": config.name, "type": config.model.type, "corner_pool": config.export.corner_pool,
                  "flip": config.export.flip, "score_threshold": config.export.score_threshold},
        "versions": {"cornernet_tf": __version__, **{name: _version(name) for name in _PACKAGES[fmt]}},
        **(extra or {}),
    }


def write(directory: pathlib.Path, info: dict) -> pathlib.Path:
    path = directory / FILE_NAME
    path.write_text(json.dumps(info, indent=2) + "\n")
    return path


def read(directory: str | pathlib.Path) -> dict:
    return json.loads((pathlib.Path(directory) / FILE_NAME).read_text())
