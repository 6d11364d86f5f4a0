"""Portable exports: TFLite (float32, float16, int8) and ONNX of the export's tensor signature.

`export_portable` writes `<export_dir>/<version>/` (model.tflite or model.onnx, and
export_info.json) with the SavedModel export's atomic, versioned write. The graph is the
`serving_tensor` signature at a fixed image size (`graph.PortableDetector`): uint8 RGB in,
preprocessing, network, decoding and soft-NMS inside, TF Object Detection API outputs out.
Only the pure-TF corner pools convert; the compiled op is refused.
"""

from __future__ import annotations

import os
import pathlib

from cornernet_tf.config import Config
from cornernet_tf.export import write_version
from cornernet_tf.inference import Model
from cornernet_tf.portable import export_info
from cornernet_tf.portable.graph import PortableDetector

FORMATS = ("tflite", "onnx")
MODEL_FILES = {"tflite": "model.tflite", "onnx": "model.onnx"}


def check_request(config: Config, fmt: str, quantize: str, batch_size: int | None) -> None:
    """Refuse what a format cannot hold, before any model is built."""
    if fmt not in FORMATS:
        raise ValueError(f"portable format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if config.export.corner_pool == "op":
        raise ValueError(f"--format {fmt}: the compiled corner-pool op only runs in TensorFlow; export with "
                         "--corner_pool vectorized (same weights, plain TF ops)")
    if fmt == "onnx" and quantize != "none":
        raise ValueError(f"--quantize {quantize} is for --format tflite; the ONNX export is float32")
    if fmt == "tflite" and batch_size is None:
        raise ValueError("--batch_size dynamic is for --format onnx; TFLite needs a fixed batch size")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1 or 'dynamic', got {batch_size}")


def export_portable(
    model: Model, config: Config, export_dir: str | os.PathLike, fmt: str, quantize: str = "none",
    batch_size: int | None = 1, image_size: tuple[int, int] | None = None,
    version: int | None = None,
) -> pathlib.Path:
    """Convert `model` (built with a pure-TF corner pool) and write a new version of `export_dir`.

    image_size: the fixed input [H, W] (default data.input_size); batch_size None: dynamic (ONNX).
    Returns the version folder.
    """
    check_request(config, fmt, quantize, batch_size)
    size = tuple(image_size or config.data.input_size)
    detector = PortableDetector(model, config, batch_size, size)
    extra = {}
    if fmt == "tflite":
        from cornernet_tf.portable import tflite  # imported here: each format's packages are an extra

        content = tflite.convert(detector, quantize)
    else:
        from cornernet_tf.portable import onnx

        content = onnx.convert(detector)
        extra["opset"] = onnx.OPSET
    info = export_info.export_info(detector, config, fmt, MODEL_FILES[fmt], quantize, extra)

    def write(directory: pathlib.Path) -> None:
        (directory / MODEL_FILES[fmt]).write_bytes(content)
        export_info.write(directory, info)

    return write_version(export_dir, write, version)
