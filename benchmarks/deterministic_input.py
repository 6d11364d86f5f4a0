"""What an exactly reproducible input stream costs the main job: data.deterministic true vs false.

    python benchmarks/deterministic_input.py [--config shapes_tiny] [--rounds 4] [--steps 150]

With `data.deterministic: false` tf.data may hand out the augmented samples of its parallel map
in any order, so two runs (and a run against its resumed self) can batch different samples
together; with `true` the order is the sample index's. Each round trains the train command's own
loop (`tasks.training.build_trainer`, the config's training split, batches finished as the
command finishes them) for 20 warm-up steps and `--steps` timed ones, once with each setting, in
fresh processes, alternating which goes first. Prints images/s per round and the ratio.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
WARMUP = 20


def worker(config_name: str, deterministic: bool, steps: int) -> dict:
    """Images per second of `steps` steps of the main job's loop after WARMUP steps."""
    import cornernet_tf  # noqa: F401  (before TensorFlow: the CPU runtime)

    # isort: split
    import keras
    from step_clock import StepClock

    from cornernet_tf.config import load_config
    from cornernet_tf.tasks.training import build_trainer
    from cornernet_tf.training.strategy import make_strategy

    config = load_config(
        config_name,
        [f"data.deterministic={str(deterministic).lower()}", "train.checkpoint_every=1000000000", "train.eval_every=0"],
    )
    keras.utils.set_random_seed(config.train.seed)
    clock = StepClock()

    with tempfile.TemporaryDirectory() as directory:
        trainer = build_trainer(config, make_strategy("mirrored"), directory)  # the main job's --strategy
        trainer.fit(clock, max_steps=WARMUP + steps)
    stamps = clock.times
    step = statistics.median(b - a for a, b in zip(stamps[WARMUP - 1 :], stamps[WARMUP:]))
    elapsed = stamps[-1] - stamps[WARMUP - 1]
    return {"images_per_s": steps * config.train.batch_size / elapsed, "median_step_s": step}


def run(config: str, deterministic: bool, steps: int) -> dict:
    command = [sys.executable, __file__, "--worker", str(deterministic), "--config", config, "--steps", str(steps)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="shapes_tiny")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--worker", choices=["True", "False"])
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.config, args.worker == "True", args.steps)))
        return
    ratios = []
    for round_number in range(args.rounds):
        order = (True, False) if round_number % 2 == 0 else (False, True)
        rates = {setting: run(args.config, setting, args.steps)["images_per_s"] for setting in order}
        ratios.append(rates[True] / rates[False])
        print(
            f"round {round_number + 1}: deterministic {rates[True]:.1f} img/s, not deterministic {rates[False]:.1f} "
            f"img/s, ratio {ratios[-1]:.3f}",
            flush=True,
        )
    print(f"deterministic / not: {min(ratios):.3f}-{max(ratios):.3f} (median {statistics.median(ratios):.3f})")


if __name__ == "__main__":
    main()
