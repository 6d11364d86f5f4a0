"""Train CornerNet: `python -m cornernet_tf.train [--config FILE] [--set key=value ...]
[--strategy default|one_device|mirrored|multi_worker|tpu] [--model_dir DIR] [--resume]
[--allow_config_change] [--init_weights NAME|FILE] [--no_eval] [--verbose]`.

With no config it trains `configs/shapes_tiny.yaml` on the built-in shapes dataset (generated on
first use), then evaluates on its validation split and writes a picture of detections.
Starting the same command again after an interruption continues from the last checkpoint, and
sees the batches the uninterrupted run would have: a config change that would break that (see
RESUMABLE_CHANGES) is refused unless --allow_config_change says so.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import tempfile
import warnings
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from cornernet_tf.api import pretrained
from cornernet_tf.config import Config, ConfigError, TrainConfig, load_config
from cornernet_tf.training.checkpoint import (
    CHECKPOINT_SUBDIR,
    SAVED_CONFIG,
    CheckpointWriteError,
    find_saved_config,
    load_weights,
)
from cornernet_tf.training.loop import NonFiniteLossError, StopRequested, Trainer
from cornernet_tf.training.progress import ProgressLogger
from cornernet_tf.training.strategy import PEER_LOST_ERRORS, STRATEGIES, lost_workers, make_strategy
from cornernet_tf.utils import cli, runtime

# Config fields a resumed run may change: they touch neither the weights, nor the optimizer and
# its learning rates, nor the training input stream (a function of the sample index, data.seed
# and the batch size), so the run still sees the batches and takes the steps an uninterrupted
# run would have. A section name covers all its fields. Any other change breaks that; a change of
# the model is refused even with --allow_config_change, since the checkpoint could not load.
# the temporary folder of a training run's weights written for --init_weights (`_run_weights_file`)
INIT_WEIGHTS_PREFIX = "cornernet_tf_init_"
RESUMABLE_CHANGES = frozenset(
    {
        "name",
        "detection",
        "eval",
        "export",
        "train.steps",  # except under the cosine schedule, which decays over it (breaks_resumption)
        "train.checkpoint_every",
        "train.keep_checkpoints",
        "train.log_every",
        "train.finish_batches",  # where the batch is finished, not what it holds
        "train.eval_every",
        "data.class_names",  # they name the class ids, which stay
        "data.num_parallel_calls",  # the order depends on it only when data.deterministic is false
        "data.shapes_dir",  # a cache: its images are a function of the other shapes_* fields
        "data.shapes_val",  # the validation split, generated apart from the training one
        "data.val_annotations",
        "data.val_images",
        "data.val_tfrecords",
    }
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cornernet_tf.train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="shapes_tiny", help="YAML file or bundled config name")
    cli.add_override_flag(parser, "train.batch_size=8")
    parser.add_argument("--strategy", choices=STRATEGIES, default="default")
    parser.add_argument("--model_dir", default=None, help="checkpoints, logs and results (default runs/<config>)")
    parser.add_argument("--resume", action="store_true", help="require a checkpoint to continue from")
    parser.add_argument(
        "--allow_config_change",
        action="store_true",
        help="resume although the config changed in a way that makes the run differ from an "
        "uninterrupted one (another batch size, data or learning-rate setting)",
    )
    parser.add_argument(
        "--init_weights",
        default=None,
        metavar="WEIGHTS",
        help="start a new run from these weights: a preset name (python -m cornernet_tf.presets), an original "
        "checkpoint (.pkl/.pth) or a .weights.h5 file; layers "
        "whose shapes differ, such as heads for another number of classes, keep their "
        "initial values",
    )
    parser.add_argument("--no_eval", action="store_true", help="skip the final evaluation")
    cli.add_verbose_flag(parser)
    return parser.parse_args(argv)


def evaluate_and_report(
    trainer: Trainer, config: Config, model_dir: pathlib.Path, progress: ProgressLogger, step: int, final: bool
) -> dict[str, float]:
    """COCO metrics on the validation split, printed and logged to TensorBoard with a few
    pictures of detections; the final evaluation also writes metrics.json and detections/*.png.

    Args:
        trainer: The trainer whose model is evaluated.
        config: The run's config (evaluation settings and data).
        model_dir: The run's folder; pictures and the final eval/ files go under it.
        progress: Prints the metrics and logs them, with four pictures, to TensorBoard.
        step: The global step the metrics are logged at.
        final: The end-of-training evaluation: keep the pictures and write eval/results.json
            and eval/metrics.json; otherwise the pictures are removed once logged.

    Returns:
        The metrics of `evaluation.evaluate_model`.
    """
    from cornernet_tf.tasks.evaluation import PLOT_FILES, evaluate_model
    from cornernet_tf.utils.coco_metrics import format_metrics, write_json

    pictures = model_dir / ("detections" if final else f"detections_step_{step}")
    plots = model_dir / "eval" if final else pictures / "plots"
    metrics, _ = evaluate_model(
        trainer.model,
        config,
        visualize_dir=pictures,
        num_visualize=8,
        results_path=model_dir / "eval" / "results.json" if final else None,
        plots_dir=plots,
    )
    progress.message(f"validation at step {step}:\n{format_metrics(metrics)}")
    progress.scalars(step, metrics, prefix="val")
    progress.images(step, sorted(pictures.glob("*.png"))[:4], name="val/detections")
    for name in PLOT_FILES:
        progress.images(step, [plots / name], name=f"val/{pathlib.Path(name).stem}")
    if final:
        write_json(model_dir / "eval" / "metrics.json", {"step": step, **metrics}, indent=2)
        progress.message(
            f"metrics, precision-recall curves and the confusion matrix in {model_dir / 'eval'}, pictures of "
            f"detections in {pictures}"
        )
    else:
        shutil.rmtree(pictures, ignore_errors=True)
    return metrics


def init_weights_file(weights: str) -> str:
    """The Keras weights file of --init_weights: a preset name or an original checkpoint (.pkl /
    .pth) is fetched or converted first (`pretrained.resolve`), a folder holding a
    `model.weights.h5` (a converted preset, a preset folder) stands for that file, and a training
    run (its model_dir, checkpoints folder or a checkpoint prefix: fine-tuning your own detector)
    is written as one with the run's own config (`_run_weights_file`)."""
    resolved = pretrained.resolve(weights)
    folder = pathlib.Path(resolved).expanduser()
    if folder.is_dir() and (folder / pretrained.WEIGHTS_FILE).is_file():
        return str(folder / pretrained.WEIGHTS_FILE)
    if not resolved.endswith(".weights.h5") and find_saved_config(resolved) is not None:
        return _run_weights_file(resolved)
    return resolved


def _run_weights_file(run: str) -> str:
    """The latest checkpoint of a training run as a `.weights.h5` in a fresh temporary folder
    (`INIT_WEIGHTS_PREFIX`, removed once loaded): its network is the run's, built from its saved
    config, so layers another config changes are skipped by name and shape as for any file."""
    from cornernet_tf.tasks.model import build_model

    model = build_model(load_config(find_saved_config(run)).model)
    load_weights(model, run)
    path = pathlib.Path(tempfile.mkdtemp(prefix=INIT_WEIGHTS_PREFIX)) / pretrained.WEIGHTS_FILE
    model.save_weights(str(path))
    return str(path)


def check_init_weights(path: str | None) -> None:
    """Fail before any work when --init_weights names no Keras weights file."""
    if path is None:
        return
    if not path.endswith(".weights.h5"):
        raise ConfigError(f"--init_weights {path!r} must be a Keras weights file ending with .weights.h5")
    if not pathlib.Path(path).expanduser().is_file():
        raise FileNotFoundError(f"--init_weights {path!r}: no such file")


def load_init_weights(model: keras.Model, path: str) -> list[str]:
    """Load `path` into `model`, skipping layers whose shapes differ; returns the paths of the
    variables that kept their initial values."""
    before = [variable.numpy() for variable in model.weights]
    with warnings.catch_warnings():  # Keras warns about each skipped layer; the caller reports them
        warnings.simplefilter("ignore")
        try:
            model.load_weights(str(pathlib.Path(path).expanduser()), skip_mismatch=True)
        except (ValueError, OSError) as err:
            raise ConfigError(f"--init_weights {path!r} cannot be loaded into this model: {err}") from None
    return [
        variable.path.split("/", 1)[-1]
        for variable, value in zip(model.weights, before)
        if np.array_equal(variable.numpy(), value)
    ]


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of a nested config mapping."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(saved: Config, config: Config) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (saved value, new value)} of every field that differs."""
    before, after = _flat(saved.to_dict()), _flat(config.to_dict())
    return {key: (before[key], after[key]) for key in before if before[key] != after[key]}


def breaks_resumption(key: str, config: Config) -> bool:
    """Whether changing `key` makes a resumed run differ from an uninterrupted one: any field
    outside RESUMABLE_CHANGES, and train.steps under the cosine schedule, which decays over it."""
    if key == "train.steps":
        return config.train.lr_schedule == "cosine"
    return key not in RESUMABLE_CHANGES and key.split(".")[0] not in RESUMABLE_CHANGES


def _describe(changes: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{key}: {json.dumps(old)} -> {json.dumps(new)}" for key, (old, new) in changes.items())


def check_saved_config(model_dir: pathlib.Path, config: Config, allow_change: bool = False) -> None:
    """Before resuming a checkpoint of `model_dir`: refuse a config whose model differs from the
    saved one (the checkpoint cannot load), and one with changes that break exact resumption
    unless `allow_change`, then saying what changed."""
    saved = model_dir / SAVED_CONFIG
    if not saved.is_file() or tf.train.latest_checkpoint(str(model_dir / CHECKPOINT_SUBDIR)) is None:
        return  # nothing to resume
    changes = config_changes(load_config(saved), config)
    model = {key: change for key, change in changes.items() if key.startswith("model.")}
    if model:
        raise ConfigError(
            f"{model_dir} holds a run with a different model config ({_describe(model)}), "
            f"whose checkpoint cannot load; use another --model_dir or the same model settings"
        )
    breaking = {key: change for key, change in changes.items() if breaks_resumption(key, config)}
    if breaking and not allow_change:
        raise ConfigError(
            f"{model_dir} holds a run with another config ({_describe(breaking)}); resumed "
            f"with these changes it would not continue exactly; use another --model_dir, or "
            f"pass --allow_config_change to resume anyway"
        )
    if breaking:
        print(
            f"resuming with a changed config ({_describe(breaking)}): resumption is no longer exact, "
            f"the run differs from an uninterrupted one from here on"
        )


def evaluation_steps(train: TrainConfig, final: bool) -> list[int]:
    """The steps after which the run evaluates: every train.eval_every, and the last if `final`."""
    periodic = list(range(train.eval_every, train.steps, train.eval_every)) if train.eval_every else []
    return periodic + ([train.steps] if final else [])


def worker_lost_message(error: tf.errors.OpError, step: int, checkpoints: str) -> str:
    """The one line a surviving worker prints when another one died: who, where, what to do."""
    lost = lost_workers(error) or ["another worker"]
    latest = tf.train.latest_checkpoint(checkpoints)
    resume = f"the last checkpoint is {latest}" if latest else "no checkpoint was written yet"
    return (
        f"{', '.join(lost)} stopped responding (it crashed, was killed or lost the network) at step {step}; "
        f"{resume}: restart every worker with the same command to resume from it"
    )


# what the train command tells a float32 run on a CPU with bfloat16 units (docs/benchmarks.md)
BFLOAT16_UNITS = {"amx": "AMX matrix tiles", "avx512_bf16": "AVX512-BF16"}
BFLOAT16_SPEEDUPS = {
    "amx": "the built-in job 1.6x faster on Intel Sapphire Rapids",
    "avx512_bf16": "the built-in job 1.35-1.38x faster on AMD Zen 4",
}


@cli.command
def main(argv: list[str] | None = None) -> int:
    return train(parse_args(argv))


def train(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    named_weights = args.init_weights  # what the user named, for the messages
    if args.init_weights:
        args.init_weights = init_weights_file(args.init_weights)
    check_init_weights(args.init_weights)
    model_dir = pathlib.Path(args.model_dir or pathlib.Path("runs") / config.name)
    check_saved_config(model_dir, config, args.allow_config_change)
    keras.utils.set_random_seed(config.train.seed)

    from cornernet_tf.tasks.data import dataset_info
    from cornernet_tf.tasks.training import build_trainer, use_mixed_precision

    use_mixed_precision(config.train)
    info = dataset_info(config, "train")
    print(f"train data: {info.summary}")
    if not config.data.class_names:  # saved with the run, so exports and pictures name the classes
        if len(info.class_names) == config.model.num_classes:
            config.data.class_names = list(info.class_names)

    strategy = make_strategy(args.strategy)
    trainer = build_trainer(config, strategy, model_dir)
    start = trainer.restore(require=args.resume)
    for damaged in trainer.damaged:
        print(f"warning: checkpoint {damaged} cannot be read; set aside as damaged-*, resuming from the one before")
    if args.init_weights and start:
        print(f"resuming at step {start}: --init_weights {named_weights} is not used")
    elif args.init_weights:
        kept = load_init_weights(trainer.model, args.init_weights)
        print(
            f"initialized from {named_weights}; {len(kept)} of {len(trainer.model.weights)} variables kept "
            f"their initial values" + (f": {', '.join(kept[:8])}{' ...' if len(kept) > 8 else ''}" if kept else "")
        )
    if args.init_weights and pathlib.Path(args.init_weights).parent.name.startswith(INIT_WEIGHTS_PREFIX):
        shutil.rmtree(pathlib.Path(args.init_weights).parent, ignore_errors=True)  # a run's weights, written for this
    if trainer.chief:
        config.save(model_dir / SAVED_CONFIG)
    print(
        f"training {config.name} on {strategy.num_replicas_in_sync} replica(s) ({args.strategy}), "
        f"global batch {config.train.batch_size}, computing in {trainer.model.compute_dtype}, "
        f"{'resuming at step ' + str(start) if start else 'from scratch'}, "
        f"model_dir {model_dir}"
    )
    on_cpus = not any(tf.config.list_logical_devices(kind) for kind in ("GPU", "TPU"))
    units = runtime.cpu_bfloat16_units() if on_cpus and config.train.mixed_precision == "float32" else None
    if units is not None:
        print(
            f"this CPU has bfloat16 units ({BFLOAT16_UNITS[units]}): --set train.mixed_precision=mixed_bfloat16 runs "
            f"the convolutions on them, in bfloat16 arithmetic ({BFLOAT16_SPEEDUPS[units]}; docs/training.md)"
        )
    progress = ProgressLogger(
        config.train.steps,
        config.train.batch_size,
        start_step=start,
        every=config.train.log_every,
        log_dir=str(model_dir / "logs" / "train") if trainer.chief else None,
        eval_steps=evaluation_steps(config.train, final=trainer.chief and not args.no_eval),
    )
    progress.scalars(start, {"unusable_train_images": len(info.unusable)}, prefix="data")

    def periodic_eval(step: int) -> None:
        if trainer.chief:
            evaluate_and_report(trainer, config, model_dir, progress, step, final=False)

    try:
        trainer.fit(progress, on_eval=periodic_eval)
        if trainer.chief and not args.no_eval:
            evaluate_and_report(trainer, config, model_dir, progress, int(trainer.step.numpy()), final=True)
    except StopRequested as stop:
        progress.message(str(stop))
        return 128 + stop.signum
    except (NonFiniteLossError, CheckpointWriteError) as err:
        progress.message(f"error: {err}")
        return 1
    except PEER_LOST_ERRORS as err:
        if args.strategy != "multi_worker":
            raise
        progress.message(f"error: {worker_lost_message(err, int(trainer.step.numpy()), trainer.manager.directory)}")
        return 1
    finally:
        progress.close()
    step = int(trainer.step.numpy())
    print(
        f"finished at step {step}: {step * config.train.batch_size} training samples, {trainer.total_skipped} "
        f"skipped as undecodable; checkpoints in {trainer.manager.directory}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
