"""Every export of the COCO configs as a user runs it: peak memory of the export process, file
size, and latency at batch 1 in the format's own runtime.

    python benchmarks/export_memory.py --configs cornernet_hg104_coco squeeze_coco --work_dir /tmp/em
    python benchmarks/export_memory.py --configs squeeze_coco --variants onnx onnx_int8 --work_dir /tmp/em

Each variant is `python -m cornernet_tf.export --config C --random_weights --corner_pool
vectorized ...` in a child process (random weights: memory, size and latency do not depend on
the values), its peak resident memory read from the kernel when it exits (`os.wait4`); a watchdog
kills it once its resident memory passes `--limit_gib`. The export is then timed in another child:
the SavedModel's `serving_tensor` in TensorFlow, .tflite in LiteRT (XNNPACK), .onnx in
onnxruntime's CPU provider, on one random image at the config's input size, the median of
`--runs` calls after a warm-up call. int8 variants calibrate on `--calibration_images` random
images. Variants run one after another, so their latencies share a machine state only roughly:
compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

GIB = 1 << 30
CONFIGS = ("cornernet_hg104_coco", "centernet_hg104_coco", "centernet_hg52_coco", "squeeze_coco")
VARIANTS = {  # name: the export's flags
    "saved_model": [],
    "tflite": ["--format", "tflite"],
    "tflite_fp16": ["--format", "tflite", "--quantize", "fp16"],
    "tflite_int8": ["--format", "tflite", "--quantize", "int8", "--representative_images", "{images}"],
    "onnx": ["--format", "onnx"],
    "onnx_int8": ["--format", "onnx", "--quantize", "int8", "--representative_images", "{images}"],
}


def run_export(config: str, variant: str, work_dir: pathlib.Path, images: pathlib.Path, limit: float, count: int):
    """(peak GiB or None when killed, seconds, version folder) of one export in a child process."""
    export_dir = work_dir / config / variant
    shutil.rmtree(export_dir, ignore_errors=True)
    flags = [flag.format(images=images) for flag in VARIANTS[variant]]
    if "--representative_images" in flags:
        flags += ["--calibration_images", str(count)]
    command = [sys.executable, "-m", "cornernet_tf.export", "--config", config, "--random_weights"]
    command += ["--corner_pool", "vectorized", "--export_dir", str(export_dir), *flags]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        try:
            with open(f"/proc/{child.pid}/statm") as statm:
                resident = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            resident = 0
        if resident > limit * GIB:
            child.kill()
            os.wait4(child.pid, 0)
            return None, time.perf_counter() - start, None
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    output = child.stdout.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output[-3000:]}")
    needs = [line for line in output.splitlines() if "needs about" in line]
    if needs:
        print(f"    export said: {needs[0]}", flush=True)
    return usage.ru_maxrss * 1024 / GIB, seconds, export_dir / "1"


def file_size(version: pathlib.Path) -> int:
    return sum(path.stat().st_size for path in version.rglob("*") if path.is_file())


def time_export(version: pathlib.Path, runs: int) -> float:
    """Median ms of one image through `version`, measured in a child process."""
    output = subprocess.run(
        [sys.executable, __file__, "--time", str(version), "--runs", str(runs)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(output.strip().splitlines()[-1])


def latency(version: pathlib.Path, runs: int) -> float:
    import numpy as np

    import cornernet_tf  # noqa: F401 (the package's CPU runtime set-up first)

    if (version / "export_info.json").exists():
        from cornernet_tf.portable import fixed_size_runner

        run, info = fixed_size_runner(version)
        height, width = info["input"]["shape"][1:3]
    else:
        import tensorflow as tf
        import yaml

        signature = tf.saved_model.load(str(version)).signatures["serving_tensor"]
        config = yaml.safe_load((version / "assets" / "config.yaml").read_text())
        height, width = config["data"]["input_size"]

        def run(images):
            return signature(images=tf.constant(images))

    image = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    run(image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(image)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def write_images(folder: pathlib.Path, count: int, size: int) -> pathlib.Path:
    import cv2
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for index in range(count):
        cv2.imwrite(str(folder / f"{index}.png"), rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--work_dir", type=pathlib.Path, default=pathlib.Path("/tmp/export_memory"))
    parser.add_argument("--limit_gib", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calibration_images", type=int, default=8)
    parser.add_argument("--time", type=pathlib.Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time is not None:
        print(f"{latency(args.time, args.runs):.1f}")
        return 0
    images = write_images(args.work_dir / "calibration", args.calibration_images, 512)
    rows = []
    for config in args.configs:
        for variant in args.variants:
            print(f"{config} {variant}: exporting", flush=True)
            peak, seconds, version = run_export(
                config, variant, args.work_dir, images, args.limit_gib, args.calibration_images
            )
            if version is None:
                row = {"config": config, "variant": variant, "peak_gib": None, "export_s": seconds}
                print(f"    KILLED at {args.limit_gib} GiB resident after {seconds:.0f} s", flush=True)
            else:
                row = {
                    "config": config,
                    "variant": variant,
                    "peak_gib": round(peak, 2),
                    "export_s": round(seconds, 1),
                    "file_mb": round(file_size(version) / 1e6, 1),
                    "ms_batch1": time_export(version, args.runs),
                }
                print(f"    {json.dumps(row)}", flush=True)
                shutil.rmtree(version.parent)
            rows.append(row)
    print("\n| config | variant | export peak | export time | file | ms/image, batch 1 |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        if row["peak_gib"] is None:
            print(f"| {row['config']} | {row['variant']} | killed at {args.limit_gib:g} GiB | | | |")
        else:
            print(
                f"| {row['config']} | {row['variant']} | {row['peak_gib']:.2f} GiB | {row['export_s']:.0f} s | "
                f"{row['file_mb']:.0f} MB | {row['ms_batch1']:.0f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
