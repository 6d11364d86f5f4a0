"""Serve a versioned SavedModel over TensorFlow Serving's REST API, for machines without
`tensorflow_model_server`: `python -m cornernet_tf.serve --model_name cornernet
--model_base_path exports/cornernet --rest_api_port 8501`.

Same URLs, JSON formats, error objects and main flags as TF Serving, so clients and the
`tensorflow/serving` Docker image are interchangeable. Generic over any TF Serving-style
directory `<base>/<version>/saved_model.pb`: nothing here knows about CornerNet. Like TF Serving's
default policy, only the highest version is kept loaded; a new version dropped into the base path
is loaded off the request path and swapped in atomically.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import concurrent.futures
import dataclasses
import json
import logging
import os
import re
import sys
import threading
import time
import urllib.parse
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

from cornernet_tf import cli

try:
    from aiohttp import web
except ImportError as _err:  # an optional dependency: say how to get it
    raise ImportError(
        f"cornernet_tf.serve needs aiohttp ({_err}); install it: pip install 'cornernet-tf[serve]'"
    ) from _err

LOG = logging.getLogger("cornernet_tf.serve")

DEFAULT_SIGNATURE = "serving_default"
SERVE_TAG = "serve"
BYTES_SUFFIX = "_bytes"  # TF Serving's convention: string outputs named *_bytes are binary

# TF error codes -> HTTP statuses, as TF Serving's REST server maps them (http_server.cc).
_HTTP_STATUS_OF_TF_CODE = {
    tf.errors.CANCELLED: 499,
    tf.errors.UNKNOWN: 500,
    tf.errors.INVALID_ARGUMENT: 400,
    tf.errors.DEADLINE_EXCEEDED: 504,
    tf.errors.NOT_FOUND: 404,
    tf.errors.ALREADY_EXISTS: 409,
    tf.errors.PERMISSION_DENIED: 403,
    tf.errors.RESOURCE_EXHAUSTED: 429,
    tf.errors.FAILED_PRECONDITION: 400,
    tf.errors.ABORTED: 409,
    tf.errors.OUT_OF_RANGE: 400,
    tf.errors.UNIMPLEMENTED: 501,
    tf.errors.INTERNAL: 500,
    tf.errors.UNAVAILABLE: 503,
    tf.errors.DATA_LOSS: 500,
    tf.errors.UNAUTHENTICATED: 401,
}


class ServingError(Exception):
    """A failed request, carrying the HTTP status TF Serving answers it with."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def _dtype_name(dtype: tf.DType) -> str:
    return types_pb2.DataType.Name(dtype.as_datatype_enum)


# --------------------------------------------------------------------------------------------
# Loading one version
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Signature:
    """One callable signature: the function plus the input specs used to convert JSON."""

    function: Any  # a ConcreteFunction taking the inputs as keyword tensors
    inputs: dict[str, tf.TensorSpec]


@dataclasses.dataclass(frozen=True)
class Servable:
    """A loaded model version; immutable, so in-flight requests keep a consistent one."""

    version: int
    signatures: dict[str, Signature]
    signature_def_json: dict[str, Any]  # TF Serving's metadata JSON of the SignatureDefMap
    model: Any  # the loaded SavedModel object; holds the variables alive


def load_servable(version_dir: str, version: int) -> Servable:
    """Load `<base>/<version>` and describe its signatures from the SavedModel proto itself,
    so the metadata matches what `tensorflow_model_server` reports for the same directory."""
    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    meta_graphs = [m for m in proto.meta_graphs if SERVE_TAG in m.meta_info_def.tags]
    if not meta_graphs:
        raise ValueError(f"{version_dir}: no meta graph tagged {SERVE_TAG!r}; re-export with tf.saved_model.save")
    signature_defs = meta_graphs[0].signature_def
    model = tf.saved_model.load(version_dir, tags=[SERVE_TAG])
    signatures = {}
    for name, function in model.signatures.items():
        inputs = {
            key: tf.TensorSpec(tf.TensorShape(info.tensor_shape), tf.as_dtype(info.dtype), key)
            for key, info in signature_defs[name].inputs.items()
        }
        signatures[name] = Signature(function, inputs)
    described = {
        name: json_format.MessageToDict(
            sig, always_print_fields_with_no_presence=True, preserving_proto_field_name=True
        )
        for name, sig in sorted(signature_defs.items())
    }
    return Servable(version, signatures, {"signature_def": described}, model)


def find_versions(base_path: str) -> dict[int, str]:
    """Fully written versions under the base path: numeric folders holding saved_model.pb."""
    if not tf.io.gfile.isdir(base_path):
        return {}
    versions = {}
    for entry in tf.io.gfile.listdir(base_path):
        name = entry.rstrip("/")
        path = os.path.join(base_path, name)
        if name.isascii() and name.isdigit() and tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
            versions[int(name)] = path
    return versions


# --------------------------------------------------------------------------------------------
# Version management (TF Serving's default "latest" policy)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VersionState:
    state: str  # START | LOADING | AVAILABLE | UNLOADING | END, as in GetModelStatusResponse
    error_code: str = "OK"
    error_message: str = ""


class ModelManager:
    """Keeps the highest loadable version of one model served; polling swaps in newer ones.

    A load happens entirely before the swap, so requests never wait for it and never see a
    half-loaded model. A version that fails to load (e.g. still being copied) is retried after
    `retry_interval_s`, up to `max_load_retries` times; the best loadable version is served
    meanwhile.
    """

    def __init__(self, name: str, base_path: str, max_load_retries: int = 5, retry_interval_s: float = 60.0):
        self.name = name
        self.base_path = base_path
        self.max_load_retries = max_load_retries
        self.retry_interval_s = retry_interval_s
        self._lock = threading.Lock()
        self._current: Servable | None = None
        self._states: dict[int, VersionState] = {}
        self._failures: dict[int, tuple[int, float]] = {}  # version -> (failed loads, time of the last)

    def servable(self, version: int | None) -> Servable:
        """The served version (or the requested one if it is the served one), else 404."""
        current = self._current
        if current is None or (version is not None and version != current.version):
            spec = f"Latest({self.name})" if version is None else f"Specific({self.name}, {version})"
            raise ServingError(404, f"Servable not found for request: {spec}")
        return current

    def version_status(self, version: int | None) -> list[dict[str, Any]]:
        """ModelVersionStatus entries, newest first, as GetModelStatus reports them."""
        with self._lock:
            states = dict(self._states)
        if version is not None:
            if version not in states:
                raise ServingError(404, f"Could not find version {version} of model {self.name}")
            states = {version: states[version]}
        if not states:
            raise ServingError(404, f"Could not find any versions of model {self.name}")
        return [
            {
                "version": str(v),
                "state": s.state,
                "status": {"error_code": s.error_code, "error_message": s.error_message},
            }
            for v, s in sorted(states.items(), reverse=True)
        ]

    def poll(self) -> None:
        """Load the highest fully written version if it is not the one served."""
        versions = find_versions(self.base_path)
        candidates = [v for v in versions if self._may_load(v)]
        if not candidates:
            return
        target = max(candidates)
        if self._current is not None and self._current.version == target:
            return
        self._set_state(target, VersionState("LOADING"))
        LOG.info("loading %s version %d from %s", self.name, target, versions[target])
        try:
            servable = load_servable(versions[target], target)
        except Exception as err:  # a bad export must never take the server down
            attempts = self._failures.get(target, (0, 0.0))[0] + 1
            self._failures[target] = (attempts, time.monotonic())
            self._set_state(target, VersionState("END", "UNKNOWN", f"Failed to load version {target}: {err}"))
            LOG.error("could not load %s version %d (attempt %d): %s", self.name, target, attempts, err)
            return
        with self._lock:
            previous, self._current = self._current, servable
            self._states[target] = VersionState("AVAILABLE")
            if previous is not None:
                self._states[previous.version] = VersionState("END")
        LOG.info("serving %s version %d", self.name, target)

    def poll_forever(self, wait_seconds: float, stop: threading.Event) -> None:
        """Poll every `wait_seconds` until `stop` is set; errors are logged, never raised."""
        while not stop.wait(wait_seconds):
            try:
                self.poll()
            except Exception:  # e.g. a transient file-system error: try again next time
                LOG.exception("polling %s failed", self.base_path)

    def _may_load(self, version: int) -> bool:
        attempts, last = self._failures.get(version, (0, 0.0))
        if attempts == 0:
            return True
        return attempts <= self.max_load_retries and time.monotonic() - last >= self.retry_interval_s

    def _set_state(self, version: int, state: VersionState) -> None:
        with self._lock:
            self._states[version] = state


# --------------------------------------------------------------------------------------------
# JSON <-> tensors (TF Serving's json_tensor rules)
# --------------------------------------------------------------------------------------------


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _is_named(value: Any) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


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
        400, f"input {name!r} is DT_STRING: expected a string or {{\"b64\": \"...\"}}, got {json.dumps(value)[:100]}"
    )


def _string_leaves(value: Any, name: str) -> tuple[list[int], list[bytes]]:
    """Shape and flattened bytes of a nested JSON list of strings; ragged lists are refused."""
    if not isinstance(value, list):
        return [], [_decode_string(value, name)]
    if not value:
        return [0], []
    parts = [_string_leaves(item, name) for item in value]
    shape = parts[0][0]
    if any(part_shape != shape for part_shape, _ in parts):
        raise ServingError(400, f"input {name!r}: lists of different lengths (a tensor must be rectangular)")
    return [len(value), *shape], [leaf for _, leaves in parts for leaf in leaves]


def _numeric_array(value: Any, dtype: tf.DType, name: str) -> np.ndarray:
    """A JSON number / nested list as `dtype`, refusing values the type cannot hold."""
    try:
        array = np.asarray(value)
    except ValueError as err:
        raise ServingError(400, f"input {name!r}: lists of different lengths (a tensor must be rectangular)") from err
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
        raise ServingError(400, f"input {name!r} has type {_dtype_name(dtype)}, which JSON requests cannot carry")
    if array.dtype.kind not in accepted:
        raise ServingError(400, f"input {name!r} expects {_dtype_name(dtype)} values; got {json.dumps(value)[:100]}")
    if dtype.is_integer:
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise ServingError(400, f"input {name!r}: values outside the {_dtype_name(dtype)} range")
    elif dtype.is_floating and array.dtype.kind == "f":
        finite = array[np.isfinite(array)]
        if finite.size and np.abs(finite).max() > float(np.finfo(target).max):
            raise ServingError(400, f"input {name!r}: values too large for {_dtype_name(dtype)}")
    return array.astype(target)


def _input_tensor(value: Any, spec: tf.TensorSpec) -> tf.Tensor:
    """One named input as a tensor of its signature's dtype, checked against its shape."""
    name = spec.name
    if spec.dtype == tf.string:
        shape, leaves = _string_leaves(value, name)
        array = np.array(leaves, dtype=object).reshape(shape)
    else:
        array = _numeric_array(value, spec.dtype, name)
    if not spec.shape.is_compatible_with(array.shape):
        raise ServingError(
            400, f"input {name!r} expects shape {spec.shape} ({_dtype_name(spec.dtype)}); got {list(array.shape)}"
        )
    if array.ndim and array.shape[0] == 0:
        raise ServingError(400, f"input {name!r} is an empty batch; send at least one element")
    return tf.constant(array, dtype=spec.dtype)


def inputs_from_instances(instances: Any, specs: dict[str, tf.TensorSpec]) -> dict[str, tf.Tensor]:
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
            raise ServingError(400, f"instance {index}: mixes objects and plain values in 'instances'")
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
    return {name: _input_tensor(values, specs[name]) for name, values in columns.items()}


def inputs_from_columns(inputs: Any, specs: dict[str, tf.TensorSpec]) -> dict[str, tf.Tensor]:
    """Columnar format: the single input's value, or an object of named inputs."""
    if not _is_named(inputs):
        if len(specs) > 1:
            raise ServingError(
                400,
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                f"required: {', '.join(sorted(specs))}",
            )
        name, spec = next(iter(specs.items()))
        return {name: _input_tensor(inputs, spec)}
    missing = sorted(set(specs) - set(inputs))
    if missing:
        raise ServingError(400, f"Missing named input: {missing[0]} in 'inputs' object.")
    return {name: _input_tensor(inputs[name], spec) for name, spec in specs.items()}


def _json_values(tensor: tf.Tensor, name: str) -> Any:
    """A tensor as nested JSON lists, written as TF Serving writes them: floats in their shortest
    round-tripping form ("0.2", not 0.20000000298), strings named `*_bytes` as {"b64": ...}."""
    if tensor.dtype == tf.string:
        if name.endswith(BYTES_SUFFIX):
            leaves = [{"b64": base64.b64encode(b).decode("ascii")} for b in tensor.numpy().ravel()]
        else:
            leaves = [b.decode("utf-8", errors="replace") for b in tensor.numpy().ravel()]
        return np.array(leaves, dtype=object).reshape(tensor.shape).tolist()
    if tensor.dtype.is_floating and tensor.dtype != tf.float64:
        return tf.cast(tensor, tf.float32).numpy().astype(str).astype(np.float64).tolist()
    return tensor.numpy().tolist()


def predictions_json(outputs: dict[str, tf.Tensor]) -> dict[str, Any]:
    """Row-format answer: one entry per example (an object when there are several outputs)."""
    batch_sizes = {}
    for name, tensor in outputs.items():
        if tensor.shape.rank == 0:
            raise ServingError(400, f"Tensor name: {name} has no shape information; use the 'inputs' format")
        batch_sizes[name] = tensor.shape[0]
    if len(set(batch_sizes.values())) > 1:
        raise ServingError(
            400, f"outputs have inconsistent batch sizes {batch_sizes}; use the columnar 'inputs' format"
        )
    columns = {name: _json_values(outputs[name], name) for name in sorted(outputs)}
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    rows = zip(*columns.values())
    return {"predictions": [dict(zip(columns, row)) for row in rows]}


def outputs_json(outputs: dict[str, tf.Tensor]) -> dict[str, Any]:
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


def run_signature(signature: Signature, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Call the model; a TF error becomes the HTTP status TF Serving gives it (bad image: 400)."""
    try:
        return signature.function(**inputs)
    except tf.errors.OpError as err:
        raise ServingError(_HTTP_STATUS_OF_TF_CODE.get(err.error_code, 500), err.message) from err


def predict(servable: Servable, body: bytes) -> bytes:
    """A whole `:predict` call, body to body; runs in a worker thread, off the event loop."""
    request = parse_json_body(body)
    signature_name = request.get("signature_name")
    if signature_name in (None, ""):
        signature_name = DEFAULT_SIGNATURE
    elif not isinstance(signature_name, str):
        raise ServingError(400, "'signature_name' key must be a string value.")
    signature = servable.signatures.get(signature_name)
    if signature is None:
        raise ServingError(400, f'Serving signature name: "{signature_name}" not found in signature def')
    if "instances" in request and "inputs" in request:
        raise ServingError(400, "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist")
    if "instances" in request:
        outputs = run_signature(signature, inputs_from_instances(request["instances"], signature.inputs))
        answer = predictions_json(outputs)
    elif "inputs" in request:
        answer = outputs_json(run_signature(signature, inputs_from_columns(request["inputs"], signature.inputs)))
    else:
        raise ServingError(400, "Missing 'inputs' or 'instances' key")
    return json.dumps(answer).encode("utf-8")


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------

_PREDICT_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(\w+)", re.IGNORECASE)
_MODEL_PATH = re.compile(r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?(/metadata)?", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    max_request_bytes: int
    num_threads: int
    timeout_seconds: float | None  # None: no deadline


def _method_not_allowed(method: str, path: str, allow: str) -> ServingError:
    return ServingError(405, f"Method {method} not allowed on {path}; use {allow}", {"Allow": allow})


def _json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8"),
        status=status,
        content_type="application/json",
        headers=headers,
    )


class RestApi:
    """TF Serving's REST routes over one ModelManager; predictions run in a thread pool."""

    def __init__(self, manager: ModelManager, options: ServerOptions):
        self.manager = manager
        self.options = options
        self.pool = concurrent.futures.ThreadPoolExecutor(options.num_threads, thread_name_prefix="predict")

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.options.max_request_bytes)
        app.router.add_route("*", "/{path:.*}", self.handle)
        app.on_cleanup.append(self._close_pool)
        return app

    async def _close_pool(self, _app: web.Application) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    async def handle(self, request: web.Request) -> web.Response:
        """Route like TF Serving's regexes; every failure becomes {"error": ...}."""
        try:
            return await self._route(request)
        except ServingError as err:
            return _json_response({"error": err.message}, err.status, err.headers)
        except Exception as err:  # a bug here must cost one request, not the server
            LOG.exception("internal error on %s %s", request.method, request.path)
            return _json_response({"error": f"Internal error: {type(err).__name__}: {err}"}, 500)

    async def _route(self, request: web.Request) -> web.Response:
        path = request.rel_url.raw_path
        match = _PREDICT_PATH.fullmatch(path)
        if match:
            if request.method != "POST":
                raise _method_not_allowed(request.method, path, "POST")
            name, version, label, method = match.groups()
            if method.lower() != "predict":
                raise ServingError(501, f"':{method}' is not supported here; use ':predict' (or tensorflow/serving)")
            servable = self._servable(urllib.parse.unquote(name), version, label)
            return await self._predict(request, servable)
        match = _MODEL_PATH.fullmatch(path)
        if match:
            if request.method != "GET":
                raise _method_not_allowed(request.method, path, "GET")
            name, version, label, metadata = match.groups()
            if not name:
                raise ServingError(400, "Missing model name in request.")
            name = urllib.parse.unquote(name)
            if metadata:
                return _json_response(self._metadata(self._servable(name, version, label)))
            return _json_response({"model_version_status": self._status(name, version, label)})
        raise ServingError(404, f"Malformed request: {request.method} {path}")

    def _servable(self, name: str, version: str | None, label: str | None) -> Servable:
        if label is not None:
            raise ServingError(400, f"Unrecognized servable version label: {urllib.parse.unquote(label)}")
        if name != self.manager.name:
            spec = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise ServingError(404, f"Servable not found for request: {spec}")
        return self.manager.servable(None if version is None else int(version))

    def _status(self, name: str, version: str | None, label: str | None) -> list[dict[str, Any]]:
        if label is not None:
            raise ServingError(400, f"Unrecognized servable version label: {urllib.parse.unquote(label)}")
        if name != self.manager.name:
            raise ServingError(404, f"Could not find any versions of model {name}")
        return self.manager.version_status(None if version is None else int(version))

    def _metadata(self, servable: Servable) -> dict[str, Any]:
        return {
            "model_spec": {"name": self.manager.name, "signature_name": "", "version": str(servable.version)},
            "metadata": {"signature_def": servable.signature_def_json},
        }

    async def _predict(self, request: web.Request, servable: Servable) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge as err:
            raise ServingError(
                413, f"request body exceeds --max_request_bytes={self.options.max_request_bytes}"
            ) from err
        work = asyncio.get_running_loop().run_in_executor(self.pool, predict, servable, body)
        try:
            answer = await asyncio.wait_for(work, self.options.timeout_seconds)
        except asyncio.TimeoutError as err:
            raise ServingError(
                504,
                f"Deadline exceeded: prediction took over {self.options.timeout_seconds:g} s (--rest_api_timeout_in_ms)",
            ) from err
        return _json_response(answer)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cornernet_tf.serve",
        description="TF Serving-compatible REST server over a versioned SavedModel base path.",
    )
    parser.add_argument("--model_name", default="default", help="name in the URLs /v1/models/<name>")
    parser.add_argument("--model_base_path", required=True, help="folder (or gs:// path) of <version>/ SavedModels")
    parser.add_argument("--rest_api_port", type=int, default=8501)
    parser.add_argument("--rest_api_host", default="0.0.0.0", help="address to bind (not a TF Serving flag)")
    parser.add_argument("--rest_api_num_threads", type=int, default=4 * (os.cpu_count() or 1),
                        help="threads running predictions (TF Serving's default: 4 x CPUs)")
    parser.add_argument("--rest_api_timeout_in_ms", type=int, default=30000,
                        help="answer 504 when a prediction takes longer; <= 0 disables")
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                        help="seconds between looks for new versions; 0 looks once at startup")
    parser.add_argument("--max_num_load_retries", type=int, default=5,
                        help="retries of a version that fails to load before it is skipped")
    parser.add_argument("--load_retry_interval_micros", type=int, default=60_000_000,
                        help="wait between retries of a version that failed to load")
    parser.add_argument("--max_request_bytes", type=int, default=64 * 1024 * 1024,
                        help="larger request bodies get 413 (not a TF Serving flag)")
    cli.add_verbose_flag(parser)
    return parser.parse_args(argv)


@cli.command
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.rest_api_num_threads < 1 or args.max_request_bytes < 1:
        raise ValueError("--rest_api_num_threads and --max_request_bytes must be positive")
    manager = ModelManager(args.model_name, args.model_base_path, args.max_num_load_retries,
                           args.load_retry_interval_micros / 1e6)
    manager.poll()  # like TF Serving, the first version is loaded before the port opens
    if not find_versions(args.model_base_path):
        LOG.warning("no version of %r under %s yet", args.model_name, args.model_base_path)
    stop = threading.Event()
    poller = None
    if args.file_system_poll_wait_seconds > 0:
        poller = threading.Thread(
            target=manager.poll_forever, args=(args.file_system_poll_wait_seconds, stop), name="poll", daemon=True
        )
        poller.start()
    timeout = args.rest_api_timeout_in_ms / 1000 if args.rest_api_timeout_in_ms > 0 else None
    api = RestApi(manager, ServerOptions(args.max_request_bytes, args.rest_api_num_threads, timeout))
    LOG.info("REST API for model %r on http://%s:%d", args.model_name, args.rest_api_host, args.rest_api_port)
    try:
        # SIGINT/SIGTERM: stop accepting, let in-flight requests finish, then return.
        web.run_app(
            api.application(),
            host=args.rest_api_host,
            port=args.rest_api_port,
            shutdown_timeout=timeout or 60.0,
            print=None,
            access_log=None,
        )
    finally:
        stop.set()
        if poller is not None:
            poller.join(timeout=5)
    LOG.info("shut down cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
