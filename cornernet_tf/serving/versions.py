"""Finding, loading and hot-swapping the versions of one model (TF Serving's default "latest"
policy): `<base>/<version>/saved_model.pb`, only the highest loadable version kept loaded, a new
version loaded off the request path and swapped in atomically."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Any

import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from cornernet_tf.serving.errors import ServingError

LOG = logging.getLogger("cornernet_tf.serve")

SERVE_TAG = "serve"


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
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]  # as in the SavedModel proto
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
    return Servable(version, signatures, dict(signature_defs), {"signature_def": described}, model)


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
        """Manage the versions of one model; nothing is loaded before the first `poll`.

        Args:
            name: The model name requests must use.
            base_path: Folder of the numeric version folders.
            max_load_retries: Loads retried after a version's first failed one.
            retry_interval_s: Seconds between loads of a version that failed.
        """
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
        except Exception as err:
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
