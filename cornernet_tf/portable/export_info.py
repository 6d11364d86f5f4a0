"""`export_info.json`: what a runtime needs to feed a portable export and read its outputs."""

from __future__ import annotations

import importlib.metadata
import json
import pathlib

from cornernet_tf import __version__
from cornernet_tf.portable.graph import INPUT_NAME, OUTPUT_NAMES, PortableDetector

FILE_NAME = "export_info.json"
QUANTIZATION_DETAILS = {
    "none": "float32",
    "fp16": "float16 weights, float32 compute",
    "int8": "int8 weights (dynamic range): activations quantized at run time where a kernel supports it",
}
CALIBRATED_DETAILS = {  # int8 with representative images: what is integer, per format
    "tflite": "int8 network in model_file (int8 kernels, int8 weights and activations at ranges calibrated on "
    "representative images; uint8 images in, float maps out); decoding and soft-NMS float32 in decoding_file",
    "onnx": "int8 convolutions (static QDQ: per-channel int8 weights, uint8 activations at ranges calibrated on "
    "representative images); the rest of the network (corner pools, ReLUs, additions), preprocessing, decoding "
    "and soft-NMS float32",
}
_PACKAGES = {"tflite": ("tensorflow", "keras", "ai-edge-litert"), "onnx": ("tensorflow", "keras", "tf2onnx", "onnx")}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def export_info(
    detector: PortableDetector,
    fmt: str,
    model_file: str,
    quantize: str,
    extra: dict | None = None,
    calibrated: bool = False,
) -> dict:
    """The description of one export (see docs/export_and_serving.md).

    Args:
        detector: The converted graph; its settings, preprocessing, batch and image size are
            described.
        fmt: "tflite" or "onnx".
        model_file: The model's file name in the version folder.
        quantize: "none", "fp16" or "int8".
        extra: Keys to add (the class names, the model) or to extend "model" with.
        calibrated: int8 was calibrated (the network is integer), not dynamic range.

    Returns:
        The export_info.json content: format, input, preprocessing, outputs, class names, model
        and package versions.
    """
    settings, preprocessing = detector.detection.settings, detector.detection.preprocessing
    batch = detector.batch_size
    max_detections = settings.max_detections
    extra = dict(extra or {})
    return {
        "format": fmt,
        "model_file": model_file,
        "quantization": quantize,
        "quantization_detail": CALIBRATED_DETAILS[fmt] if calibrated else QUANTIZATION_DETAILS[quantize],
        "input": {
            "name": INPUT_NAME,
            "dtype": "uint8",
            "layout": "NHWC",
            "color": "RGB",
            "shape": [batch if batch is not None else "batch", *detector.image_size, 3],
        },
        "preprocessing": {
            "in_graph": True,
            "test_mode": settings.test_mode,
            "scales": list(settings.scales),
            "network_input_size": list(preprocessing.input_size),
            "normalization": {"scale": 1 / 255, "mean": list(preprocessing.mean), "std": list(preprocessing.std)},
        },
        "outputs": {
            "order": list(OUTPUT_NAMES),
            "detection_boxes": [batch, max_detections, 4],
            "detection_classes": [batch, max_detections],
            "detection_scores": [batch, max_detections],
            "num_detections": [batch],
            "boxes": "ymin, xmin, ymax, xmax divided by the image height / width",
            "classes": "1-based class ids, 0 on empty rows",
        },
        "class_names": extra.pop("class_names", []),
        "model": {**extra.pop("model", {}), "flip": settings.flip, "score_threshold": settings.score_threshold},
        "versions": {"cornernet_tf": __version__, **{name: _version(name) for name in _PACKAGES[fmt]}},
        **extra,
    }


def write(directory: pathlib.Path, info: dict) -> pathlib.Path:
    path = directory / FILE_NAME
    path.write_text(json.dumps(info, indent=2) + "\n")
    return path


def read(directory: str | pathlib.Path) -> dict:
    return json.loads((pathlib.Path(directory) / FILE_NAME).read_text())
