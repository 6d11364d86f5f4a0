"""TFLite conversion of a `PortableDetector` (float32, float16 weights, int8) and the LiteRT runner.

Both routes start from the network traced with its weights as inputs
(`PortableDetector.weights_as_inputs`): TensorFlow's own freezing
(`convert_variables_to_constants_v2`, behind `from_concrete_functions`) holds about ten copies of
the weights at once (Hourglass-104: 12-17 GB for a conversion).

- float32, fp16 and dynamic-range int8 (`convert`): the converter is given a SavedModel, written
  to a scratch folder, whose function calls the traced network on the plain `tf.Variable`s under
  the Keras ones (no copy); its C++ side loads and freezes the weights itself, and the Python side
  holds no GraphDef (Hourglass-104's export process peaks at 7.7 GiB). A SavedModel of the Keras
  model itself does not serve: Keras variables stay resource variables in the file, which the
  interpreter finds uninitialised (every output NaN). The converter orders the outputs its own
  way, so they are put back in the function's (`OUTPUT_NAMES`, or `map_names` for the network
  half), as `export_info.json` records; the file's `serving_default` signature names them too.
- calibrated int8 (`convert_calibrated_network`): the graph is frozen here, each weight input
  replaced by a constant holding its variable's value (one copy), and given to the GraphDef
  converter (`tf.compat.v1.lite.TFLiteConverter`); the outputs come in `map_names` order, with no
  signature. TensorFlow's calibration and quantization run inside `convert()` after the
  conversion and hold several copies of the float file beside the calibrating interpreter; after a
  conversion from the SavedModel they peaked higher (Hourglass-104: 10.5 GiB against 8.9).

All ops are TFLite builtins (decoding and soft-NMS included); a dynamic batch is not possible
(soft-NMS's TensorArray needs a static element shape), so the batch is fixed.

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

import contextlib
import os
import pathlib
import re
import tempfile
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
    with _converter(detector, network_only) as converter:
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "fp16":
            converter.target_spec.supported_types = [tf.float16]
        return _in_order(converter.convert(), _output_names(detector, network_only))


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

    network = _frozen_network_converter(detector)
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


@contextlib.contextmanager
def _converter(detector: PortableDetector, network_only: bool) -> Iterator[tf.lite.TFLiteConverter]:
    """A converter of the whole detector, or of its network half (outputs named by
    `_output_names`), from a SavedModel in a scratch folder that lives as long as the context
    (the converter reads it when it converts); TFLite builtins only (module doc)."""
    traced = detector.weights_as_inputs(network_only)
    names = _output_names(detector, network_only)
    holder = tf.Module()
    holder.weights = [variable.value for variable in traced.weights.values()]  # the tf.Variables themselves

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = traced.function(images, *holder.weights)
        return dict(zip(names, outputs, strict=True)) if network_only else outputs

    holder.serve = tf.function(serve, input_signature=traced.signature[:1])
    with tempfile.TemporaryDirectory(prefix="cornernet_tflite_") as scratch:
        tf.saved_model.save(holder, scratch, signatures=holder.serve.get_concrete_function())
        converter = tf.lite.TFLiteConverter.from_saved_model(scratch)
        converter.experimental_enable_resource_variables = False  # the weights frozen, or no file
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        yield converter


def _output_names(detector: PortableDetector, network_only: bool) -> list[str]:
    """The file's outputs in order: the detection outputs, or the network half's maps."""
    return detector.network_output_names() if network_only else list(OUTPUT_NAMES)


def _in_order(flatbuffer: bytes, names: Sequence[str]) -> bytes:
    """`flatbuffer` with its outputs in `names` order, each found by its name in the file's
    signature (which stays as it is): the converter orders them its own way."""
    from ai_edge_litert import schema_py_generated as schema  # imported here: the tflite extra

    data = bytearray(flatbuffer)
    model = schema.Model.GetRootAs(data, 0)
    signature = model.SignatureDefs(0)
    tensors = {}
    for index in range(signature.OutputsLength()):
        output = signature.Outputs(index)
        tensors[output.Name().decode()] = output.TensorIndex()
    if sorted(tensors) != sorted(names):
        raise ValueError(f"the converted file's outputs are {sorted(tensors)}, expected {sorted(names)}")
    outputs = model.Subgraphs(signature.SubgraphIndex()).OutputsAsNumpy()  # a view into `data`
    outputs[:] = [tensors[name] for name in names]
    return bytes(data)


def _frozen_network_converter(detector: PortableDetector) -> tf.lite.TFLiteConverter:
    """A converter of the network half, frozen with one copy of the weights (module doc), TFLite
    builtins only."""
    graph, outputs = _frozen_graph(detector.weights_as_inputs(network_only=True))
    converter = tf.compat.v1.lite.TFLiteConverter(
        graph,
        None,
        None,
        input_arrays_with_shape=[(INPUT_NAME, [detector.batch_size, *detector.image_size, 3])],
        output_arrays=outputs,
    )
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


def _decoding_converter(detector: PortableDetector) -> tf.lite.TFLiteConverter:
    """A converter of the decoding half (`PortableDetector.decoding_function`), TFLite builtins
    only. It holds no weights, so TensorFlow's own freezing serves."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions([detector.decoding_function()], detector)
    converter.experimental_lower_to_saved_model = False
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


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
    `output_names`: the names of the last file's outputs, in order (export_info.json's
    `outputs.order`; the files of earlier exports have no signature naming them)."""
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
