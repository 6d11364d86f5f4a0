"""Helpers for tests that talk to `python -m cornernet_tf.serve` over loopback HTTP: a server
subprocess on a free port with bounded waits, and a JSON client that returns any status."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Iterator

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 60.0


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(url: str, method: str = "GET", body: bytes | dict | None = None) -> tuple[int, dict]:
    """(HTTP status, JSON answer) for any status."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def b64(data: bytes) -> dict:
    """A binary value as TF Serving's JSON carries it."""
    return {"b64": base64.b64encode(data).decode()}


class Server:
    """A `serve` subprocess for model `name` over base path `base`, on a free loopback port;
    `extra` are more serve flags."""

    def __init__(self, base: pathlib.Path, name: str, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1/models/{name}"
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cornernet_tf.serve", "--model_name", name, "--model_base_path", str(base),
             "--rest_api_host", "127.0.0.1", "--rest_api_port", str(self.port), *extra],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

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


@contextlib.contextmanager
def running(base: pathlib.Path, name: str, *extra: str) -> Iterator[Server]:
    """A ready `Server`, killed on exit whatever happened."""
    server = Server(base, name, *extra)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
