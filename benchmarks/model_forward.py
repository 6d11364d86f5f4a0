"""CPU forward time of CornerNet models and of the corner-pool implementations, as ratios.

    python benchmarks/model_forward.py [--repeats 3] [--threads 0]
    python benchmarks/model_forward.py --bfloat16 [--rounds 2]   # Hourglass-104 in three arithmetics

Prints the median wall time of a graph-mode (tf.function) forward pass of Hourglass-104
(configs/cornernet_hg104_coco.yaml) and of CornerNet-Squeeze (configs/squeeze_coco.yaml) at
511x511, of CornerNet-Saccade's Hourglass-54 (configs/saccade_coco.yaml, attention heads included)
at its 255x255 crop size, of the default tiny model (configs/shapes_tiny.yaml) at 128x128, all
batch 1, and of the top-left corner-pool pair top(a) + left(b) on [1, 128, 128, 128] for each
implementation, relative to the vectorized path. The CornerNet-Lite models are timed in the same
run as Hourglass-104 because their ratios (the CornerNet-Lite claims) are only meaningful between
same-load measurements.

`--bfloat16` instead times Hourglass-104's forward at 511 x 511 three ways, interleaved round by
round: float32; built as the `--precision bfloat16` export builds it (Keras' mixed_bfloat16
policy: float32 weights, bfloat16 convolutions); and float32 rewritten by TensorFlow's oneDNN
auto-mixed-precision pass (`auto_mixed_precision_onednn_bfloat16`, a setting of the loading
process), each as a ratio to float32 of the same round.

FLOPs are counted from the graph, not analytically: the sum over the ops of the forward's
concrete-function graph (static input shape) of TensorFlow's registered "flops" statistics,
the total `tf.compat.v1.profiler`'s float_operation view reports (checked equal for Squeeze),
summed here so that the convolutions' share can be printed too. Convolutions (Conv2D,
depthwise, transposed = Conv2DBackpropInput) count 2 x multiply-adds; element-wise ops with a
statistic (inference batch norm's Mul/Add, bias and residual adds, the corner pools' maxima)
one per output element; ops without one (ReLU, concat, pads) count 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Callable

import cornernet_tf  # noqa: F401 (before TensorFlow: the CPU runtime set-up a user of the package gets)

# isort: split
import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops

from cornernet_tf.config import load_config
from cornernet_tf.ops import compiled_available, corner_pool_pair
from cornernet_tf.tasks.model import build_model


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of fn() after one warm-up call (which also traces/compiles)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


CONV_OPS = ("Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput")


@dataclasses.dataclass
class Forward:
    """One model's timed forward pass and the float ops of its graph."""

    seconds: float
    flops: int
    conv_flops: int


def graph_flops(graph: tf.Graph) -> tuple[int, int]:
    """(all counted float ops, those of the convolutions) of a graph with static shapes: the
    per-op "flops" statistics TensorFlow registers, which `tf.compat.v1.profiler` sums."""
    total = conv = 0
    for op in graph.get_operations():
        try:
            flops = int(tf_ops.get_stats_for_node_def(graph, op.node_def, "flops").value or 0)
        except ValueError:  # an op without a registered statistic or with an unknown shape
            continue
        total += flops
        conv += flops if op.type in CONV_OPS else 0
    return total, conv


def model_forward(config_name: str, size: int, repeats: int) -> Forward:
    """Median forward time of a random-weight model at size x size, batch 1, and its FLOPs."""
    model = build_model(load_config(config_name).model, corner_pool="vectorized")
    images = tf.random.stateless_uniform((1, size, size, 3), seed=(0, 0))
    forward = tf.function(lambda x: model(x, training=False))
    flops, conv_flops = graph_flops(forward.get_concrete_function(tf.TensorSpec(images.shape)).graph)
    seconds = median_seconds(lambda: [v.numpy() for v in forward(images).values()], repeats)
    return Forward(seconds, flops, conv_flops)


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


def bfloat16_forwards(rounds: int, repeats: int) -> None:
    """Hourglass-104 forward in float32, mixed_bfloat16 and the oneDNN bfloat16 rewrite, interleaved."""
    from cornernet_tf.tasks.export import export_network

    config = load_config("cornernet_hg104_coco")
    config = dataclasses.replace(config, export=dataclasses.replace(config.export, corner_pool="vectorized"))
    images = tf.random.stateless_uniform((1, 511, 511, 3), seed=(0, 0))
    float_model = export_network(config)
    bf16_export = dataclasses.replace(config.export, precision="bfloat16")
    bf16_model = export_network(dataclasses.replace(config, export=bf16_export))
    bf16_model.set_weights(float_model.get_weights())

    def timed(model: object, rewrite: bool) -> float:
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": rewrite})
        forward = tf.function(lambda x: model(x, training=False))  # traced anew: the rewrite applies or not
        return median_seconds(lambda: [v.numpy() for v in forward(images).values()], repeats)

    for round_number in range(1, rounds + 1):
        times = {
            "float32": timed(float_model, False),
            "mixed_bfloat16 (the bfloat16 export)": timed(bf16_model, False),
            "float32 + oneDNN bfloat16 rewrite": timed(float_model, True),
        }
        for name, seconds in times.items():
            print(f"round {round_number}: {name:<38} {seconds:7.3f} s   x{seconds / times['float32']:.2f} of float32")
    tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": False})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bfloat16", action="store_true", help="time Hourglass-104 in float32 and bfloat16 only")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of --bfloat16")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = TensorFlow's default)")
    args = parser.parse_args()
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    print(
        f"TF {tf.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"intra-op threads {args.threads or 'default'}, median of {args.repeats}"
    )

    if args.bfloat16:
        bfloat16_forwards(args.rounds, args.repeats)
        return
    pools = corner_pool_seconds(args.repeats)
    print("corner pool top_left pair on [1, 128, 128, 128] float32:")
    for name, seconds in pools.items():
        print(f"  {name:<17} {seconds * 1e3:9.2f} ms   x{seconds / pools['vectorized']:.2f} of vectorized")

    tiny = model_forward("shapes_tiny", 128, args.repeats)
    hg104 = model_forward("cornernet_hg104_coco", 511, args.repeats)
    squeeze = model_forward("squeeze_coco", 511, args.repeats)
    saccade = model_forward("saccade_coco", 255, args.repeats)
    print("model forward, batch 1, float32, tf.function (GFLOPs: graph float ops, of which convolutions):")
    rows = {
        "shapes_tiny 128x128": tiny,
        "Hourglass-104 511x511": hg104,
        "Squeeze 511x511": squeeze,
        "Saccade 255x255": saccade,
    }
    for name, run in rows.items():
        print(
            f"  {name:<22} {run.seconds * 1e3:9.1f} ms  {run.flops / 1e9:8.2f} GFLOPs "
            f"({run.conv_flops / 1e9:.2f} conv)   x{run.seconds / tiny.seconds:.0f} of shapes_tiny"
        )
    print(
        f"  Hourglass-104 / Squeeze: time x{hg104.seconds / squeeze.seconds:.2f}, "
        f"FLOPs x{hg104.flops / squeeze.flops:.2f}"
    )
    print(
        f"  Hourglass-104 511x511 / one Saccade 255x255 pass: time x{hg104.seconds / saccade.seconds:.2f}, "
        f"FLOPs x{hg104.flops / saccade.flops:.2f}"
    )


if __name__ == "__main__":
    main()
