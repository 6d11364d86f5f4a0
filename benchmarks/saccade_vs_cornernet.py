"""CornerNet-Saccade against CornerNet on small objects in larger images, each trained for the same wall time.

    python benchmarks/saccade_vs_cornernet.py [--minutes 10] [--val_images 200] [--rounds 3] [--work_dir DIR]
    python benchmarks/saccade_vs_cornernet.py --skip_training --work_dir DIR   # re-evaluate the kept checkpoints
    python benchmarks/saccade_vs_cornernet.py --skip_training --work_dir DIR --saccade_set detection.init_sizes=[192]
    python benchmarks/saccade_vs_cornernet.py --skip_training --work_dir DIR --val_scale 2   # the val scenes at 768 px
    python benchmarks/saccade_vs_cornernet.py --minutes 0.5 --val_images 8 --train_images 64 --rounds 2   # smoke run

The CornerNet-Lite paper's claim in miniature: CornerNet-Saccade, trained for the same time as a
CornerNet, is about as accurate and faster per image. Both models train on the built-in dataset
of configs/saccade_shapes_tiny.yaml (384 x 384 images, up to 10 objects of 12-48 px):

- CornerNet-Saccade, configs/saccade_shapes_tiny.yaml: trains on 255 x 255 crops around a
  reference object; tests with `test_mode: saccade` (its config's `detection` section): the image
  at longer side 96 and 192, then at most 8 attention crops.
- CornerNet, configs/cornernet_small_objects.yaml (the network of shapes_tiny): trains on
  383 x 383 crops of the rescaled images; tests with `test_mode: pad`: the whole image padded to
  415 x 415, scale 1, no flip.

Training is the train command's (`tasks.training.build_trainer` and `Trainer.fit`, in a fresh
process per model, the dataset generated beforehand), each for `--minutes` of `Trainer.fit` wall
time (model building excluded; the first step's tracing included). Both configs decay the
learning rate by a cosine over train.steps, so train.steps is set to what fits the budget: a
calibration run (thrown away) measures the first step (tracing, pipeline start) and the mean
time of the next `CALIBRATION_STEPS` steps, and train.steps = (budget - first step) / step time.
The real run stops at whichever comes first, that step count or the budget: past the budget the
stopwatch the loop reports to raises SIGTERM in its own process, and the loop does what it does
for a train command sent SIGTERM (saves the checkpoint of the step, raises StopRequested). Every
other setting is the config's (batch 16, lr 1e-3, 100 warm-up steps, checkpoints every 250).
The runs' folders (`<work_dir>/saccade`, `<work_dir>/cornernet`: checkpoints, config.yaml,
train_info.json) are kept, so `--skip_training` evaluates them again.

Evaluation is `tasks.evaluation.evaluate_model` on the first `--val_images` val images (COCO AP,
AP50, AP_small). The CPU test time per image is measured after it, in this process, over the
same val images already decoded (image reading is left out), interleaved: each round times one
detector over every image then the other, the order alternating by round; a detector is the
tf.function evaluate_model runs (`tasks.evaluation.batch_detector`, batch 1) and
an image's time ends when its detections are numpy arrays. The table gives the median over the
rounds of each round's mean time per image, and the range.

Where Saccade's time goes: `saccade.saccade_detect` on each val image inside one tf.function,
with `tf.timestamp()` stamps around its pieces (taken in the graph, ordered by control
dependencies): the crops (`saccade.prepare_images`), the network with its corner decoding and
attention NMS (`saccade._run_network`), per pass (the first on the init_sizes crops, then each
attention round), and the merge (`saccade.merge_detections`, the per-class soft-NMS); "other" is
the rest of the procedure (attention decoding, location NMS, mapping the crops' boxes to the
image). The stamped pieces are swapped into the `saccade` module only while the function traces.
Crops per image come
from the `locations` it returns; an attention round without crops does not run the network.

The last lines are the ratios Saccade / CornerNet and whether the target holds: Saccade's AP
within 0.02 of CornerNet's (or better) and no slower per image. Results go to docs/benchmarks.md
by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import pathlib
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import cornernet_tf  # noqa: F401 (before TensorFlow: the CPU runtime set-up a user of the package gets)

# isort: split
import cv2
import keras
import numpy as np
import tensorflow as tf

from cornernet_tf.config import Config, load_config
from cornernet_tf.data.image_info import ORIGINAL_HEIGHT, ORIGINAL_WIDTH
from cornernet_tf.detection import inference, saccade
from cornernet_tf.tasks.data import dataset_info, eval_dataset, split_files
from cornernet_tf.tasks.evaluation import batch_detector, evaluate_model, with_test_overrides
from cornernet_tf.tasks.model import build_model
from cornernet_tf.training.checkpoint import SAVED_CONFIG, load_weights

# key -> (bundled config, name in the tables)
MODELS = {
    "saccade": ("saccade_shapes_tiny", "CornerNet-Saccade"),
    "cornernet": ("cornernet_small_objects", "CornerNet"),
}
CALIBRATION_STEPS = 10  # timed steps after the first of the calibration run
CALIBRATION_SHARE = 0.1  # at most this share of the budget on them (at least 2)
TRAIN_INFO = "train_info.json"
AP_MARGIN = 0.02  # the target: Saccade's AP at least CornerNet's - AP_MARGIN
PRINT_EVERY_S = 30.0


def config_overrides(args: argparse.Namespace) -> list[str]:
    """What both runs change in their configs: no periodic evaluation; with --train_images, a
    smaller dataset of the same kind in the work dir (never the shared cache, which
    `shapes.ensure_dataset` would replace)."""
    overrides = ["train.eval_every=0"]
    if args.train_images:
        root = pathlib.Path(args.work_dir) / f"shapes_{args.train_images}_{args.val_images}"
        overrides += [
            f"data.shapes_dir={root}",
            f"data.shapes_train={args.train_images}",
            f"data.shapes_val={args.val_images}",
        ]
    return overrides


# ---- training (a worker process per model) ----


class WallClock:
    """The progress the training loop reports each step to: records the step times, prints a
    line every PRINT_EVERY_S seconds and, `seconds` after `start()` (or after the first step,
    `from_first_step`) with more than `min_steps` steps done, raises SIGTERM in this process, so
    that the loop saves the checkpoint of the step and raises StopRequested."""

    def __init__(self, label: str, seconds: float, total: int, from_first_step: bool = False, min_steps: int = 1):
        self.label, self.seconds, self.total = label, seconds, total
        self.from_first_step, self.min_steps = from_first_step, min_steps
        self.begin = self.printed = time.perf_counter()
        self.times: list[float] = []
        self.stop_sent = False

    def start(self) -> None:
        self.begin = self.printed = time.perf_counter()

    def update(self, step: int, losses: dict, *args, **kwargs) -> None:
        now = time.perf_counter()
        self.times.append(now)
        if now - self.printed >= PRINT_EVERY_S:
            self.printed = now
            recent = np.diff(self.times[-21:])
            rate = f", {recent.mean():.2f} s/step" if len(recent) else ""
            print(
                f"  {self.label}: step {step}/{self.total}{rate}, loss {losses.get('total', float('nan')):.3f}, "
                f"{now - self.begin:.0f} of {self.seconds:.0f} s",
                flush=True,
            )
        origin = self.times[0] if self.from_first_step else self.begin
        if not self.stop_sent and now - origin >= self.seconds and len(self.times) > self.min_steps:
            self.stop_sent = True
            signal.raise_signal(signal.SIGTERM)

    def message(self, text: str) -> None:
        print(f"  {self.label}: {text}", flush=True)


def _fit(
    config: Config, model_dir: pathlib.Path, clock: WallClock, max_steps: int | None = None
) -> tuple[int, bool, float]:
    """Train as the train command does, from scratch; returns (the last step, stopped by the
    clock, seconds in `Trainer.fit`)."""
    from cornernet_tf.tasks.training import build_trainer
    from cornernet_tf.training.loop import StopRequested
    from cornernet_tf.training.strategy import make_strategy

    keras.utils.set_random_seed(config.train.seed)
    trainer = build_trainer(config, make_strategy("default"), model_dir)
    config.save(model_dir / SAVED_CONFIG)
    clock.start()
    try:
        step, stopped = trainer.fit(clock, max_steps=max_steps), False
    except StopRequested as stop:
        step, stopped = stop.step, True
    return step, stopped, time.perf_counter() - clock.begin


def train_worker(args: argparse.Namespace) -> None:
    """Calibrate the step time, then train `args.model` for the budget (see the module doc)."""
    from cornernet_tf.tasks.training import use_mixed_precision

    name, label = MODELS[args.model]
    budget = args.minutes * 60.0
    overrides = config_overrides(args)
    use_mixed_precision(load_config(name, overrides).train)
    work_dir = pathlib.Path(args.work_dir)

    calibration_dir = work_dir / f"calibration_{args.model}"
    shutil.rmtree(calibration_dir, ignore_errors=True)
    calibration = load_config(name, [*overrides, "train.steps=1000000", "train.checkpoint_every=1000000"])
    limit = max(CALIBRATION_SHARE * budget, 1e-3)
    clock = WallClock(f"{label} calibration", limit, CALIBRATION_STEPS + 1, from_first_step=True, min_steps=2)
    _fit(calibration, calibration_dir, clock, max_steps=CALIBRATION_STEPS + 1)
    shutil.rmtree(calibration_dir, ignore_errors=True)
    first_step = clock.times[0] - clock.begin
    step_s, timed_steps = float(np.mean(np.diff(clock.times))), len(clock.times) - 1
    steps = max(1, int((budget - first_step) / step_s))
    print(
        f"{label}: calibration: first step {first_step:.1f} s, then {step_s:.3f} s/step over "
        f"{timed_steps} steps -> train.steps={steps} for {budget:.0f} s",
        flush=True,
    )
    gc.collect()

    config = load_config(name, [*overrides, f"train.steps={steps}"])
    model_dir = work_dir / args.model
    clock = WallClock(label, budget, steps)
    last_step, stopped, seconds = _fit(config, model_dir, clock)
    info = {
        "config": name,
        "planned_steps": steps,
        "steps": last_step,
        "stopped_by_budget": stopped,
        "fit_seconds": seconds,
        "budget_seconds": budget,
        "batch_size": config.train.batch_size,
        "input_size": list(config.data.input_size),
        "calibration": {"first_step_s": first_step, "step_s": step_s, "steps": timed_steps},
        "mean_step_s": float(np.mean(np.diff(clock.times))) if len(clock.times) > 1 else None,
    }
    (model_dir / TRAIN_INFO).write_text(json.dumps(info, indent=2))
    print(
        f"{label}: trained {last_step} of {steps} steps in {seconds:.0f} s"
        f"{' (stopped at the budget)' if stopped else ''}; {model_dir}",
        flush=True,
    )


def train(key: str, args: argparse.Namespace) -> None:
    """`train_worker` of one model in a fresh process (its own TensorFlow runtime and memory)."""
    cmd = [sys.executable, __file__, "--worker", "train", "--model", key, "--work_dir", str(args.work_dir)]
    cmd += ["--minutes", str(args.minutes), "--val_images", str(args.val_images)]
    cmd += ["--train_images", str(args.train_images)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    if subprocess.run(cmd, check=False, env=env).returncode:
        sys.exit(f"training {MODELS[key][1]} failed (see above)")


# ---- evaluation and CPU time ----


def detector(model: keras.Model, config: Config) -> tf.types.experimental.GenericFunction:
    """The detections of one batch as `evaluate_model` computes them, for one test scale."""
    return batch_detector(model, config.detection, 1, config.data)


def scaled_val_split(config: Config, scale: float, work_dir: pathlib.Path) -> list[str]:
    """The config's val split with every image resized by `scale` (bilinear) and its boxes scaled,
    written once as a COCO split under `work_dir`; returns the overrides that evaluate on it."""
    files = split_files(config, "val")
    folder = work_dir / f"val_x{scale:g}"
    annotations_path = folder / "instances_val.json"
    if not annotations_path.is_file():
        dataset = json.loads(pathlib.Path(files.annotations).read_text())
        (folder / "images").mkdir(parents=True, exist_ok=True)
        for image in dataset["images"]:
            pixels = cv2.imread(str(pathlib.Path(files.images) / image["file_name"]))
            size = (round(image["width"] * scale), round(image["height"] * scale))
            cv2.imwrite(str(folder / "images" / image["file_name"]), cv2.resize(pixels, size))
            image["width"], image["height"] = size
        for annotation in dataset["annotations"]:
            annotation["bbox"] = [value * scale for value in annotation["bbox"]]
            annotation["area"] *= scale * scale
        annotations_path.write_text(json.dumps(dataset))
    return ["data.dataset=coco", f"data.val_annotations={annotations_path}", f"data.val_images={folder / 'images'}"]


def val_inputs(config: Config) -> list[tuple[int, tf.Tensor, tf.Tensor]]:
    """(image id, images [1, H, W, 3], image_info [1, 6]) of the evaluated val images, in memory."""
    return [(int(meta["image_id"][0]), images, meta["image_info"]) for images, meta in eval_dataset(config, "val", 1)]


def time_round(detect, inputs: list) -> float:
    """Mean seconds per image of `detect` over `inputs`, each until its detections are numpy."""
    start = time.perf_counter()
    for _, images, info in inputs:
        [value.numpy() for value in detect([(images, info)]).values()]
    return (time.perf_counter() - start) / len(inputs)


class Stamps:
    """tf.timestamp() pairs around pieces of a traced graph: `begin` stamps once its inputs are
    computed and returns them gated on the stamp; `end` stamps once the outputs are computed."""

    def __init__(self) -> None:
        self.pieces: list[tuple[str, tf.Tensor]] = []
        self.round = 0

    @staticmethod
    def begin(tensors):
        with tf.control_dependencies([t for t in tf.nest.flatten(tensors) if t is not None]):
            stamp = tf.timestamp()
        with tf.control_dependencies([stamp]):
            return stamp, tf.nest.map_structure(lambda t: None if t is None else tf.identity(t), tensors)

    def end(self, label: str, stamp: tf.Tensor, tensors) -> None:
        with tf.control_dependencies([t for t in tf.nest.flatten(tensors) if t is not None]):
            self.pieces.append((label, tf.timestamp() - stamp))


def saccade_pieces(model: keras.Model, config: Config):
    """A tf.function (image [H, W, 3] in 0..255) -> ({piece: seconds}, [crops per attention round]),
    `saccade_detect` as `detect_saccade` runs it, stamped (see the module doc)."""
    detection, data = config.detection, config.data
    settings = inference.saccade_settings(model, detection, data.input_size, data.mean, data.std)
    stamps = Stamps()
    detect_crops = inference.crop_detector(model, settings)
    prepare_images, merge_detections = saccade.prepare_images, saccade.merge_detections
    run_network = saccade._run_network

    def timed_run_network(detect, crops, with_attention, search):
        stamp, crops = stamps.begin(crops)
        result = run_network(detect, crops, with_attention, search)
        stamps.end(f"network {stamps.round}", stamp, result)
        stamps.round += 1
        return result

    def timed_prepare(image, locations, input_size):
        stamp, (image, locations) = stamps.begin((image, locations))
        result = prepare_images(image, locations, input_size)
        stamps.end(f"crop {stamps.round}", stamp, result)
        return result

    def timed_merge(dets, *args, **kwargs):
        stamp, dets = stamps.begin(dets)
        result = merge_detections(dets, *args, **kwargs)
        stamps.end("merge", stamp, result)
        return result

    def pieces(image):
        stamps.pieces, stamps.round = [], 0
        start, image = stamps.begin(image)
        found = saccade.saccade_detect(image, detect_crops, settings)
        stamps.end("total", start, found)
        return dict(stamps.pieces), [tf.shape(locations)[0] for locations in found["locations"][1:]]

    function = tf.function(pieces, input_signature=[tf.TensorSpec([None, None, 3], tf.float32)])
    saccade.prepare_images, saccade.merge_detections = timed_prepare, timed_merge
    saccade._run_network = timed_run_network
    try:  # traced with the stamped pieces; the module is left as it was
        function.get_concrete_function()
    finally:
        saccade.prepare_images, saccade.merge_detections = prepare_images, merge_detections
        saccade._run_network = run_network
    return function


def saccade_breakdown(model: keras.Model, config: Config, inputs: list) -> dict:
    """Mean ms per image of each piece of Saccade's test over `inputs`, and the crops per image."""
    pieces = saccade_pieces(model, config)
    totals: dict[str, list[float]] = {}
    crops: list[list[int]] = []
    for _, images, info in inputs:
        height, width = (int(info[0, k]) for k in (ORIGINAL_HEIGHT, ORIGINAL_WIDTH))
        times, counts = pieces(images[0, :height, :width] * 255.0)
        for label, seconds in times.items():
            totals.setdefault(label, []).append(float(seconds))
        crops.append([int(c) for c in counts])
    means = {label: 1000 * statistics.mean(values) for label, values in totals.items()}
    rounds = len(crops[0]) + 1
    rows = []
    for r in range(rounds):
        what = f"first pass ({len(config.detection.init_sizes)} crops)" if r == 0 else f"attention round {r}"
        network = means[f"network {r}"]
        rows += [
            (f"{what}: crops (prepare_images)", means[f"crop {r}"]),
            (f"{what}: network, corner decoding, attention NMS", network),
        ]
    rows.append(("merge (per-class soft-NMS)", means["merge"]))
    accounted = sum(value for _, value in rows)
    rows.append(("other (attention decoding, location NMS, mapping boxes)", means["total"] - accounted))
    per_image = np.array(crops).sum(axis=1)
    return {
        "rows": rows,
        "total_ms": means["total"],
        "crops_mean": float(per_image.mean()),
        "crops_max": int(per_image.max()),
        "no_crops": int((per_image == 0).sum()),
        "images": len(inputs),
    }


@dataclasses.dataclass
class Result:
    """One model's numbers."""

    label: str
    config: Config
    params: int
    train: dict
    metrics: dict
    round_times: list[float] = dataclasses.field(default_factory=list)


def load_run(
    key: str, work_dir: pathlib.Path, val_images: int, overrides: list[str]
) -> tuple[keras.Model, Config, dict]:
    model_dir = work_dir / key
    if not (model_dir / TRAIN_INFO).is_file():
        sys.exit(f"no finished run in {model_dir} ({TRAIN_INFO} missing); train first, without --skip_training")
    config = with_test_overrides(load_config(model_dir / SAVED_CONFIG, overrides), max_images=val_images)
    model = build_model(config.model)
    print(f"{MODELS[key][1]}: weights {load_weights(model, model_dir)}", flush=True)
    return model, config, json.loads((model_dir / TRAIN_INFO).read_text())


def _span(values: list[float], scale: float = 1.0, fmt: str = ".1f") -> str:
    median = statistics.median(values) * scale
    return f"{median:{fmt}} ({min(values) * scale:{fmt}}-{max(values) * scale:{fmt}})"


def _test_description(config: Config, val_scale: float) -> str:
    detection = config.detection
    if detection.test_mode == "saccade":
        return (
            f"saccade: init_sizes {detection.init_sizes}, at most {detection.att_max_crops} crops of "
            f"{config.data.input_size[0]} px"
        )
    image_side = round(config.data.shapes_image_size * val_scale)
    side = [image_side | (config.model.size_divisor - 1)] * 2
    return (
        f"{detection.test_mode}: scales {detection.scales}, flip {str(detection.flip).lower()} "
        f"({side[0]} x {side[1]} input)"
    )


def report(results: dict[str, Result], breakdown: dict, args: argparse.Namespace, rounds: int) -> None:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor() or platform.machine(),
    )
    threads = tf.config.threading.get_intra_op_parallelism_threads()
    cores = len(os.sched_getaffinity(0))
    sac, cn = results["saccade"], results["cornernet"]
    print(f"\nCPU {cpu}, {cores} cores available, TF {tf.__version__}, intra-op threads {threads or 'default'}")
    print(f"command: python {' '.join(sys.argv)}")
    print(f"work dir: {args.work_dir}\n")

    def row(name: str, fn) -> None:
        print(f"| {name} | {fn(sac)} | {fn(cn)} |")

    def steps(r: Result) -> str:
        t = r.train
        stop = ", stopped at the budget" if t["stopped_by_budget"] else ""
        return (
            f"{t['steps']} of {t['planned_steps']} planned ({t['calibration']['step_s']:.2f} s/step calibrated{stop})"
        )

    print(f"| | {sac.label} | {cn.label} |\n| --- | --- | --- |")
    row("config", lambda r: r.train["config"])
    row("parameters", lambda r: f"{r.params:,}")
    row(
        "training input",
        lambda r: f"{r.train['input_size'][0]} x {r.train['input_size'][1]}, batch {r.train['batch_size']}",
    )
    row(
        "training wall time (Trainer.fit)",
        lambda r: f"{r.train['fit_seconds']:.0f} s of {r.train['budget_seconds']:.0f} s",
    )
    row("steps", steps)
    row("test", lambda r: _test_description(r.config, args.val_scale))
    images = int(sac.metrics["num_images"])
    for name in ("AP", "AP50", "AP_small"):
        row(f"val {name} ({images} images)", lambda r, name=name: f"{r.metrics[name]:.3f}")
    row(
        f"CPU test time per image, ms, median (range) of {rounds} rounds",
        lambda r: _span(r.round_times, 1000.0),
    )

    print(
        f"\n{sac.label}'s test, where the time goes (in-graph stamps, mean over {breakdown['images']} val images; "
        f"crops after the first pass per image: mean {breakdown['crops_mean']:.1f}, max {breakdown['crops_max']}, "
        f"{breakdown['no_crops']} images with none):"
    )
    print("| piece | ms per image | share |\n| --- | --- | --- |")
    for name, ms in breakdown["rows"]:
        print(f"| {name} | {ms:.2f} | {ms / breakdown['total_ms']:.0%} |")
    print(f"| total (saccade_detect, stamped) | {breakdown['total_ms']:.2f} | 100% |")

    ap_difference = sac.metrics["AP"] - cn.metrics["AP"]
    ratios = [s / c for s, c in zip(sac.round_times, cn.round_times)]
    accurate = ap_difference >= -AP_MARGIN
    fast = statistics.median(ratios) <= 1.0
    print(
        f"\nSaccade / CornerNet: AP difference {ap_difference:+.3f} (AP {sac.metrics['AP']:.3f} vs "
        f"{cn.metrics['AP']:.3f}), AP_small difference {sac.metrics['AP_small'] - cn.metrics['AP_small']:+.3f}; "
        f"time per image x{_span(ratios, fmt='.2f')} (same rounds)"
    )
    print(
        f"target (AP within {AP_MARGIN} of CornerNet's or better, and no slower per image): "
        f"{'holds' if accurate and fast else 'does not hold'} "
        f"(AP {'ok' if accurate else 'short'}, time {'ok' if fast else 'slower'})"
        + (
            "; both APs are near 0: too little training to compare"
            if max(sac.metrics["AP"], cn.metrics["AP"]) < 0.01
            else ""
        )
    )


def evaluate(args: argparse.Namespace) -> None:
    work_dir = pathlib.Path(args.work_dir)
    results, models, inputs = {}, {}, {}
    for key, (_, label) in MODELS.items():
        overrides = args.saccade_set if key == "saccade" else args.cornernet_set
        if args.val_scale != 1:
            saved = load_config(work_dir / key / SAVED_CONFIG)
            overrides = [*overrides, *scaled_val_split(saved, args.val_scale, work_dir)]
        model, config, info = load_run(key, work_dir, args.val_images, overrides)
        metrics, _ = evaluate_model(model, config)
        print(f"{label}: val AP {metrics['AP']:.3f}, AP_small {metrics['AP_small']:.3f}", flush=True)
        results[key] = Result(label, config, model.count_params(), info, metrics)
        models[key] = model
        inputs[key] = val_inputs(config)
    ids = {key: [i for i, _, _ in found] for key, found in inputs.items()}
    if ids["saccade"] != ids["cornernet"]:
        sys.exit("the two configs' val images differ; they must share the dataset")

    detectors = {key: detector(models[key], results[key].config) for key in MODELS}
    for key, detect in detectors.items():  # trace and warm up
        time_round(detect, inputs[key][:2])
    for round_index in range(args.rounds):
        order = list(MODELS) if round_index % 2 == 0 else list(reversed(MODELS))
        for key in order:
            results[key].round_times.append(time_round(detectors[key], inputs[key]))
        print(
            f"round {round_index + 1}: "
            + ", ".join(f"{results[k].label} {results[k].round_times[-1] * 1000:.1f} ms/image" for k in order),
            flush=True,
        )
    breakdown = saccade_breakdown(models["saccade"], results["saccade"].config, inputs["saccade"])
    report(results, breakdown, args, args.rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training wall time of each model")
    parser.add_argument("--val_images", type=int, default=200, help="val images evaluated and timed (0 = all)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--work_dir", default=None, help="runs and checkpoints (default: a new temporary folder, kept)")
    parser.add_argument("--skip_training", action="store_true", help="evaluate the runs already in --work_dir")
    parser.add_argument(
        "--train_images",
        type=int,
        default=0,
        help="generate a dataset of this many training (and --val_images val) images in the work dir "
        "instead of the config's 2000 + 200 (smoke runs)",
    )
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads of the timing (0 = TF's default)")
    parser.add_argument(
        "--val_scale",
        type=float,
        default=1.0,
        help="evaluate and time on the val images resized by this factor (boxes too): the same scenes, larger",
    )
    for key in MODELS:
        parser.add_argument(
            f"--{key}_set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"a test-time override of the {MODELS[key][1]} run's config (e.g. detection.att_max_crops=4)",
        )
    parser.add_argument("--worker", choices=["train"], help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=list(MODELS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        train_worker(args)
        return
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    if args.skip_training and not args.work_dir:
        parser.error("--skip_training needs the --work_dir of the runs to evaluate")
    if args.train_images and not args.val_images:
        parser.error("--train_images needs a --val_images count (the val images generated with them)")
    args.work_dir = str(pathlib.Path(args.work_dir or tempfile.mkdtemp(prefix="saccade_vs_cornernet_")).resolve())
    print(f"work dir {args.work_dir}", flush=True)
    if not args.skip_training:
        taken = [key for key in MODELS if (pathlib.Path(args.work_dir) / key).exists()]
        if taken:
            sys.exit(
                f"{args.work_dir} already holds runs ({', '.join(taken)}): pass --skip_training or another --work_dir"
            )
        config = load_config(MODELS["saccade"][0], config_overrides(args))
        for split in ("train", "val"):  # generated once, before the clocks start
            print(f"{split} data: {dataset_info(config, split).summary}", flush=True)
        for key in MODELS:
            train(key, args)
    evaluate(args)


if __name__ == "__main__":
    main()
