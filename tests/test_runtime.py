"""The CPU runtime set-up the package applies before TensorFlow starts (cornernet_tf/utils/runtime.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cornernet_tf.utils import runtime

PROBE = (
    "import os, sys; {before}import cornernet_tf; from cornernet_tf.utils import runtime; "
    "print(os.environ.get('TF_CPU_ALLOCATOR_USE_BFC'), runtime.cpu_allocator(), 'tensorflow' in sys.modules)"
)


def probe(before: str = "", **environ: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != runtime.BFC_VARIABLE} | environ
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(before=before)], env=env, capture_output=True, text=True, check=True
    ).stdout
    return out.split()


def test_importing_the_package_chooses_the_bfc_allocator_without_loading_tensorflow():
    assert probe() == ["true", "bfc", "False"]
    assert probe(TF_CPU_ALLOCATOR_USE_BFC="") == ["true", "bfc", "False"]  # empty: nobody chose


@pytest.mark.parametrize("value, allocator", [("false", "default"), ("0", "default"), ("1", "bfc")])
def test_the_users_choice_wins(value, allocator):
    assert probe(TF_CPU_ALLOCATOR_USE_BFC=value) == [value, allocator, "False"]


def test_nothing_changes_once_tensorflow_has_started():
    assert probe(before="import tensorflow; ") == ["None", "default", "True"]


def test_configure_on_a_given_environment(monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    environ: dict[str, str] = {}
    assert runtime.configure(environ) and environ == {runtime.BFC_VARIABLE: "true"}
    assert not runtime.configure(environ)  # already chosen


@pytest.mark.parametrize(
    "text, found",
    [
        ("processor\t: 0\nflags\t\t: fpu sse2 avx512f amx_bf16 amx_tile amx_int8\n", True),
        ("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n", False),  # bf16 dot products, no tiles
        ("processor\t: 0\nflags\t\t: fpu amx_bf16_extra\n", False),  # whole flags only
        ("", False),
    ],
)
def test_bfloat16_matrix_units_are_read_from_the_cpu_flags(tmp_path, text, found):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(text)
    assert runtime.cpu_has_bfloat16_matrix_units(cpuinfo) is found


def test_no_cpuinfo_means_no_bfloat16_matrix_units(tmp_path):
    assert runtime.cpu_has_bfloat16_matrix_units(tmp_path / "missing") is False


@pytest.mark.parametrize(
    "units_of, text, units",
    [
        ("cpu_bfloat16_units", "processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_bf16 amx_tile\n", "amx"),
        ("cpu_bfloat16_units", "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n", "avx512_bf16"),  # Zen 4
        ("cpu_bfloat16_units", "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n", None),
        ("cpu_bfloat16_units", "processor\t: 0\nflags\t\t: fpu avx512_bf16_extra\n", None),  # whole flags only
        ("cpu_int8_units", "flags\t\t: fpu avx2 avx512f avx512_vnni amx_tile amx_int8\n", "amx_int8"),  # Intel SPR
        ("cpu_int8_units", "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n", "avx512_vnni"),  # AMD Zen 4
        ("cpu_int8_units", "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx_vnni\n", "avx_vnni"),  # Intel Alder Lake
        ("cpu_int8_units", "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n", None),  # AMD Zen 3: AVX2 only
        ("cpu_int8_units", "processor\t: 0\nflags\t\t: fpu avx512_vnni_extra\n", None),  # whole flags only
    ],
)
def test_reduced_precision_units_are_read_from_the_cpu_flags(tmp_path, units_of, text, units):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(text)
    assert getattr(runtime, units_of)(cpuinfo) == units
    assert getattr(runtime, units_of)(tmp_path / "missing") is None


def test_available_memory_is_read_from_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24576000 kB\nMemFree:         1000 kB\nMemAvailable:   20480000 kB\n")
    assert runtime.available_memory(meminfo) == 20480000 * 1024
    meminfo.write_text("MemTotal:       24576000 kB\n")  # kernels before 3.14 have no estimate
    assert runtime.available_memory(meminfo) is None
    assert runtime.available_memory(tmp_path / "missing") is None
