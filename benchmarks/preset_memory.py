"""Peak memory of a preset's first use (download, check, convert, cache) against its file's size.

    python benchmarks/preset_memory.py arrays --config centernet_hg104_coco --work_dir /tmp/pm
    /path/to/python-with-torch benchmarks/preset_memory.py checkpoint --work_dir /tmp/pm
    python benchmarks/preset_memory.py measure --config centernet_hg104_coco --work_dir /tmp/pm

The first step writes the official state_dict of the config's network with random values (a .npz),
the second turns it into the file the authors published (`torch.save` in PyTorch's legacy format,
`module.` prefixed: the only step that needs PyTorch, in any environment that has it), the third
serves that file from a local HTTP server as the mirror ($CORNERNET_TF_WEIGHTS_MIRROR) of a preset
of that config and runs `pretrained.fetch` in a fresh process, reporting its peak resident memory
(`ru_maxrss`) and wall time beside the file's size. The baseline is a process that imports
TensorFlow and builds the same network with nothing else (what any use of the model costs).
"""

from __future__ import annotations

import argparse
import collections
import functools
import http.server
import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import numpy as np

FILE_NAME = "checkpoint.pkl"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=["arrays", "checkpoint", "measure", "child"])
    parser.add_argument("--config", default="centernet_hg104_coco", help="bundled config (the largest preset's)")
    parser.add_argument("--work_dir", default="runs/preset_memory")
    return parser.parse_args(argv)


def arrays(config_name: str, work: pathlib.Path) -> None:
    from cornernet_tf.config import load_config
    from cornernet_tf.tasks.model import build_model
    from cornernet_tf.tasks.official_weights import official_entries

    model = build_model(load_config(config_name).model, corner_pool="vectorized")
    rng = np.random.default_rng(0)
    values = {}
    for key, variable, _ in official_entries(model):
        shape = tuple(variable.shape)
        if len(shape) == 4:  # HWIO here, OIHW (depthwise: C1HW) in PyTorch
            shape = (shape[2], 1, shape[0], shape[1]) if "conv_3x3" in key else (shape[3], shape[2], shape[0], shape[1])
        values[key] = rng.standard_normal(shape, dtype=np.float32) * 0.01
    work.mkdir(parents=True, exist_ok=True)
    np.savez(work / "arrays.npz", **values)


def checkpoint(work: pathlib.Path) -> None:
    import torch

    with np.load(work / "arrays.npz") as data:
        state = collections.OrderedDict((f"module.{k}", torch.from_numpy(data[k])) for k in data.files)
    torch.save(state, work / FILE_NAME, _use_new_zipfile_serialization=False)


def child(config_name: str, work: pathlib.Path) -> None:
    """In a fresh process: fetch the preset (or, with `baseline` in the environment, only build
    the network); print the peak resident memory."""
    import resource

    start = time.perf_counter()
    if os.environ.get("PRESET_MEMORY_BASELINE"):
        from cornernet_tf.config import load_config
        from cornernet_tf.tasks.model import build_model

        build_model(load_config(config_name).model, corner_pool="vectorized")
    else:
        from cornernet_tf.api import pretrained

        pretrained.PRESETS["benchmark"] = pretrained.PretrainedPreset(
            name="benchmark",
            config=config_name,
            file_name=FILE_NAME,
            sources=(),
            box_ap=0.0,
            ap_note="",
            parameters=0,
        )
        pretrained.fetch("benchmark", on_progress=lambda message: None)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_bytes": peak, "seconds": time.perf_counter() - start}))


def measure(config_name: str, work: pathlib.Path) -> None:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(work))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    size = (work / FILE_NAME).stat().st_size
    results = {"config": config_name, "file_bytes": size}
    for name, extra in (("baseline", {"PRESET_MEMORY_BASELINE": "1"}), ("fetch", {})):
        cache = work / f"cache_{name}"
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CORNERNET_TF_HOME=str(cache), **extra)
        env["CORNERNET_TF_WEIGHTS_MIRROR"] = f"http://127.0.0.1:{server.server_address[1]}"
        command = [sys.executable, __file__, "child", "--config", config_name, "--work_dir", str(work)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    server.shutdown()
    gib = 2**30
    fetch, baseline = results["fetch"]["peak_bytes"], results["baseline"]["peak_bytes"]
    print(json.dumps(results, indent=2))
    print(
        f"{config_name}: file {size / gib:.2f} GiB; first use peak {fetch / gib:.2f} GiB = {fetch / size:.2f}x the "
        f"file ({results['fetch']['seconds']:.0f} s); building the network alone {baseline / gib:.2f} GiB; the "
        f"fetch's extra over that {(fetch - baseline) / size:.2f}x the file"
    )
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = pathlib.Path(args.work_dir).resolve()
    if args.step == "arrays":
        arrays(args.config, work)
    elif args.step == "checkpoint":
        checkpoint(work)
    elif args.step == "child":
        child(args.config, work)
    else:
        measure(args.config, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
