"""Portable exports: TFLite (float32, float16, int8) and ONNX of the export's tensor signature.
May import `detection`, `data`, `serving` (the version-folder writer) and `utils`.

`export_portable` writes `<export_dir>/<version>/` (model.tflite or model.onnx, and
export_info.json) with the SavedModel export's atomic, versioned write. The graph is the
`serving_tensor` signature at a fixed image size (`graph.PortableDetector`): uint8 RGB in,
preprocessing, network, decoding and soft-NMS inside, TF Object Detection API outputs out.
Only the pure-TF corner pools convert; the compiled op is refused. int8 with representative
images is calibrated, full-integer in the network (`tflite.convert_calibrated`, `onnx.convert_quantized`);
TFLite int8 without them is dynamic range. With `network_only` the file holds the network half
alone (uint8 images in, preprocessing inside, the network's maps out: what TensorRT's trtexec and
custom decoders take), its contract in export_info.json (`export_info.network_contract`).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable

import numpy as np

from cornernet_tf.detection.module import DetectionModule
from cornernet_tf.portable import export_info
from cornernet_tf.portable.graph import PortableDetector
from cornernet_tf.serving.version_writer import write_version

FORMATS = ("tflite", "onnx")
MODEL_FILES = {"tflite": "model.tflite", "onnx": "model.onnx"}
# Peak memory an export's conversion adds to the process (beyond the built network, 1.5 GiB), per
# byte of the network's float32 weights, by (format, quantization): the larger of the two
# Hourglass-104 models' (804 and 840 MB of weights; export peaks ONNX 5.3 / 5.7 GiB, ONNX int8
# 7.0 / 7.5 GiB, TFLite 7.7 / 8.1 GiB, TFLite calibrated int8 8.9 / 9.3 GiB; docs/benchmarks.md
# "Export memory"). ONNX int8: the float conversion, then onnxruntime's calibration session;
# TFLite: TensorFlow's converter (the int8 entry is the calibrated export's frozen-graph route;
# dynamic-range int8 needs the float figure).
CONVERSION_MEMORY_PER_WEIGHT_BYTE = {
    ("onnx", "none"): 5.4,
    ("onnx", "int8"): 7.7,
    ("tflite", "none"): 8.4,
    ("tflite", "int8"): 10.0,
}


def check_request(
    fmt: str, quantize: str, batch_size: int | None, corner_pool: str | None = None, calibrated: bool = False
) -> None:
    """Refuse what a format cannot hold, before any model is built.

    Args:
        fmt: "tflite" or "onnx".
        quantize: "none", "fp16" (TFLite only) or "int8" (ONNX: calibrated only; TFLite: calibrated
            when `calibrated`, else dynamic range).
        batch_size: Fixed batch size (>= 1), or None for a dynamic one (ONNX only).
        corner_pool: The export's corner-pool implementation; "op" is refused.
        calibrated: Representative images are given (for int8).

    Returns:
        None; a request the format can hold passes silently.

    Raises:
        ValueError: An unknown format, the compiled corner-pool op, fp16 with ONNX, ONNX int8
            without representative images (or images without int8), a dynamic batch with TFLite,
            or a batch size below 1.
    """
    if fmt not in FORMATS:
        raise ValueError(f"portable format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if corner_pool == "op":
        raise ValueError(
            f"--format {fmt}: the compiled corner-pool op only runs in TensorFlow; export with "
            "--corner_pool vectorized (same weights, plain TF ops)"
        )
    if fmt == "onnx" and quantize not in ("none", "int8"):
        raise ValueError(f"--quantize {quantize} is for --format tflite; ONNX takes none or int8")
    if fmt == "onnx" and quantize == "int8" and not calibrated:
        raise ValueError(
            "--format onnx --quantize int8 is calibrated: give --representative_images (a folder of images "
            "like the ones to detect, or val for the run's validation split)"
        )
    if calibrated and quantize != "int8":
        raise ValueError(f"--representative_images calibrates --quantize int8, not --quantize {quantize}")
    if fmt == "tflite" and batch_size is None:
        raise ValueError("--batch_size dynamic is for --format onnx; TFLite needs a fixed batch size")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1 or 'dynamic', got {batch_size}")


def conversion_memory(fmt: str, quantize: str, parameters: int) -> int:
    """Bytes a conversion of a network of `parameters` float32 weights to `fmt` at `quantize` is
    expected to add to the process's memory (CONVERSION_MEMORY_PER_WEIGHT_BYTE), for the export to
    say before it starts."""
    factors = CONVERSION_MEMORY_PER_WEIGHT_BYTE
    return round(factors.get((fmt, quantize), factors[(fmt, "none")]) * 4 * parameters)


def export_portable(
    module: DetectionModule,
    export_dir: str | os.PathLike,
    fmt: str,
    quantize: str = "none",
    batch_size: int | None = 1,
    image_size: tuple[int, int] = (511, 511),
    version: int | None = None,
    description: dict | None = None,
    representative_images: np.ndarray | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    network_only: bool = False,
) -> pathlib.Path:
    """Convert `module` (its network on a pure-TF corner pool) and write a new version of `export_dir`.

    Args:
        module: The detection module to convert.
        export_dir: The versioned export folder.
        fmt: "tflite" or "onnx".
        quantize: "none", "fp16" (TFLite only) or "int8" (see `check_request`).
        batch_size: Fixed batch size; None: dynamic (ONNX only).
        image_size: The fixed input [H, W].
        version: Version number to write; None: the highest existing + 1.
        description: Keys for export_info.json (class names, model).
        representative_images: uint8 [N, H, W, 3] at `image_size` that int8 calibrates on.
        on_progress: Called with (images run, N) while calibrating.
        network_only: Convert the network half alone (`PortableDetector.network_function`: the
            preprocessing and the network, the maps out), no decoding.

    Returns:
        The version folder.

    Raises:
        ValueError: A request `check_request` refuses, an unknown quantization, a network on the
            compiled corner-pool op, or a version below 1.
        FileExistsError: The version already exists.
    """
    calibrated = representative_images is not None
    check_request(fmt, quantize, batch_size, calibrated=calibrated)  # the graph refuses the compiled op itself
    detector = PortableDetector(module, batch_size, image_size)
    extra: dict = {}
    files: dict[str, bytes] = {}
    if fmt == "tflite":
        from cornernet_tf.portable import tflite  # imported here: each format's packages are an extra

        if calibrated and network_only:  # the calibrated export's first file, alone
            content = tflite.convert_calibrated_network(detector, representative_images, on_progress)
        elif calibrated:
            content, decoding = tflite.convert_calibrated(detector, representative_images, on_progress)
            files[tflite.DECODING_FILE] = decoding
            extra["decoding_file"] = tflite.DECODING_FILE
        else:
            content = tflite.convert(detector, quantize, network_only=network_only)
    else:
        from cornernet_tf.portable import onnx

        if quantize == "int8":
            content = onnx.convert_quantized(detector, representative_images, on_progress, network_only)
        else:
            content = onnx.convert(detector, network_only=network_only)
        extra["opset"] = onnx.OPSET
    if calibrated:
        extra["calibration"] = {"images": len(representative_images)}
    info = export_info.export_info(
        detector,
        fmt,
        MODEL_FILES[fmt],
        quantize,
        {**(description or {}), **extra},
        calibrated=calibrated,
        network_only=network_only,
    )

    files[MODEL_FILES[fmt]] = content

    def write(directory: pathlib.Path) -> None:
        for name, data in files.items():
            (directory / name).write_bytes(data)
        export_info.write(directory, info)

    return write_version(export_dir, write, version)


def fixed_size_runner(version: str | os.PathLike) -> tuple[Callable[[np.ndarray], dict[str, np.ndarray]], dict]:
    """The runner of a portable export's version folder in its own runtime (the LiteRT
    interpreter, onnxruntime), and its export_info.json: uint8 [B, H, W, 3] at the export's batch
    (any, for a dynamic ONNX one) and image size -> the outputs by name (the four detection
    outputs; a network-only export's maps, `outputs.order`)."""
    info = export_info.read(version)
    model = pathlib.Path(version) / info["model_file"]
    if info["format"] == "tflite":
        from cornernet_tf.portable import tflite

        return tflite.runner(model, output_names=info["outputs"]["order"]), info
    from cornernet_tf.portable import onnx

    return onnx.runner(model), info
