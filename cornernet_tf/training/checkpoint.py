"""Checkpoints that really hold the model: variables are saved by their Keras paths.

`tf.train.Checkpoint(model=model)` does not follow layers that Keras 3 keeps in Python lists
(per-stack heads, hourglass branches), so it would silently save and restore none of their
weights. Naming every variable by its unique Keras path makes the checkpoint independent of
how layers are nested, and a restore fails loudly when a variable is missing or misshapen.

A training model_dir holds `config.yaml` (SAVED_CONFIG) and `checkpoints/ckpt-N.*`;
`find_saved_config` walks from any form of weights back to that config, so evaluation and
export build the network the weights were trained with.
"""

from __future__ import annotations

import os
import pathlib

import keras
import tensorflow as tf

from cornernet_tf.config import ConfigError

CHECKPOINT_SUBDIR = "checkpoints"  # under a training model_dir
SAVED_CONFIG = "config.yaml"  # the resolved config, beside checkpoints and in exports
PRESET_WEIGHTS = "model.weights.h5"  # the network's weights in an ObjectDetector preset folder


def model_variables(model: keras.Model) -> dict[str, tf.Variable]:
    """{path below the model: variable}. The model's own name is dropped, since Keras numbers
    it per process (`corner_net`, `corner_net_1`, ...); duplicate paths are an error."""
    table: dict[str, tf.Variable] = {}
    for variable in model.weights:
        path = variable.path.split("/", 1)[-1]
        if path in table:
            raise ValueError(f"two variables share the path {path!r}; give their layers distinct names")
        table[path] = variable
    return table


def optimizer_variables(optimizer: keras.optimizers.Optimizer) -> dict[str, tf.Variable]:
    """{position: variable}: optimizer slots follow the order of the trainable variables, while
    their names embed the (per-process) model and optimizer names."""
    return {f"{index:05d}": variable for index, variable in enumerate(optimizer.variables)}


def training_checkpoint(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer | None = None,
    step: tf.Variable | None = None,
    skipped_samples: tf.Variable | None = None,
) -> tf.train.Checkpoint:
    """A checkpoint of the model's weights (trainable and BatchNorm statistics), and optionally
    of the optimizer state, the global step and the samples each input pipeline skipped
    (absent from checkpoints of earlier versions, which then restore it as zeros).

    Variables are keyed by their paths in the model and by position in the optimizer, so a
    checkpoint restores into a freshly built model and optimizer of another process.

    Args:
        model: The built network.
        optimizer: Its optimizer, built on the model's trainable variables; None: not saved.
        step: The global step variable; None: not saved.
        skipped_samples: The per-input-pipeline skipped-sample counts; None: not saved.

    Returns:
        The tf.train.Checkpoint (nothing is read or written yet).

    Raises:
        ValueError: Two model variables share a path.
    """
    parts = {"model_weights": model_variables(model)}
    if optimizer is not None:
        parts["optimizer_weights"] = optimizer_variables(optimizer)
    if step is not None:
        parts["step"] = step
    if skipped_samples is not None:
        parts["skipped_samples"] = skipped_samples
    return tf.train.Checkpoint(**parts)


DAMAGED_PREFIX = "damaged-"  # a checkpoint that could not be read, set aside under this prefix
# what reading a damaged checkpoint raises: truncated index or missing shard (OpError), data file
# shorter than its index says (IndexError from the reader)
READ_ERRORS = (tf.errors.OpError, IndexError)


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, lost permission); the message says which
    earlier checkpoint is intact."""


def checkpoints_newest_first(directory: str | os.PathLike) -> list[str]:
    """The checkpoint prefixes the state file of `directory` lists, newest first."""
    state = tf.train.get_checkpoint_state(str(directory))
    if state is None:
        return []
    paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
    return [str(pathlib.Path(directory) / pathlib.Path(path).name) for path in reversed(paths)]


def set_aside(prefix: str) -> list[pathlib.Path]:
    """Rename the files of checkpoint `prefix` (index, data shards) to `damaged-<name>`, beside
    them, where no checkpoint listing sees them; nothing is deleted. Returns the new paths."""
    prefix_path = pathlib.Path(prefix)
    moved = []
    for path in sorted(prefix_path.parent.glob(f"{prefix_path.name}.*")):
        target = path.with_name(DAMAGED_PREFIX + path.name)
        os.replace(path, target)
        moved.append(target)
    return moved


def forget_checkpoints(directory: str | os.PathLike, prefixes: list[str]) -> None:
    """Drop `prefixes` from the state file of `directory`, keeping the others with their
    timestamps (a CheckpointManager forgets checkpoints listed without one); with none left, the
    state file goes."""
    state = tf.train.get_checkpoint_state(str(directory))
    if state is None:
        return
    names = {pathlib.Path(prefix).name for prefix in prefixes}
    stamps = list(state.all_model_checkpoint_timestamps) or [None] * len(state.all_model_checkpoint_paths)
    kept = [
        (path, stamp)
        for path, stamp in zip(state.all_model_checkpoint_paths, stamps)
        if pathlib.Path(path).name not in names
    ]
    if not kept:
        (pathlib.Path(directory) / "checkpoint").unlink(missing_ok=True)
        return
    tf.compat.v1.train.update_checkpoint_state(
        str(directory),
        kept[-1][0],
        all_model_checkpoint_paths=[path for path, _ in kept],
        all_model_checkpoint_timestamps=None if kept[0][1] is None else [stamp for _, stamp in kept],
        last_preserved_timestamp=state.last_preserved_timestamp,
    )


def restore_model_weights(model: keras.Model, prefix: str | os.PathLike) -> None:
    """Load only the model weights of a training checkpoint; every model weight must be found."""
    status = training_checkpoint(model).restore(str(prefix))
    status.assert_existing_objects_matched()
    status.expect_partial()  # the optimizer state and step stay unread


def load_weights(model: keras.Model, path: str | os.PathLike) -> str:
    """Load `path` into the built `model`; returns the file or checkpoint prefix that was read.

    A `.weights.h5` file goes through `model.load_weights`, as the one of a preset folder of
    `ObjectDetector.save_to_preset`; a directory (model_dir or its checkpoints folder) or a
    checkpoint prefix of `python -m cornernet_tf.train`,
    ignoring the optimizer and step the trainer saved beside it. Every model variable must be
    found: a checkpoint of another architecture is a ValueError, a missing one FileNotFoundError.
    """
    path = pathlib.Path(path).expanduser()
    if path.is_dir() and (path / PRESET_WEIGHTS).is_file():  # a preset folder (`presets.save_preset`)
        path = path / PRESET_WEIGHTS
    if path.is_dir():
        prefix = tf.train.latest_checkpoint(str(path / CHECKPOINT_SUBDIR)) or tf.train.latest_checkpoint(str(path))
        if prefix is None:
            raise FileNotFoundError(
                f"weights {str(path)!r}: no checkpoint in {path / CHECKPOINT_SUBDIR} or {path}; pass a model_dir "
                f"of `python -m cornernet_tf.train`, its checkpoints folder or a .weights.h5 file"
            )
    elif path.is_file() and path.name.endswith(".weights.h5"):
        try:
            model.load_weights(str(path))
        except ValueError as err:
            raise ValueError(f"weights {str(path)!r} do not fit the model of this config: {err}") from None
        return str(path)
    elif tf.io.gfile.exists(f"{path}.index"):
        prefix = str(path)
    else:
        raise FileNotFoundError(
            f"weights {str(path)!r}: not found; expected a .weights.h5 file, a model_dir, a checkpoints folder "
            f"or a checkpoint prefix (e.g. model_dir/checkpoints/ckpt-1000)"
        )
    try:
        restore_model_weights(model, prefix)
    except (AssertionError, ValueError) as err:  # missing variables, other shapes
        raise ValueError(
            f"checkpoint {prefix!r} does not fit the model of this config (use the config the run was trained "
            f"with, saved as {SAVED_CONFIG} in its model_dir): {str(err)[:300]}"
        ) from None
    return prefix


def find_saved_config(weights: str | os.PathLike) -> pathlib.Path | None:
    """The config.yaml of the run `weights` come from, or None: beside them in their folder (the
    folder itself for a model_dir), else in the model_dir above when that folder is a run's
    checkpoints folder (`model_dir/checkpoints`, `model_dir/checkpoints/ckpt-12`)."""
    path = pathlib.Path(weights).expanduser()
    folder = path if path.is_dir() else path.parent
    candidates = [folder / SAVED_CONFIG]
    if folder.name == CHECKPOINT_SUBDIR:
        candidates.append(folder.parent / SAVED_CONFIG)
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def config_for_weights(config: str | None, weights: str) -> str:
    """What a command with --config and --weights builds its network from: --config when given,
    else the run's saved config found from --weights; never a default, which would build another
    network than the one the weights belong to."""
    if config is not None:
        return config
    path = pathlib.Path(weights).expanduser()
    if not (path.exists() or tf.io.gfile.exists(f"{path}.index")):
        raise FileNotFoundError(f"--weights {weights!r}: not found (no file, folder or checkpoint prefix of that name)")
    saved = find_saved_config(path)
    if saved is None:
        raise ConfigError(
            f"--weights {weights!r} has no {SAVED_CONFIG} beside it or above it; pass --config "
            f"(the YAML the run was trained with, or a bundled name such as "
            f"cornernet_hg104_coco)"
        )
    print(f"using the run's config {saved}")
    return str(saved)
