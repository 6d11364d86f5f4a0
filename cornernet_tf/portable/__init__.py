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

from cornernet_tf.detection_module import DetectionModule
from cornernet_tf.model_versions import write_version
from cornernet_tf.portable import export_info
from cornernet_tf.portable.graph import PortableDetector

FORMATS = ("tflite", "onnx")
MODEL_FILES = {"tflite": "model.tflite", "onnx": "model.onnx"}


def check_request(fmt: str, quantize: str, batch_size: int | None, corner_pool: str | None = None) -> None:
    """Refuse what a format cannot hold, before any model is built.

    Args:
        fmt: "tflite" or "onnx".
        quantize: "none", "fp16" or "int8" (TFLite only).
        batch_size: Fixed batch size (>= 1), or None for a dynamic one (ONNX only).
        corner_pool: The export's corner-pool implementation; "op" is refused.

    Returns:
        None; a request the format can hold passes silently.

    Raises:
        ValueError: An unknown format, the compiled corner-pool op, quantization with ONNX, a
            dynamic batch with TFLite, or a batch size below 1.
    """
    if fmt not in FORMATS:
        raise ValueError(f"portable format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if corner_pool == "op":
        raise ValueError(
            f"--format {fmt}: the compiled corner-pool op only runs in TensorFlow; export with "
            "--corner_pool vectorized (same weights, plain TF ops)"
        )
    if fmt == "onnx" and quantize != "none":
        raise ValueError(f"--quantize {quantize} is for --format tflite; the ONNX export is float32")
    if fmt == "tflite" and batch_size is None:
        raise ValueError("--batch_size dynamic is for --format onnx; TFLite needs a fixed batch size")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1 or 'dynamic', got {batch_size}")


def export_portable(
    module: DetectionModule,
    export_dir: str | os.PathLike,
    fmt: str,
    quantize: str = "none",
    batch_size: int | None = 1,
    image_size: tuple[int, int] = (511, 511),
    version: int | None = None,
    description: dict | None = None,
) -> pathlib.Path:
    """Convert `module` (its network on a pure-TF corner pool) and write a new version of `export_dir`.

    Args:
        module: The detection module to convert.
        export_dir: The versioned export folder.
        fmt: "tflite" or "onnx".
        quantize: "none", "fp16" or "int8" (TFLite only).
        batch_size: Fixed batch size; None: dynamic (ONNX only).
        image_size: The fixed input [H, W].
        version: Version number to write; None: the highest existing + 1.
        description: Keys for export_info.json (class names, model).

    Returns:
        The version folder.

    Raises:
        ValueError: A request `check_request` refuses, an unknown quantization, a network on the
            compiled corner-pool op, or a version below 1.
        FileExistsError: The version already exists.
    """
    check_request(fmt, quantize, batch_size)  # the graph refuses the compiled corner pool itself
    detector = PortableDetector(module, batch_size, image_size)
    extra = {}
    if fmt == "tflite":
        from cornernet_tf.portable import tflite  # imported here: each format's packages are an extra

        content = tflite.convert(detector, quantize)
    else:
        from cornernet_tf.portable import onnx

        content = onnx.convert(detector)
        extra["opset"] = onnx.OPSET
    info = export_info.export_info(detector, fmt, MODEL_FILES[fmt], quantize, {**(description or {}), **extra})

    def write(directory: pathlib.Path) -> None:
        (directory / MODEL_FILES[fmt]).write_bytes(content)
        export_info.write(directory, info)

    return write_version(export_dir, write, version)
