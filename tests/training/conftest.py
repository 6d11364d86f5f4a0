"""A tiny training setup shared by the training tests: small model, small shapes dataset."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_overrides(shapes_dir: str, steps: int = 20) -> list[str]:
    """Config overrides of `shapes_tiny` that train in seconds on one CPU core."""
    return [
        f"data.shapes_dir={shapes_dir}",
        "data.shapes_train=24",
        "data.shapes_val=4",
        "data.shapes_image_size=64",
        "data.input_size=[64, 64]",
        "data.deterministic=true",
        "model.depth=2",
        "model.dims=[8, 8, 8]",
        "model.modules=[1, 1, 1]",
        "model.pre_dims=[8, 8]",
        "model.cnv_dim=8",
        "model.pool_dim=8",
        "train.batch_size=4",
        f"train.steps={steps}",
        "train.warmup_steps=0",
        "train.log_every=1",
        "train.eval_every=0",
    ]


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("train_shapes") / "shapes")


def run_module(args: list[str], env_extra: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m ...` from the repository root with a bounded wall time."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
