"""Load test of `python -m cornernet_tf.serve` (or any TF Serving REST endpoint) on loopback.

    python benchmarks/serving.py                                   # stand-in model, own server
    python benchmarks/serving.py --model_base_path exports/cornernet --model_name cornernet
    python benchmarks/serving.py --url http://127.0.0.1:8501/v1/models/cornernet \
        --model_base_path exports/cornernet                        # e.g. the tensorflow/serving image
    python benchmarks/serving.py --model_base_path exports/cornernet --model_name cornernet --compare
    python benchmarks/serving.py --soak 300 --clients 8                 # mixed hostile traffic, memory

`--compare` runs, in the same run and on the same model and requests, REST, gRPC (the official
`tensorflow-serving-api` stub, the image as a DT_STRING tensor) and gRPC with server-side
batching (`--enable_batching`), one fresh server each, and prints each mode's throughput ratio
to REST.

`--soak SECONDS` runs that long a mix of good requests, malformed bodies, bad base64, decompression
bombs, oversized bodies and slow clients from N threads, copies a version 2 into the model base
path halfway (a hot swap), samples the server's RSS every second, and prints the account per kind,
every answer other than the expected one (none allowed), the p99 of good requests and the memory
growth per 1,000 requests (`soak`).

N client threads (keep-alive connections) send a bounded number of `:predict` requests, each a
batch of b64 JPEGs, and the script prints throughput, p50/p99 latency and the error count (which
must be 0; the exit status is 1 otherwise). The ratio printed against a direct in-process call of
the same signature on the same batch is the serving overhead (latency) and the concurrency gain
(throughput).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable

import numpy as np
import tensorflow as tf

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 300.0
CLIENT_TIMEOUT_S = 600.0


class StandIn(tf.Module):
    """Follows the export contract (encoded images in, detection tensors out) at tiny cost:
    decode + resize like a real preprocessing, then per-image statistics."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def detect(self, images):
        def summarize(data):
            image = tf.image.resize(tf.io.decode_image(data, channels=3, expand_animations=False), [128, 128])
            return tf.reduce_mean(image, axis=[0, 1])

        color = tf.map_fn(summarize, images, fn_output_signature=tf.TensorSpec([3], tf.float32)) / 255.0
        rank = tf.broadcast_to(tf.range(100, dtype=tf.float32) / 100.0, [tf.shape(images)[0], 100])
        return {
            "detection_boxes": tf.stack([rank * 0.5, rank * 0.5, rank * 0.5 + 0.5, rank * 0.5 + 0.5], -1),
            "detection_scores": color[:, :1] * (1.0 - rank),
            "detection_classes": tf.math.floormod(100.0 * rank, 3.0),
            "num_detections": tf.fill([tf.shape(images)[0]], 100.0),
        }


def write_stand_in(base: pathlib.Path) -> None:
    module = StandIn()
    tf.saved_model.save(module, str(base / "1"), signatures={"serving_default": module.detect})


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(base: pathlib.Path, name: str, extra: list[str]) -> tuple[subprocess.Popen, str, str]:
    """Run `serve` on free loopback ports (REST and gRPC) and wait (bounded) until the model is
    available; returns (process, REST model URL, gRPC address)."""
    port, grpc_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "cornernet_tf.serve",
        "--model_name",
        name,
        "--model_base_path",
        str(base),
        "--rest_api_host",
        "127.0.0.1",
        "--rest_api_port",
        str(port),
        "--port",
        str(grpc_port),
        "--rest_api_timeout_in_ms",
        "0",
        "--grpc_timeout_in_ms",
        "0",  # measure slow models too
        *extra,
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1/models/{name}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited with {process.returncode}")
        with contextlib.suppress(OSError):
            status, _ = request(url, "GET")
            if status == 200:
                return process, url, f"127.0.0.1:{grpc_port}"
        time.sleep(0.5)
    process.kill()
    raise TimeoutError(f"serve not ready after {START_TIMEOUT_S} s")


def request(
    url: str, method: str, body: bytes | None = None, connection: http.client.HTTPConnection | None = None
) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = connection or http.client.HTTPConnection(parts.hostname, parts.port, timeout=CLIENT_TIMEOUT_S)
    try:
        conn.request(method, parts.path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if connection is None:
            conn.close()


def make_batch(batch: int, size: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    return [tf.io.encode_jpeg(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).numpy() for _ in range(batch)]


def rest_sender(url: str, body: bytes) -> Callable[[], Callable[[], bool]]:
    """Per client: a keep-alive connection and a function sending one `:predict` (True: 200)."""
    parts = urllib.parse.urlsplit(url)

    def client() -> Callable[[], bool]:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=CLIENT_TIMEOUT_S)

        def send() -> bool:
            try:
                return request(url + ":predict", "POST", body, connection)[0] == 200
            except (OSError, http.client.HTTPException):
                connection.close()
                return False

        return send

    return client


def grpc_sender(address: str, name: str, signature: str, images: list[bytes]) -> Callable[[], Callable[[], bool]]:
    """Per client: a channel and a function sending one PredictionService.Predict (True: OK)."""
    import grpc  # only --compare needs the gRPC packages
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    message = predict_pb2.PredictRequest()
    message.model_spec.name = name
    message.model_spec.signature_name = signature
    message.inputs["images"].CopyFrom(tf.make_tensor_proto(images))

    def client() -> Callable[[], bool]:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(address))

        def send() -> bool:
            try:
                stub.Predict(message, timeout=CLIENT_TIMEOUT_S)
                return True
            except grpc.RpcError:
                return False

        return send

    return client


def load_test(
    make_client: Callable[[], Callable[[], bool]], clients: int, total: int
) -> tuple[list[float], int, float]:
    """(latencies in s of the successful requests, error count, wall time in s)."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    remaining = iter(range(total))

    def client() -> None:
        nonlocal errors
        send = make_client()
        while True:
            with lock:
                if next(remaining, None) is None:
                    return
            start = time.perf_counter()
            ok = send()
            elapsed = time.perf_counter() - start
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, time.perf_counter() - start


def direct_latency(base: pathlib.Path, signature: str, images: list[bytes], repeats: int) -> float:
    """Median seconds of calling the highest version's signature in-process, one call at a time."""
    version = max(int(p.name) for p in base.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file())
    function = tf.saved_model.load(str(base / str(version))).signatures[signature]
    batch = tf.constant(images)
    function(images=batch)  # first call outside the timing
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(images=batch)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def summary(label: str, latencies: list[float], errors: int, wall: float, batch: int) -> float:
    """Print one line for a load test; returns its throughput in requests/s."""
    p50, p99 = (np.percentile(latencies, [50, 99]) * 1000) if latencies else (float("nan"),) * 2
    throughput = len(latencies) / wall
    print(
        f"{label:<14} throughput {throughput:.1f} req/s ({throughput * batch:.1f} img/s)  "
        f"p50 {p50:.1f} ms  p99 {p99:.1f} ms  errors {errors}"
    )
    return throughput


def compare(args: argparse.Namespace, base: pathlib.Path, images: list[bytes], body: bytes) -> int:
    """REST, gRPC and gRPC with batching, one fresh server each, same requests; 1 if any error."""
    threads = [
        "--rest_api_num_threads",
        str(args.clients),
        "--grpc_max_threads",
        str(args.clients),
        "--max_in_flight_requests",
        str(args.clients),
    ]
    batching = [
        "--enable_batching",
        "--max_batch_size",
        str(args.clients * args.batch),
        "--batch_timeout_micros",
        str(args.batch_timeout_micros),
        "--num_batch_threads",
        "1",
    ]
    modes = {"rest": ("rest", threads), "grpc": ("grpc", threads), "grpc_batching": ("grpc", threads + batching)}
    throughputs, failed = {}, False
    for label, (protocol, flags) in modes.items():
        process, url, address = start_server(base, args.model_name, flags)
        try:
            make_client = (
                rest_sender(url, body)
                if protocol == "rest"
                else grpc_sender(address, args.model_name, args.signature, images)
            )
            warm = make_client()
            if not all(warm() for _ in range(5)):
                raise RuntimeError(f"{label}: warm-up requests failed")
            latencies, errors, wall = load_test(make_client, args.clients, args.requests)
        finally:
            process.terminate()
            process.wait(timeout=60)
        throughputs[label] = summary(label, latencies, errors, wall, args.batch)
        failed |= errors > 0
    print("throughput / REST: " + "  ".join(f"{k} {v / throughputs['rest']:.2f}" for k, v in throughputs.items()))
    return 1 if failed else 0


def _rss_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS of /proc/<pid>/status)."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _slow_post(url: str, body: bytes, pieces: int = 8, pause_s: float = 0.15) -> int:
    """POST `body` in `pieces` with pauses between them, as a client on a slow link; the status."""
    parts = urllib.parse.urlsplit(url)
    with contextlib.closing(socket.create_connection((parts.hostname, parts.port), timeout=CLIENT_TIMEOUT_S)) as sock:
        head = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.hostname}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode())
        step = -(-len(body) // pieces)
        for start in range(0, len(body), step):
            sock.sendall(body[start : start + step])
            time.sleep(pause_s)
        answer = sock.makefile("rb").readline().split()
    return int(answer[1]) if len(answer) > 1 else 0


def soak(args: argparse.Namespace, base: pathlib.Path, images: list[bytes], body: bytes) -> int:
    """`--soak SECONDS` of mixed traffic with a hot swap halfway; prints the account and memory.

    Kinds of request (clients draw one at random each time, seeded): good (must all be 200),
    malformed JSON, bad base64, a PNG decompression bomb, a body over --max_request_bytes, a
    slow client sending a good body in pieces (must be 200). Halfway, version 2 is copied into
    the model base path and must be served. The server's RSS is sampled every second; growth per
    1,000 requests is measured between the end of the first tenth and the end.
    """
    import random
    import shutil

    sys.path.insert(0, str(REPO_ROOT))
    from tests.serving_helpers import png_bomb

    limit = 8 * 2**20
    bomb = json.dumps({"instances": [{"b64": base64.b64encode(png_bomb(20000, 20000)).decode()}]}).encode()
    kinds = {
        "good": (0.55, lambda: request(url + ":predict", "POST", body)[0], {200}),
        "malformed_json": (0.1, lambda: request(url + ":predict", "POST", b"{not json")[0], {400}),
        "bad_b64": (0.1, lambda: request(url + ":predict", "POST", b'{"instances": [{"b64": "%%%"}]}')[0], {400}),
        "bomb": (0.1, lambda: request(url + ":predict", "POST", bomb)[0], {400}),
        "oversized": (0.05, lambda: request(url + ":predict", "POST", b" " * (limit + 1))[0], {413}),
        "slow_good": (0.1, lambda: _slow_post(url + ":predict", body), {200}),
    }
    extra = ["--max_request_bytes", str(limit), "--max_in_flight_requests", str(args.clients)]
    process, url, _ = start_server(base, args.model_name, extra)
    counts = {kind: 0 for kind in kinds}
    wrong: dict[str, int] = {}
    good_latencies: list[float] = []
    rss: list[tuple[float, int, int]] = []  # (seconds, requests so far, bytes)
    lock = threading.Lock()
    start = time.monotonic()
    stop = start + args.soak
    swapped = threading.Event()

    def client(seed: int) -> None:
        pick = random.Random(seed)
        names, weights = list(kinds), [weight for weight, _, _ in kinds.values()]
        while time.monotonic() < stop:
            kind = pick.choices(names, weights)[0]
            _, send, expected = kinds[kind]
            began = time.perf_counter()
            try:
                status = send()
            except (OSError, http.client.HTTPException) as err:
                status = type(err).__name__
            with lock:
                counts[kind] += 1
                if status not in expected:
                    wrong[f"{kind}: {status}"] = wrong.get(f"{kind}: {status}", 0) + 1
                elif kind == "good":
                    good_latencies.append(time.perf_counter() - began)

    try:
        for _ in range(3):
            request(url + ":predict", "POST", body)
        threads = [threading.Thread(target=client, args=(seed,)) for seed in range(args.clients)]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            now = time.monotonic() - start
            with lock:
                done = sum(counts.values())
            rss.append((now, done, _rss_bytes(process.pid)))
            if now >= args.soak / 2 and not swapped.is_set():
                shutil.copytree(base / "1", base / ".2.tmp")
                os.rename(base / ".2.tmp", base / "2")
                swapped.set()
            time.sleep(1.0)
        status, answer = request(url, "GET")
        versions = [v["version"] for v in json.loads(answer)["model_version_status"] if v["state"] == "AVAILABLE"]
    finally:
        process.terminate()
        process.wait(timeout=60)
    total = sum(counts.values())

    def growth_from(fraction: float) -> float:
        """KiB of server RSS per 1,000 requests from `fraction` of the soak to its end."""
        first = next(sample for sample in rss if sample[0] >= args.soak * fraction)
        return (rss[-1][2] - first[2]) / max(rss[-1][1] - first[1], 1) * 1000 / 2**10

    p99 = float(np.percentile(good_latencies, 99) * 1000) if good_latencies else float("nan")
    account = ", ".join(f"{kind} {count}" for kind, count in counts.items())
    print(f"soak {args.soak:.0f} s, {args.clients} clients, {total} requests: {account}")
    print(f"answers other than expected: {wrong or 'none'}; versions available at the end: {versions}")
    print(
        f"good p99 {p99:.0f} ms; server RSS {rss[0][2] / 2**20:.0f} MiB at the start, max "
        f"{max(sample[2] for sample in rss) / 2**20:.0f} MiB, end {rss[-1][2] / 2**20:.0f} MiB; growth per 1,000 "
        f"requests: {growth_from(0.1):+.1f} KiB from the first tenth (the swap's second model included), "
        f"{growth_from(0.6):+.1f} KiB after the swap"
    )
    failed_good = sum(v for k, v in wrong.items() if k.startswith(("good", "slow_good")))
    return 1 if wrong or "2" not in [str(v) for v in versions] or failed_good else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_base_path", type=pathlib.Path, help="default: export the stand-in model")
    parser.add_argument("--model_name", default="standin")
    parser.add_argument("--url", help="test this running endpoint (.../v1/models/NAME) instead of starting serve")
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--batch", type=int, default=1, help="images per request")
    parser.add_argument("--image_size", type=int, default=320, help="side of the random test JPEGs")
    parser.add_argument("--rest_api_num_threads", type=int, help="passed to serve")
    parser.add_argument("--compare", action="store_true", help="REST vs gRPC vs gRPC with batching")
    parser.add_argument("--batch_timeout_micros", type=int, default=5000, help="--compare's batching window")
    parser.add_argument("--soak", type=float, help="seconds of mixed good and hostile traffic with a hot swap")
    args = parser.parse_args(argv)

    images = make_batch(args.batch, args.image_size)
    body = json.dumps(
        {"signature_name": args.signature, "instances": [{"b64": base64.b64encode(data).decode()} for data in images]}
    ).encode()
    print(
        f"requests {args.requests}  clients {args.clients}  batch {args.batch}  image {args.image_size}px  "
        f"CPUs {os.cpu_count()}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        base = args.model_base_path
        if base is None and args.url is None:
            base = pathlib.Path(scratch) / args.model_name
            write_stand_in(base)
        if args.compare:
            return compare(args, base, images, body)
        if args.soak:
            return soak(args, base, images, body)
        threads = ["--rest_api_num_threads", str(args.rest_api_num_threads)] if args.rest_api_num_threads else []
        process, url, _ = (None, args.url, None) if args.url else start_server(base, args.model_name, threads)
        try:
            for _ in range(5):  # warm-up; also fails fast on a wrong URL or signature
                status, answer = request(url + ":predict", "POST", body)
                if status != 200:
                    raise RuntimeError(f"warm-up request failed with {status}: {answer[:300]!r}")
            latencies, errors, wall = load_test(rest_sender(url, body), args.clients, args.requests)
        finally:
            if process is not None:
                process.terminate()
                process.wait(timeout=60)
        direct = direct_latency(base, args.signature, images, repeats=30) if base is not None else None

    throughput = summary("rest", latencies, errors, wall, args.batch)
    if direct is not None:
        p50 = float(np.percentile(latencies, 50)) if latencies else float("nan")
        print(
            f"direct in-process call p50 {direct * 1000:.1f} ms: "
            f"latency ratio serve/direct {p50 / direct:.2f}, "
            f"throughput ratio serve/sequential-direct {throughput * direct:.2f}"
        )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
