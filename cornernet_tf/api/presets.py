"""Preset folders of `ObjectDetector`: save one, and open a detector from anything that holds one.

A preset folder follows keras-hub's layout and is also a model_dir the command lines read:

    config.json         the detector, `keras.saving.serialize_keras_object` (its Config inside)
    model.weights.h5    the network's weights (`evaluate`/`export --weights DIR` load this file)
    config.yaml         the resolved Config, as a training run keeps it
    class_names.txt     line i names class index i
    metadata.json       library versions, model type, parameter count, date

It is written whole under a hidden sibling name and renamed into place, so a reader never sees
half a preset. `load_preset` opens, besides such a folder: a bundled config name or YAML path (a
new network), a training run folder or checkpoint (its config.yaml found as the commands find
it), a `.weights.h5` file with the config it belongs to, and a named COCO preset or original
checkpoint file (`pretrained.resolve`: fetched, converted and cached on first use). With
`num_classes` other than the source's, the heads are new and every other weight is loaded
(fine-tuning on other classes).
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import secrets
import shutil
from typing import TYPE_CHECKING, Any

import keras
import tensorflow as tf

from cornernet_tf import __version__
from cornernet_tf.api import pretrained
from cornernet_tf.config import Config, ConfigError, config_from_dict, load_config
from cornernet_tf.tasks.export import CLASS_NAMES_ASSET
from cornernet_tf.tasks.model import build_model
from cornernet_tf.training import checkpoint
from cornernet_tf.training.checkpoint import PRESET_WEIGHTS, SAVED_CONFIG, find_saved_config

if TYPE_CHECKING:
    from cornernet_tf.api.object_detector import ObjectDetector

PRESET_CONFIG = "config.json"
PRESET_METADATA = "metadata.json"


def is_preset(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder written by `save_preset`."""
    path = pathlib.Path(path).expanduser()
    return (path / PRESET_CONFIG).is_file() and (path / PRESET_WEIGHTS).is_file()


def save_preset(detector: ObjectDetector, directory: str | os.PathLike) -> pathlib.Path:
    """Write `detector` as a preset folder (module doc), replacing one already there; returns it."""
    target = pathlib.Path(directory).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    temp.mkdir()
    try:
        detector.network.save_weights(str(temp / PRESET_WEIGHTS))
        serialized = keras.saving.serialize_keras_object(detector)
        (temp / PRESET_CONFIG).write_text(json.dumps(serialized, indent=2))
        (temp / SAVED_CONFIG).write_text(detector.config.to_yaml())
        (temp / CLASS_NAMES_ASSET).write_text("".join(f"{name}\n" for name in detector.class_names))
        metadata = {
            "cornernet_tf_version": __version__,
            "keras_version": keras.__version__,
            "tensorflow_version": tf.__version__,
            "model_type": detector.config.model.type,
            "num_classes": detector.config.model.num_classes,
            "bounding_box_format": detector.bounding_box_format,
            "parameter_count": int(detector.network.count_params()),
            "date_saved": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        (temp / PRESET_METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
        _replace_folder(temp, target)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return target


def _replace_folder(new: pathlib.Path, target: pathlib.Path) -> None:
    """Rename `new` to `target`; an existing `target` is moved aside first and removed after."""
    if not target.exists():
        os.rename(new, target)
        return
    if target.is_dir() and any(target.iterdir()) and not is_preset(target):
        raise FileExistsError(f"{target} exists and is not a preset folder; choose another folder")
    old = target.with_name(f".{target.name}.{secrets.token_hex(4)}.old")
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def load_preset(
    cls: type[ObjectDetector],
    preset: str | os.PathLike,
    num_classes: int | None = None,
    load_weights: bool = True,
    config: Config | str | os.PathLike | None = None,
    **kwargs: Any,
) -> ObjectDetector:
    """An `ObjectDetector` from `preset` (module doc).

    Args:
        cls: The detector class.
        preset: A bundled config name or YAML path, a preset folder, a training run folder, its
            checkpoints folder or a checkpoint prefix, or a `.weights.h5` file.
        num_classes: Classes of the new detector; None: the source's. Other than the source's:
            new heads (and class names `class_<id>` unless the config names them).
        load_weights: Load the source's weights; False: the architecture only.
        config: The config of a `.weights.h5` file or checkpoint without a saved config
            (a `Config`, YAML path or bundled name); for a config name preset, replaces it.
        **kwargs: Arguments of `ObjectDetector` (bounding_box_format, loss_weights, name).

    Returns:
        The detector.

    Raises:
        FileNotFoundError: A weights path that does not exist.
        ValueError: Weights that do not fit their config, a `.weights.h5` without `config`
            (`ConfigError`), or `num_classes` below 1.
    """
    source_config, weights, box_format = _source(preset, config)
    kwargs.setdefault("bounding_box_format", box_format)
    if not load_weights:
        weights = None
    target_config = source_config
    if num_classes is not None and num_classes != source_config.model.num_classes:
        tree = source_config.to_dict()
        tree["model"]["num_classes"] = num_classes
        tree["data"]["class_names"] = []
        target_config = config_from_dict(tree)
    if weights is None:
        return cls(target_config, **kwargs)
    source = build_model(source_config.model)
    checkpoint.load_weights(source, weights)
    network = source
    if target_config is not source_config:
        network = build_model(target_config.model)
        copy_matching_weights(source, network)
    return cls(target_config, network=network, **kwargs)


def _source(preset: str | os.PathLike, config: Config | str | os.PathLike | None) -> tuple[Config, str | None, str]:
    """(the config, the weights path or None, the bounding_box_format a preset was saved with,
    else "xyxy") of what `load_preset` was given."""
    given = None if config is None else config if isinstance(config, Config) else load_config(config)
    preset = pretrained.resolve(preset, None if config is None or isinstance(config, Config) else config)
    path = pathlib.Path(preset).expanduser()
    if is_preset(path):
        saved = json.loads((path / PRESET_CONFIG).read_text())["config"]
        box_format = saved.get("bounding_box_format", "xyxy")
        return given or config_from_dict(saved["config"]), str(path / PRESET_WEIGHTS), box_format
    weights_like = path.is_dir() or path.name.endswith(".weights.h5") or tf.io.gfile.exists(f"{path}.index")
    if not weights_like:
        if path.suffix in (".h5", ".keras"):
            raise ValueError(
                f"{str(preset)!r}: a {path.suffix} file is not a preset; open a .keras file with "
                f"keras.models.load_model and weights with a name ending in .weights.h5"
            )
        return given or load_config(preset), None, "xyxy"
    if given is None:
        saved = find_saved_config(path)
        if saved is None:
            raise ConfigError(
                f"{str(preset)!r} has no {SAVED_CONFIG} beside it or above it; pass config= (the YAML the "
                f"weights were trained or converted with, or a bundled name such as cornernet_hg104_coco)"
            )
        given = load_config(saved)
    return given, str(path), "xyxy"


def copy_matching_weights(source: keras.Model, target: keras.Model) -> list[str]:
    """Copy every weight of `source` into the weight of the same path and shape of `target`;
    returns the paths of `target` that kept their initial values (e.g. heads for other classes)."""
    values = {variable.path.split("/", 1)[-1]: variable for variable in source.weights}
    kept = []
    for variable in target.weights:
        path = variable.path.split("/", 1)[-1]
        match = values.get(path)
        if match is not None and tuple(match.shape) == tuple(variable.shape):
            variable.assign(match)
        else:
            kept.append(path)
    return kept
