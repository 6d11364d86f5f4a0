"""What one request may cost the server, checked before the model runs.

Pixels: an encoded image's size is read from its header (`data.image_header` in Python, a few
microseconds; WebP, which that parser does not read, with `data.image_header_tf`, the parser of
the export graph) and a string input declaring more pixels than `--max_image_pixels`, or a
request whose images declare more than `--max_request_pixels` in total, is answered 400 without
decoding anything. Strings that are not images pass untouched; the model decides about them.

In flight: at most `--max_in_flight_requests` requests are admitted at once, REST and gRPC
together; one more is answered 503 with Retry-After (gRPC: RESOURCE_EXHAUSTED) at once, before
its body is read, instead of queueing without bound.
"""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import threading
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from cornernet_tf.data import image_header, image_header_tf
from cornernet_tf.serving.errors import ServingError

RETRY_AFTER_S = 1
_WEBP_PREFIX = b"RIFF"


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def _webp_size(data: tf.Tensor) -> tf.Tensor:
    return image_header_tf.image_size(data)


def image_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) declared by the header of an encoded image; None for other bytes."""
    if data.startswith(_WEBP_PREFIX):
        height, width = (int(v) for v in _webp_size(data).numpy())
        return (height, width) if height > 0 else None
    try:
        header = image_header.header_of_bytes(data)
    except (image_header.UnreadableImageError, image_header.UndecodableImageError, struct.error):
        return None
    return header.height, header.width


@dataclasses.dataclass(frozen=True)
class PixelLimits:
    """`max_image_pixels` per encoded image, `max_request_pixels` per request; 0 disables one."""

    max_image_pixels: int
    max_request_pixels: int

    def __post_init__(self) -> None:
        if self.max_image_pixels or self.max_request_pixels:  # trace before the ports open, not on a request
            _webp_size(_WEBP_PREFIX)

    def check(self, inputs: dict[str, np.ndarray]) -> None:
        """400 naming the limit if an image in the string `inputs` declares too many pixels."""
        if not (self.max_image_pixels or self.max_request_pixels):
            return
        total = 0
        for name, array in inputs.items():
            if array.dtype != object:
                continue
            for index, value in enumerate(array.ravel()):
                size = image_size(value)
                if size is None:
                    continue
                height, width = size
                if self.max_image_pixels and height * width > self.max_image_pixels:
                    raise ServingError(
                        400,
                        f"input {name!r} element {index}: an image of {width} x {height} "
                        f"pixels, over --max_image_pixels={self.max_image_pixels}",
                    )
                total += height * width
        if self.max_request_pixels and total > self.max_request_pixels:
            raise ServingError(
                400,
                f"the request's images hold {total} pixels in all, over --max_request_pixels={self.max_request_pixels}",
            )


class InFlight:
    """A non-blocking counting bound on the requests being served."""

    def __init__(self, limit: int):
        self.limit = limit
        self._count = 0
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return self._count

    def acquire(self) -> None:
        """Take a slot, or 503 with Retry-After when all are taken."""
        with self._lock:
            if self._count >= self.limit:
                raise ServingError(
                    503,
                    f"the server is busy: {self.limit} requests in flight (--max_in_flight_requests); "
                    f"retry after {RETRY_AFTER_S} s",
                    {"Retry-After": str(RETRY_AFTER_S)},
                )
            self._count += 1

    def release(self) -> None:
        with self._lock:
            self._count -= 1

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()
