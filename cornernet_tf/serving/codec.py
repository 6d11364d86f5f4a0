"""TF Serving's JSON request and response formats (its json_tensor rules), with every malformed
body refused as a 400 naming the problem: nesting deeper than the signature's rank, ragged
lists, values of the wrong type or out of range, shapes the signature does not take.

Inputs become NumPy arrays (strings as object arrays of bytes), so the batcher can concatenate
them and the limits can look at them before the model runs.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from cornernet_tf.serving.errors import ServingError
from cornernet_tf.serving.versions import Servable, Signature

DEFAULT_SIGNATURE = "serving_default"
BYTES_SUFFIX = "_bytes"  # TF Serving's convention: string outputs named *_bytes are binary
MAX_UNKNOWN_RANK = 32  # nesting allowed for an input whose signature does not fix its rank


def dtype_name(dtype: tf.DType) -> str:
    return types_pb2.DataType.Name(dtype.as_datatype_enum)


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _is_named(value: Any) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _max_rank(spec: tf.TensorSpec) -> int:
    return spec.shape.rank if spec.shape.rank is not None else MAX_UNKNOWN_RANK


def _check_depth(value: Any, spec: tf.TensorSpec) -> None:
    """Refuse nesting deeper than the input's rank before NumPy sees it (NumPy stops at 64
    dimensions with an error of its own; recursion would stop later, at Python's limit)."""
    depth, limit = 0, _max_rank(spec)
    while isinstance(value, list):
        depth += 1
        if depth > limit:
            raise ServingError(
                400,
                f"input {spec.name!r} is nested more than {limit} lists deep; its signature takes a "
                f"{dtype_name(spec.dtype)} tensor of shape {spec.shape}",
            )
        if not value:
            return
        value = value[0]


def _decode_string(value: Any, name: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if _is_b64(value) and isinstance(value["b64"], str):
        text = value["b64"]
        try:
            return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError) as err:
            raise ServingError(400, f"Unable to base64 decode input {name!r}: {err}") from err
    raise ServingError(
        400, f'input {name!r} is DT_STRING: expected a string or {{"b64": "..."}}, got {json.dumps(value)[:100]}'
    )


def _ragged(name: str) -> ServingError:
    return ServingError(400, f"input {name!r}: lists of different lengths or depths (a tensor must be rectangular)")


def _string_leaves(value: Any, name: str, depth_left: int) -> tuple[list[int], list[bytes]]:
    """Shape and flattened bytes of a nested JSON list of strings; ragged lists are refused."""
    if not isinstance(value, list):
        return [], [_decode_string(value, name)]
    if depth_left == 0:
        raise _ragged(name)
    if not value:
        return [0], []
    parts = [_string_leaves(item, name, depth_left - 1) for item in value]
    shape = parts[0][0]
    if any(part_shape != shape for part_shape, _ in parts):
        raise _ragged(name)
    return [len(value), *shape], [leaf for _, leaves in parts for leaf in leaves]


def _numeric_array(value: Any, dtype: tf.DType, name: str) -> np.ndarray:
    """A JSON number / nested list as `dtype`, refusing values the type cannot hold."""
    try:
        array = np.asarray(value)
    except ValueError as err:
        raise _ragged(name) from err
    target = dtype.as_numpy_dtype
    if array.size == 0:
        return np.zeros(array.shape, target)
    if dtype.is_bool:
        accepted = "b"
    elif dtype.is_integer:
        accepted = "iu"
    elif dtype.is_floating:
        accepted = "iuf"
    else:
        raise ServingError(400, f"input {name!r} has type {dtype_name(dtype)}, which JSON requests cannot carry")
    if array.dtype.kind not in accepted:
        raise ServingError(400, f"input {name!r} expects {dtype_name(dtype)} values; got {json.dumps(value)[:100]}")
    if dtype.is_integer:
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise ServingError(400, f"input {name!r}: values outside the {dtype_name(dtype)} range")
    elif dtype.is_floating and array.dtype.kind == "f":
        finite = array[np.isfinite(array)]
        if finite.size and np.abs(finite).max() > float(np.finfo(target).max):
            raise ServingError(400, f"input {name!r}: values too large for {dtype_name(dtype)}")
    return array.astype(target)


def check_array(array: np.ndarray, spec: tf.TensorSpec) -> np.ndarray:
    """`array` if the signature's input `spec` takes its shape and it holds at least one example."""
    if not spec.shape.is_compatible_with(array.shape):
        raise ServingError(
            400, f"input {spec.name!r} expects shape {spec.shape} ({dtype_name(spec.dtype)}); got {list(array.shape)}"
        )
    if array.ndim and array.shape[0] == 0:
        raise ServingError(400, f"input {spec.name!r} is an empty batch; send at least one element")
    return array


def _input_array(value: Any, spec: tf.TensorSpec) -> np.ndarray:
    """One named input as an array of its signature's dtype, checked against its shape."""
    _check_depth(value, spec)
    if spec.dtype == tf.string:
        shape, leaves = _string_leaves(value, spec.name, _max_rank(spec))
        array = np.array(leaves, dtype=object).reshape(shape)
    else:
        array = _numeric_array(value, spec.dtype, spec.name)
    return check_array(array, spec)


def inputs_from_instances(instances: Any, specs: dict[str, tf.TensorSpec]) -> dict[str, np.ndarray]:
    """Row format: one value (single input) or one object of named inputs per example."""
    if not isinstance(instances, list):
        raise ServingError(400, "Expecting 'instances' to be an list/array")
    if not instances:
        raise ServingError(400, "No values in 'instances' array")
    named = _is_named(instances[0])
    if not named and len(specs) > 1:
        raise ServingError(
            400,
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            f"required: {', '.join(sorted(specs))}",
        )
    columns: dict[str, list[Any]] = {name: [] for name in specs}
    for index, instance in enumerate(instances):
        if _is_named(instance) != named:
            raise ServingError(400, f"instance {index}: mixes named objects and plain values in 'instances'")
        if not named:
            columns[next(iter(specs))].append(instance)
            continue
        if set(instance) != set(specs):
            raise ServingError(
                400,
                f"instance {index}: keys {sorted(instance)} must be equal to the signature inputs {sorted(specs)}",
            )
        for key, value in instance.items():
            columns[key].append(value)
    return {name: _input_array(values, specs[name]) for name, values in columns.items()}


def inputs_from_columns(inputs: Any, specs: dict[str, tf.TensorSpec]) -> dict[str, np.ndarray]:
    """Columnar format: the single input's value, or an object of named inputs."""
    if not _is_named(inputs):
        if len(specs) > 1:
            raise ServingError(
                400,
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                f"required: {', '.join(sorted(specs))}",
            )
        name, spec = next(iter(specs.items()))
        return {name: _input_array(inputs, spec)}
    missing = sorted(set(specs) - set(inputs))
    if missing:
        raise ServingError(400, f"Missing named input: {missing[0]} in 'inputs' object.")
    return {name: _input_array(inputs[name], spec) for name, spec in specs.items()}


def _json_values(array: np.ndarray, name: str) -> Any:
    """An output as nested JSON lists, written as TF Serving writes them: floats in their shortest
    round-tripping form ("0.2", not 0.20000000298), strings named `*_bytes` as {"b64": ...}."""
    if array.dtype == object:
        if name.endswith(BYTES_SUFFIX):
            leaves = [{"b64": base64.b64encode(b).decode("ascii")} for b in array.ravel()]
        else:
            leaves = [b.decode("utf-8", errors="replace") for b in array.ravel()]
        return np.array(leaves, dtype=object).reshape(array.shape).tolist()
    if array.dtype.kind == "f" and array.dtype != np.float64:
        return array.astype(np.float32).astype(str).astype(np.float64).tolist()
    return array.tolist()


def predictions_json(outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Row-format answer: one entry per example (an object when there are several outputs)."""
    batch_sizes = {}
    for name, array in outputs.items():
        if array.ndim == 0:
            raise ServingError(400, f"Tensor name: {name} has no shape information; use the 'inputs' format")
        batch_sizes[name] = array.shape[0]
    if len(set(batch_sizes.values())) > 1:
        raise ServingError(
            400, f"outputs have inconsistent batch sizes {batch_sizes}; use the columnar 'inputs' format"
        )
    columns = {name: _json_values(outputs[name], name) for name in sorted(outputs)}
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    rows = zip(*columns.values())
    return {"predictions": [dict(zip(columns, row)) for row in rows]}


def outputs_json(outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Columnar answer: the single output's value, or an object of named outputs."""
    columns = {name: _json_values(outputs[name], name) for name in sorted(outputs)}
    return {"outputs": next(iter(columns.values())) if len(columns) == 1 else columns}


def parse_json_body(body: bytes) -> dict[str, Any]:
    if not body:
        raise ServingError(400, "JSON Parse error: The document is empty")
    try:
        request = json.loads(body)
    except (ValueError, RecursionError) as err:
        raise ServingError(400, f"JSON Parse error: {err}") from err
    if not isinstance(request, dict):
        raise ServingError(400, "JSON Value: the request body is not a JSON object")
    return request


def signature_of(servable: Servable, name: Any) -> tuple[str, Signature]:
    """The named signature ("" or None: serving_default), else 400 as TF Serving answers."""
    if name in (None, ""):
        name = DEFAULT_SIGNATURE
    elif not isinstance(name, str):
        raise ServingError(400, "'signature_name' key must be a string value.")
    signature = servable.signatures.get(name)
    if signature is None:
        raise ServingError(400, f'Serving signature name: "{name}" not found in signature def')
    return name, signature


@dataclasses.dataclass(frozen=True)
class JsonPredict:
    """A parsed `:predict` body: which signature, its input arrays, and the answer's format."""

    signature_name: str
    inputs: dict[str, np.ndarray]
    row_format: bool  # "instances" in, "predictions" out; else "inputs" / "outputs"

    def answer(self, outputs: dict[str, np.ndarray]) -> bytes:
        payload = predictions_json(outputs) if self.row_format else outputs_json(outputs)
        return json.dumps(payload).encode("utf-8")


def parse_predict(servable: Servable, body: bytes) -> JsonPredict:
    request = parse_json_body(body)
    name, signature = signature_of(servable, request.get("signature_name"))
    if "instances" in request and "inputs" in request:
        raise ServingError(400, "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist")
    if "instances" in request:
        return JsonPredict(name, inputs_from_instances(request["instances"], signature.inputs), True)
    if "inputs" in request:
        return JsonPredict(name, inputs_from_columns(request["inputs"], signature.inputs), False)
    raise ServingError(400, "Missing 'inputs' or 'instances' key")
