"""Running a signature for one request: its pixel limits first, then the model alone or through
the batcher, under a deadline that cancels the TensorFlow call itself.

A request past its deadline is answered 504 (gRPC: DEADLINE_EXCEEDED) and its TensorFlow call
is cancelled through a CancellationManager (TensorFlow stops the graph between ops), so the
worker thread comes free instead of computing an answer nobody waits for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
from tensorflow.python.eager import cancellation

from cornernet_tf.serving import errors
from cornernet_tf.serving.errors import ServingError
from cornernet_tf.serving.limits import PixelLimits
from cornernet_tf.serving.versions import Signature

if TYPE_CHECKING:  # batching builds on this module
    from cornernet_tf.serving.batching import Batcher


class Call:
    """One request's cancellation: expired by its deadline timer or by the front end."""

    def __init__(self, timeout_s: float | None, deadline_flag: str):
        self.timeout_s = timeout_s
        self.deadline_flag = deadline_flag
        self.manager = cancellation.CancellationManager()
        self.expired = False
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            callbacks, self._callbacks = self._callbacks, []
        self.manager.start_cancel()
        for callback in callbacks:
            callback()

    def on_expire(self, callback: Callable[[], None]) -> None:
        """Run `callback` when the call expires (at once if it has)."""
        with self._lock:
            if not self.expired:
                self._callbacks.append(callback)
                return
        callback()

    def deadline_error(self) -> ServingError:
        return ServingError(504, f"Deadline exceeded: prediction took over {self.timeout_s:g} s ({self.deadline_flag})")

    def start_timer(self) -> threading.Timer | None:
        """Expire after timeout_s (None: no deadline); cancel the returned timer when done."""
        if self.timeout_s is None:
            return None
        timer = threading.Timer(self.timeout_s, self.expire)
        timer.daemon = True
        timer.start()
        return timer


def call_signature(
    signature: Signature, inputs: dict[str, np.ndarray], manager: cancellation.CancellationManager | None = None
) -> dict[str, np.ndarray]:
    """The signature on `inputs` (arrays of its input dtypes), outputs as arrays; TF errors raise."""
    tensors = {name: tf.constant(array, dtype=signature.inputs[name].dtype) for name, array in inputs.items()}
    if manager is None:
        outputs = signature.function(**tensors)
    else:
        with cancellation.CancellationManagerContext(manager):
            outputs = signature.function(**tensors)
    return {name: tensor.numpy() for name, tensor in outputs.items()}


class Runner:
    """Pixel limits, then `batcher.run` when batching is on, else the signature alone."""

    def __init__(self, limits: PixelLimits, batcher: Batcher | None = None):
        self.limits = limits
        self.batcher = batcher

    def run(
        self, version: int, signature_name: str, signature: Signature, inputs: dict[str, np.ndarray], call: Call
    ) -> dict[str, np.ndarray]:
        """Answer one request: check its pixel limits, then run the signature (batched when on).

        Args:
            version: The model version the signature belongs to.
            signature_name: Its name; with `version`, the batching key.
            signature: The signature to run.
            inputs: Input name to array (arrays of the signature's input dtypes).
            call: The request's cancellation and deadline.

        Returns:
            Output name to array.

        Raises:
            ServingError: 400 for images over the pixel limits, 504 past the deadline, else the
                model's TF error as TF Serving answers it (a bad image: 400); with batching, what
                `Batcher.run` raises.
        """
        self.limits.check(inputs)
        if call.expired:  # waited for a thread past the deadline
            raise call.deadline_error()
        if self.batcher is not None:
            return self.batcher.run((version, signature_name), signature, inputs, call)
        try:
            return call_signature(signature, inputs, call.manager)
        except tf.errors.OpError as err:
            if call.expired:
                raise call.deadline_error() from err
            raise errors.from_tf_error(err) from err
