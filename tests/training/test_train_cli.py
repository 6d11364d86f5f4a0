"""`python -m cornernet_tf.train` as a user runs it: to the end, killed and resumed, stopped."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf import train
from cornernet_tf.config import Config, ConfigError, load_config
from cornernet_tf.tasks.model import build_model
from cornernet_tf.training.checkpoint import load_weights
from cornernet_tf.utils import runtime

from .conftest import REPO_ROOT, run_module, tiny_overrides


def _train_args(model_dir, shapes_dir, steps, extra=()):
    sets = [arg for item in tiny_overrides(shapes_dir, steps) + list(extra) for arg in ("--set", item)]
    return ["-m", "cornernet_tf.train", "--model_dir", str(model_dir), "--no_eval", *sets]


def _checkpoint_steps(model_dir: pathlib.Path) -> list[int]:
    """Steps of the checkpoints the manager has recorded, which are the ones a resume can pick.

    A kill can land after a checkpoint's files are written but before the manager records it;
    such files are not counted, just as the resume ignores them.
    """
    state = tf.train.get_checkpoint_state(str(model_dir / "checkpoints"))
    paths = state.all_model_checkpoint_paths if state is not None else []
    return sorted(int(m.group(1)) for path in paths if (m := re.search(r"ckpt-(\d+)$", path)))


def _wait_for(predicate, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"trainer exited early with {process.returncode}: {process.stdout.read()}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the trainer")
        time.sleep(0.2)


def test_runs_to_the_end_and_saves_config_checkpoint_and_logs(tmp_path, shapes_dir):
    no_names = ["data.class_names=[]"]  # then the run takes them from the dataset
    result = run_module([*_train_args(tmp_path, shapes_dir, steps=4, extra=no_names), "--strategy", "mirrored"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "step 4/4" in result.stdout and "from scratch" in result.stdout
    assert "1 replica(s) (mirrored)" in result.stdout
    assert "img/s" in result.stdout and "ETA" in result.stdout
    assert load_config(tmp_path / "config.yaml").data.class_names == ["rectangle", "ellipse", "triangle"]
    assert _checkpoint_steps(tmp_path)[-1] == 4
    assert list((tmp_path / "logs" / "train").glob("events.out.tfevents.*"))
    again = run_module(_train_args(tmp_path, shapes_dir, steps=4))  # nothing left to do
    assert again.returncode == 0 and "resuming at step 4" in again.stdout


def _logged_totals(stdout: str) -> list[float]:
    return [float(value) for value in re.findall(r"^step \d+/\d+ .*? total ([0-9.]+)", stdout, re.MULTILINE)]


def test_mixed_bfloat16_computes_in_bfloat16_and_keeps_float32_weights(tmp_path, shapes_dir):
    """The CPU's opt-in speed-up: same run in both precisions, same data and seed."""
    runs = {}
    for precision in ("float32", "mixed_bfloat16"):
        model_dir = tmp_path / precision
        extra = [f"train.mixed_precision={precision}", "train.learning_rate=0.003"]
        result = run_module(_train_args(model_dir, shapes_dir, steps=25, extra=extra))
        assert result.returncode == 0, result.stdout + result.stderr
        runs[precision] = (model_dir, result.stdout)
    assert "computing in float32" in runs["float32"][1]
    assert "computing in bfloat16" in runs["mixed_bfloat16"][1]
    hint = "--set train.mixed_precision=mixed_bfloat16 runs the convolutions on them"
    assert (hint in runs["float32"][1]) is (runtime.cpu_bfloat16_units() is not None)  # only where it applies
    assert hint not in runs["mixed_bfloat16"][1]
    full, half = (_logged_totals(runs[p][1]) for p in ("float32", "mixed_bfloat16"))
    assert len(full) == len(half) == 25
    # the same first step up to bfloat16's 8-bit mantissa: close, but not the float32 arithmetic
    assert full[0] != half[0] and abs(half[0] - full[0]) < 0.05 * full[0], (full[0], half[0])
    assert np.mean(half[-5:]) < 0.6 * half[0], half  # and it learns (about 0.45 here)

    # The checkpoint holds float32 variables: evaluate and export build a float32 model for it.
    model_dir = runs["mixed_bfloat16"][0]
    dtypes = tf.train.load_checkpoint(str(model_dir / "checkpoints")).get_variable_to_dtype_map()
    weights = [name for name in dtypes if name.startswith("model_weights/")]
    assert weights and {dtypes[name] for name in weights} == {tf.float32}
    config = load_config(model_dir / "config.yaml")
    assert config.train.mixed_precision == "mixed_bfloat16"
    model = build_model(config.model)
    height, width = config.data.input_size
    model(tf.zeros([1, height, width, 3]))
    load_weights(model, model_dir)  # every variable must be found
    assert model.compute_dtype == "float32"
    assert all(np.isfinite(w.numpy()).all() for w in model.weights)


def test_kill_9_then_the_same_command_resumes_from_the_last_checkpoint(tmp_path, shapes_dir):
    # a constant learning rate: under the cosine schedule the resumed run could not shorten train.steps
    extra = ["train.checkpoint_every=2", "train.lr_schedule=constant"]
    args = _train_args(tmp_path, shapes_dir, steps=400, extra=extra)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, *args], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_for(lambda: len(_checkpoint_steps(tmp_path)) >= 2, 240, process)
        process.kill()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    saved = _checkpoint_steps(tmp_path)[-1]
    resumed = run_module(_train_args(tmp_path, shapes_dir, steps=saved + 3, extra=extra))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming at step {saved}" in resumed.stdout
    assert f"step {saved + 1}/{saved + 3}" in resumed.stdout and f"step {saved}/" not in resumed.stdout
    assert _checkpoint_steps(tmp_path)[-1] == saved + 3


def test_sigterm_saves_a_checkpoint_before_exiting(tmp_path, shapes_dir):
    args = _train_args(tmp_path, shapes_dir, steps=100_000, extra=["train.checkpoint_every=100000"])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, *args], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("step 3/"):
                process.send_signal(signal.SIGTERM)
                break
        output = "".join(lines) + process.communicate(timeout=120)[0]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, output
    match = re.search(r"stopped by SIGTERM at step (\d+); checkpoint saved", output)
    assert match, output
    assert _checkpoint_steps(tmp_path) == [int(match.group(1))]


def test_resume_flag_requires_a_checkpoint_and_bad_config_is_reported(tmp_path, shapes_dir):
    missing = run_module([*_train_args(tmp_path, shapes_dir, steps=2), "--resume"])
    assert missing.returncode != 0 and "no checkpoint" in missing.stderr
    bad = run_module(["-m", "cornernet_tf.train", "--set", "train.batch_sise=2"])
    assert bad.returncode == 2 and "unknown key(s) ['batch_sise']" in bad.stderr


def test_a_model_dir_of_another_architecture_is_refused(tmp_path, shapes_dir):
    assert run_module(_train_args(tmp_path, shapes_dir, steps=1)).returncode == 0
    other = run_module(_train_args(tmp_path, shapes_dir, steps=2, extra=["model.cnv_dim=16"]))
    assert other.returncode == 2 and "different model config (model.cnv_dim: 8 -> 16)" in other.stderr


def _tiny(shapes_dir: str, *overrides: str) -> Config:
    """The tiny config under a step schedule (the cosine one decays over train.steps)."""
    return load_config("shapes_tiny", [*tiny_overrides(shapes_dir), "train.lr_schedule=step", *overrides])


def _run_with_a_checkpoint(model_dir: pathlib.Path, shapes_dir: str) -> None:
    """What a run leaves for a resume: its config.yaml and a checkpoint (here of a step counter)."""
    _tiny(shapes_dir).save(model_dir / "config.yaml")
    checkpoint = tf.train.Checkpoint(step=tf.Variable(3))
    tf.train.CheckpointManager(checkpoint, str(model_dir / "checkpoints"), max_to_keep=1).save()


def test_resume_refuses_changes_that_break_exact_resumption_and_takes_safe_ones_silently(tmp_path, shapes_dir, capsys):
    _run_with_a_checkpoint(tmp_path, shapes_dir)
    safe = _tiny(
        shapes_dir,
        "train.steps=50",
        "train.checkpoint_every=7",
        "detection.k=5",
        "detection.flip=true",
        "data.num_parallel_calls=2",
        "data.class_names=[]",
    )
    train.check_saved_config(tmp_path, safe)
    assert capsys.readouterr().out == ""
    changed = _tiny(
        shapes_dir, "train.batch_size=2", "data.seed=5", "train.learning_rate=0.01", "train.steps=50", "detection.k=5"
    )
    with pytest.raises(ConfigError) as refused:
        train.check_saved_config(tmp_path, changed)
    message = str(refused.value)
    assert "train.batch_size: 4 -> 2" in message and "data.seed: 0 -> 5" in message
    assert "train.learning_rate: 0.001 -> 0.01" in message and "--allow_config_change" in message
    assert "train.steps" not in message and "detection.k" not in message
    cosine = load_config("shapes_tiny", tiny_overrides(shapes_dir))
    cosine.save(tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match=r"train.steps: 20 -> 30"):  # the cosine schedule decays over it
        train.check_saved_config(tmp_path, load_config("shapes_tiny", tiny_overrides(shapes_dir, steps=30)))


def test_allow_config_change_says_what_changed_but_never_takes_another_model(tmp_path, shapes_dir, capsys):
    _run_with_a_checkpoint(tmp_path, shapes_dir)
    train.check_saved_config(tmp_path, _tiny(shapes_dir, "train.batch_size=2"), allow_change=True)
    said = capsys.readouterr().out
    assert "train.batch_size: 4 -> 2" in said and "no longer exact" in said
    with pytest.raises(ConfigError, match="different model config"):
        train.check_saved_config(tmp_path, _tiny(shapes_dir, "model.cnv_dim=16"), allow_change=True)


def test_a_config_yaml_without_a_checkpoint_is_nothing_to_resume(tmp_path, shapes_dir):
    _tiny(shapes_dir).save(tmp_path / "config.yaml")  # a first run that stopped before its first checkpoint
    train.check_saved_config(tmp_path, _tiny(shapes_dir, "train.batch_size=2", "model.cnv_dim=16"))


def test_the_cli_refuses_a_changed_batch_size_and_resumes_with_the_flag(tmp_path, shapes_dir):
    assert run_module(_train_args(tmp_path, shapes_dir, steps=1)).returncode == 0
    refused = run_module(_train_args(tmp_path, shapes_dir, steps=2, extra=["train.batch_size=2"]))
    assert refused.returncode == 2 and "train.batch_size: 4 -> 2" in refused.stderr
    allowed = run_module(
        [*_train_args(tmp_path, shapes_dir, steps=2, extra=["train.batch_size=2"]), "--allow_config_change"]
    )
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "no longer exact" in allowed.stdout and "resuming at step 1" in allowed.stdout


def test_a_batch_size_the_replicas_cannot_split_is_one_error_line(tmp_path, shapes_dir):
    script = (
        "import sys\n"
        "import tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        "from cornernet_tf import train\n"
        "sys.exit(train.main(sys.argv[1:]))\n"
    )
    args = _train_args(tmp_path, shapes_dir, steps=1, extra=["train.batch_size=3"])[2:]
    result = run_module(["-c", script, *args, "--strategy", "mirrored"])
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "train.batch_size 3 must be divisible by the 2 replicas" in line
    assert "Traceback" not in result.stderr


def test_trains_from_tfrecords_written_by_the_cli(tmp_path, shapes_dir):
    records = tmp_path / "records"
    written = run_module(
        [
            "-m",
            "cornernet_tf.data.tfrecord",
            "--shapes",
            "--out",
            str(records),
            "--shards",
            "2",
            "--shapes-dir",
            shapes_dir,
            "--shapes-train",
            "24",
            "--shapes-val",
            "4",
            "--shapes-image-size",
            "64",
        ]
    )
    assert written.returncode == 0, written.stderr[-2000:]
    args = _train_args(
        tmp_path / "run",
        shapes_dir,
        steps=3,
        extra=[
            "data.dataset=tfrecord",
            f"data.train_tfrecords={records}/train-*.tfrecord",
            f"data.val_tfrecords={records}/val-*.tfrecord",
            "data.shuffle_buffer=8",
        ],
    )
    result = run_module(args)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "step 3/3" in result.stdout


def test_init_weights_starts_a_run_from_other_weights_skipping_mismatched_heads(tmp_path, shapes_dir):
    """Weights of a 4-class model start a 3-class run: all but the heatmap outputs load."""
    source = load_config("shapes_tiny", tiny_overrides(shapes_dir) + ["model.num_classes=4", "data.class_names=[]"])
    model = build_model(source.model)
    model(tf.zeros([1, *source.data.input_size, 3]))
    for variable in model.weights:  # values no fresh model has
        variable.assign(variable + np.full(variable.shape, 0.5, variable.dtype))
    weights = tmp_path / "four_classes.weights.h5"
    model.save_weights(weights)

    result = run_module([*_train_args(tmp_path / "run", shapes_dir, steps=1), "--init_weights", str(weights)])
    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("initialized from")]
    kept = sorted(line.split(": ", 1)[1].split(", "))
    assert kept == sorted(f"{corner}_heats_0/out/{name}" for corner in ("tl", "br") for name in ("kernel", "bias"))
    again = run_module([*_train_args(tmp_path / "run", shapes_dir, steps=1), "--init_weights", str(weights)])
    assert again.returncode == 0 and "--init_weights" in again.stdout and "is not used" in again.stdout
    # a training run fine-tunes too: its latest checkpoint, read with the run's own config, every variable loaded
    from_run = run_module(
        [*_train_args(tmp_path / "from_run", shapes_dir, steps=1), "--init_weights", str(tmp_path / "run")]
    )
    assert from_run.returncode == 0, from_run.stdout + from_run.stderr
    assert "0 of" in [line for line in from_run.stdout.splitlines() if line.startswith("initialized from")][0]
    for bad, reason in [(tmp_path / "missing.weights.h5", "no such file"), (tmp_path / "x.h5", ".weights.h5")]:
        refused = run_module([*_train_args(tmp_path / "other", shapes_dir, steps=1), "--init_weights", str(bad)])
        assert refused.returncode == 2 and reason in refused.stderr


def test_broken_images_are_accounted_for_in_training_and_its_evaluation(tmp_path):
    """A COCO split with an empty file first, a text file in the middle and a JPEG cut inside its
    pixels last: the run names the first two before training, counts the cut JPEG's samples
    exactly while training, and its final evaluation scores all 6 images."""
    import json

    from tests.data.conftest import encode, write_coco

    rng = np.random.default_rng(0)
    good = [encode(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), ".jpg") for _ in range(3)]
    images = [
        ("empty.jpg", b"", 48, 64),
        ("a.jpg", good[0], 48, 64),
        ("notes.jpg", b"text", 48, 64),
        ("b.jpg", good[1], 48, 64),
        ("c.jpg", good[2], 48, 64),
        ("cut.jpg", good[2][:400], 48, 64),
    ]
    annotations, images_dir = write_coco(
        tmp_path / "data", images, [(i, 1, [4, 4, 30, 20], 0) for i in range(1, 7)], [(1, "thing")]
    )
    data = [
        f"data.{split}_{key}={value}"
        for split in ("train", "val")
        for key, value in (("annotations", annotations), ("images", images_dir))
    ]
    overrides = [o for o in tiny_overrides("unused", steps=4) if not o.startswith("data.shapes")]
    overrides += ["data.dataset=coco", *data, "model.num_classes=1", "data.class_names=[]", "eval.max_images=0"]
    run = run_module(
        [
            "-m",
            "cornernet_tf.train",
            "--model_dir",
            str(tmp_path / "run"),
            *(arg for item in overrides for arg in ("--set", item)),
        ]
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "6 images (4 usable, 2 skipped)" in out  # the reader's account
    assert "empty.jpg: unreadable (empty file)" in out and "notes.jpg: undecodable" in out
    # 16 decoded samples from the 3 decodable of the 4 usable images: 5 whole epochs and part of a
    # sixth went by, each holding cut.jpg once
    skipped = int(re.search(r"finished at step 4: 16 training samples, (\d+) skipped as undecodable", out).group(1))
    assert 5 <= skipped <= 6
    assert "eval val: 6 images scored, 3 decoded; 3 could not be read or decoded" in out
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert (metrics["num_images"], metrics["num_unusable_images"]) == (6, 3)
