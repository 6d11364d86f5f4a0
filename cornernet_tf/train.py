"""Train CornerNet: `python -m cornernet_tf.train [--config FILE] [--set key=value ...]
[--strategy default|one_device|mirrored|multi_worker|tpu] [--model_dir DIR] [--resume]
[--init_weights FILE.weights.h5] [--no_eval]`.

With no config it trains `configs/shapes_tiny.yaml` on the built-in shapes dataset (generated on
first use), then evaluates on its validation split and writes a picture of detections.
Starting the same command again after an interruption continues from the last checkpoint.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import shutil
import sys
import warnings

import keras
import numpy as np
import tensorflow as tf

from cornernet_tf.config import Config, ConfigError, load_config
from cornernet_tf.training.checkpoint import SAVED_CONFIG
from cornernet_tf.training.loop import NonFiniteLossError, StopRequested, Trainer
from cornernet_tf.training.progress import ProgressLogger
from cornernet_tf.training.strategy import STRATEGIES, make_strategy



def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cornernet_tf.train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="shapes_tiny", help="YAML file or bundled config name")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set train.batch_size=8 (repeatable)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="default")
    parser.add_argument("--model_dir", default=None, help="checkpoints, logs and results (default runs/<config>)")
    parser.add_argument("--resume", action="store_true", help="require a checkpoint to continue from")
    parser.add_argument("--init_weights", default=None, metavar="FILE.weights.h5",
                        help="start a new run from these Keras weights (e.g. converted official ones); layers "
                             "whose shapes differ, such as heads for another number of classes, keep their "
                             "initial values")
    parser.add_argument("--no_eval", action="store_true", help="skip the final evaluation")
    return parser.parse_args(argv)


def evaluate_and_report(trainer: Trainer, config: Config, model_dir: pathlib.Path, progress: ProgressLogger,
                        step: int, final: bool) -> dict[str, float]:
    """COCO metrics on the validation split, printed and logged to TensorBoard with a few
    pictures of detections; the final evaluation also writes metrics.json and detections/*.png."""
    from cornernet_tf.evaluate import evaluate_model  # noqa: PLC0415 (pulls in pycocotools)
    from cornernet_tf.coco_metrics import format_metrics  # noqa: PLC0415

    pictures = model_dir / ("detections" if final else f"detections_step_{step}")
    metrics, _ = evaluate_model(
        trainer.model, config, visualize_dir=pictures, num_visualize=8,
        results_path=model_dir / "eval" / "results.json" if final else None,
    )
    progress.message(f"validation at step {step}:\n{format_metrics(metrics)}")
    progress.scalars(step, metrics, prefix="val")
    progress.images(step, sorted(pictures.glob("*.png"))[:4], name="val/detections")
    if final:
        (model_dir / "eval").mkdir(parents=True, exist_ok=True)
        (model_dir / "eval" / "metrics.json").write_text(json.dumps({"step": step, **metrics}, indent=2))
        progress.message(f"metrics in {model_dir / 'eval' / 'metrics.json'}, pictures of detections in {pictures}")
    else:
        shutil.rmtree(pictures, ignore_errors=True)
    return metrics


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
    return [variable.path.split("/", 1)[-1] for variable, value in zip(model.weights, before)
            if np.array_equal(variable.numpy(), value)]


def check_saved_config(model_dir: pathlib.Path, config: Config) -> None:
    """Refuse to resume a model directory whose saved architecture differs from this config."""
    saved = model_dir / SAVED_CONFIG
    if not saved.is_file():
        return
    previous = load_config(saved)
    if previous.model != config.model:
        raise ConfigError(
            f"{model_dir} holds a run with a different model config ({saved}); "
            f"use another --model_dir or the same model settings"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return train(args)
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def train(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    check_init_weights(args.init_weights)
    model_dir = pathlib.Path(args.model_dir or pathlib.Path("runs") / config.name)
    check_saved_config(model_dir, config)
    keras.utils.set_random_seed(config.train.seed)
    if config.train.mixed_precision != "float32":
        keras.mixed_precision.set_global_policy(config.train.mixed_precision)

    from cornernet_tf.data.pipeline import dataset_info, finish_batch, train_dataset  # noqa: PLC0415 (heavy import after arg checks)

    if not config.data.class_names:  # saved with the run, so exports and pictures name the classes
        names = dataset_info(config, "train").class_names
        if len(names) == config.model.num_classes:
            config.data.class_names = list(names)

    strategy = make_strategy(args.strategy)
    # Resampling and targets run on the accelerator, except on TPUs: their input batches need
    # static shapes, and a batch of views holds images padded to the batch's largest.
    on_device = not isinstance(strategy, tf.distribute.TPUStrategy)
    trainer = Trainer(
        config,
        strategy,
        model_dir,
        dataset_fn=lambda ctx, start: train_dataset(config, input_context=ctx, start_step=start, finish_on_device=on_device),
        finish_batch=functools.partial(finish_batch, config) if on_device else None,
    )
    start = trainer.restore(require=args.resume)
    if args.init_weights and start:
        print(f"resuming at step {start}: --init_weights {args.init_weights} is not used")
    elif args.init_weights:
        kept = load_init_weights(trainer.model, args.init_weights)
        print(f"initialized from {args.init_weights}; {len(kept)} of {len(trainer.model.weights)} variables kept "
              f"their initial values" + (f": {', '.join(kept[:8])}{' ...' if len(kept) > 8 else ''}" if kept else ""))
    if trainer.chief:
        config.save(model_dir / SAVED_CONFIG)
    print(
        f"training {config.name} on {strategy.num_replicas_in_sync} replica(s) ({args.strategy}), "
        f"global batch {config.train.batch_size}, {'resuming at step ' + str(start) if start else 'from scratch'}, "
        f"model_dir {model_dir}"
    )
    progress = ProgressLogger(
        config.train.steps,
        config.train.batch_size,
        start_step=start,
        every=config.train.log_every,
        log_dir=str(model_dir / "logs" / "train") if trainer.chief else None,
    )
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
    except NonFiniteLossError as err:
        progress.message(f"error: {err}")
        return 1
    finally:
        progress.close()
    print(f"finished at step {int(trainer.step.numpy())}; checkpoints in {trainer.manager.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
