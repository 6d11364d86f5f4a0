"""Peak resident memory of the ONNX conversion, as the export runs it or phase by phase.

    python benchmarks/onnx_export_memory.py --config cornernet_hg104_coco --limit_gib 20   # the export's conversion
    python benchmarks/onnx_export_memory.py --config squeeze_coco --network_only
    python benchmarks/onnx_export_memory.py --config squeeze_coco --mode phases            # the frozen route

Runs the conversion in a child process that a watchdog (this process) kills once its resident
memory passes `--limit_gib` (default 10), and prints the child's peak. `--mode convert` (default)
times `cornernet_tf.portable.onnx.convert` as the export calls it: the network converted without
its weights, which are added afterwards (`--trace`: a line after each tf2onnx step, which
collects and trims there, lowering the peaks a little; `--save` writes the file, to compare two
conversions' outputs with `--compare A B`). `--mode phases` replays tf2onnx's conversion of the
frozen graph (`tf2onnx.convert.from_function` of the network with its weights, the route the
export took before) step by step (freezing, grappler, import, handlers, each optimizer pass,
make_model, check, serialization) and prints each phase's peak and end RSS, the Python objects'
size and how many tf2onnx graphs are alive after it. Random weights, the config's input size,
batch 1.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import threading
import time

GIB = 1 << 30


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Sampler:
    """The peak RSS since the last `phase` call, sampled every 10 ms in a thread."""

    def __init__(self) -> None:
        self.peak = rss()
        self.start = time.perf_counter()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss())
            time.sleep(0.01)

    def phase(self, name: str, extra: str = "") -> None:
        now = rss()
        peak = max(self.peak, now)
        print(
            f"{name:<42} peak {peak / GIB:6.2f} GiB  end {now / GIB:6.2f} GiB  "
            f"{time.perf_counter() - self.start:6.1f} s  {extra}",
            flush=True,
        )
        self.peak, self.start = rss(), time.perf_counter()


def trimmed() -> str:
    """RSS after a gc and glibc's malloc_trim: what is live, rather than freed but kept by malloc."""
    import ctypes

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return f"after gc + malloc_trim {rss() / GIB:.2f} GiB"


def graphs_alive() -> int:
    from tf2onnx.graph import Graph

    return sum(isinstance(o, Graph) for o in gc.get_objects())


def build(config_name: str, network_only: bool):
    import cornernet_tf  # noqa: F401 (first: the CPU runtime set-up a user of the package gets)

    # isort: split
    import keras

    from cornernet_tf.config import load_config
    from cornernet_tf.portable.graph import PortableDetector
    from cornernet_tf.tasks.export import detection_module, export_network

    config = load_config(config_name, [])
    keras.utils.set_random_seed(config.train.seed)
    model = export_network(config)
    detector = PortableDetector(detection_module(model, config), 1, tuple(config.data.input_size))
    if network_only:
        return detector, detector._network_half[0], detector.network_function().structured_input_signature[0]
    return detector, detector.serve, detector.concrete_function().structured_input_signature[0]


def phases(args: argparse.Namespace, sampler: Sampler) -> None:
    import onnx
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    from tf2onnx import optimizer, tf_loader, tfonnx
    from tf2onnx.convert import tensor_names_from_structed

    from cornernet_tf.portable.onnx import OPSET, _where

    detector, function, signature = build(args.config, args.network_only)
    sampler.phase("build model")
    concrete = function.get_concrete_function(*signature)
    input_names = [t.name for t in concrete.inputs if t.dtype != tf.dtypes.resource]
    output_names = [t.name for t in concrete.outputs if t.dtype != tf.dtypes.resource]
    renames = tensor_names_from_structed(concrete, input_names, output_names)
    sampler.phase("trace")
    frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False, aggressive_inlining=True)
    graph_def = frozen.graph.as_graph_def(add_shapes=True)
    graph_def = tf_loader.fix_freezing_errors_part2(graph_def)
    sampler.phase("freeze", f"graph_def {graph_def.ByteSize() / 1e6:.0f} MB")
    if args.release:
        del frozen, concrete, function, detector
        tf.keras.backend.clear_session() if hasattr(tf, "keras") else None
        gc.collect()
        sampler.phase("release model")
    with tf.Graph().as_default() as tf_graph, tf_loader.tf_session(graph=tf_graph) as sess:
        tf.import_graph_def(graph_def, name="")
        input_names = tf_loader.inputs_without_resource(sess, input_names)
        graph_def = tf_loader.tf_optimize(input_names, output_names, graph_def)
    gc.collect()
    sampler.phase("grappler (tf_optimize)", f"graph_def {graph_def.ByteSize() / 1e6:.0f} MB")
    with tf.device("/cpu:0"), tf.Graph().as_default() as tf_graph:
        tf.import_graph_def(graph_def, name="")
        sampler.phase("import_graph_def")
        graph = tfonnx.process_tf_graph(
            tf_graph,
            continue_on_error=True,
            opset=OPSET,
            custom_op_handlers={"SelectV2": (_where, [])},
            input_names=input_names,
            output_names=output_names,
            tensors_to_rename=renames,
        )
        sampler.phase("process_tf_graph (handlers)", f"graphs alive {graphs_alive()}")
    del graph_def, tf_graph
    gc.collect()
    sampler.phase("drop TF graph + gc")
    catch = not args.no_catch
    iteration, again = 0, True
    while again:
        again = False
        for name, factory in optimizer._get_optimizers().items():
            current = copy_graph(graph) if catch else graph
            opt = factory()
            graph = opt.optimize(current, iteration) or graph
            again = again or opt.graph_been_opt
            del current, opt
            if args.gc:
                gc.collect()
            sampler.phase(f"  opt {iteration} {name}", f"graphs alive {graphs_alive()}")
        iteration += 1
    graph.topological_sort(graph.get_nodes())
    gc.collect()
    sampler.phase("optimizers done + gc", f"graphs alive {graphs_alive()}")
    proto = graph.make_model("converted")
    sampler.phase("make_model", f"proto {proto.ByteSize() / 1e6:.0f} MB")
    del graph
    gc.collect()
    sampler.phase("drop onnx graph + gc")
    onnx.checker.check_model(proto)
    sampler.phase("check_model")
    data = proto.SerializeToString()
    sampler.phase("SerializeToString", f"{len(data) / 1e6:.0f} MB")


def copy_graph(graph):
    import copy

    return copy.deepcopy(graph)


def convert(args: argparse.Namespace, sampler: Sampler) -> None:
    from cornernet_tf.portable import onnx as portable_onnx

    detector, _, _ = build(args.config, args.network_only)
    sampler.phase("build model")
    if args.trace:
        trace_tf2onnx(sampler)
    data = portable_onnx.convert(detector, network_only=args.network_only)
    sampler.phase("convert", f"{len(data) / 1e6:.0f} MB")
    if args.save:
        with open(args.save, "wb") as file:
            file.write(data)


def trace_tf2onnx(sampler: Sampler) -> None:
    """Print a phase line after each of tf2onnx's steps inside `from_function`."""
    import tf2onnx.convert
    from tf2onnx import graph, optimizer, tf_loader

    def traced(owner, name: str, label: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            result = original(*args, **kwargs)
            sampler.phase(f"  tf2onnx {label}", f"graphs alive {graphs_alive()}, {trimmed()}")
            return result

        setattr(owner, name, wrapper)

    traced(tf_loader, "convert_variables_to_constants_v2", "freeze")
    traced(tf_loader, "tf_optimize", "grappler (tf_optimize)")
    traced(tf2onnx.convert, "process_tf_graph", "process_tf_graph")
    traced(optimizer, "optimize_graph", "optimize_graph")
    traced(graph.Graph, "make_model", "make_model")


def compare(paths: list[str], images: int, seed: int) -> None:
    import numpy as np
    import onnx
    import onnxruntime

    sessions = [onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"]) for path in paths]
    for path in paths:
        onnx.checker.check_model(path)
    shape = [d if isinstance(d, int) else 1 for d in sessions[0].get_inputs()[0].shape]
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(images):
        batch = rng.integers(0, 256, shape, dtype=np.uint8)
        feeds = {sessions[0].get_inputs()[0].name: batch}
        a, b = (dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds))) for s in sessions)
        assert a.keys() == b.keys(), (a.keys(), b.keys())
        for key in a:
            worst = max(worst, float(np.max(np.abs(a[key].astype(np.float64) - b[key].astype(np.float64)))))
    print(f"max abs diff over {images} random images, outputs {sorted(a)}: {worst:.3g}")


def watchdog(argv: list[str], limit: float) -> int:
    child = subprocess.Popen([sys.executable, __file__, "--child", *argv])
    peak = 0
    while child.poll() is None:
        try:
            with open(f"/proc/{child.pid}/statm") as statm:
                now = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (FileNotFoundError, ProcessLookupError):
            break
        peak = max(peak, now)
        if now > limit * GIB:
            child.kill()
            child.wait()
            print(f"KILLED by the watchdog at {now / GIB:.2f} GiB resident (limit {limit} GiB)", flush=True)
            return 137
        time.sleep(0.05)
    print(f"watchdog: child peak {peak / GIB:.2f} GiB, exit {child.returncode}", flush=True)
    return child.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="shapes_tiny")
    parser.add_argument("--network_only", action="store_true")
    parser.add_argument("--mode", choices=("convert", "phases"), default="convert")
    parser.add_argument("--no_catch", action="store_true", help="phases: no deepcopy per optimizer")
    parser.add_argument("--gc", action="store_true", help="phases: gc.collect() after each optimizer")
    parser.add_argument("--release", action="store_true", help="phases: drop the model after freezing")
    parser.add_argument("--trace", action="store_true", help="convert: a line per tf2onnx step (gc + trim there)")
    parser.add_argument("--save", default=None, help="convert: write the .onnx here")
    parser.add_argument("--compare", nargs=2, default=None, help="two .onnx files: max abs output diff")
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--limit_gib", type=float, default=10.0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compare:
        compare(args.compare, args.images, 0)
        return 0
    if not args.child:
        return watchdog([a for a in sys.argv[1:]], args.limit_gib)
    sampler = Sampler()
    import tensorflow  # noqa: F401

    sampler.phase("import tensorflow")
    (phases if args.mode == "phases" else convert)(args, sampler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
