"""Helpers for tests that talk to `python -m cornernet_tf.serve` over loopback: a server
subprocess on free ports with bounded waits, a JSON client that returns any status (and the
headers), the server's peak resident memory, and the official TF Serving gRPC stubs."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pathlib
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator

import cv2
import numpy as np
import tensorflow as tf

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 60.0


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call_with_headers(url: str, method: str = "GET", body: bytes | dict | None = None) -> tuple[int, dict, dict]:
    """(HTTP status, JSON answer, response headers) for any status."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


def call(url: str, method: str = "GET", body: bytes | dict | None = None) -> tuple[int, dict]:
    """(HTTP status, JSON answer) for any status."""
    status, answer, _ = call_with_headers(url, method, body)
    return status, answer


def b64(data: bytes) -> dict:
    """A binary value as TF Serving's JSON carries it."""
    return {"b64": base64.b64encode(data).decode()}


class Server:
    """A `serve` subprocess for model `name` over base path `base`, on a free loopback port
    (and a free gRPC port at `grpc_address` when `grpc`); `extra` are more serve flags."""

    def __init__(self, base: pathlib.Path, name: str, *extra: str, grpc: bool = False):
        self.port = free_port()
        self.grpc_port = free_port() if grpc else 0
        self.grpc_address = f"127.0.0.1:{self.grpc_port}"
        self.url = f"http://127.0.0.1:{self.port}/v1/models/{name}"
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
        self.process = subprocess.Popen(
            [
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
                str(self.port),
                "--port",
                str(self.grpc_port),
                *extra,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def peak_memory_bytes(self) -> int:
        """The server's peak resident memory so far (VmHWM in /proc/<pid>/status)."""
        return peak_memory_bytes(self.process.pid)

    def wait_ready(self) -> None:
        """Wait (at most START_TIMEOUT_S) until the model status answers 200."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.process.stderr.read().decode()
                raise RuntimeError(f"serve exited with {self.process.returncode}: {log}")
            with contextlib.suppress(OSError):
                if call(self.url)[0] == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"serve not ready after {START_TIMEOUT_S} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        self.process.stderr.close()


def peak_memory_bytes(pid: int) -> int:
    """Peak resident memory of process `pid` (VmHWM, which the kernel keeps), in bytes."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


@contextlib.contextmanager
def running(base: pathlib.Path, name: str, *extra: str, grpc: bool = False) -> Iterator[Server]:
    """A ready `Server`, killed on exit whatever happened."""
    server = Server(base, name, *extra, grpc=grpc)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def png_bomb(height: int, width: int) -> bytes:
    """A valid 1-bit grayscale PNG of `height` x `width` black pixels: a few tens of KB that
    decode to height x width x 3 bytes (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then the packed row
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def black_jpeg(height: int, width: int) -> bytes:
    """A valid grayscale JPEG of black pixels (a few MB for 12000 x 12000)."""
    ok, data = cv2.imencode(".jpg", np.zeros((height, width), np.uint8))
    assert ok
    return data.tobytes()


class StandIn(tf.Module):
    """Detection-shaped outputs computed from the decoded image, so they differ per image."""

    def __init__(self, offset: float):
        super().__init__()
        self.offset = tf.Variable(offset)

    def _detections(self, stats: tf.Tensor) -> dict[str, tf.Tensor]:
        # stats [B, 3]: mean pixel, height, width.
        mean, height, width = stats[:, 0], stats[:, 1], stats[:, 2]
        rank = tf.broadcast_to(tf.range(100, dtype=tf.float32) / 100.0, [tf.shape(stats)[0], 100])
        aspect = (height / (height + width))[:, None]
        return {
            "detection_boxes": tf.stack([0.1 * rank, 0.2 * rank, aspect + 0 * rank, rank + width[:, None] / 1e3], -1),
            "detection_scores": (mean[:, None] / 255.0) * (1.0 - rank) + self.offset,
            "detection_classes": tf.math.floormod(100.0 * rank + height[:, None], 3.0),
            "num_detections": height + width,
        }

    @staticmethod
    def _stats(image: tf.Tensor) -> tf.Tensor:
        shape = tf.cast(tf.shape(image), tf.float32)
        return tf.stack([tf.reduce_mean(tf.cast(image, tf.float32)), shape[0], shape[1]])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def detect(self, images):
        def decode(data):
            return self._stats(tf.io.decode_image(data, channels=3, expand_animations=False))

        return self._detections(tf.map_fn(decode, images, fn_output_signature=tf.TensorSpec([3], tf.float32)))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def detect_tensor(self, images):
        return self._detections(tf.map_fn(self._stats, images, fn_output_signature=tf.TensorSpec([3], tf.float32)))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.string)])
    def echo(self, payload_bytes, label):
        return {"payload_bytes": payload_bytes, "label": label, "length": tf.strings.length(payload_bytes)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def rows(self, values):
        """How many rows the call got: more than the request's when requests were batched."""
        return {"rows": tf.fill(tf.shape(values), tf.shape(values)[0]), "values": values * 2.0}

    @tf.function(input_signature=[tf.TensorSpec([], tf.int64)])
    def wait(self, micros):
        """Sleeps at least `micros` without using CPU: keeps a request in flight."""
        numbers = tf.data.Dataset.from_tensors(micros)
        sleeping = tf.raw_ops.SleepDataset(
            input_dataset=tf.data.experimental.to_variant(numbers),
            sleep_microseconds=micros,
            output_types=[tf.int64],
            output_shapes=[[]],
        )
        waited = tf.data.experimental.from_variant(sleeping, numbers.element_spec)
        return {"waited": waited.reduce(tf.constant(0, tf.int64), lambda total, x: total + x)[None]}


def write_model(base: pathlib.Path, version: int, offset: float) -> pathlib.Path:
    """Export version `version` next to the base path, then rename it in (as exporters should)."""
    module = StandIn(offset)
    staging = base.parent / f".staging-{version}"
    tf.saved_model.save(
        module,
        str(staging),
        signatures={
            "serving_default": module.detect,
            "serving_tensor": module.detect_tensor,
            "echo": module.echo,
            "wait": module.wait,
            "rows": module.rows,
        },
    )
    target = base / str(version)
    staging.rename(target)
    return target


def standin_base(tmp_path_factory, label: str) -> pathlib.Path:
    """A new model base path holding version 1 of the stand-in."""
    path = tmp_path_factory.mktemp(label) / "models"
    path.mkdir()
    write_model(path, 1, offset=0.0)
    return path
