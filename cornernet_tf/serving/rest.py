"""TF Serving's REST API (same URLs, JSON formats and error objects) over one ModelManager.

Predictions run in a thread pool, off the event loop. A request first takes an in-flight slot
(503 + Retry-After when none is free, before its body is read); past `--rest_api_timeout_in_ms`
it is answered 504, its slot freed and its TensorFlow call cancelled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import re
import urllib.parse
from typing import Any

from aiohttp import web

from cornernet_tf.serving import codec
from cornernet_tf.serving.errors import ServingError
from cornernet_tf.serving.limits import InFlight
from cornernet_tf.serving.runner import Call, Runner
from cornernet_tf.serving.versions import ModelManager, Servable

LOG = logging.getLogger("cornernet_tf.serve")

_PREDICT_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(\w+)", re.IGNORECASE)
_MODEL_PATH = re.compile(r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?(/metadata)?", re.IGNORECASE)
TIMEOUT_FLAG = "--rest_api_timeout_in_ms"


@dataclasses.dataclass(frozen=True)
class RestOptions:
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


def unrecognized_label(label: str) -> ServingError:
    return ServingError(400, f"Unrecognized servable version label: {label}")


def servable_for(manager: ModelManager, name: str, version: int | None) -> Servable:
    """The servable a request names, or 404 as TF Serving words it."""
    if name != manager.name:
        spec = f"Latest({name})" if version is None else f"Specific({name}, {version})"
        raise ServingError(404, f"Servable not found for request: {spec}")
    return manager.servable(version)


def version_status(manager: ModelManager, name: str, version: int | None) -> list[dict[str, Any]]:
    if name != manager.name:
        raise ServingError(404, f"Could not find any versions of model {name}")
    return manager.version_status(version)


class RestApi:
    """TF Serving's REST routes over one ModelManager."""

    def __init__(self, manager: ModelManager, runner: Runner, in_flight: InFlight, options: RestOptions):
        """Serve TF Serving's REST routes; predictions run in a pool of options.num_threads threads.

        Args:
            manager: The model's versions.
            runner: Runs signatures (pixel limits, batching).
            in_flight: The bound on requests served at once, shared with gRPC.
            options: Request size limit, thread count and deadline.
        """
        self.manager = manager
        self.runner = runner
        self.in_flight = in_flight
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
            if label is not None:
                raise unrecognized_label(urllib.parse.unquote(label))
            status = version_status(self.manager, name, None if version is None else int(version))
            return _json_response({"model_version_status": status})
        raise ServingError(404, f"Malformed request: {request.method} {path}")

    def _servable(self, name: str, version: str | None, label: str | None) -> Servable:
        if label is not None:
            raise unrecognized_label(urllib.parse.unquote(label))
        return servable_for(self.manager, name, None if version is None else int(version))

    def _metadata(self, servable: Servable) -> dict[str, Any]:
        return {
            "model_spec": {"name": self.manager.name, "signature_name": "", "version": str(servable.version)},
            "metadata": {"signature_def": servable.signature_def_json},
        }

    def _predict_in_thread(self, servable: Servable, body: bytes, call: Call) -> bytes:
        parsed = codec.parse_predict(servable, body)
        signature = servable.signatures[parsed.signature_name]
        return parsed.answer(self.runner.run(servable.version, parsed.signature_name, signature, parsed.inputs, call))

    async def _predict(self, request: web.Request, servable: Servable) -> web.Response:
        self.in_flight.acquire()
        try:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge as err:
                raise ServingError(
                    413, f"request body exceeds --max_request_bytes={self.options.max_request_bytes}"
                ) from err
            call = Call(self.options.timeout_seconds, TIMEOUT_FLAG)
            work = asyncio.get_running_loop().run_in_executor(self.pool, self._predict_in_thread, servable, body, call)
            try:
                answer = await asyncio.wait_for(work, self.options.timeout_seconds)
            except TimeoutError as err:
                call.expire()
                raise call.deadline_error() from err
            return _json_response(answer)
        finally:
            self.in_flight.release()
