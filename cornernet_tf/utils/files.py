"""Atomic file writes: a reader of the target sees the old file or the complete new one, never a part.

The new content goes to a temporary sibling (the same folder, so the final rename stays on one
file system and is atomic) named `.<name>.<random>.tmp<suffix>`: hidden, and ending in ".tmp"
unless a writer needs a suffix, so folder listings that skip hidden files and patterns that match
the target's extension pass it by. It replaces the target once the writer is done and is removed
if the writer fails, Ctrl-C included. Standard library only: config.py imports it before TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[pathlib.Path]:
    """Yield a temporary sibling of `path` for the caller to write; it replaces `path` when the
    block ends normally and is removed when the block raises (any BaseException).

    `suffix` ends the temporary name, for writers that pick the format by the name (Keras needs
    ".weights.h5", OpenCV's video writer the container's extension). The random part keeps
    concurrent writers of one target apart. Parent folders are created. The block must create the
    file (else the rename raises FileNotFoundError).
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}")
    try:
        yield temp
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)  # only still there when the block or the rename failed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
    """Write `data` to `path` atomically (see the module docstring); returns the path."""
    with atomic_path(path) as temp:
        temp.write_bytes(data)
    return pathlib.Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Write `text` (UTF-8) to `path` atomically (see the module docstring); returns the path."""
    with atomic_path(path) as temp:
        temp.write_text(text, encoding="utf-8")
    return pathlib.Path(path)
