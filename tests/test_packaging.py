"""A wheel built from the source tree carries what an installed package needs."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import zipfile

import cornernet_tf
from tests.conftest import REPO_ROOT


def test_the_installed_distribution_has_the_package_version():
    assert importlib.metadata.version("cornernet-tf") == cornernet_tf.__version__


def test_a_wheel_ships_the_bundled_configs(tmp_path):
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", TF_CPP_MIN_LOG_LEVEL="2")
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(REPO_ROOT),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("cornernet_tf-*.whl")
    assert wheel.name.startswith(f"cornernet_tf-{cornernet_tf.__version__}-")  # setup.py reads __version__
    names = zipfile.ZipFile(wheel).namelist()
    bundled = sorted(path.name for path in (REPO_ROOT / "configs").glob("*.yaml"))
    assert sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("cornernet_tf/configs/")) == bundled

    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    probe = (
        "from cornernet_tf.config import CONFIG_DIR, load_config; "
        "print(CONFIG_DIR); print(load_config('shapes_tiny').data.class_names)"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=dict(env, PYTHONPATH=str(site)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    config_dir, names_line = run.stdout.strip().splitlines()[-2:]
    assert config_dir == str(site / "cornernet_tf" / "configs")
    assert names_line == "['rectangle', 'ellipse', 'triangle']"
