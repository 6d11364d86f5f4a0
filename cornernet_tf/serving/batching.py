"""Server-side batching, as TF Serving's `--enable_batching`: concurrent requests for the same
version and signature are concatenated along the batch dimension, run as one call, and the
outputs are split back per request.

`num_batch_threads` threads each take the oldest waiting request, gather more requests with the
same key (version, signature, inner shapes and dtypes of the inputs) until `max_batch_size`
examples or `batch_timeout_s` after the first, and run them. A request larger than
`max_batch_size` runs alone. When a batch fails (one bad image fails the whole call), or its
outputs cannot be split (an output without the batch dimension), each request of it is run on
its own, so a request gets exactly the answer it would get without batching.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Hashable
from typing import Any

import numpy as np
import tensorflow as tf

from cornernet_tf.serving import errors
from cornernet_tf.serving.errors import ServingError
from cornernet_tf.serving.runner import Call, call_signature
from cornernet_tf.serving.versions import Signature


@dataclasses.dataclass(eq=False)
class _Task:
    key: Hashable
    signature: Signature
    inputs: dict[str, np.ndarray]
    rows: int
    call: Call
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    outputs: dict[str, np.ndarray] | None = None
    error: BaseException | None = None

    def finish(self, outputs: dict[str, np.ndarray] | None = None, error: BaseException | None = None) -> None:
        self.outputs, self.error = outputs, error
        self.done.set()


def _rows(inputs: dict[str, np.ndarray]) -> int | None:
    """The common batch size of the inputs; None when they have none (scalars, differing sizes)."""
    sizes = {array.shape[0] if array.ndim else None for array in inputs.values()}
    return sizes.pop() if len(sizes) == 1 else None


def _run_alone(task: _Task) -> None:
    try:
        task.finish(call_signature(task.signature, task.inputs, task.call.manager))
    except tf.errors.OpError as err:
        task.finish(error=task.call.deadline_error() if task.call.expired else errors.from_tf_error(err))
    except Exception as err:
        task.finish(error=err)


class Batcher:
    """Threads that run waiting requests in batches; `run` blocks until a request's answer."""

    def __init__(self, max_batch_size: int, batch_timeout_s: float, num_batch_threads: int):
        self.max_batch_size = max_batch_size
        self.batch_timeout_s = batch_timeout_s
        self._pending: list[_Task] = []
        self._condition = threading.Condition()
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._work, name=f"batch-{i}", daemon=True) for i in range(num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, key: Hashable, signature: Signature, inputs: dict[str, np.ndarray], call: Call) -> dict[str, Any]:
        """Answer one request, batched with others of the same key when it fits in a batch.

        A request without a common batch size, or larger than max_batch_size, runs alone at once.

        Args:
            key: What requests must share to be batched (version, signature name); the inner shapes
                and dtypes of `inputs` are added to it.
            signature: The signature to run.
            inputs: Input name to array, the batch along the first axis.
            call: The request's cancellation; an expired call stops waiting.

        Returns:
            Output name to array: this request's rows of the batch's outputs.

        Raises:
            ServingError: The model's TF error as TF Serving answers it (a bad image: 400), 504 past
                the deadline, or 503 when the batcher stops first.
            Exception: Any other error of the signature call on this request alone.
        """
        rows = _rows(inputs)
        shapes = tuple(sorted((name, array.dtype.str, array.shape[1:]) for name, array in inputs.items()))
        task = _Task((key, shapes), signature, inputs, rows or 0, call)
        if rows is None or rows > self.max_batch_size:
            _run_alone(task)
        else:
            with self._condition:
                self._pending.append(task)
                self._condition.notify()
            call.on_expire(task.done.set)
            task.done.wait()
        if task.error is not None:
            raise task.error
        if task.outputs is None:
            raise call.deadline_error()
        return task.outputs

    def stop(self) -> None:
        """Stop the threads; requests still waiting are answered 503."""
        with self._condition:
            self._stopped = True
            waiting, self._pending = self._pending, []
            self._condition.notify_all()
        for task in waiting:
            task.finish(error=ServingError(503, "the server is shutting down"))
        for thread in self._threads:
            thread.join(timeout=5)

    def _take_batch(self) -> list[_Task] | None:
        """The oldest task plus those that fit with it, waiting up to batch_timeout_s for more."""
        with self._condition:
            while not self._pending and not self._stopped:
                self._condition.wait()
            if self._stopped:
                return None
            batch = [self._pending.pop(0)]
            rows = batch[0].rows
            deadline = time.monotonic() + self.batch_timeout_s
            while rows < self.max_batch_size:
                for task in [t for t in self._pending if t.key == batch[0].key]:
                    if rows + task.rows <= self.max_batch_size:
                        self._pending.remove(task)
                        batch.append(task)
                        rows += task.rows
                remaining = deadline - time.monotonic()
                if rows >= self.max_batch_size or remaining <= 0 or self._stopped:
                    break
                self._condition.wait(remaining)
            return batch

    def _work(self) -> None:
        while (batch := self._take_batch()) is not None:
            batch = [task for task in batch if not task.call.expired]
            if len(batch) == 1:
                _run_alone(batch[0])
            elif batch:
                self._run_together(batch)

    def _run_together(self, batch: list[_Task]) -> None:
        inputs = {name: np.concatenate([task.inputs[name] for task in batch]) for name in batch[0].inputs}
        total = sum(task.rows for task in batch)
        try:
            outputs = call_signature(batch[0].signature, inputs)
        except Exception:
            outputs = None
        if outputs is None or any(array.ndim == 0 or array.shape[0] != total for array in outputs.values()):
            for task in batch:  # each alone: only a bad request fails, and with its own error
                _run_alone(task)
            return
        start = 0
        for task in batch:
            task.finish({name: array[start : start + task.rows] for name, array in outputs.items()})
            start += task.rows
