"""Install cornernet_tf; the build also compiles the corner-pool op when it can.

The op (custom_ops/corner_pool, built by custom_ops/build.py) is compiled by `build_ext`, which
runs in every kind of build: `pip install .` (into the wheel), `pip install -e .` (PEP 660
editable install: in place, into cornernet_tf/ops/), `python setup.py build_ext --inplace` and
`develop`. The distribution declares binary content (`has_ext_modules`), so setuptools runs
`build_ext` even though there is no setuptools Extension, and wheels get a platform tag.

It compiles against the TensorFlow of the environment being installed into when that one has
TensorFlow (a subprocess outside pip's isolated build environment, so the op matches the
TensorFlow that will load it), else against the build environment's (pyproject.toml's
build requirements). A failed op build never fails the install: the package then uses the
pure-TF corner pool, and `cornernet_tf.ops.compiled.unavailable_reason()` says why (the reason
is written beside the library as `_corner_pool_build.log`). Rebuild by hand with
`python -m custom_ops.build`.
"""

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

from setuptools import Distribution, find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = pathlib.Path(__file__).resolve().parent


def _load_op_build():
    """custom_ops/build.py, loaded from its file: its module level needs only the standard library
    (TensorFlow is imported when it builds), and setup.py's folder need not be on sys.path."""
    spec = importlib.util.spec_from_file_location("_corner_pool_op_build", ROOT / "custom_ops" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _package_version() -> str:
    """`__version__` of cornernet_tf/__init__.py, read as text: importing the package needs TensorFlow."""
    match = re.search(r'^__version__ = "([^"]+)"$', (ROOT / "cornernet_tf" / "__init__.py").read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError('cornernet_tf/__init__.py has no line __version__ = "..."')
    return match.group(1)


OP_BUILD = _load_op_build()


def _build_in_target_environment(out_dir: pathlib.Path) -> int:
    """Build with this interpreter outside pip's build isolation (pip points PYTHONPATH at an
    overlay that hides the target site-packages); returns the exit status of custom_ops.build."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONNOUSERSITE")}
    env["PYTHONPATH"] = str(ROOT)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cmd = [sys.executable, "-m", "custom_ops.build", "--out-dir", str(out_dir)]
    try:
        proc = subprocess.run(cmd, env=env, cwd=str(ROOT), capture_output=True, text=True)
    except OSError as err:
        print(f"cornernet_tf: cannot run {sys.executable} for the op build ({err})")
        return OP_BUILD.NO_TENSORFLOW_EXIT
    if proc.returncode not in (0, OP_BUILD.NO_TENSORFLOW_EXIT):
        print(proc.stderr.strip()[-2000:])
    return proc.returncode


def _build_corner_pool_op(out_dir: pathlib.Path) -> None:
    """Compile the op into out_dir; never raises (the reason of a failure goes to the log)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / OP_BUILD.LOG_NAME
    try:
        status = _build_in_target_environment(out_dir)
        if status == OP_BUILD.NO_TENSORFLOW_EXIT:
            OP_BUILD.build_library(out_dir)  # against the build environment's TensorFlow
        elif status != 0:
            raise RuntimeError(f"see {log}")
        print(f"cornernet_tf: built the corner-pool op into {out_dir}")
    except Exception as err:
        if not log.is_file() or "FAILED" not in log.read_text():
            log.write_text(f"FAILED: corner-pool op not built: {type(err).__name__}: {err}\n")
        # a library left from an earlier build would contradict the log: the op is unavailable
        (out_dir / OP_BUILD.LIBRARY_NAME).unlink(missing_ok=True)
        print(f"cornernet_tf: WARNING: corner-pool op not built ({err}); the pure-TF corner pool is used")


class BuildCornerPoolOp(build_ext):
    """Compile the op: in place for editable/inplace builds, else into build_lib (the wheel)."""

    def run(self) -> None:
        if self.inplace or getattr(self, "editable_mode", False):
            target = ROOT / "cornernet_tf" / "ops"
        else:
            target = pathlib.Path(self.build_lib) / "cornernet_tf" / "ops"
            # build_py may have copied a library of the source tree: never ship one that this
            # build did not make
            (target / OP_BUILD.LIBRARY_NAME).unlink(missing_ok=True)
        _build_corner_pool_op(target)

    def get_outputs(self):  # the library is not a setuptools Extension
        return []

    def get_output_mapping(self):
        return {}


class BuildPyWithConfigs(build_py):
    """Ship the bundled configs (top-level configs/*.yaml) inside the package, as
    cornernet_tf/configs/, so `--config shapes_tiny` works from an installed wheel too;
    editable installs read them from the source tree."""

    def run(self) -> None:
        super().run()
        target = pathlib.Path(self.build_lib) / "cornernet_tf" / "configs"
        target.mkdir(parents=True, exist_ok=True)
        for config in sorted((ROOT / "configs").glob("*.yaml")):
            self.copy_file(str(config), str(target / config.name))


class BinaryDistribution(Distribution):
    """Has compiled content, so `build` runs build_ext (also for PEP 660 editable wheels)."""

    def has_ext_modules(self) -> bool:
        return True


SERVE = ["aiohttp>=3.9", "grpcio", "tensorflow-serving-api==2.21.*"]
# portable exports; versions that install beside tensorflow 2.21 / protobuf 6-7 (docs/export_and_serving.md)
TFLITE = ["ai-edge-litert>=2.3,<3"]
ONNX = ["tf2onnx==1.17.0", "onnx>=1.17,<1.24", "onnxruntime>=1.20,<2"]
# the official checkpoints of the named presets live on Google Drive (its large-file confirmation page)
PRETRAINED = ["gdown>=5"]
# TensorFlow Datasets builders as a source (data.dataset: tfds)
TFDS = ["tensorflow-datasets>=4.9"]

setup(
    name="cornernet-tf",
    version=_package_version(),
    description="CornerNet and CenterNet keypoint object detectors in TensorFlow / Keras 3",
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["cornernet_tf", "cornernet_tf.*"]),
    package_data={"cornernet_tf.ops": [OP_BUILD.LIBRARY_NAME, OP_BUILD.LOG_NAME]},
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3.10",
        "numpy",
        "pycocotools",
        "opencv-python-headless",
        "PyYAML",
        "tensorboard",  # tf.summary needs it; TensorFlow 2.21 no longer installs it
    ],
    extras_require={
        "serve": SERVE,
        "tflite": TFLITE,
        "onnx": ONNX,
        "pretrained": PRETRAINED,
        "tfds": TFDS,
        # ruff is pinned: its formatter's output is what CI compares against
        "test": [
            "pytest",
            "ruff==0.17.6",
            "Pillow",
            "nbclient",
            "nbformat",
            "ipykernel",
            "matplotlib",
            *SERVE,
            *TFLITE,
            *ONNX,
            *TFDS,
        ],
        "torch": ["torch==2.13.0"],  # peer benchmarks only: checkpoints are read without PyTorch
    },
    cmdclass={"build_ext": BuildCornerPoolOp, "build_py": BuildPyWithConfigs},
    distclass=BinaryDistribution,
)
