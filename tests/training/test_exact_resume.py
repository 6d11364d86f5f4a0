"""`kill -9`, then the same command: the run ends with the weights and optimizer state of a run
that was never stopped, bit for bit, under the default config (the input stream's order is the
sample index's: data.deterministic is true by default)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from cornernet_tf.config import DataConfig

from .conftest import REPO_ROOT, run_module, tiny_overrides

# a constant learning rate: the uninterrupted run is started for the final step count only once
# the killed one has stopped, and under the cosine schedule train.steps would change the rates
EXTRA = ["train.checkpoint_every=2", "train.lr_schedule=constant"]


def _args(model_dir: pathlib.Path, shapes_dir: str, steps: int) -> list[str]:
    defaults = [item for item in tiny_overrides(shapes_dir, steps) if not item.startswith("data.deterministic")]
    sets = [arg for item in defaults + EXTRA for arg in ("--set", item)]
    return ["-m", "cornernet_tf.train", "--model_dir", str(model_dir), "--no_eval", *sets]


def _recorded_steps(model_dir: pathlib.Path) -> list[int]:
    state = tf.train.get_checkpoint_state(str(model_dir / "checkpoints"))
    return [int(path.rsplit("-", 1)[1]) for path in state.all_model_checkpoint_paths] if state else []


def _variables(prefix: pathlib.Path) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def test_the_default_input_is_deterministic():
    assert DataConfig().deterministic is True


def test_kill_9_and_the_same_command_end_where_an_uninterrupted_run_ends(tmp_path, shapes_dir):
    killed = tmp_path / "killed"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, *_args(killed, shapes_dir, steps=400)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while len(_recorded_steps(killed)) < 2:
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "timed out waiting for two checkpoints"
            time.sleep(0.1)
        process.kill()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    saved = _recorded_steps(killed)[-1]
    final = saved + 5  # odd: the last steps run past the last periodic checkpoint
    resumed = run_module(_args(killed, shapes_dir, steps=final))
    assert resumed.returncode == 0 and f"resuming at step {saved}" in resumed.stdout, resumed.stdout + resumed.stderr
    straight = run_module(_args(tmp_path / "straight", shapes_dir, steps=final))
    assert straight.returncode == 0, straight.stdout + straight.stderr

    ours = _variables(killed / "checkpoints" / f"ckpt-{final}")
    reference = _variables(tmp_path / "straight" / "checkpoints" / f"ckpt-{final}")
    assert sorted(ours) == sorted(reference)
    optimizer_slots = [name for name in reference if name.startswith("optimizer_weights")]
    assert len(optimizer_slots) > 1 and "step/.ATTRIBUTES/VARIABLE_VALUE" in reference  # slots and step compared too
    different = [name for name in reference if not np.array_equal(ours[name], reference[name])]
    assert not different, f"{len(different)} of {len(reference)} variables differ, e.g. {different[:5]}"
