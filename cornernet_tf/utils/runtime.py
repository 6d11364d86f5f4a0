"""TensorFlow's CPU runtime set-up, chosen by measurement and applied before TensorFlow loads.

TensorFlow's default CPU allocator hands every large tensor fresh pages from the kernel, and a
training step pays a page fault per 4 KB of every activation, gradient and temporary it makes:
the shapes_tiny training step ran 1.6-2.0x slower with it than with TensorFlow's own BFC
allocator, which keeps and reuses freed blocks (docs/benchmarks.md, "Training step"). TensorFlow
reads the choice once, from `TF_CPU_ALLOCATOR_USE_BFC`, when it starts, so the package sets it
on import, before its first `import tensorflow`:

- `import cornernet_tf` (every command line, the notebooks, the tests, a user's script that
  imports cornernet_tf before TensorFlow) starts TensorFlow with the BFC allocator;
- a variable the user set wins (`TF_CPU_ALLOCATOR_USE_BFC=false` restores TensorFlow's default);
- when TensorFlow was imported first, nothing can change any more: `cpu_allocator()` says which
  allocator the process has, so a script can tell.

`cpu_has_bfloat16_matrix_units()` tells the train command whether to point out
`train.mixed_precision=mixed_bfloat16`, whose convolutions run on such a CPU's AMX units;
`cpu_bfloat16_units()` and `cpu_int8_units()` let the export say where a reduced-precision
file gains little or nothing over float on this CPU; `available_memory()` lets it say when a large
conversion would not fit.

Only the standard library is imported here, since the package imports this module first.
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import MutableMapping

BFC_VARIABLE = "TF_CPU_ALLOCATOR_USE_BFC"
CPUINFO = "/proc/cpuinfo"
BFLOAT16_MATRIX_FLAG = "amx_bf16"  # Intel AMX bfloat16 tiles (Xeon Sapphire Rapids and later)
BFLOAT16_VECTOR_FLAG = "avx512_bf16"  # bfloat16 dot products in AVX-512 (AMD Zen 4, Intel Cooper Lake and later)
# 8-bit dot products in one instruction: AMX int8 tiles, AVX-512 VNNI (Intel Cascade Lake and later, AMD
# Zen 4), AVX-VNNI (Intel Alder Lake and later); in this order of preference
INT8_DOT_PRODUCT_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")
MEMINFO = "/proc/meminfo"


def configure(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Choose the BFC allocator unless the user chose (a non-empty value) or TensorFlow already
    started; returns whether this call set it."""
    if environ.get(BFC_VARIABLE, "").strip() or "tensorflow" in sys.modules:
        return False
    environ[BFC_VARIABLE] = "true"
    return True


def cpu_allocator(environ: MutableMapping[str, str] = os.environ) -> str:
    """ "bfc" or "default": the CPU allocator TensorFlow uses (or will use) in this process, as
    decided by the variable when TensorFlow started."""
    return "bfc" if environ.get(BFC_VARIABLE, "").strip().lower() in ("true", "1") else "default"


def _cpu_flags(cpuinfo: str | os.PathLike) -> set[str]:
    """The CPU's flags (Linux `/proc/cpuinfo`); empty where they cannot be read (other systems)."""
    try:
        lines = pathlib.Path(cpuinfo).read_text().splitlines()
    except OSError:
        return set()
    return {flag for line in lines if line.startswith("flags") for flag in line.split(":", 1)[-1].split()}


def cpu_has_bfloat16_matrix_units(cpuinfo: str | os.PathLike = CPUINFO) -> bool:
    """Whether the CPU's flags list AMX bfloat16 tiles; False where they cannot be read."""
    return BFLOAT16_MATRIX_FLAG in _cpu_flags(cpuinfo)


def cpu_bfloat16_units(cpuinfo: str | os.PathLike = CPUINFO) -> str | None:
    """The CPU's bfloat16 arithmetic, by its flags: "amx" (matrix tiles), "avx512_bf16" (vector dot
    products), or None where bfloat16 would be emulated (or the flags cannot be read)."""
    flags = _cpu_flags(cpuinfo)
    if BFLOAT16_MATRIX_FLAG in flags:
        return "amx"
    return BFLOAT16_VECTOR_FLAG if BFLOAT16_VECTOR_FLAG in flags else None


def cpu_int8_units(cpuinfo: str | os.PathLike = CPUINFO) -> str | None:
    """The CPU's 8-bit dot-product instructions, by its flags: "amx_int8", "avx512_vnni" or
    "avx_vnni", or None where int8 runs through multiply-and-widen sequences (AVX2-only CPUs such
    as AMD Zen 3, where int8 TFLite measured about as fast as float) or the flags cannot be read."""
    flags = _cpu_flags(cpuinfo)
    return next((flag for flag in INT8_DOT_PRODUCT_FLAGS if flag in flags), None)


def available_memory(meminfo: str | os.PathLike = MEMINFO) -> int | None:
    """Bytes the kernel estimates a new allocation can take without swapping (Linux's
    `MemAvailable`), or None where it cannot be read (other systems)."""
    try:
        lines = pathlib.Path(meminfo).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name == "MemAvailable" and value.split() and value.split()[0].isdigit():
            return int(value.split()[0]) * 1024  # in kB
    return None
