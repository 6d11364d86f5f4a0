"""What a write to a full disk (or a file-size limit, or a lost permission) raises, and its reason
in a few words, for the one-line errors of the commands that write files.

TensorFlow's file writers turn the operating system's error into an `OpError`: ENOSPC into
ResourceExhausted, EFBIG into OutOfRange, EACCES into PermissionDenied; Python's own writes
raise OSError.
"""

from __future__ import annotations

import tensorflow as tf

WRITE_ERRORS = (
    OSError,
    tf.errors.ResourceExhaustedError,
    tf.errors.OutOfRangeError,
    tf.errors.PermissionDeniedError,
    tf.errors.DataLossError,
)


def reason(err: BaseException) -> str:
    """The cause at the end of an error's message ("No space left on device"), on one line."""
    message = getattr(err, "message", None) or getattr(err, "strerror", None) or str(err)
    return " ".join(str(message).split()).split("; ")[-1][:200]
