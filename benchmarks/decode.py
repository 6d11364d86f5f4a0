"""Time `decode_corners` at the CornerNet test setting and compare it with one forward pass.

    python benchmarks/decode.py                      # maps [1, 128, 128, 80], k = 100, CPU
    python benchmarks/decode.py --no-model           # decode only
    python benchmarks/decode.py --device gpu

Prints the median decode time (plain graph and XLA), the soft-NMS time of a flip test, and the
decode's ratio to the forward time of the Hourglass-104 model (`cornernet_tf.tasks.model.build_model`,
511 x 511 input, random weights: the timing does not depend on them). Results go to
docs/benchmarks.md, section "Decode (CPU)".
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

import cornernet_tf  # noqa: F401 (before TensorFlow: the CPU runtime set-up a user of the package gets)

# isort: split
import tensorflow as tf

from cornernet_tf.detection import decode


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of fn() (its result fetched to host, so device work is included)."""
    for _ in range(warmup):
        tf.nest.map_structure(lambda t: t.numpy(), fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def random_outputs(size: int, classes: int, seed: int = 0) -> dict[str, tf.Tensor]:
    """Head outputs shaped like the model's, with logits around sigmoid^-1(0.002)."""
    rng = np.random.default_rng(seed)
    out = {}
    for corner in ("tl", "br"):
        out[f"{corner}_heatmap"] = rng.normal(-6.0, 1.5, (1, size, size, classes))
        out[f"{corner}_embedding"] = rng.normal(0.0, 1.0, (1, size, size, 1))
        out[f"{corner}_offset"] = rng.uniform(0.0, 1.0, (1, size, size, 2))
    return {key: tf.constant(value, tf.float32) for key, value in out.items()}


def random_detections(n: int, classes: int, seed: int = 0) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """n boxes [1, n, 4] of 5-200 px in a 500 px image, uniform scores, random classes."""
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, 500, (1, n, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(5, 200, (1, n, 2))], axis=-1)
    return (
        tf.constant(boxes, tf.float32),
        tf.constant(rng.uniform(0, 1, (1, n)), tf.float32),
        tf.constant(rng.integers(0, classes, (1, n)), tf.int32),
    )


def forward_seconds(input_size: int, repeats: int) -> float | None:
    """Median forward time of the Hourglass-104 CornerNet, or None when the model is unavailable."""
    try:
        from cornernet_tf.config import ModelConfig
        from cornernet_tf.tasks.model import build_model
    except ImportError as err:
        print(f"model: not available ({err}); reporting the decode time only")
        return None
    model = build_model(ModelConfig())
    images = tf.random.uniform([1, input_size, input_size, 3])
    forward = tf.function(lambda x: model(x, training=False))
    print(f"model: Hourglass-104 CornerNet, {model.count_params():,} parameters, input {input_size}")
    return median_seconds(lambda: forward(images), repeats, warmup=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="output map side (511 input -> 128)")
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--forward-repeats", type=int, default=3)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--no-model", action="store_true", help="skip the forward-pass comparison")
    args = parser.parse_args()
    if args.device == "cpu":
        tf.config.set_visible_devices([], "GPU")

    outputs = random_outputs(args.size, args.classes)
    print(f"device: {args.device}, maps [1, {args.size}, {args.size}, {args.classes}], k = {args.k}")
    timings = {}
    for jit in (False, True):
        run = tf.function(lambda o: decode.decode_corners(o, k=args.k), jit_compile=jit)
        timings[jit] = median_seconds(lambda: run(outputs), args.repeats)
        print(f"decode_corners, {'XLA' if jit else 'graph'}: {timings[jit] * 1e3:.2f} ms")
    print(f"XLA / graph: {timings[True] / timings[False]:.2f}")

    # The flip test merges 2 x 1000 detections before soft-NMS keeps 100.
    boxes, scores, classes = random_detections(2000, args.classes)
    for jit in (False, True):
        run = tf.function(decode.soft_nms, jit_compile=jit)
        seconds = median_seconds(lambda: run(boxes, scores, classes), args.repeats)
        print(f"soft_nms, 2000 boxes -> 100, {'XLA' if jit else 'graph'}: {seconds * 1e3:.2f} ms")

    if args.no_model:
        return
    forward = forward_seconds(4 * args.size - 1, args.forward_repeats)
    if forward is not None:
        print(f"forward (graph): {forward * 1e3:.0f} ms")
        print(f"decode (graph) / forward: {timings[False] / forward:.4f}")


if __name__ == "__main__":
    main()
