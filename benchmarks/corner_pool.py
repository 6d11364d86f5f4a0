"""CPU benchmark of the corner pool: compiled op vs pure-TF "vectorized" and "scan" vs torch.cummax.

Times forward and forward+backward of one directional pool (averaged over the four directions)
and of a top-left corner pair (top(a) + left(b), what a CornerNet corner module computes), on
[B, H, W, C] float32, and prints the ratios the project tracks:

    scan / op       target >= 5   (the compiled op against the readable reference)
    torch / op      target >= 1   (the op at least as fast as torch.cummax, the usual PyTorch way)
    vectorized / op (the pure-TF fallback's cost)

Run:  python benchmarks/corner_pool.py [--batch 2] [--size 128] [--channels 128] [--threads 2]

The torch peer runs when torch is importable (``pip install torch==2.13.0``), on NCHW tensors
(PyTorch's layout): ``flip -> cummax -> flip`` for top/left, ``cummax`` for bottom/right, autograd
for the backward, with the same number of threads. Results go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DIRECTIONS = ("top", "bottom", "left", "right")


class Timing:
    """Median and best of the samples, in milliseconds; adds up (for averages over directions)."""

    def __init__(self, median: float = 0.0, best: float = 0.0):
        self.median, self.best = median, best

    def __add__(self, other: Timing) -> Timing:
        return Timing(self.median + other.median, self.best + other.best)

    def __truediv__(self, k: float) -> Timing:
        return Timing(self.median / k, self.best / k)

    def __str__(self) -> str:
        return f"{self.median:.2f} ({self.best:.2f})"


def _time(fn, repeats: int, warmup: int = 2) -> Timing:
    """Wall time of fn() (which must block until its result is ready)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return Timing(statistics.median(samples), min(samples))


def tf_cases(shape, implementations, repeats):
    import cornernet_tf  # noqa: F401 (the package first: its CPU runtime set-up)

    # isort: split
    import tensorflow as tf

    cp = importlib.import_module("cornernet_tf.ops.corner_pool")  # the module (the package exports the function)
    rng = tf.random.Generator.from_seed(0)
    x = rng.normal(shape)
    b = rng.normal(shape)
    dy = rng.normal(shape)
    results = {}
    for impl in implementations:
        # Each graph returns one element of its result: that forces the whole computation
        # without timing a 16 MB copy to NumPy.
        def forward(direction, impl=impl):
            return cp.corner_pool(x, direction, implementation=impl)[0, 0, 0, 0]

        def forward_backward(direction, impl=impl):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = cp.corner_pool(x, direction, implementation=impl)
            # y is returned too: the op's gradient does not need y, and TF would prune the forward
            return y[0, 0, 0, 0] + tape.gradient(y, x, output_gradients=dy)[0, 0, 0, 0]

        def pair(impl=impl):
            with tf.GradientTape() as tape:
                tape.watch([x, b])
                y = cp.corner_pool_pair(x, b, "top_left", implementation=impl)
            da, db = tape.gradient(y, [x, b], output_gradients=dy)
            return y[0, 0, 0, 0] + da[0, 0, 0, 0] + db[0, 0, 0, 0]

        row = {"forward": Timing(), "forward+backward": Timing()}
        for direction in DIRECTIONS:
            fwd = tf.function(lambda d=direction, f=forward: f(d))
            fwd_bwd = tf.function(lambda d=direction, f=forward_backward: f(d))
            row["forward"] += _time(lambda: fwd().numpy(), repeats) / len(DIRECTIONS)
            row["forward+backward"] += _time(lambda: fwd_bwd().numpy(), repeats) / len(DIRECTIONS)
        pair_fn = tf.function(pair)
        row["top-left pair fwd+bwd"] = _time(lambda: pair_fn().numpy(), repeats)
        results[impl] = row
    return results


def torch_case(shape, threads, repeats):
    try:
        import torch
    except ImportError:
        return None, "torch not importable (pip install torch==2.13.0)"
    torch.set_num_threads(threads)
    n, h, w, c = shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=gen)
    b = torch.randn(n, c, h, w, generator=gen)
    dy = torch.randn(n, c, h, w, generator=gen)
    dims = {"top": (2, True), "bottom": (2, False), "left": (3, True), "right": (3, False)}

    def pool(t, direction):
        dim, flip = dims[direction]
        if flip:
            return torch.flip(torch.cummax(torch.flip(t, [dim]), dim)[0], [dim])
        return torch.cummax(t, dim)[0]

    row = {"forward": Timing(), "forward+backward": Timing()}
    for direction in DIRECTIONS:

        def forward(d=direction):
            with torch.no_grad():
                return pool(x, d)

        def forward_backward(d=direction):
            xr = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(pool(xr, d), xr, dy)
            return grad

        row["forward"] += _time(forward, repeats) / len(DIRECTIONS)
        row["forward+backward"] += _time(forward_backward, repeats) / len(DIRECTIONS)

    def pair():
        xr = x.detach().requires_grad_(True)
        br = b.detach().requires_grad_(True)
        return torch.autograd.grad(pool(xr, "top") + pool(br, "left"), [xr, br], dy)

    row["top-left pair fwd+bwd"] = _time(pair, repeats)
    return row, f"torch {torch.__version__}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=128, help="H = W")
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads (TF and torch)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--skip-scan", action="store_true", help="scan is slow; skip it for quick runs")
    args = parser.parse_args(argv)

    import cornernet_tf  # noqa: F401 (first: the CPU runtime set-up a user of the package gets)

    # isort: split
    import tensorflow as tf

    from cornernet_tf.utils import runtime

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from cornernet_tf.ops import compiled

    if not compiled.is_available():
        print(f"compiled op unavailable: {compiled.unavailable_reason()}")
        return 1
    shape = (args.batch, args.size, args.size, args.channels)
    impls = ["op", "vectorized"] + ([] if args.skip_scan else ["scan"])
    print(
        f"shape [B, H, W, C] = {list(shape)} float32, {args.threads} threads, "
        f"{args.repeats} repeats, TF {tf.__version__}, {runtime.cpu_allocator()} CPU allocator, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    results = tf_cases(shape, impls, args.repeats)
    torch_row, torch_note = torch_case(shape, args.threads, args.repeats)
    if torch_row is not None:
        results["torch.cummax"] = torch_row
    print(f"peer: {torch_note}")

    columns = ["forward", "forward+backward", "top-left pair fwd+bwd"]
    print(
        "times in ms: median (best) of the repeats; forward and forward+backward are averaged over the four directions"
    )
    print(f"{'implementation':<16}" + "".join(f"{c:>26}" for c in columns))
    for name, row in results.items():
        print(f"{name:<16}" + "".join(f"{str(row[c]):>26}" for c in columns))
    op = results["op"]
    print("ratios (time / op time, higher = op faster), median (best):")
    for name, row in results.items():
        if name == "op":
            continue
        ratios = "  ".join(
            f"{c}: {row[c].median / op[c].median:.1f}x ({row[c].best / op[c].best:.1f}x)" for c in columns
        )
        print(f"  {name:<14} {ratios}")
    gbytes = 2 * 4 * shape[0] * shape[1] * shape[2] * shape[3] / 1e9
    print(
        f"op forward effective bandwidth: {gbytes / (op['forward'].median / 1e3):.1f} GB/s median, "
        f"{gbytes / (op['forward'].best / 1e3):.1f} GB/s best (read x + write y)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
