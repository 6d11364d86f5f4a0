"""Build the corner-pool op library (``custom_ops/corner_pool``) against the installed TensorFlow.

``build_library(out_dir)`` compiles ``corner_pool_ops.cc`` and ``corner_pool_kernels.cc`` with
the flags of ``tf.sysconfig`` (``-std=c++17 -O3 -fPIC -shared``) into
``out_dir/_corner_pool_ops.so`` and writes the commands and compiler output to
``out_dir/_corner_pool_build.log``. It is called by ``setup.py`` (``pip install``, ``pip install -e``,
``build_ext``, ``develop``), by the op tests when the library is missing, and from the command line::

    python -m custom_ops.build                  # into cornernet_tf/ops/
    python -m custom_ops.build --out-dir DIR --cuda

CUDA. The GPU kernels (``corner_pool_kernels.cu.cc``) include no TensorFlow header, so nvcc only
compiles plain CUDA; the C++ kernels then register GPU kernels that launch on TensorFlow's stream.
They are built when ``with_cuda`` (or the environment variable ``CORNERNET_TF_BUILD_CUDA``) says
``1``/``True``; with ``0``/``False`` never; when unset ("auto"), only if nvcc is found, TensorFlow is
a CUDA build, and nvcc's CUDA major version equals the one TensorFlow was built with
(``tf.sysconfig.get_build_info()["cuda_version"]``). The pip wheel of TF 2.21 is built with CUDA 12,
so a CUDA 13 nvcc is skipped unless forced: the kernels would then use a CUDA 13 runtime (linked
statically) next to TensorFlow's CUDA 12 one, which needs a driver for CUDA 13 and is untested.
``CORNERNET_TF_CUDA_ARCHS`` (e.g. ``"80;90"``) picks the GPU architectures; the last one also gets
PTX. ``CXX`` picks the C++ compiler (default ``g++``), ``CUDA_HOME`` the toolkit.

A failed build raises :class:`BuildError` whose message says which step failed and why; the log
holds the full compiler output.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIBRARY_NAME = "_corner_pool_ops.so"  # cornernet_tf.ops.compiled spells it too (a test keeps them equal)
LOG_NAME = "_corner_pool_build.log"
NO_TENSORFLOW_EXIT = 3  # the exit status of `main` when TensorFlow is not importable (setup.py reads it)
SOURCE_DIR = Path(__file__).resolve().parent / "corner_pool"
CPU_SOURCES = ("corner_pool_ops.cc", "corner_pool_kernels.cc")
CUDA_SOURCES = ("corner_pool_kernels.cu.cc",)
HEADERS = ("corner_pool.h", "corner_pool_cuda.cuh")
DEFAULT_CUDA_ARCHS = "75;80;86;89;90"
CXX_FLAGS = ("-std=c++17", "-O3", "-fPIC", "-Wno-deprecated-declarations", "-Wno-interference-size")


class BuildError(RuntimeError):
    """The op library could not be built; the message names the failed step and the reason."""


class TensorFlowNotFound(BuildError):
    """TensorFlow is not importable by this interpreter (``main`` exits with NO_TENSORFLOW_EXIT)."""


def default_out_dir() -> Path:
    """``cornernet_tf/ops/`` of this checkout: where ``cornernet_tf.ops.compiled`` looks first."""
    return Path(__file__).resolve().parent.parent / "cornernet_tf" / "ops"


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return None


def _find_nvcc() -> str | None:
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if home and (Path(home) / "bin" / "nvcc").is_file():
            return str(Path(home) / "bin" / "nvcc")
    found = shutil.which("nvcc")
    if found:
        return found
    default = Path("/usr/local/cuda/bin/nvcc")
    return str(default) if default.is_file() else None


def _nvcc_version(nvcc: str) -> str | None:
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"release (\d+\.\d+)", out)
    return match.group(1) if match else None


def _cuda_lib_dir(nvcc: str) -> Path | None:
    """The toolkit's library folder holding libcudart_static.a (nvcc may be a wrapper script)."""
    homes = [Path(nvcc).resolve().parent.parent]
    try:
        dry = subprocess.run([nvcc, "--dryrun", "-c", "x.cu"], capture_output=True, text=True, timeout=60)
        match = re.search(r"^#\$ TOP=(.*)$", dry.stdout + dry.stderr, re.MULTILINE)
        if match:
            homes.insert(0, Path(match.group(1).strip()).resolve())
    except (OSError, subprocess.SubprocessError):
        pass
    for home in homes:
        for sub in ("lib64", "lib", "targets/x86_64-linux/lib", "targets/sbsa-linux/lib"):
            if (home / sub / "libcudart_static.a").is_file():
                return home / sub
    return None


def cuda_plan(with_cuda: bool | None = None) -> tuple[bool, str]:
    """Decide whether the CUDA kernels are built: ``(build_them, reason)``.

    ``with_cuda`` True/False forces; None reads ``CORNERNET_TF_BUILD_CUDA`` (1/0), and when that is
    unset too, builds only with an nvcc whose CUDA major version matches TensorFlow's. A forced
    build without nvcc raises :class:`BuildError`.
    """
    forced = with_cuda if with_cuda is not None else _env_flag("CORNERNET_TF_BUILD_CUDA")
    if forced is False:
        return False, "CUDA kernels disabled (with_cuda=False or CORNERNET_TF_BUILD_CUDA=0)"
    nvcc = _find_nvcc()
    if nvcc is None:
        if forced:
            raise BuildError("CUDA build requested but nvcc was not found (set CUDA_HOME or PATH)")
        return False, "CUDA kernels skipped: nvcc not found"
    if not forced:
        import tensorflow as tf

        info = tf.sysconfig.get_build_info()
        if not info.get("is_cuda_build"):
            return False, "CUDA kernels skipped: this TensorFlow is not a CUDA build"
        tf_cuda = str(info.get("cuda_version", ""))
        nvcc_cuda = _nvcc_version(nvcc) or "?"
        if tf_cuda.split(".")[0] != nvcc_cuda.split(".")[0]:
            return False, (
                f"CUDA kernels skipped: nvcc is CUDA {nvcc_cuda} but TensorFlow was built with CUDA "
                f"{tf_cuda}; set CORNERNET_TF_BUILD_CUDA=1 to build them anyway"
            )
    if _cuda_lib_dir(nvcc) is None:
        message = f"no libcudart_static.a in the CUDA toolkit of {nvcc}"
        if forced:
            raise BuildError(f"CUDA build requested but {message}")
        return False, f"CUDA kernels skipped: {message}"
    how = "forced" if forced else "built"
    return True, f"CUDA kernels {how} with {nvcc} (CUDA {_nvcc_version(nvcc)})"


def _tf_flags() -> tuple[list[str], list[str], str]:
    if importlib.util.find_spec("tensorflow") is None:
        raise TensorFlowNotFound(
            f"TensorFlow is not importable by {sys.executable}; the op compiles against its headers"
        )
    import tensorflow as tf

    return list(tf.sysconfig.get_compile_flags()), list(tf.sysconfig.get_link_flags()), tf.__version__


def _gencode_flags() -> list[str]:
    archs = [
        a.strip().replace("sm_", "").replace("compute_", "").replace(".", "")
        for a in os.environ.get("CORNERNET_TF_CUDA_ARCHS", DEFAULT_CUDA_ARCHS).replace(",", ";").split(";")
    ]
    archs = [a for a in archs if a]
    flags = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    flags.append(f"-gencode=arch=compute_{archs[-1]},code=compute_{archs[-1]}")
    return flags


def _run_jobs(jobs: list[tuple[str, list[str]]], log: list[str]) -> None:
    """Run compiler commands, up to one per CPU core at a time; raise BuildError on the first failure."""
    width = max(1, min(len(jobs), os.cpu_count() or 1))
    pending = list(jobs)
    running: list[tuple[str, list[str], subprocess.Popen]] = []
    failure: str | None = None
    while pending or running:
        while pending and len(running) < width and failure is None:
            name, cmd = pending.pop(0)
            log.append("$ " + " ".join(cmd))
            try:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            except OSError as err:
                failure = f"{name}: cannot run {cmd[0]!r} ({err})"
                break
            running.append((name, cmd, proc))
        if not running:
            break
        name, cmd, proc = running.pop(0)
        output, _ = proc.communicate()
        if output.strip():
            log.append(output.rstrip())
        if proc.returncode != 0 and failure is None:
            errors = [line for line in output.splitlines() if "error" in line.lower()]
            detail = "; ".join(errors[:3]) or output.strip()[-500:] or "(no output)"
            failure = f"{name} failed (exit {proc.returncode}): {detail}"
    if failure:
        raise BuildError(failure)


def _verify(path: Path) -> None:
    """Load the library in a fresh interpreter: undefined symbols only show up at load time."""
    code = (
        "import sys, tensorflow as tf\n"
        "lib = tf.load_op_library(sys.argv[1])\n"
        "assert hasattr(lib, 'corner_pool') and hasattr(lib, 'fused_corner_pool')\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no message)"]
        raise BuildError(f"the built library does not load: {tail[0]}")


def build_library(out_dir: str | os.PathLike | None = None, with_cuda: bool | None = None, verify: bool = True) -> Path:
    """Compile the corner-pool op into ``out_dir/_corner_pool_ops.so`` and return its path.

    ``out_dir`` defaults to this checkout's ``cornernet_tf/ops/``. ``with_cuda``: see
    :func:`cuda_plan`. With ``verify`` the library is loaded once in a subprocess before it replaces
    any previous one (the replacement is atomic). The log ``_corner_pool_build.log`` beside it
    records the commands, compiler output and the outcome; on failure :class:`BuildError` says why.
    """
    out = Path(out_dir) if out_dir is not None else default_out_dir()
    out.mkdir(parents=True, exist_ok=True)
    log: list[str] = [
        f"cornernet_tf corner-pool op build, {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"python {sys.version.split()[0]} ({sys.executable})",
    ]
    log_path = out / LOG_NAME
    start = time.time()
    try:
        cflags, lflags, tf_version = _tf_flags()
        log.append(f"tensorflow {tf_version}")
        use_cuda, cuda_reason = cuda_plan(with_cuda)
        log.append(cuda_reason)
        cxx = os.environ.get("CXX", "g++")
        if shutil.which(cxx) is None:
            raise BuildError(f"C++ compiler {cxx!r} not found (install g++ or set CXX)")
        with tempfile.TemporaryDirectory(prefix="corner_pool_build_") as tmp_name:
            tmp = Path(tmp_name)
            defines = ["-DCORNERNET_TF_WITH_CUDA=1"] if use_cuda else []
            jobs = []
            objects = []
            for source in CPU_SOURCES:
                obj = tmp / (source + ".o")
                objects.append(str(obj))
                jobs.append(
                    (source, [cxx, *CXX_FLAGS, *cflags, *defines, "-c", str(SOURCE_DIR / source), "-o", str(obj)])
                )
            extra_link: list[str] = []
            if use_cuda:
                nvcc = _find_nvcc()
                for source in CUDA_SOURCES:
                    obj = tmp / (source + ".o")
                    objects.append(str(obj))
                    jobs.append(
                        (
                            source,
                            [
                                nvcc,
                                "-std=c++17",
                                "-O3",
                                "-x",
                                "cu",
                                "-Xcompiler",
                                "-fPIC",
                                *_gencode_flags(),
                                "-c",
                                str(SOURCE_DIR / source),
                                "-o",
                                str(obj),
                            ],
                        )
                    )
                extra_link = [f"-L{_cuda_lib_dir(nvcc)}", "-lcudart_static", "-ldl", "-lrt", "-lpthread"]
            _run_jobs(jobs, log)
            built = tmp / LIBRARY_NAME
            _run_jobs([("link", [cxx, "-shared", *objects, "-o", str(built), *lflags, *extra_link])], log)
            if verify:
                _verify(built)
            staged = out / (LIBRARY_NAME + f".tmp{os.getpid()}")
            shutil.copyfile(built, staged)
            os.replace(staged, out / LIBRARY_NAME)
        library = out / LIBRARY_NAME
        log.append(f"OK: built {library} in {time.time() - start:.0f} s ({'CPU + CUDA' if use_cuda else 'CPU only'})")
        return library
    except BuildError as err:
        log.append(f"FAILED: {err}")
        raise
    except Exception as err:  # an unexpected failure still leaves its reason in the log
        log.append(f"FAILED: {type(err).__name__}: {err}")
        raise BuildError(f"{type(err).__name__}: {err}") from err
    finally:
        try:
            log_path.write_text("\n".join(log) + "\n")
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", default=None, help="where to put the library (default: cornernet_tf/ops/)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--cuda", dest="with_cuda", action="store_true", default=None, help="force the CUDA kernels")
    group.add_argument("--no-cuda", dest="with_cuda", action="store_false", help="CPU kernels only")
    parser.add_argument("--no-verify", dest="verify", action="store_false", help="do not test-load the library")
    args = parser.parse_args(argv)
    try:
        path = build_library(args.out_dir, with_cuda=args.with_cuda, verify=args.verify)
    except BuildError as err:
        print(f"corner-pool op build failed: {err}", file=sys.stderr)
        return NO_TENSORFLOW_EXIT if isinstance(err, TensorFlowNotFound) else 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
