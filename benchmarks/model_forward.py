"""CPU forward time of CornerNet models and of the corner-pool implementations, as ratios.

    python benchmarks/model_forward.py [--repeats 3] [--threads 0]

Prints the median wall time of a graph-mode (tf.function) forward pass of Hourglass-104 at
511x511 and of the default tiny model (configs/shapes_tiny.yaml) at 128x128, batch 1, and of
the top-left corner-pool pair top(a) + left(b) on [1, 128, 128, 128] for each implementation,
relative to the vectorized path.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Callable

import tensorflow as tf

from cornernet_tf.config import load_config
from cornernet_tf.models import build_model
from cornernet_tf.ops import compiled_available, corner_pool_pair


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of fn() after one warm-up call (which also traces/compiles)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def model_forward_seconds(config_name: str, size: int, repeats: int) -> float:
    model = build_model(load_config(config_name).model, corner_pool="vectorized")
    images = tf.random.stateless_uniform((1, size, size, 3), seed=(0, 0))
    forward = tf.function(lambda x: model(x, training=False))
    return median_seconds(lambda: [v.numpy() for v in forward(images).values()], repeats)


def corner_pool_seconds(repeats: int) -> dict[str, float]:
    a = tf.random.stateless_normal((1, 128, 128, 128), seed=(1, 2))
    b = tf.random.stateless_normal((1, 128, 128, 128), seed=(3, 4))
    paths = {
        "scan": tf.function(lambda x, y: corner_pool_pair(x, y, "top_left", "scan")),
        "vectorized": tf.function(lambda x, y: corner_pool_pair(x, y, "top_left", "vectorized")),
        "vectorized (XLA)": tf.function(
            lambda x, y: corner_pool_pair(x, y, "top_left", "vectorized"), jit_compile=True
        ),
    }
    if compiled_available():
        paths["op"] = tf.function(lambda x, y: corner_pool_pair(x, y, "top_left", "op"))
    return {name: median_seconds(lambda fn=fn: fn(a, b).numpy(), repeats) for name, fn in paths.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = TensorFlow's default)")
    args = parser.parse_args()
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    print(f"TF {tf.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"intra-op threads {args.threads or 'default'}, median of {args.repeats}")

    pools = corner_pool_seconds(args.repeats)
    print("corner pool top_left pair on [1, 128, 128, 128] float32:")
    for name, seconds in pools.items():
        print(f"  {name:<17} {seconds * 1e3:9.2f} ms   x{seconds / pools['vectorized']:.2f} of vectorized")

    tiny = model_forward_seconds("shapes_tiny", 128, args.repeats)
    hg104 = model_forward_seconds("cornernet_hg104_coco", 511, args.repeats)
    print("model forward, batch 1, float32, tf.function:")
    print(f"  shapes_tiny 128x128      {tiny * 1e3:9.1f} ms")
    print(f"  Hourglass-104 511x511    {hg104 * 1e3:9.1f} ms   x{hg104 / tiny:.0f} of shapes_tiny")


if __name__ == "__main__":
    main()
