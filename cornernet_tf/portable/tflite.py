"""TFLite conversion of a `PortableDetector` (float32, float16 weights or int8) and the LiteRT runner.

The converter freezes the traced function itself (`experimental_lower_to_saved_model` off): its
SavedModel route keeps Keras 3 variables as resource variables that the interpreter finds
uninitialised (every output NaN). The frozen route writes no SignatureDef, so the outputs are
the function's in `OUTPUT_NAMES` order (tensor names Identity, Identity_1, ...), which
`export_info.json` records and `run` maps back to names. All ops are TFLite builtins
(decoding and soft-NMS included); a dynamic batch is not possible (soft-NMS's TensorArray needs
a static element shape), so the batch is fixed.

int8 is dynamic-range quantization, not full-integer: calibrating with a representative
dataset crashes TF 2.21's calibrator (a segmentation fault while it runs the graph) as soon as
soft-NMS's WHILE loop is in the graph; the network with corner decoding calibrates.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from cornernet_tf.portable.graph import OUTPUT_NAMES, PortableDetector

QUANTIZATIONS = ("none", "fp16", "int8")


def convert(detector: PortableDetector, quantize: str = "none") -> bytes:
    """The .tflite flatbuffer. fp16: float16 weights, float32 compute. int8: int8 weights
    (dynamic range: the kernels that support it quantize their activations at run time; the
    rest, decoding included, computes in float32); inputs and outputs keep their types."""
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
    if detector.batch_size is None:
        raise ValueError("TFLite needs a fixed batch size (soft-NMS's loop state has a static shape)")
    converter = tf.lite.TFLiteConverter.from_concrete_functions([detector.concrete_function()], detector)
    converter.experimental_lower_to_saved_model = False
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def runner(model: str | os.PathLike | bytes) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A LiteRT interpreter of a .tflite file (or its bytes), allocated once, as a function of
    uint8 images [B, H, W, 3] returning the outputs by name."""
    from ai_edge_litert.interpreter import Interpreter  # imported here: the tflite extra

    interpreter = Interpreter(model_content=model) if isinstance(model, bytes) else Interpreter(model_path=str(model))
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    outputs = interpreter.get_output_details()

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        interpreter.set_tensor(index, np.asarray(images, np.uint8))
        interpreter.invoke()
        return {name: interpreter.get_tensor(detail["index"]) for name, detail in zip(OUTPUT_NAMES, outputs)}

    return run


def run(model: str | os.PathLike | bytes, images: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs of a .tflite file (or its bytes) on uint8 images [B, H, W, 3], by name."""
    return runner(model)(images)
