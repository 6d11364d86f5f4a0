"""A failed request, as both front ends answer it: an HTTP status for REST, a gRPC status code
(derived from the HTTP status the way TF Serving's http_server.cc maps them back) for gRPC."""

from __future__ import annotations

import tensorflow as tf

# TF error codes -> HTTP statuses, as TF Serving's REST server maps them (http_server.cc).
HTTP_STATUS_OF_TF_CODE = {
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

# HTTP statuses of our own refusals -> gRPC status code names (grpc.StatusCode members).
GRPC_CODE_OF_HTTP_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    501: "UNIMPLEMENTED",
    503: "RESOURCE_EXHAUSTED",  # the in-flight bound: the client should back off and retry
    504: "DEADLINE_EXCEEDED",
}


class ServingError(Exception):
    """A failed request, carrying the HTTP status TF Serving answers it with."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers

    @property
    def grpc_code(self) -> str:
        return GRPC_CODE_OF_HTTP_STATUS.get(self.status, "INTERNAL")


def from_tf_error(err: tf.errors.OpError) -> ServingError:
    """A TF error raised by a model as the status TF Serving gives it (a bad image: 400)."""
    return ServingError(HTTP_STATUS_OF_TF_CODE.get(err.error_code, 500), err.message)
