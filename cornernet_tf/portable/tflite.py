"""TFLite conversion of a `PortableDetector` (float32, float16 weights, int8) and the LiteRT runner.

The converter is given a frozen graph. The SavedModel routes keep Keras 3 variables as resource
variables that the interpreter finds uninitialised (every output NaN, or a file without weights).
TensorFlow's own freezing (`convert_variables_to_constants_v2`, which `from_concrete_functions`
runs) holds about ten copies of the weights at once (Hourglass-104: 12-17 GB for the conversion),
so the graph is frozen here instead: traced with the weights as inputs
(`PortableDetector.weights_as_inputs`), each weight input then replaced by a constant holding the
variable's value, one copy (`_frozen_graph`: the export process of Hourglass-104 peaks at 8.9 GiB,
most of it the converter's own), and converted by the GraphDef converter
(`tf.compat.v1.lite.TFLiteConverter`, the one that takes a frozen GraphDef; same MLIR converter,
flatbuffer identical in outputs on the tests' model). A frozen graph has no SignatureDef, so the
outputs are the function's in `OUTPUT_NAMES` order (tensor names Identity, Identity_1, ...), which
`export_info.json` records and `run` maps back to names. All ops are TFLite builtins
(decoding and soft-NMS included); a dynamic batch is not possible (soft-NMS's TensorArray needs
a static element shape), so the batch is fixed.

int8 without representative images is dynamic-range quantization (int8 weights; activations
quantized at run time where a kernel supports it). With them it is full-integer: TF 2.21's
calibrator crashes (a segmentation fault) on soft-NMS's WHILE loop, so the graph is converted in
its two halves (`PortableDetector.network_function` / `decoding_function`): the network,
calibrated, with int8 kernels (uint8 images in, float maps out) in `model.tflite`, and the
decoding with soft-NMS in float32 in `decoding.tflite`; `runner` runs one after the other.

A network-only export (`convert(..., network_only=True)`, or `convert_calibrated_network` for
int8 with representative images: the calibrated export's first file itself) is the network half
alone; its outputs come in `PortableDetector.map_names` order, named in export_info.json.
"""

from __future__ import annotations

import os
import pathlib
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from cornernet_tf.portable.graph import INPUT_NAME, OUTPUT_NAMES, PortableDetector, WeightInputs, calibration_batches

QUANTIZATIONS = ("none", "fp16", "int8")
DECODING_FILE = "decoding.tflite"  # a full-integer export's float decoding, beside model.tflite
_MAP_NUMBER = re.compile(r"map_(\d+)")  # the decoding's input names


def convert(detector: PortableDetector, quantize: str = "none", network_only: bool = False) -> bytes:
    """The .tflite flatbuffer of the whole detector, or with `network_only` of its network half
    (the maps in `detector.map_names()` order). fp16: float16 weights, float32 compute. int8:
    int8 weights (dynamic range: the kernels that support it quantize their activations at run
    time; the rest, decoding included, computes in float32); inputs and outputs keep their types."""
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
    if detector.batch_size is None:
        raise ValueError("TFLite needs a fixed batch size (soft-NMS's loop state has a static shape)")
    converter = _converter(detector, network_only)
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def convert_calibrated_network(
    detector: PortableDetector, images: np.ndarray, on_progress: Callable[[int, int], None] | None = None
) -> bytes:
    """The network half in int8, calibrated on uint8 `images` [N, H, W, 3], as a .tflite
    flatbuffer (uint8 images in, float maps out); ops without an int8 kernel stay float. The
    network-only int8 export, and the first file of the calibrated one.

    Raises:
        ValueError: `images` fill no batch of the detector's.
    """
    batches = calibration_batches(images, detector.batch_size)
    total = len(batches) * detector.batch_size

    def representative() -> Iterator[list[np.ndarray]]:
        for count, batch in enumerate(batches, 1):
            yield [batch]
            if on_progress is not None:
                on_progress(count * len(batch), total)

    network = _converter(detector, network_only=True)
    network.optimizations = [tf.lite.Optimize.DEFAULT]
    network.representative_dataset = representative
    network.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    with warnings.catch_warnings():  # the uint8 image input needs no statistics: it is cast, then quantized
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return network.convert()


def convert_calibrated(
    detector: PortableDetector, images: np.ndarray, on_progress: Callable[[int, int], None] | None = None
) -> tuple[bytes, bytes]:
    """(the network in int8, calibrated on uint8 `images` [N, H, W, 3] (`convert_calibrated_network`);
    the decoding in float32) as .tflite flatbuffers; see the module doc.

    Raises:
        ValueError: `images` fill no batch of the detector's.
    """
    integer = convert_calibrated_network(detector, images, on_progress)
    return integer, _decoding_converter(detector).convert()


def _converter(detector: PortableDetector, network_only: bool) -> tf.lite.TFLiteConverter:
    """A converter of the whole detector, or of its network half, frozen with one copy of the
    weights (module doc), TFLite builtins only."""
    graph, outputs = _frozen_graph(detector.weights_as_inputs(network_only))
    converter = tf.compat.v1.lite.TFLiteConverter(
        graph,
        None,
        None,
        input_arrays_with_shape=[(INPUT_NAME, [detector.batch_size, *detector.image_size, 3])],
        output_arrays=outputs,
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def _decoding_converter(detector: PortableDetector) -> tf.lite.TFLiteConverter:
    """A converter of the decoding half (`PortableDetector.decoding_function`), TFLite builtins
    only. It holds no weights, so TensorFlow's own freezing serves."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions([detector.decoding_function()], detector)
    converter.experimental_lower_to_saved_model = False
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def _frozen_graph(traced: WeightInputs) -> tuple[tf.compat.v1.GraphDef, list[str]]:
    """`traced`'s graph with each weight input replaced by a constant holding its variable's value
    (one at a time), and the names of its outputs in order."""
    function = traced.function.get_concrete_function()
    graph = function.graph.as_graph_def()
    for node in graph.node:
        variable = traced.weights.get(node.name)
        if node.op == "Placeholder" and variable is not None:
            dtype = node.attr["dtype"].type
            node.op = "Const"
            node.attr.clear()
            node.attr["dtype"].type = dtype
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.asarray(variable.numpy())))
    return graph, [tensor.name.removesuffix(":0") for tensor in function.outputs]


def _interpreter(model: str | os.PathLike | bytes) -> Any:
    from ai_edge_litert.interpreter import Interpreter  # imported here: the tflite extra

    interpreter = Interpreter(model_content=model) if isinstance(model, bytes) else Interpreter(model_path=str(model))
    interpreter.allocate_tensors()
    return interpreter


def _outputs(interpreter: Any) -> list[np.ndarray]:
    return [interpreter.get_tensor(detail["index"]) for detail in interpreter.get_output_details()]


def runner(
    model: str | os.PathLike | bytes,
    decoding: str | os.PathLike | bytes | None = None,
    output_names: Sequence[str] = OUTPUT_NAMES,
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """LiteRT interpreters of a .tflite file (or its bytes), allocated once, as a function of uint8
    images [B, H, W, 3] returning the outputs by name. A full-integer export's two files: `model`
    (the network) and `decoding`, which a `model` path finds beside it (DECODING_FILE) when None.
    `output_names`: the names of the last file's outputs, in order (the file has none of its own:
    see the module doc); a network-only export's are its export_info.json `outputs.order`."""
    if decoding is None and not isinstance(model, bytes):
        beside = pathlib.Path(model).with_name(DECODING_FILE)
        decoding = beside if beside.is_file() else None
    first = _interpreter(model)
    index = first.get_input_details()[0]["index"]
    second = _interpreter(decoding) if decoding is not None else None
    if second is not None:  # its inputs map_0, map_1, ...: the network's outputs in order
        numbered = {int(_MAP_NUMBER.search(d["name"]).group(1)): d["index"] for d in second.get_input_details()}
        map_indices = [numbered[n] for n in sorted(numbered)]
    names = list(output_names)
    count = len((second or first).get_output_details())
    if len(names) != count:
        raise ValueError(f"the model has {count} outputs, {len(names)} names were given")

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        first.set_tensor(index, np.asarray(images, np.uint8))
        first.invoke()
        outputs = _outputs(first)
        if second is not None:
            for map_index, tensor in zip(map_indices, outputs):
                second.set_tensor(map_index, tensor)
            second.invoke()
            outputs = _outputs(second)
        return dict(zip(names, outputs))

    return run


def run(model: str | os.PathLike | bytes, images: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs of a .tflite file (or its bytes; a full-integer export: the folder's model.tflite,
    its decoding.tflite beside it) on uint8 images [B, H, W, 3], by name."""
    return runner(model)(images)
