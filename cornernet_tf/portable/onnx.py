"""ONNX conversion of a `PortableDetector` with tf2onnx, its int8 quantization, and the
onnxruntime runner.

tf2onnx turns a float `tf.where` into cond * x + (1 - cond) * y unless it sees a constant
inf/NaN among the inputs; soft-NMS keeps -inf in a loop variable, where that arithmetic gives
NaN (-inf * 0), so every where becomes an ONNX `Where` (`_where`). The batch is fixed or
dynamic (a symbolic first dimension named "batch").

int8 is onnxruntime's static QDQ quantization (`onnxruntime.quantization.quantize_static`):
weights per output channel, activations at ranges calibrated on representative images run
through the float model. Only the network's convolutions are quantized (QUANTIZED_OPS); the
preprocessing, decoding and soft-NMS loop stay float32, where 8-bit coordinates and scores would
cost accuracy and no time.

Activations are uint8 (`QuantType.QUInt8`), the pairing onnxruntime's x86 integer convolution
takes (uint8 activations times int8 weights). With quantize_static's default int8 activations,
onnxruntime fused about half of Hourglass-104's convolutions into integer ones and ran the others
as float convolutions between a dequantize and a quantize: 0.82x the float file's time, against
0.32x with uint8 (same machine, same ranges; docs/benchmarks.md "Export memory, size and
latency").

Weights use 7 bits (`reduce_range`). On x86 CPUs without VNNI (AVX2-only ones such as AMD Zen 3,
and AVX-512 ones before Cascade Lake) onnxruntime multiplies 8-bit pairs with VPMADDUBSW, which
saturates their 16-bit sums; with 8-bit weights the same file gave other boxes there than on a
VNNI CPU (scores up to 0.14 apart on the tests' model). With 7-bit weights no pair sum reaches the
16-bit limit, so every CPU computes the same numbers (bitwise, measured on AVX-512 VNNI and on an
emulated AVX2 CPU, docs/benchmarks.md "int8 on every CPU"), and the AP is no worse.

Memory: the network is converted without its weights. tf2onnx freezes a function's variables
into constants, runs grappler on the frozen graph, and deep-copies its ONNX graph before each of
its optimizers; with the weights inside, each of those steps copies them (Hourglass-104: killed at
24.4 GiB; with every copy collected as soon as possible still 10.4 GiB). So the graph converted is
`PortableDetector.weights_as_inputs`' (the weights are inputs, a few MB of graph), the weights then
become the model's initializers (one copy), and onnxruntime's basic offline optimization
(platform-independent standard ONNX: constant folding, Conv+BatchNormalization/Mul/Add fusion)
folds what tf2onnx would have folded with constant weights: the kernels' layout transposes and the
batch normalizations. Peak resident memory of the export process: CornerNet-104 5.3 GiB (int8:
7.0 GiB, see `quantize`), CornerNet-Squeeze 1.5 GiB (benchmarks/export_memory.py); outputs
identical to tf2onnx's conversion of the frozen graph on the tests' model.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from cornernet_tf.portable.graph import INPUT_NAME, PortableDetector, calibration_batches

if TYPE_CHECKING:
    import onnx

OPSET = 17
# int8 network: its convolutions (their inputs, weights and biases). The corner pools' shifted maxima
# pad with -inf, which no int8 scale holds (quantizing them scored AP 0.000 on the main job's model),
# and quantizing the ReLUs and additions between the convolutions too measured slower (5.2 against
# 3.0 ms per image): onnxruntime then keeps more QuantizeLinear / DequantizeLinear pairs unfused.
QUANTIZED_OPS = ["Conv"]


def _where(ctx, node, name, args) -> None:
    """tf2onnx handler of SelectV2 (numpy broadcasting, like ONNX Where)."""
    node.type = "Where"


def convert(detector: PortableDetector, network_only: bool = False) -> bytes:
    """The serialized ONNX model (opset `OPSET`), checked by onnx's checker: the whole detector,
    or with `network_only` its network half (outputs `detector.network_output_names()`, in
    order; with a dynamic batch their first dimension is "batch", or "2*batch" with the flip
    test, which runs the mirrored images as a second half of the batch). Converted without its
    weights, then given them (module doc)."""
    import onnx  # imported here: the onnx extra
    import tf2onnx

    traced = detector.weights_as_inputs(network_only)
    proto = tf2onnx.convert.from_function(
        traced.function,
        input_signature=traced.signature,
        opset=OPSET,
        custom_op_handlers={"SelectV2": (_where, [])},
    )[0]
    _weights_to_initializers(proto.graph, traced.weights)
    output_batch = "batch"
    if network_only:
        # a tuple's outputs come named by their TF tensors (Identity:0, ...): name them by their maps
        _rename_outputs(proto.graph, detector.network_output_names())
        output_batch = "2*batch" if detector.detection.settings.flip else "batch"
    if detector.batch_size is None:
        for value in proto.graph.input:
            value.type.tensor_type.shape.dim[0].dim_param = "batch"
        for value in proto.graph.output:
            value.type.tensor_type.shape.dim[0].dim_param = output_batch
    folded = _folded(proto)
    onnx.checker.check_model(folded)  # checks the bytes as they are: no parsed copy of the weights
    return folded


def _weights_to_initializers(graph: onnx.GraphProto, weights: dict[str, Any]) -> None:
    """Turn `graph`'s weight inputs (named by `weights`' keys, as tf2onnx names inputs) into
    initializers holding the variables' values, one at a time."""
    from onnx import numpy_helper

    kept = []
    for value in graph.input:
        variable = weights.get(value.name)
        if variable is None:
            kept.append(value)
        else:
            graph.initializer.append(numpy_helper.from_array(np.asarray(variable.numpy()), value.name))
    missing = set(weights) - {tensor.name for tensor in graph.initializer}
    if missing:
        raise ValueError(f"the converted graph lacks the weight inputs {sorted(missing)[:3]}")
    del graph.input[:]
    graph.input.extend(kept)


def _folded(proto: onnx.ModelProto) -> bytes:
    """`proto` after onnxruntime's basic offline optimization (module doc), serialized; weights no
    output uses are dropped. Through files: onnxruntime reads and writes the model there."""
    import onnxruntime  # the onnx extra

    with tempfile.TemporaryDirectory(prefix="cornernet_onnx_") as scratch:
        source, target = pathlib.Path(scratch, "converted.onnx"), pathlib.Path(scratch, "folded.onnx")
        source.write_bytes(proto.SerializeToString())
        del proto.graph.initializer[:]  # the caller's copy of the weights: the file holds them now
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(target)
        options.log_severity_level = 3  # not the unused weights it drops, one warning each
        onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        return target.read_bytes()


def _rename_outputs(graph: onnx.GraphProto, names: list[str]) -> None:
    """Give `graph`'s outputs (an onnx GraphProto's, in order) `names`, in the nodes that produce
    or read them too. Only the top level: the outputs are the heads' results, which no subgraph
    (a scan corner pool's Loop body) reads."""
    renamed = {value.name: name for value, name in zip(graph.output, names, strict=True)}
    for value in [*graph.output, *graph.value_info]:
        value.name = renamed.get(value.name, value.name)
    for node in graph.node:
        for field in (node.input, node.output):
            for position, name in enumerate(field):
                field[position] = renamed.get(name, name)


def convert_quantized(
    detector: PortableDetector,
    images: np.ndarray,
    on_progress: Callable[[int, int], None] | None = None,
    network_only: bool = False,
) -> bytes:
    """`convert`, then `quantize`: the serialized int8 (QDQ) model. The float model waits in a
    file meanwhile, not in this process's memory beside the calibration."""
    with tempfile.TemporaryDirectory(prefix="cornernet_onnx_float_") as scratch:
        source = pathlib.Path(scratch, "float.onnx")
        source.write_bytes(convert(detector, network_only))
        return quantize(source, images, detector.batch_size, on_progress)


def quantize(
    model: str | os.PathLike,
    images: np.ndarray,
    batch_size: int | None,
    on_progress: Callable[[int, int], None] | None = None,
) -> bytes:
    """The float ONNX file `model` (written by `convert`) with its convolutions in int8,
    calibrated on `images`. Every Conv node is the network's: preprocessing and decoding have none.

    Args:
        model: The float ONNX file.
        images: uint8 [N, H, W, 3] at the model's input size.
        batch_size: The model's fixed batch (images are fed in batches of it, the remainder
            dropped), or None for a dynamic batch (fed one by one).
        on_progress: Called with (images run, N) after each calibration batch.

    Returns:
        The serialized int8 (QDQ) model.

    Raises:
        ValueError: `images` fill no batch.

    The ranges are calibrated first (`_calibrated_ranges`), then handed to `quantize_static` as
    its calibration cache, so the quantizer's own copy of the model is not held beside the
    calibration session.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static, save_tensors_data  # the onnx extra

    with tempfile.TemporaryDirectory(prefix="cornernet_onnx_int8_") as scratch:
        target, ranges = pathlib.Path(scratch, "int8.onnx"), pathlib.Path(scratch, "ranges.json")
        save_tensors_data(_calibrated_ranges(pathlib.Path(model), images, batch_size, scratch, on_progress), ranges)
        quantize_static(
            str(model),
            str(target),
            None,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,  # 7-bit weights: no 16-bit saturation on CPUs without VNNI (module doc)
            activation_type=QuantType.QUInt8,  # every convolution an integer one (module doc)
            weight_type=QuantType.QInt8,
            op_types_to_quantize=QUANTIZED_OPS,
            calibration_cache_path=ranges,
        )
        return target.read_bytes()


def _calibrated_ranges(
    source: pathlib.Path,
    images: np.ndarray,
    batch_size: int | None,
    scratch: str,
    on_progress: Callable[[int, int], None] | None,
) -> Any:
    """The min/max range of every convolution input of the model at `source` over `images`, as
    onnxruntime's `TensorsData`, from its MinMax calibrator (ReduceMin/ReduceMax outputs added to
    the model: a few numbers a batch are kept) run in a session without onnxruntime's memory
    pattern: with it, the session held the activations' planned block beside its arena
    (Hourglass-104: 6.2 against 3.9 GiB, no slower)."""
    import onnxruntime
    from onnxruntime.quantization import CalibrationDataReader, MinMaxCalibrater

    batches = calibration_batches(images, batch_size or 1)
    total = sum(len(batch) for batch in batches)

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.done = 0  # images of the batches handed out before (the calibrator has run them)
            self.pending = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.pending, None)
            if on_progress is not None and self.done:
                on_progress(self.done, total)
            if batch is None:
                return None
            self.done += len(batch)
            return {INPUT_NAME: batch}

    class Calibrator(MinMaxCalibrater):
        def create_inference_session(self) -> None:
            options = onnxruntime.SessionOptions()
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL  # tensors as named
            options.enable_mem_pattern = False
            self.infer_session = onnxruntime.InferenceSession(
                self.augmented_model_path, options, providers=self.execution_providers
            )

    calibrator = Calibrator(source, QUANTIZED_OPS, str(pathlib.Path(scratch, "augmented.onnx")))
    calibrator.augment_graph()
    calibrator.create_inference_session()
    calibrator.collect_data(Batches())
    return calibrator.compute_data()


def runner(model: str | os.PathLike | bytes) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """An onnxruntime (CPU) session of an .onnx file (or its bytes) as a function of uint8
    images [B, H, W, 3] returning the outputs by name."""
    import onnxruntime  # imported here: the onnx extra

    source = model if isinstance(model, bytes) else str(model)
    session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return lambda images: dict(zip(names, session.run(names, {INPUT_NAME: np.asarray(images, np.uint8)})))


def run(model: str | os.PathLike | bytes, images: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs of an .onnx file (or its bytes) on uint8 images [B, H, W, 3], by name."""
    return runner(model)(images)
