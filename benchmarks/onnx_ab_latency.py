"""Interleaved A/B latency of two ONNX files of one model in onnxruntime's CPU provider.

    python benchmarks/portable_export.py --weights runs/shapes_tiny --work_dir /tmp/pe
    python benchmarks/onnx_ab_latency.py --work_dir /tmp/pe --rounds 4

After `portable_export.py` has written its exports and the shapes val images into `--work_dir`,
times the float32 ONNX against the calibrated int8 ONNX (at batch 1 and at batch 8) in rounds
that alternate which file runs first: each file's median time per image over `--images` val
images after a warm-up call, and the ratio int8 / float of each round. A single pass of each file
(portable_export.py's own table) lets a noisy shared machine tilt the ratio; the range over
rounds shows how far.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import time

import cv2
import numpy as np
import onnxruntime

VARIANTS = {"float": "onnx_none_float32_batch{batch}", "int8": "onnx_int8_calibrated_float32_batch{batch}"}


def median_ms_per_image(session: onnxruntime.InferenceSession, batches: list[np.ndarray]) -> float:
    session.run(None, {"images": batches[0]})  # warm-up
    times = []
    for batch in batches:
        start = time.perf_counter()
        session.run(None, {"images": batch})
        times.append(time.perf_counter() - start)
    return statistics.median(times) / len(batches[0]) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work_dir", type=pathlib.Path, required=True, help="portable_export.py's --work_dir")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--images", type=int, default=96, help="val images timed (a multiple of 8)")
    args = parser.parse_args()
    paths = sorted((args.work_dir / "shapes" / "val").iterdir())[: args.images]
    images = [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) for path in paths]
    for batch in (1, 8):
        sessions = {
            name: onnxruntime.InferenceSession(
                str(args.work_dir / "exports" / folder.format(batch=batch) / "1" / "model.onnx"),
                providers=["CPUExecutionProvider"],
            )
            for name, folder in VARIANTS.items()
        }
        batches = [np.stack(images[i : i + batch]) for i in range(0, len(images) - batch + 1, batch)]
        ratios = []
        for round_number in range(args.rounds):
            order = list(VARIANTS) if round_number % 2 == 0 else list(reversed(VARIANTS))
            ms = {name: median_ms_per_image(sessions[name], batches) for name in order}
            ratios.append(ms["int8"] / ms["float"])
            print(f"batch {batch}, round {round_number}: float {ms['float']:.2f} ms, int8 {ms['int8']:.2f} ms "
                  f"per image, int8 / float {ratios[-1]:.2f}")  # fmt: skip
        print(f"batch {batch}: int8 / float {min(ratios):.2f}-{max(ratios):.2f} over {args.rounds} rounds")


if __name__ == "__main__":
    main()
