"""Training through the Keras task (`ObjectDetector.fit`) against the command line's loop, same run.

    python benchmarks/keras_fit.py [--config shapes_tiny] [--steps 3000] [--timing_rounds 3] [--timing_steps 120]

Two variants, each in a fresh process, on the same config, data stream and initial weights:

| variant | what runs |
| --- | --- |
| `cli` | `tasks.training.build_trainer` + `Trainer.fit`: the train command's loop (batches finished in the step) |
| `fit` | `ObjectDetector(config).compile()`, `fit(tasks.data.fit_dataset(config))`: Keras' loop, finished in tf.data |

First each trains `--steps` steps (train.steps set to it, so the learning-rate schedule runs its
whole course) and is evaluated on the validation split with `tasks.evaluation.evaluate_model`
(the same code for both); then `--timing_rounds` rounds of `--timing_steps` steps each, the two
variants interleaved, time the steps. A step time is the median over the steps after the first
20 (tracing, warm-up). Prints the table for docs/benchmarks.md, with the CPU.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
WARMUP = 20


def cpu_name() -> str:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def worker(variant: str, config_name: str, steps: int, evaluate: bool) -> dict:
    """Train one variant `steps` steps in this process; returns step times and (evaluate) metrics."""
    import cornernet_tf  # noqa: F401  (before TensorFlow: the CPU runtime)

    # isort: split
    import keras
    import tensorflow as tf
    from step_clock import StepClock

    from cornernet_tf.config import load_config
    from cornernet_tf.tasks.evaluation import evaluate_model

    config = load_config(config_name, [f"train.steps={steps}", "train.eval_every=0", f"train.checkpoint_every={steps}"])
    keras.utils.set_random_seed(config.train.seed)  # as the train command
    clock = StepClock()
    stamps = clock.times
    if variant == "cli":
        from cornernet_tf.tasks.training import build_trainer

        with tempfile.TemporaryDirectory() as directory:
            trainer = build_trainer(config, tf.distribute.get_strategy(), directory)
            clock.start()
            trainer.fit(progress=clock)
            network = trainer.model
    else:
        from cornernet_tf import ObjectDetector
        from cornernet_tf.tasks.data import fit_dataset

        class ClockCallback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None) -> None:
                clock.update()

        detector = ObjectDetector(config)
        detector.compile()
        clock.start()
        detector.fit(fit_dataset(config), steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[ClockCallback()])
        network = detector.network
    durations = [b - a for a, b in zip(stamps, stamps[1:])]
    result = {
        "variant": variant,
        "steps": steps,
        "step_s": statistics.median(durations[WARMUP:]) if len(durations) > WARMUP else None,
        "train_s": stamps[-1] - stamps[0],
    }
    if evaluate:
        metrics, _ = evaluate_model(network, config)
        result.update(AP=metrics["AP"], AP50=metrics["AP50"])
    return result


def run(variant: str, config: str, steps: int, evaluate: bool) -> dict:
    command = [sys.executable, __file__, "--worker", variant, "--config", config, "--steps", str(steps)]
    if evaluate:
        command.append("--evaluate")
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="shapes_tiny")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--timing_rounds", type=int, default=3)
    parser.add_argument("--timing_steps", type=int, default=120)
    parser.add_argument("--worker", choices=["cli", "fit"])
    parser.add_argument("--evaluate", action="store_true")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.config, args.steps, args.evaluate)))
        return

    print(f"CPU: {cpu_name()}; config {args.config}", flush=True)
    full = {variant: run(variant, args.config, args.steps, evaluate=True) for variant in ("cli", "fit")}
    for variant, result in full.items():
        print(
            f"{variant}: {result['steps']} steps in {result['train_s'] / 60:.1f} min, step {result['step_s']:.4f} s, "
            f"val AP {result['AP']:.3f} (AP50 {result['AP50']:.3f})",
            flush=True,
        )
    print(f"AP fit - cli: {full['fit']['AP'] - full['cli']['AP']:+.3f}", flush=True)
    ratios = [full["fit"]["step_s"] / full["cli"]["step_s"]]
    for round_number in range(args.timing_rounds):
        order = ("cli", "fit") if round_number % 2 == 0 else ("fit", "cli")
        times = {variant: run(variant, args.config, args.timing_steps, evaluate=False)["step_s"] for variant in order}
        ratios.append(times["fit"] / times["cli"])
        print(
            f"round {round_number + 1}: cli {times['cli']:.4f} s, fit {times['fit']:.4f} s, fit / cli {ratios[-1]:.3f}",
            flush=True,
        )
    print(f"step time fit / cli: {min(ratios):.3f}-{max(ratios):.3f} (the full runs and {args.timing_rounds} rounds)")


if __name__ == "__main__":
    main()
