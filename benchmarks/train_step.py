"""One training step, ours against a PyTorch CornerNet of the same architecture, in the same run.

    python benchmarks/train_step.py [--model tiny|hg104|all] [--rounds 3] [--threads N] [--bf16] [--floor]

Times one optimizer step (forward, losses, backward, Adam update) of

- `tiny`: the default job (configs/shapes_tiny.yaml, batch 16 at 128 x 128), and
- `hg104`: CornerNet Hourglass-104 (configs/cornernet_hg104_coco.yaml) at batch 1, 511 x 511,

for these variants, each in a fresh process (TensorFlow reads its allocator choice when it
starts), interleaved round by round so that a busy machine slows them alike:

| variant | what runs |
| --- | --- |
| `torch` | `torch_cornernet.py` (torch.cummax corner pools, `torch.set_num_threads(N)`), a precomputed batch |
| `ours` | our step as the train command builds it (`tasks.training.build_trainer`), the same batch |
| `ours-main` | the same, reading the training split as the main job does (tiny only) |
| `ours-main-pipeline` | `ours-main` with `train.finish_batches=pipeline` (the batch finished in tf.data) |
| `*-tf-allocator` | the variant with TensorFlow's default CPU allocator (`TF_CPU_ALLOCATOR_USE_BFC=false`) |
| `torch-bf16` | with `--bf16` (tiny): `torch` under `torch.autocast("cpu", torch.bfloat16)` |
| `ours-bf16` | with `--bf16` (tiny): `ours` with `train.mixed_precision=mixed_bfloat16` |

`--floor` also times every float32 convolution pass of our step (forward, input and filter
gradients) alone, inside a graph (eight in a chain, less a call of one, so the call's cost drops
out), and prints their sum beside the `torch` step of the round: what our step would cost if it
did nothing but its convolutions, one at a time.

A variant's time is the median of its per-step times after warm-up; the table shows the range
over rounds and the ratios to `torch` of the same round. `torch_cornernet.check_same_network`
runs first and must report the same network (outputs and loss of both after weight conversion).
Results go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# model -> (config, overrides, warm-up steps, timed steps)
MODELS = {
    "tiny": ("shapes_tiny", [], 5, 20),
    "hg104": ("cornernet_hg104_coco", ["train.batch_size=1"], 2, 4),
}
VARIANTS = {
    "tiny": ["torch", "ours", "ours-main", "ours-main-pipeline", "ours-tf-allocator", "ours-main-tf-allocator"],
    "hg104": ["torch", "ours", "ours-tf-allocator"],
}
BF16 = "-bf16"
BF16_VARIANTS = ["torch" + BF16, "ours" + BF16]
DEFAULT_ALLOCATOR = "-tf-allocator"


def _config(model: str, variant: str = ""):
    from cornernet_tf.config import load_config

    name, overrides, _, _ = MODELS[model]
    overrides = overrides + ["train.checkpoint_every=1000000000", "train.eval_every=0"]
    if variant.endswith(BF16):
        overrides.append("train.mixed_precision=mixed_bfloat16")
    return load_config(name, overrides)


def make_batch(model: str, path: pathlib.Path) -> None:
    """The precomputed (images, targets) batch every fixed-batch variant trains on: the main
    job's first batch for tiny; random pixels and targets of random boxes for hg104."""
    import numpy as np

    from cornernet_tf.objective.targets import build_batch_targets

    config = _config(model)
    if model == "tiny":
        from cornernet_tf.tasks.data import train_dataset

        images, targets = next(iter(train_dataset(config)))
    else:
        rng = np.random.default_rng(0)
        batch, (height, width) = config.train.batch_size, config.data.input_size
        images = rng.normal(size=(batch, height, width, 3)).astype(np.float32)
        corners = rng.uniform(0, width - 64, size=(batch, 8, 2, 2)).astype(np.float32)
        boxes = np.concatenate([corners.min(2), corners.max(2) + 32.0], -1)
        classes = rng.integers(0, config.model.num_classes, size=(batch, 8)).astype(np.int32)
        targets = build_batch_targets(
            boxes,
            classes,
            np.full([batch], 8),
            config.model.num_classes,
            (height, width),
            tuple(config.model.output_size(config.data.input_size)),
            config.data.max_objects,
        )
    np.savez(path, images=np.asarray(images), **{f"t/{key}": np.asarray(value) for key, value in targets.items()})


def _load_batch(path: pathlib.Path) -> tuple:
    import numpy as np

    with np.load(path) as data:
        return data["images"], {key[2:]: data[key] for key in data.files if key.startswith("t/")}


def time_ours(model: str, variant: str, batch_path: pathlib.Path) -> list[float]:
    import tensorflow as tf
    from step_clock import StepClock

    from cornernet_tf.tasks.training import build_trainer, use_mixed_precision
    from cornernet_tf.training.strategy import make_strategy

    config = _config(model, variant)
    use_mixed_precision(config.train)  # as the train command does
    if variant.startswith("ours-main-pipeline"):
        config.train.finish_batches = "pipeline"
    strategy = make_strategy("mirrored")  # the main job's --strategy
    model_dir = tempfile.mkdtemp(prefix="train_step_")
    if variant.startswith("ours-main"):
        trainer = build_trainer(config, strategy, model_dir)
    else:
        images, targets = _load_batch(batch_path)
        batch = (tf.constant(images), {key: tf.constant(value) for key, value in targets.items()})
        trainer = build_trainer(
            config, strategy, model_dir, dataset_fn=lambda *_: tf.data.Dataset.from_tensors(batch).repeat()
        )
    _, _, warmup, steps = MODELS[model]
    clock = StepClock()
    trainer.fit(clock, max_steps=warmup + steps + 1)
    return [b - a for a, b in zip(clock.times[warmup:], clock.times[warmup + 1 :])]


def time_torch(model: str, variant: str, batch_path: pathlib.Path, threads: int) -> list[float]:
    import torch
    from torch_cornernet import build_torch_cornernet, to_torch_targets, torch_train_step

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = _config(model, variant)
    images, targets = _load_batch(batch_path)
    images = torch.from_numpy(images[..., ::-1].copy()).permute(0, 3, 1, 2).contiguous()  # BGR, NCHW
    targets = to_torch_targets(targets)
    net = build_torch_cornernet(config.model)
    train = config.train
    step = torch_train_step(
        net,
        torch.optim.Adam(net.parameters(), lr=train.learning_rate),
        autocast_dtype=torch.bfloat16 if variant.endswith(BF16) else None,
        pull_weight=train.pull_weight,
        push_weight=train.push_weight,
        offset_weight=train.offset_weight,
    )
    _, _, warmup, steps = MODELS[model]
    for _ in range(warmup):
        step(images, targets)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step(images, targets)
        times.append(time.perf_counter() - start)
    return times


def _step_convolutions(model: str) -> dict[tuple, int]:
    """{(input shape, filter shape, strides, padding, explicit paddings, needs input gradient): count}
    of every Conv2D in the training forward of the model at the step's batch, read from its graph."""
    import tensorflow as tf

    from cornernet_tf.tasks.model import build_model

    config = _config(model)
    network = build_model(config.model)
    height, width = config.data.input_size
    graph = (
        tf.function(lambda images: network(images, training=True, return_all_stacks=True))
        .get_concrete_function(tf.TensorSpec([config.train.batch_size, height, width, 3]))
        .graph
    )

    def from_images(tensor) -> bool:  # the image itself, padded or sliced: no gradient wanted
        while tensor.op.type in ("Pad", "Identity", "StridedSlice"):
            tensor = tensor.op.inputs[0]
        return tensor.op.type == "Placeholder"

    counts: dict[tuple, int] = {}
    for op in graph.get_operations():
        if op.type == "Conv2D":
            x, kernel = op.inputs[0], op.inputs[1]
            key = (
                tuple(x.shape),
                tuple(kernel.shape),
                tuple(op.get_attr("strides")),
                op.get_attr("padding").decode(),
                tuple(op.get_attr("explicit_paddings")),
                not from_images(x),
            )
            counts[key] = counts.get(key, 0) + 1
    return counts


def _chained_ms(make, chain: int = 8) -> float:
    """ms of one `make()` inside a graph: (a call running `chain` of them one after the other
    minus a call running one) / (chain - 1), so the call's own cost drops out."""
    import tensorflow as tf
    from model_forward import median_seconds

    def run(count: int):
        outputs = [make()]
        for _ in range(count - 1):
            with tf.control_dependencies([outputs[-1]]):
                outputs.append(make())
        return tf.add_n([tf.reshape(y, [-1])[0] for y in outputs])  # every result consumed

    one, many = tf.function(lambda: run(1)), tf.function(lambda: run(chain))
    seconds = median_seconds(lambda: many().numpy(), 20) - median_seconds(lambda: one().numpy(), 20)
    return max(0.0, 1000 * seconds / (chain - 1))


def conv_floor(model: str) -> dict:
    """Every convolution pass of the step timed alone (see the module docstring), in ms."""
    import tensorflow as tf

    total = {"forward": 0.0, "input_gradient": 0.0, "filter_gradient": 0.0}
    passes = 0
    for (x_shape, k_shape, strides, padding, explicit, input_gradient), count in _step_convolutions(model).items():
        x, kernel = tf.random.normal(x_shape), tf.random.normal(k_shape)
        conv = dict(strides=list(strides), padding=padding, explicit_paddings=list(explicit))
        dy = tf.random.normal(tf.raw_ops.Conv2D(input=x, filter=kernel, **conv).shape)
        kinds = {
            "forward": lambda: tf.raw_ops.Conv2D(input=x, filter=kernel, **conv),
            "filter_gradient": lambda: tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=k_shape, out_backprop=dy, **conv
            ),
        }
        if input_gradient:
            kinds["input_gradient"] = lambda: tf.raw_ops.Conv2DBackpropInput(
                input_sizes=x_shape, filter=kernel, out_backprop=dy, **conv
            )
        for kind, make in kinds.items():
            total[kind] += count * _chained_ms(make)
            passes += count
    return {"total_ms": sum(total.values()), "passes": passes, **{f"{k}_ms": v for k, v in total.items()}}


def run_worker(args: argparse.Namespace) -> None:
    path = pathlib.Path(args.batch)
    if args.worker == "make-batch":
        make_batch(args.model, path)
        print(json.dumps({"batch": str(path)}))
        return
    if args.worker == "check":
        from torch_cornernet import check_same_network

        from cornernet_tf.config import load_config

        print(json.dumps(check_same_network(load_config(MODELS["tiny"][0]).model, args.threads)))
        return
    if args.worker == "conv-floor":
        print(json.dumps(conv_floor(args.model)))
        return
    times = (
        time_torch(args.model, args.worker, path, args.threads)
        if args.worker.startswith("torch")
        else time_ours(args.model, args.worker, path)
    )
    print(json.dumps({"median": statistics.median(times), "best": min(times)}))


def _spawn(worker: str, model: str, batch: pathlib.Path, threads: int) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    if worker.endswith(DEFAULT_ALLOCATOR):
        env["TF_CPU_ALLOCATOR_USE_BFC"] = "false"
    else:
        env.pop("TF_CPU_ALLOCATOR_USE_BFC", None)  # what a user gets: the package's choice
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        worker,
        "--model",
        model,
        "--batch",
        str(batch),
        "--threads",
        str(threads),
    ]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{worker} ({model}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _span(values: list[float], fmt: str) -> str:
    low, high = min(values), max(values)
    return format(low, fmt) if len(values) == 1 or f"{low:{fmt}}" == f"{high:{fmt}}" else f"{low:{fmt}}-{high:{fmt}}"


def benchmark(model: str, rounds: int, threads: int, workdir: pathlib.Path, bf16: bool, floor: bool) -> None:
    batch = workdir / f"{model}_batch.npz"
    _spawn("make-batch", model, batch, threads)
    variants = VARIANTS[model] + (BF16_VARIANTS if bf16 else [])
    medians: dict[str, list[float]] = {v: [] for v in variants}
    ratios: dict[str, list[float]] = {v: [] for v in variants}
    for round_index in range(rounds):
        results = {variant: _spawn(variant, model, batch, threads)["median"] for variant in variants}
        print(f"  round {round_index + 1}: " + ", ".join(f"{v} {t:.3f}s" for v, t in results.items()), flush=True)
        for variant, seconds in results.items():
            medians[variant].append(seconds)
            peer = "torch" + BF16 if variant.endswith(BF16) else "torch"  # like against like
            ratios[variant].append(seconds / results[peer])
        if floor:
            found = _spawn("conv-floor", model, batch, threads)
            print(
                f"    our convolutions alone ({found['passes']} passes): {found['total_ms']:.1f} ms = "
                f"{found['total_ms'] / 1000 / results['torch']:.2f} of this round's torch step "
                f"(forward {found['forward_ms']:.1f}, input gradients {found['input_gradient_ms']:.1f}, "
                f"filter gradients {found['filter_gradient_ms']:.1f} ms)",
                flush=True,
            )
    name, overrides, _, _ = MODELS[model]
    print(
        f"\n{model} ({name}{', ' + ', '.join(overrides) if overrides else ''}), {rounds} rounds, "
        f"torch threads {threads}:"
    )
    print("| variant | step (s), median per round | / torch (bf16: / torch-bf16), same round |\n| --- | --- | --- |")
    for variant in variants:
        print(f"| {variant} | {_span(medians[variant], '.3f')} | {_span(ratios[variant], '.2f')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=[*MODELS, "all"], default="tiny")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    parser.add_argument("--bf16", action="store_true", help="add the bfloat16 mixed-precision pair (tiny)")
    parser.add_argument("--floor", action="store_true", help="time our step's convolutions alone each round")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--batch", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return
    with tempfile.TemporaryDirectory() as workdir:
        check = _spawn("check", "tiny", pathlib.Path(workdir) / "unused", args.threads)
        same = (
            check["output_max_abs_diff"] < 1e-4
            and check["loss_rel_diff"] < 1e-4
            and check["torch_params"] == check["keras_params"]
        )
        print(
            f"same network: {same} (outputs differ by {check['output_max_abs_diff']:.1e}, loss by "
            f"{check['loss_rel_diff']:.1e} relative, {check['keras_params']:,} parameters each)"
        )
        if not same:
            sys.exit("the PyTorch network is not ours; no comparison")
        for model in MODELS if args.model == "all" else [args.model]:
            bf16 = args.bf16 and model == "tiny"
            benchmark(model, args.rounds, args.threads, pathlib.Path(workdir), bf16, args.floor)


if __name__ == "__main__":
    main()
