"""ONNX conversion of a `PortableDetector` with tf2onnx, and the onnxruntime runner.

tf2onnx turns a float `tf.where` into cond * x + (1 - cond) * y unless it sees a constant
inf/NaN among the inputs; soft-NMS keeps -inf in a loop variable, where that arithmetic gives
NaN (-inf * 0), so every where becomes an ONNX `Where` (`_where`). The batch is fixed or
dynamic (a symbolic first dimension named "batch").
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from cornernet_tf.portable.graph import INPUT_NAME, PortableDetector

OPSET = 17


def _where(ctx, node, name, args) -> None:
    """tf2onnx handler of SelectV2 (numpy broadcasting, like ONNX Where)."""
    node.type = "Where"


def convert(detector: PortableDetector) -> bytes:
    """The serialized ONNX model (opset `OPSET`), checked by onnx's checker."""
    import onnx  # imported here: the onnx extra
    import tf2onnx

    function = detector.concrete_function()
    proto, _ = tf2onnx.convert.from_function(
        detector.serve,
        input_signature=function.structured_input_signature[0],
        opset=OPSET,
        custom_op_handlers={"SelectV2": (_where, [])},
    )
    if detector.batch_size is None:
        for value in [*proto.graph.input, *proto.graph.output]:
            value.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


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
