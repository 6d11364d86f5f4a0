"""Checkpoints under faults, through the train command: a damaged latest checkpoint is stepped
over, a full disk during a save is one error line and leaves the previous checkpoint resumable.

A full disk is made with RLIMIT_FSIZE on the training process: every write past the limit fails
as on a full file system (EFBIG instead of ENOSPC), without privileges or a mount.
"""

from __future__ import annotations

import os
import pathlib
import resource
import signal
import subprocess
import sys

import pytest
import tensorflow as tf

from cornernet_tf.training.checkpoint import DAMAGED_PREFIX

from .conftest import REPO_ROOT, run_module, tiny_overrides

EXTRA = ["train.checkpoint_every=2", "train.lr_schedule=constant", "train.keep_checkpoints=5"]


def _train_args(model_dir: pathlib.Path, shapes_dir: str, steps: int) -> list[str]:
    sets = [arg for item in tiny_overrides(shapes_dir, steps) + EXTRA for arg in ("--set", item)]
    return ["-m", "cornernet_tf.train", "--model_dir", str(model_dir), "--no_eval", *sets]


def _recorded(model_dir: pathlib.Path) -> list[str]:
    state = tf.train.get_checkpoint_state(str(model_dir / "checkpoints"))
    return [pathlib.Path(path).name for path in state.all_model_checkpoint_paths] if state else []


@pytest.mark.parametrize("damage", ["truncated_data", "truncated_index", "missing_shard"])
def test_a_damaged_latest_checkpoint_is_set_aside_and_the_one_before_resumes(tmp_path, shapes_dir, damage):
    first = run_module(_train_args(tmp_path, shapes_dir, steps=4))
    assert first.returncode == 0, first.stdout + first.stderr
    checkpoints = tmp_path / "checkpoints"
    (data,) = checkpoints.glob("ckpt-4.data-*")
    if damage == "truncated_data":
        os.truncate(data, data.stat().st_size // 2)
    elif damage == "truncated_index":
        index = checkpoints / "ckpt-4.index"
        os.truncate(index, index.stat().st_size // 2)
    else:
        data.unlink()
    resumed = run_module(_train_args(tmp_path, shapes_dir, steps=6))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    warnings = [line for line in resumed.stdout.splitlines() if line.startswith("warning: checkpoint")]
    assert len(warnings) == 1 and "ckpt-4" in warnings[0], resumed.stdout
    assert "resuming at step 2" in resumed.stdout
    assert sorted(p.name for p in checkpoints.glob(f"{DAMAGED_PREFIX}*")), "the damaged files are kept"
    # ckpt-4 written anew by the resumed run; the earlier ones still listed, so still kept and pruned
    assert _recorded(tmp_path) == ["ckpt-2", "ckpt-4", "ckpt-6"]


def test_no_readable_checkpoint_is_one_error_line(tmp_path, shapes_dir):
    first = run_module(_train_args(tmp_path, shapes_dir, steps=2))
    assert first.returncode == 0, first.stdout + first.stderr
    (tmp_path / "checkpoints" / "ckpt-2.index").write_bytes(b"not a checkpoint")
    again = run_module(_train_args(tmp_path, shapes_dir, steps=4))
    assert again.returncode == 2
    errors = [line for line in again.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no readable checkpoint" in errors[0] and "ckpt-2" in errors[0], again.stderr
    assert (tmp_path / "checkpoints" / f"{DAMAGED_PREFIX}ckpt-2.index").is_file()


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the failing write then returns EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_during_a_save_is_one_error_line_and_the_last_checkpoint_resumes(tmp_path, shapes_dir):
    first = run_module(_train_args(tmp_path, shapes_dir, steps=2))
    assert first.returncode == 0, first.stdout + first.stderr
    (data,) = (tmp_path / "checkpoints").glob("ckpt-2.data-*")
    before = data.read_bytes()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    full = subprocess.run(
        [sys.executable, *_train_args(tmp_path, shapes_dir, steps=4)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size(len(before) // 4),
    )
    assert full.returncode == 1, full.stdout + full.stderr
    errors = [line for line in (full.stdout + full.stderr).splitlines() if line.startswith("error:")]
    assert len(errors) == 1, full.stdout + full.stderr
    assert "could not write the checkpoint of step 4" in errors[0] and "ckpt-2 is intact" in errors[0]
    assert "Traceback" not in full.stderr
    assert _recorded(tmp_path) == ["ckpt-2"] and data.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "checkpoint",
        "ckpt-2.data-00000-of-00001",
        "ckpt-2.index",
    ]
    resumed = run_module(_train_args(tmp_path, shapes_dir, steps=4))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming at step 2" in resumed.stdout and _recorded(tmp_path)[-1] == "ckpt-4"
