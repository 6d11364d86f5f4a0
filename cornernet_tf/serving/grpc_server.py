"""TF Serving's gRPC API from the `tensorflow-serving-api` protos: `PredictionService.Predict`,
`PredictionService.GetModelMetadata` and `ModelService.GetModelStatus`, over the same model
manager, pixel limits, in-flight bound, deadline and batching as REST.

Failures are gRPC status codes (INVALID_ARGUMENT for a bad request, NOT_FOUND for an unknown
model or version, RESOURCE_EXHAUSTED when the in-flight bound is reached, DEADLINE_EXCEEDED).
A client's own gRPC deadline shortens the server's `--grpc_timeout_in_ms`.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from cornernet_tf.serving import codec, rest
from cornernet_tf.serving.errors import ServingError
from cornernet_tf.serving.limits import InFlight
from cornernet_tf.serving.runner import Call, Runner
from cornernet_tf.serving.versions import ModelManager, Servable

TIMEOUT_FLAG = "--grpc_timeout_in_ms"
SIGNATURE_DEF_FIELD = "signature_def"
_VALUE_FIELDS = (
    "half_val",
    "float_val",
    "double_val",
    "int_val",
    "string_val",
    "int64_val",
    "bool_val",
    "uint32_val",
    "uint64_val",
)


def _guarded(method: Callable) -> Callable:
    """A servicer method whose ServingErrors become the gRPC status they map to."""

    @functools.wraps(method)
    def wrapper(self, request, context: grpc.ServicerContext):
        try:
            return method(self, request, context)
        except ServingError as err:
            context.abort(grpc.StatusCode[err.grpc_code], err.message)

    return wrapper


def array_from_proto(proto: tensor_pb2.TensorProto, spec: tf.TensorSpec, max_elements: int) -> np.ndarray:
    """A request TensorProto as an array for the signature input `spec`; 400 for a wrong dtype,
    a shape it does not take, or values that do not fill the shape (only one value may be
    broadcast, and never to more than `max_elements`, so a tiny proto cannot ask for gigabytes)."""
    name = spec.name
    if proto.dtype != spec.dtype.as_datatype_enum:
        got = tf.dtypes.DType(proto.dtype).name if proto.dtype else "no dtype"
        raise ServingError(400, f"input {name!r} expects {codec.dtype_name(spec.dtype)}; got {got}")
    if proto.tensor_shape.unknown_rank:
        raise ServingError(400, f"input {name!r}: the tensor has no shape")
    shape = [dim.size for dim in proto.tensor_shape.dim]
    if len(shape) > codec.MAX_UNKNOWN_RANK or any(size < 0 for size in shape):
        raise ServingError(400, f"input {name!r}: invalid shape {shape}")
    elements = math.prod(shape)
    if elements > max_elements:
        raise ServingError(400, f"input {name!r}: shape {shape} holds more elements than --max_request_bytes allows")
    if proto.tensor_content:
        itemsize = spec.dtype.size
        if spec.dtype == tf.string or len(proto.tensor_content) != elements * itemsize:
            raise ServingError(
                400,
                f"input {name!r}: tensor_content of {len(proto.tensor_content)} bytes does not "
                f"fill shape {shape} of {codec.dtype_name(spec.dtype)}",
            )
    else:
        count = sum(len(getattr(proto, field)) for field in _VALUE_FIELDS)
        if count != elements and not (count == 1 and elements > 0):
            raise ServingError(400, f"input {name!r}: {count} values for shape {shape} ({elements} elements)")
    try:
        array = tf.make_ndarray(proto)
    except (ValueError, TypeError) as err:
        raise ServingError(400, f"input {name!r}: {err}") from err
    return codec.check_array(array, spec)


def _model_spec(name: str, version: int, signature_name: str = "") -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature_name)
    spec.version.value = version
    return spec


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(
        self,
        manager: ModelManager,
        runner: Runner,
        in_flight: InFlight,
        timeout_s: float | None,
        max_request_bytes: int,
    ):
        """Serve `PredictionService` over the shared model manager, runner and in-flight bound.

        Args:
            manager: The model's versions.
            runner: Runs signatures (pixel limits, batching).
            in_flight: The bound on requests served at once, shared with REST.
            timeout_s: The server's deadline per request (--grpc_timeout_in_ms); None: none. A
                client's shorter gRPC deadline wins.
            max_request_bytes: --max_request_bytes, also the most elements one input may hold, so a
                broadcast value cannot ask for more memory than a full request.
        """
        self.manager = manager
        self.runner = runner
        self.in_flight = in_flight
        self.timeout_s = timeout_s
        self.max_request_bytes = max_request_bytes

    def _servable(self, spec: model_pb2.ModelSpec) -> Servable:
        if spec.WhichOneof("version_choice") == "version_label":
            raise rest.unrecognized_label(spec.version_label)
        version = spec.version.value if spec.HasField("version") else None
        return rest.servable_for(self.manager, spec.name, version)

    def _timeout(self, context: grpc.ServicerContext) -> float | None:
        remaining = context.time_remaining()  # None without a client deadline
        limits = [t for t in (self.timeout_s, remaining) if t is not None]
        return max(min(limits), 0.0) if limits else None

    @_guarded
    def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        with self.in_flight.slot():
            servable = self._servable(request.model_spec)
            name, signature = codec.signature_of(servable, request.model_spec.signature_name)
            missing = sorted(set(signature.inputs) - set(request.inputs))
            extra = sorted(set(request.inputs) - set(signature.inputs))
            if missing or extra:
                raise ServingError(
                    400,
                    f"inputs {sorted(request.inputs)} must be equal to the signature inputs {sorted(signature.inputs)}",
                )
            inputs = {
                key: array_from_proto(request.inputs[key], spec, self.max_request_bytes)
                for key, spec in signature.inputs.items()
            }
            unknown = sorted(set(request.output_filter) - set(signature.function.structured_outputs))
            if unknown:
                raise ServingError(400, f"output_filter names {unknown}, which signature {name!r} does not have")
            call = Call(self._timeout(context), TIMEOUT_FLAG)
            timer = call.start_timer()
            try:
                outputs = self.runner.run(servable.version, name, signature, inputs, call)
            finally:
                if timer is not None:
                    timer.cancel()
        response = predict_pb2.PredictResponse(model_spec=_model_spec(self.manager.name, servable.version, name))
        for key, array in outputs.items():
            if not request.output_filter or key in request.output_filter:
                response.outputs[key].CopyFrom(tf.make_tensor_proto(array))
        return response

    @_guarded
    def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.ServicerContext
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        if list(request.metadata_field) != [SIGNATURE_DEF_FIELD]:
            raise ServingError(
                400,
                f"metadata_field must be [{SIGNATURE_DEF_FIELD!r}], the only metadata served; "
                f"got {list(request.metadata_field)}",
            )
        servable = self._servable(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse(
            model_spec=_model_spec(self.manager.name, servable.version)
        )
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature_def)
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager):
        self.manager = manager

    @_guarded
    def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.ServicerContext
    ) -> get_model_status_pb2.GetModelStatusResponse:
        spec = request.model_spec
        if spec.WhichOneof("version_choice") == "version_label":
            raise rest.unrecognized_label(spec.version_label)
        version = spec.version.value if spec.HasField("version") else None
        response = get_model_status_pb2.GetModelStatusResponse()
        for entry in rest.version_status(self.manager, spec.name, version):
            status = response.model_version_status.add(
                version=int(entry["version"]), state=get_model_status_pb2.ModelVersionStatus.State.Value(entry["state"])
            )
            status.status.error_code = error_codes_pb2.Code.Value(entry["status"]["error_code"])
            status.status.error_message = entry["status"]["error_message"]
        return response


def start_server(
    host: str, port: int, max_threads: int, max_request_bytes: int, servicers: tuple[PredictionServicer, ModelServicer]
) -> Any:
    """A started grpc.Server on host:port; OSError naming the port when it cannot listen.

    Args:
        host: Address to listen on.
        port: Port to listen on.
        max_threads: Threads answering requests.
        max_request_bytes: Largest request message accepted.
        servicers: The prediction and model servicers to serve.

    Returns:
        The started grpc.Server.

    Raises:
        OSError: host:port cannot be listened on.
    """
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_threads, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", max_request_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ],
    )
    prediction, model = servicers
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(model, server)
    address = f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as err:
        raise OSError(f"cannot listen for gRPC on {address} (--port): {err}") from err
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {address} (--port): address in use or not available")
    server.start()
    return server
