"""The compiled corner-pooling op: lazy loader, Python API and registered gradients.

The library ``_corner_pool_ops.so`` beside this file is built from ``custom_ops/corner_pool`` at
install time (``pip install -e .``, see ``setup.py``) or by hand (``python -m custom_ops.build``).
It is loaded on first use, never at import, so importing this module costs nothing and a missing
or broken library only disables the ``"op"`` implementation of
:func:`cornernet_tf.ops.corner_pool.corner_pool` (``"auto"`` then uses the pure-TF path).

Semantics (x is NHWC ``[B, H, W, C]``; float32, float16 or bfloat16):

- ``top``: ``y[h, w] = max x[h:, w]``; ``bottom``: ``max x[:h+1, w]``;
  ``left``: ``max x[h, w:]``; ``right``: ``max x[h, :w+1]``. The forward is exact.
- Gradient (the official CornerNet rule): each output's gradient goes wholly to one argmax of
  its window, tracked from the far edge and replaced only by a strictly greater value, so on ties
  it goes to the tied element farthest from the output position. float32 results match the
  official implementation bit for bit. The "vectorized" pure-TF path follows the same rule;
  "scan" agrees on tie-free inputs and on ties may pick another maximal element (the gradient
  total is the same).

SavedModels whose graphs contain these ops load only in a process that has registered them:
call :func:`load_library` before ``tf.saved_model.load``. Exports meant for a stock TF Serving
should use the pure-TF path instead. The ops have no XLA kernel (layers using them must not be
jit-compiled) and no second-order gradient.

Environment: ``CORNERNET_TF_CORNER_POOL_LIBRARY`` points to another library file;
``CORNERNET_TF_DISABLE_COMPILED_OPS=1`` makes the op unavailable (to exercise the fallback).
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from types import ModuleType

import tensorflow as tf

from cornernet_tf.ops.names import check_corner, check_direction

LIBRARY_NAME = "_corner_pool_ops.so"
BUILD_LOG_NAME = "_corner_pool_build.log"
ENV_LIBRARY = "CORNERNET_TF_CORNER_POOL_LIBRARY"
ENV_DISABLE = "CORNERNET_TF_DISABLE_COMPILED_OPS"
DTYPES = (tf.float32, tf.float16, tf.bfloat16)

_lock = threading.Lock()
_module: ModuleType | None = None
_loaded_from: Path | None = None
_error: str | None = None
_warned = False


def library_path() -> Path:
    """The library file :func:`load_library` loads by default (``$CORNERNET_TF_CORNER_POOL_LIBRARY``
    or ``_corner_pool_ops.so`` beside this module)."""
    override = os.environ.get(ENV_LIBRARY)
    return Path(override) if override else Path(__file__).resolve().parent / LIBRARY_NAME


def loaded_library() -> Path | None:
    """The file the op library was loaded from in this process, or None if not loaded (yet)."""
    return _loaded_from


def _build_log_summary(directory: Path) -> str:
    log = directory / BUILD_LOG_NAME
    try:
        lines = [line.strip() for line in log.read_text().splitlines() if line.strip()]
    except OSError:
        return (
            f"no build log ({log} is missing): the op was never built here; build it with "
            "`pip install -e .` or `python -m custom_ops.build`"
        )
    failed = [line for line in lines if line.startswith(("FAILED", "corner-pool op not built"))]
    if failed:
        return f"the build failed ({log}): {failed[-1]}"
    return f"the build log {log} ends with: {lines[-1] if lines else '(empty)'}"


def load_library(path: str | os.PathLike | None = None) -> ModuleType:
    """Load the op library once per process and return its module of generated op wrappers.

    ``path`` defaults to :func:`library_path`. Call this before ``tf.saved_model.load`` on a model
    whose graph uses ``CornerPool``/``FusedCornerPool``. A failed load is remembered (later calls
    without ``path`` fail fast); an explicit ``path`` retries. Raises ``RuntimeError`` with the
    reason (also given by :func:`unavailable_reason`).
    """
    global _module, _loaded_from, _error
    with _lock:
        target = Path(path).resolve() if path is not None else None
        if _module is not None:
            if target is None or target == _loaded_from:
                return _module
            raise RuntimeError(
                f"corner-pool op library already loaded from {_loaded_from}; a second copy ({target}) "
                "cannot register the same ops in this process"
            )
        if _error is not None and target is None:
            raise RuntimeError(_error)
        if os.environ.get(ENV_DISABLE, "").strip() not in ("", "0"):
            _error = f"corner-pool op disabled by {ENV_DISABLE}={os.environ[ENV_DISABLE]}"
            raise RuntimeError(_error)
        target = target or library_path()
        if not target.is_file():
            _error = f"corner-pool op library {target} not found; {_build_log_summary(target.parent)}"
            raise RuntimeError(_error)
        try:
            module = tf.load_op_library(str(target))
        except Exception as err:
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            _error = (
                f"corner-pool op library {target} does not load ({message}); rebuild it with "
                "`pip install -e .` or `python -m custom_ops.build` against this TensorFlow "
                f"({tf.__version__})"
            )
            raise RuntimeError(_error) from err
        _module, _loaded_from, _error = module, target, None
        return module


def is_available() -> bool:
    """True when the op library loads. The first failure warns once, with the reason."""
    global _warned
    try:
        load_library()
        return True
    except RuntimeError as err:
        if not _warned:
            _warned = True
            warnings.warn(
                f"cornernet_tf: the compiled corner-pool op is unavailable, the pure-TF corner pool "
                f"is used instead (slower): {err}",
                RuntimeWarning,
                stacklevel=2,
            )
        return False


def unavailable_reason() -> str:
    """Why the op cannot be used ("" when it can): the load error and what the build log says."""
    if _module is not None:
        return ""
    try:
        load_library()
        return ""
    except RuntimeError as err:
        return str(err)


def _check_tensor(x, op: str, name: str, dtype=None) -> tf.Tensor:
    x = tf.convert_to_tensor(x, dtype=dtype)
    if x.dtype not in DTYPES:
        raise ValueError(f"{op}: input {name!r} has dtype {x.dtype.name}; supported: float32, float16, bfloat16")
    if x.shape.rank is not None and x.shape.rank != 4:
        raise ValueError(f"{op}: input {name!r} must be a rank-4 NHWC tensor [B, H, W, C], got shape {x.shape}")
    return x


def corner_pool(x: tf.Tensor, direction: str) -> tf.Tensor:
    """One directional pool of x ``[B, H, W, C]`` with the compiled op; returns ``[B, H, W, C]``.

    direction: "top" | "bottom" | "left" | "right" (see the module docstring). Differentiable.
    Raises ValueError on a bad direction, dtype or rank, RuntimeError if the library is unavailable.
    """
    check_direction(direction)
    x = _check_tensor(x, "corner_pool", "x")
    return load_library().corner_pool(x, direction=direction)


def fused_corner_pool(a: tf.Tensor, b: tf.Tensor, corner: str) -> tf.Tensor:
    """``top(a) + left(b)`` (corner "top_left") or ``bottom(a) + right(b)`` ("bottom_right").

    a, b: ``[B, H, W, C]`` of one shape and dtype; returns ``[B, H, W, C]``. One kernel call: the
    second pool adds into the first's output, with no intermediate tensors. Differentiable in a, b.
    """
    check_corner(corner, "fused_corner_pool")
    a = _check_tensor(a, "fused_corner_pool", "a")
    b = _check_tensor(b, "fused_corner_pool", "b", dtype=a.dtype)
    return load_library().fused_corner_pool(a, b, corner=corner)


def corner_pool_grad(x: tf.Tensor, dy: tf.Tensor, direction: str) -> tf.Tensor:
    """The input gradient of :func:`corner_pool` for output gradient dy (official tie rule)."""
    check_direction(direction, "corner_pool_grad")
    x = _check_tensor(x, "corner_pool_grad", "x")
    dy = _check_tensor(dy, "corner_pool_grad", "dy", dtype=x.dtype)
    return load_library().corner_pool_grad(x, dy, direction=direction)


def fused_corner_pool_grad(a: tf.Tensor, b: tf.Tensor, dy: tf.Tensor, corner: str) -> tuple[tf.Tensor, tf.Tensor]:
    """The gradients ``(da, db)`` of :func:`fused_corner_pool` for output gradient dy.

    Args:
        a: ``[B, H, W, C]`` first input of the fused pool (float32, float16 or bfloat16).
        b: ``[B, H, W, C]`` second input, of a's shape and dtype.
        dy: ``[B, H, W, C]`` gradient of the fused pool's output, of a's dtype.
        corner: "top_left" | "bottom_right".

    Returns:
        ``(da, db)``, each ``[B, H, W, C]`` of a's dtype.

    Raises:
        ValueError: A bad corner, dtype or rank.
        RuntimeError: The op library is unavailable.
    """
    check_corner(corner, "fused_corner_pool_grad")
    a = _check_tensor(a, "fused_corner_pool_grad", "a")
    b = _check_tensor(b, "fused_corner_pool_grad", "b", dtype=a.dtype)
    dy = _check_tensor(dy, "fused_corner_pool_grad", "dy", dtype=a.dtype)
    da, db = load_library().fused_corner_pool_grad(a, b, dy, corner=corner)
    return da, db


def _string_attr(op, name: str) -> str:
    value = op.get_attr(name)
    return value.decode() if isinstance(value, bytes) else value


def _register_gradient(op_type: str):
    """tf.RegisterGradient that tolerates a re-import of this module (the registry is global)."""

    def decorator(fn):
        try:
            tf.RegisterGradient(op_type)(fn)
        except KeyError:  # already registered by an earlier import of this module
            pass
        return fn

    return decorator


@_register_gradient("CornerPool")
def _corner_pool_gradient(op, dy):
    return load_library().corner_pool_grad(op.inputs[0], dy, direction=_string_attr(op, "direction"))


@_register_gradient("FusedCornerPool")
def _fused_corner_pool_gradient(op, dy):
    da, db = load_library().fused_corner_pool_grad(op.inputs[0], op.inputs[1], dy, corner=_string_attr(op, "corner"))
    return [da, db]
