"""Directional corner pooling (CornerNet), NHWC, with one contract and three implementations.

For an input x [B, H, W, C] the four pools are cumulative maxima along one spatial axis:

| direction | output at (h, w)           | scan              |
| --------- | -------------------------- | ----------------- |
| top       | max x[h:, w]  (and below)  | along H, bottom up |
| left      | max x[h, w:]  (and right)  | along W, right to left |
| bottom    | max x[:h+1, w] (and above) | along H, top down |
| right     | max x[h, :w+1] (and left)  | along W, left to right |

Implementations:
- "scan": `tf.scan` cumulative max; the readable reference (not XLA-compatible with gradients).
- "vectorized": log-step shifted maxima (shifts 1, 2, 4, ...), pure TF, XLA-compatible and
  exportable to a stock TF Serving; its gradient is a log-step segmented sum.
- "op": the compiled kernel of `cornernet_tf.ops.compiled` (fastest; not XLA-compatible).
- "auto": "op" when the compiled library is loadable, else "vectorized".

The forward pass is exact (a max never rounds), so all implementations agree bitwise. Gradients
go to a maximal element of each window: for "op" and "vectorized" the one the original picks
(on ties, the farthest from the output); "scan" may pick another tied one, conserving the total.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import tensorflow as tf

from cornernet_tf.ops.names import CORNERS, DIRECTIONS, check_choice, check_corner, check_direction  # noqa: F401 (public here)

IMPLEMENTATIONS = ("auto", "op", "vectorized", "scan")

# direction -> (axis of [B, H, W, C], True when the window extends towards higher indices)
_AXIS_AND_REVERSE = {
    "top": (1, True),
    "left": (2, True),
    "bottom": (1, False),
    "right": (2, False),
}
# corner -> (direction applied to the first input, direction applied to the second)
_CORNER_DIRECTIONS = {"top_left": ("top", "left"), "bottom_right": ("bottom", "right")}


def _check_input(x: tf.Tensor, name: str) -> tf.Tensor:
    x = tf.convert_to_tensor(x)
    if x.shape.rank != 4:
        raise ValueError(f"{name}: expected a rank-4 NHWC tensor [B, H, W, C], got shape {x.shape}")
    if not x.dtype.is_floating:
        raise ValueError(f"{name}: expected a floating-point tensor, got {x.dtype.name}")
    return x


def _compiled_module():
    """The compiled-op module, or the reason it cannot be used (imported lazily, never at load)."""
    try:
        from cornernet_tf.ops import compiled
    except ImportError as err:
        return None, f"cornernet_tf.ops.compiled cannot be imported ({err})"
    if not compiled.is_available():
        return None, compiled.unavailable_reason()
    return compiled, ""


def compiled_available() -> bool:
    """True when the compiled corner-pool op can be used ("auto" then picks it)."""
    return _compiled_module()[0] is not None


def resolve_implementation(implementation: str) -> str:
    """Map "auto" to "op" or "vectorized"; validate the others. Raises ValueError if unknown."""
    check_choice("corner_pool", "implementation", implementation, IMPLEMENTATIONS)
    if implementation == "auto":
        return "op" if compiled_available() else "vectorized"
    return implementation


def _require_compiled():
    module, reason = _compiled_module()
    if module is None:
        raise RuntimeError(
            f"corner_pool implementation 'op' is unavailable: {reason}. "
            "Rebuild it with `pip install -e .`, or use implementation='vectorized'."
        )
    return module


def _compiled_corner_pool(x: tf.Tensor, direction: str) -> tf.Tensor:
    return _require_compiled().corner_pool(x, direction)


def _compiled_fused_corner_pool(a: tf.Tensor, b: tf.Tensor, corner: str) -> tf.Tensor:
    return _require_compiled().fused_corner_pool(a, b, corner)


def _scan_pool(x: tf.Tensor, direction: str) -> tf.Tensor:
    """Cumulative max with tf.scan over the pooled axis moved to the front."""
    axis, reverse = _AXIS_AND_REVERSE[direction]
    perm = [axis] + [d for d in range(4) if d != axis]
    inverse = [perm.index(d) for d in range(4)]
    elems = tf.transpose(x, perm)
    if reverse:
        elems = tf.reverse(elems, axis=[0])
    pooled = tf.scan(tf.maximum, elems)
    if reverse:
        pooled = tf.reverse(pooled, axis=[0])
    return tf.transpose(pooled, inverse)


def _shift(y: tf.Tensor, shift, axis: int, reverse: bool, fill) -> tf.Tensor:
    """y moved by `shift` (< its length) along `axis`, towards index 0 when `reverse`; the
    vacated cells hold `fill`."""
    keep = [slice(None)] * 4
    pad = [[0, 0] for _ in range(4)]
    if reverse:  # out[i] = y[i + shift]
        keep[axis] = slice(shift, None)
        pad[axis] = [0, shift]
    else:  # out[i] = y[i - shift]
        keep[axis] = slice(None, -shift)
        pad[axis] = [shift, 0]
    shifted = tf.pad(y[tuple(keep)], pad, constant_values=tf.constant(fill, dtype=y.dtype))
    return tf.ensure_shape(shifted, y.shape)


def _doubling(step: Callable, state: tuple, length) -> tuple:
    """state = step(state, shift) for shift = 1, 2, 4, ... < length: unrolled when `length` is a
    Python int (an XLA-friendly chain), else a `tf.while_loop` (dynamic sizes in exports)."""
    if isinstance(length, int):
        shift = 1
        while shift < length:
            state = step(state, shift)
            shift *= 2
        return state

    def body(*loop_vars):
        *state, shift = loop_vars
        return (*step(tuple(state), shift), shift * 2)

    *state, _ = tf.while_loop(lambda *loop_vars: loop_vars[-1] < length, body, (*state, tf.constant(1)))
    return tuple(state)


def _argmax_gradient(x: tf.Tensor, y: tf.Tensor, dy: tf.Tensor, axis: int, reverse: bool, length) -> tf.Tensor:
    """The input gradient of y = pool(x): each output's gradient goes wholly to one maximum of
    its window, the one farthest from the output (the original's tie rule).

    Those maxima are the "records": elements greater than everything beyond them in the
    scan's direction (x[j] > y[j + 1] for top/left). Output i's record is the nearest record
    towards the window's far end, so a record collects the output gradients from itself back
    to the previous record: a segmented sum, done in log2(length) shifted adds.
    """
    reverse_scan = not reverse  # the sums run against the pooling direction
    records = x > _shift(y, 1, axis, reverse, -math.inf)
    starts = _shift(records, 1, axis, reverse_scan, True)  # a segment begins after each record
    sums = tf.cast(dy, tf.float32)  # half-precision gradients are summed in float32

    def step(state, shift):
        sums, starts = state
        earlier = _shift(sums, shift, axis, reverse_scan, 0.0)
        sums = tf.where(starts, sums, sums + earlier)
        return sums, starts | _shift(starts, shift, axis, reverse_scan, False)

    sums, _ = _doubling(step, (sums, starts), length)
    return tf.cast(tf.where(records, sums, 0.0), dy.dtype)


def _vectorized_pool(x: tf.Tensor, direction: str) -> tf.Tensor:
    """log2(N) steps of y = max(y, y shifted by 1, 2, 4, ...): y[i] then covers 2**k cells.

    The gradient (`_argmax_gradient`) follows the original's tie rule in as many steps; the
    automatic gradient of the chain of maxima took about 50 passes over the tensor."""
    axis, reverse = _AXIS_AND_REVERSE[direction]
    length = x.shape[axis] if x.shape[axis] is not None else tf.shape(x)[axis]

    def step(state, shift):
        (y,) = state
        return (tf.maximum(y, _shift(y, shift, axis, reverse, -math.inf)),)

    @tf.custom_gradient
    def pool(x: tf.Tensor):
        (y,) = _doubling(step, (x,), length)
        return y, lambda dy: _argmax_gradient(x, y, dy, axis, reverse, length)

    return pool(x)


_IMPLEMENTATIONS: dict[str, Callable[[tf.Tensor, str], tf.Tensor]] = {
    "scan": _scan_pool,
    "vectorized": _vectorized_pool,
    "op": _compiled_corner_pool,
}


def corner_pool(x: tf.Tensor, direction: str, implementation: str = "auto") -> tf.Tensor:
    """Directional cumulative max of x [B, H, W, C] (float); returns [B, H, W, C].

    direction: "top" (max of the position and all below), "left" (and all to its right),
    "bottom" (and all above), "right" (and all to its left).
    implementation: "auto" | "op" | "vectorized" | "scan" (see the module docstring).
    Raises ValueError for an unknown direction/implementation or a non-rank-4 input, and
    RuntimeError (with the reason) when "op" is asked for but the library is unavailable.
    """
    check_direction(direction)
    resolved = resolve_implementation(implementation)
    x = _check_input(x, "corner_pool")
    return _IMPLEMENTATIONS[resolved](x, direction)


def corner_pool_pair(a: tf.Tensor, b: tf.Tensor, corner: str, implementation: str = "auto") -> tf.Tensor:
    """The sum a corner-pool module needs: top(a) + left(b) or bottom(a) + right(b).

    The "op" implementation uses the compiled fused kernel (one pass, no intermediate tensors).

    Args:
        a: [B, H, W, C] float, pooled top (or bottom).
        b: [B, H, W, C] float of the same shape, pooled left (or right).
        corner: "top_left" | "bottom_right".
        implementation: "auto" | "op" | "vectorized" | "scan" (see the module docstring).

    Returns:
        [B, H, W, C] of the inputs' dtype.

    Raises:
        ValueError: An unknown corner or implementation, or an input that is not a rank-4
            floating-point tensor.
        RuntimeError: "op" is asked for but the compiled library is unavailable (with the reason).
    """
    check_corner(corner, "corner_pool_pair")
    resolved = resolve_implementation(implementation)
    a = _check_input(a, "corner_pool_pair")
    b = _check_input(b, "corner_pool_pair")
    if resolved == "op":
        return _compiled_fused_corner_pool(a, b, corner)
    first, second = _CORNER_DIRECTIONS[corner]
    pool = _IMPLEMENTATIONS[resolved]
    return pool(a, first) + pool(b, second)
