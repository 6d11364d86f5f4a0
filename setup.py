"""Install cornernet_tf; `build_ext` also compiles the corner-pool op when it can.

A failed op build never fails the install: the package then uses the pure-TF corner pool and
`cornernet_tf.ops.compiled.unavailable_reason()` says why (the reason is written beside the
library as `_corner_pool_build.log`).
"""

import os
import pathlib
import sys

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.develop import develop

ROOT = pathlib.Path(__file__).resolve().parent


def _build_corner_pool_op(out_dir: pathlib.Path) -> None:
    log = out_dir / "_corner_pool_build.log"
    try:
        sys.path.insert(0, str(ROOT))
        from custom_ops.build import build_library  # noqa: PLC0415 (needs TF, imported late)

        library = build_library(out_dir)
        log.write_text(f"built {library}\n")
        print(f"cornernet_tf: built corner-pool op {library}")
    except Exception as err:  # the pure-TF corner pool remains available
        log.write_text(f"corner-pool op not built: {err}\n")
        print(f"cornernet_tf: WARNING: corner-pool op not built ({err}); using the pure-TF path")
    finally:
        if sys.path and sys.path[0] == str(ROOT):
            sys.path.pop(0)


class BuildCornerPoolOp(build_ext):
    """Compile the op into the package (in place for editable installs)."""

    def run(self) -> None:
        target = ROOT / "cornernet_tf" / "ops" if self.inplace else pathlib.Path(self.build_lib) / "cornernet_tf" / "ops"
        target.mkdir(parents=True, exist_ok=True)
        _build_corner_pool_op(target)


class DevelopWithOp(develop):
    def run(self) -> None:
        super().run()
        _build_corner_pool_op(ROOT / "cornernet_tf" / "ops")


setup(
    name="cornernet-tf",
    version="0.1.0",
    description="CornerNet and CenterNet keypoint object detectors in TensorFlow / Keras 3",
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["cornernet_tf", "cornernet_tf.*"]),
    package_data={"cornernet_tf.ops": ["*.so", "_corner_pool_build.log"]},
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3.10",
        "numpy",
        "pycocotools",
        "opencv-python-headless",
        "PyYAML",
    ],
    extras_require={
        "test": ["pytest", "nbclient", "nbformat", "ipykernel", "matplotlib"],
        "torch": ["torch==2.13.0"],
    },
    cmdclass={"build_ext": BuildCornerPoolOp, "develop": DevelopWithOp},
    # A placeholder extension so setuptools runs build_ext; the real build is in custom_ops/build.py.
    ext_modules=[],
)
