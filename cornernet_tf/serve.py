"""Serve a versioned SavedModel over TensorFlow Serving's REST and gRPC APIs, for machines
without `tensorflow_model_server`: `python -m cornernet_tf.serve --model_name cornernet
--model_base_path exports/cornernet --rest_api_port 8501 --port 8500`.

Same URLs, JSON formats, protos, error objects and main flags as TF Serving, so clients and the
`tensorflow/serving` Docker image are interchangeable. Generic over any TF Serving-style
directory `<base>/<version>/saved_model.pb`: nothing here knows about CornerNet. Like TF Serving's
default policy, only the highest version is kept loaded; a new version dropped into the base path
is loaded off the request path and swapped in atomically. The server is in `cornernet_tf.serving`;
this module is its command line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading

from cornernet_tf.utils import cli

try:
    from aiohttp import web
except ImportError as _err:  # an optional dependency: say how to get it
    raise ImportError(
        f"cornernet_tf.serve needs aiohttp ({_err}); install it: pip install 'cornernet-tf[serve]'"
    ) from _err

from cornernet_tf.serving.batching import Batcher
from cornernet_tf.serving.limits import InFlight, PixelLimits
from cornernet_tf.serving.rest import RestApi, RestOptions
from cornernet_tf.serving.runner import Runner
from cornernet_tf.serving.versions import ModelManager, find_versions

LOG = logging.getLogger("cornernet_tf.serve")
DEFAULT_GRPC_PORT = 8500  # TF Serving's


def _grpc_module():
    """cornernet_tf.serving.grpc_server, or None when grpcio / tensorflow-serving-api are missing."""
    try:
        from cornernet_tf.serving import grpc_server
    except ImportError:
        return None
    return grpc_server


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    threads = 4 * (os.cpu_count() or 1)
    parser = argparse.ArgumentParser(
        prog="python -m cornernet_tf.serve",
        description="TF Serving-compatible REST and gRPC server over a versioned SavedModel base path.",
    )
    parser.add_argument("--model_name", default="default", help="name in the URLs /v1/models/<name>")
    parser.add_argument("--model_base_path", required=True, help="folder (or gs:// path) of <version>/ SavedModels")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"gRPC port (default {DEFAULT_GRPC_PORT} when tensorflow-serving-api is installed "
        "and the port is free, else REST only; 0: no gRPC)",
    )
    parser.add_argument("--rest_api_port", type=int, default=8501)
    parser.add_argument("--rest_api_host", default="0.0.0.0", help="address both APIs bind (not a TF Serving flag)")
    parser.add_argument(
        "--rest_api_num_threads",
        type=int,
        default=threads,
        help="threads running REST predictions (TF Serving's default: 4 x CPUs)",
    )
    parser.add_argument("--grpc_max_threads", type=int, default=threads, help="threads serving gRPC calls")
    parser.add_argument(
        "--rest_api_timeout_in_ms",
        type=int,
        default=30000,
        help="answer 504 and cancel a REST prediction that takes longer; <= 0 disables",
    )
    parser.add_argument(
        "--grpc_timeout_in_ms",
        type=int,
        default=30000,
        help="DEADLINE_EXCEEDED for a gRPC prediction that takes longer (a client deadline "
        "shortens it); <= 0 disables (not a TF Serving flag)",
    )
    parser.add_argument(
        "--max_in_flight_requests",
        type=int,
        default=threads,
        help="predictions admitted at once, REST and gRPC together; more get 503 + Retry-After "
        "/ RESOURCE_EXHAUSTED (not a TF Serving flag)",
    )
    parser.add_argument(
        "--max_image_pixels",
        type=int,
        default=40_000_000,
        help="refuse an encoded image declaring more pixels in its header; 0 disables (not a TF Serving flag)",
    )
    parser.add_argument(
        "--max_request_pixels",
        type=int,
        default=160_000_000,
        help="refuse a request whose images declare more pixels in all; 0 disables",
    )
    parser.add_argument(
        "--enable_batching",
        action="store_true",
        help="run concurrent requests for the same version and signature as one batch",
    )
    parser.add_argument("--max_batch_size", type=int, default=32, help="examples in one batch")
    parser.add_argument(
        "--batch_timeout_micros",
        type=int,
        default=2000,
        help="how long a batch waits for more requests after its first",
    )
    parser.add_argument("--num_batch_threads", type=int, default=os.cpu_count() or 1, help="batches run at once")
    parser.add_argument(
        "--file_system_poll_wait_seconds",
        type=float,
        default=1.0,
        help="seconds between looks for new versions; 0 looks once at startup",
    )
    parser.add_argument(
        "--max_num_load_retries",
        type=int,
        default=5,
        help="retries of a version that fails to load before it is skipped",
    )
    parser.add_argument(
        "--load_retry_interval_micros",
        type=int,
        default=60_000_000,
        help="wait between retries of a version that failed to load",
    )
    parser.add_argument(
        "--max_request_bytes",
        type=int,
        default=64 * 1024 * 1024,
        help="larger request bodies get 413 / INVALID_ARGUMENT (not a TF Serving flag)",
    )
    cli.add_verbose_flag(parser)
    return parser.parse_args(argv)


def _validate(args: argparse.Namespace) -> None:
    positive = (
        "rest_api_num_threads",
        "grpc_max_threads",
        "max_request_bytes",
        "max_in_flight_requests",
        "max_batch_size",
        "num_batch_threads",
    )
    for name in positive:
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be positive, got {getattr(args, name)}")
    for name in ("max_image_pixels", "max_request_pixels", "batch_timeout_micros"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} must be >= 0, got {getattr(args, name)}")


def _timeout(ms: int) -> float | None:
    return ms / 1000 if ms > 0 else None


async def _serve(args: argparse.Namespace, manager: ModelManager, runner: Runner, in_flight: InFlight) -> None:
    """Bind REST, then gRPC; serve until SIGINT/SIGTERM; then stop accepting and let in-flight
    requests finish."""
    grpc_server = _grpc_module()
    port = args.port if args.port is not None else (DEFAULT_GRPC_PORT if grpc_server else 0)
    if port and grpc_server is None:
        raise ValueError("--port (gRPC) needs grpcio and tensorflow-serving-api: pip install 'cornernet-tf[serve]'")
    if args.port is None and grpc_server is None:
        LOG.warning("tensorflow-serving-api is not installed: REST only")
    rest_timeout = _timeout(args.rest_api_timeout_in_ms)
    api = RestApi(
        manager, runner, in_flight, RestOptions(args.max_request_bytes, args.rest_api_num_threads, rest_timeout)
    )
    app_runner = web.AppRunner(api.application(), access_log=None)
    await app_runner.setup()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    server = None
    try:
        await web.TCPSite(
            app_runner, args.rest_api_host, args.rest_api_port, shutdown_timeout=rest_timeout or 60.0
        ).start()
        LOG.info("REST API for model %r on http://%s:%d", args.model_name, args.rest_api_host, args.rest_api_port)
        if port:
            servicers = (
                grpc_server.PredictionServicer(
                    manager, runner, in_flight, _timeout(args.grpc_timeout_in_ms), args.max_request_bytes
                ),
                grpc_server.ModelServicer(manager),
            )
            try:
                server = grpc_server.start_server(
                    args.rest_api_host, port, args.grpc_max_threads, args.max_request_bytes, servicers
                )
                LOG.info("gRPC API for model %r on %s:%d", args.model_name, args.rest_api_host, port)
            except OSError as err:
                if args.port is not None:  # asked for: a user error
                    raise
                LOG.warning("%s; serving REST only (pass --port to choose another port, --port 0 for none)", err)
        await stopping.wait()
    finally:
        if server is not None:
            await loop.run_in_executor(
                None, lambda: server.stop(grace=_timeout(args.grpc_timeout_in_ms) or 60.0).wait()
            )
        await app_runner.cleanup()


@cli.command
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    _validate(args)
    manager = ModelManager(
        args.model_name, args.model_base_path, args.max_num_load_retries, args.load_retry_interval_micros / 1e6
    )
    manager.poll()  # like TF Serving, the first version is loaded before the ports open
    if not find_versions(args.model_base_path):
        LOG.warning("no version of %r under %s yet", args.model_name, args.model_base_path)
    stop = threading.Event()
    poller = None
    if args.file_system_poll_wait_seconds > 0:
        poller = threading.Thread(
            target=manager.poll_forever, args=(args.file_system_poll_wait_seconds, stop), name="poll", daemon=True
        )
        poller.start()
    batcher = None
    if args.enable_batching:
        batcher = Batcher(args.max_batch_size, args.batch_timeout_micros / 1e6, args.num_batch_threads)
    runner = Runner(PixelLimits(args.max_image_pixels, args.max_request_pixels), batcher)
    try:
        asyncio.run(_serve(args, manager, runner, InFlight(args.max_in_flight_requests)))
    finally:
        stop.set()
        if batcher is not None:
            batcher.stop()
        if poller is not None:
            poller.join(timeout=5)
    LOG.info("shut down cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
