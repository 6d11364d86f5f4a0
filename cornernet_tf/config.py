"""Typed configuration: YAML files map 1:1 onto these dataclasses.

Only the task layer (`cornernet_tf/tasks/`) and the command lines read a `Config`; everything
below takes plain arguments or small frozen specs such as `DetectionConfig`.
`load_config("shapes_tiny")` finds `configs/shapes_tiny.yaml`; `overrides` are dotted
`section.key=value` strings whose values are parsed as YAML (`train.batch_size=8`,
`data.input_size=[256,256]`).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pathlib
import types
import typing
import warnings
from collections.abc import Iterable
from typing import Any, Literal

import yaml

from cornernet_tf.detection.settings import MIN_SCORE_THRESHOLD, DetectionConfig
from cornernet_tf.model_types import MODEL_TYPES, ModelType, model_type
from cornernet_tf.utils.files import atomic_write_text

_PACKAGE = pathlib.Path(__file__).resolve().parent
# The copy an installed wheel ships, else the source tree's configs/ (checkouts, editable installs).
CONFIG_DIR = next((d for d in (_PACKAGE / "configs", _PACKAGE.parent / "configs") if d.is_dir()), _PACKAGE / "configs")


# the `model.type` values, checked when a config is read (`_coerce`)
ModelTypeName = Literal[tuple(MODEL_TYPES)]


class ConfigError(ValueError):
    """A configuration that cannot be used: unknown key, wrong type or impossible value."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclasses.dataclass
class ModelConfig:
    """Network architecture. Defaults are the official Hourglass-104 CornerNet; `type` names a
    record of `model_types.MODEL_TYPES` (cornernet, centernet, squeeze, saccade)."""

    type: ModelTypeName = "cornernet"
    num_classes: int = 80
    depth: int = 5  # `n` of the original: number of downsamplings in one hourglass
    nstack: int = 2
    dims: list[int] = dataclasses.field(default_factory=lambda: [256, 256, 384, 384, 384, 512])
    modules: list[int] = dataclasses.field(default_factory=lambda: [2, 2, 2, 2, 2, 4])
    cnv_dim: int = 256
    pre_dims: list[int] = dataclasses.field(default_factory=lambda: [128, 256])
    pool_dim: int = 128
    # hidden width of the prediction heads; None: dims[0], the official networks' rule (mmdetection
    # hard-codes 256 whatever the backbone)
    head_dim: int | None = None
    corner_pool: Literal["auto", "op", "vectorized", "scan"] = "auto"
    heatmap_bias: float = -2.19
    att_dim: int = 256  # saccade: hidden width of the attention heads

    def validate(self) -> None:
        _check(self.num_classes >= 1, f"model.num_classes must be >= 1, got {self.num_classes}")
        _check(self.depth >= 1, f"model.depth must be >= 1, got {self.depth}")
        _check(self.nstack >= 1, f"model.nstack must be >= 1, got {self.nstack}")
        _check(
            len(self.dims) == self.depth + 1,
            f"model.dims needs depth + 1 = {self.depth + 1} entries, got {len(self.dims)}",
        )
        _check(
            len(self.modules) == self.depth + 1,
            f"model.modules needs depth + 1 = {self.depth + 1} entries, got {len(self.modules)}",
        )
        _check(len(self.pre_dims) == 2, f"model.pre_dims needs 2 entries, got {self.pre_dims}")
        _check(
            self.pre_dims[1] == self.dims[0],
            f"model.pre_dims[1] ({self.pre_dims[1]}) must equal model.dims[0] ({self.dims[0]})",
        )
        for name in ("dims", "modules", "pre_dims"):
            values = getattr(self, name)
            _check(all(v >= 1 for v in values), f"model.{name} must be positive, got {values}")
        _check(self.cnv_dim >= 1 and self.pool_dim >= 1, "model.cnv_dim and pool_dim must be >= 1")
        _check(self.head_dim is None or self.head_dim >= 1, f"model.head_dim must be >= 1 or null, got {self.head_dim}")
        _check(self.att_dim >= 1, f"model.att_dim must be >= 1, got {self.att_dim}")
        try:
            problems = self.record.model_problems(self)
        except ValueError as err:  # an unknown type
            raise ConfigError(str(err)) from None
        _check(not problems, "; ".join(problems))

    @property
    def record(self) -> ModelType:
        """What `type` means to the package (`model_types.ModelType`)."""
        return model_type(self.type)

    @property
    def stride(self) -> int:
        """Input pixels per output-map pixel: the stem's downsampling (4; squeeze: 8)."""
        return self.record.stride

    @property
    def size_divisor(self) -> int:
        """What an input side + 1 must be a multiple of: the stem's stride times the hourglass's
        2**depth halvings (the original's test padding, side | (size_divisor - 1))."""
        return self.stride * 2**self.depth

    def output_size(self, input_size: Iterable[int]) -> list[int]:
        """Heatmap [height, width] of an input [height, width]: (side + 1) // stride (511 -> 128)."""
        return [(side + 1) // self.stride for side in input_size]


@dataclasses.dataclass
class DataConfig:
    """Where images come from and how training samples are made."""

    dataset: Literal["shapes", "coco", "voc", "yolo", "tfds", "tfrecord"] = "shapes"
    # shapes: generated on first use into `shapes_dir` (cached).
    shapes_dir: str = "~/.cache/cornernet_tf/shapes"
    shapes_train: int = 2000
    shapes_val: int = 200
    shapes_image_size: int = 128
    shapes_max_objects: int = 6
    shapes_object_size: list[int] = dataclasses.field(default_factory=list)  # [min, max] px; []: 10-60 % of the side
    # coco: a COCO instances json and its image folder, per split.
    train_annotations: str = ""
    train_images: str = ""
    val_annotations: str = ""
    val_images: str = ""
    # voc: a Pascal VOC folder (Annotations/, JPEGImages/, ImageSets/Main/<set>.txt) and its image
    # sets; `difficult` objects are ignored in evaluation, and in training unless voc_train_difficult.
    voc_dir: str = ""
    voc_train_set: str = "train"
    voc_val_set: str = "val"
    voc_train_difficult: bool = False
    # yolo: an Ultralytics data.yaml (path, train, val, names).
    yolo_yaml: str = ""
    # tfds: a prepared TensorFlow Datasets builder with objects/bbox and a class label (voc/2007,
    # coco/2017, kitti, ...); its images are cached as files on first use. Needs the tfds extra.
    tfds_name: str = ""
    tfds_data_dir: str = ""
    tfds_train_split: str = "train"
    tfds_val_split: str = "validation"
    # tfrecord: file patterns written by `python -m cornernet_tf.data.tfrecord`.
    train_tfrecords: str = ""
    val_tfrecords: str = ""
    class_names: list[str] = dataclasses.field(default_factory=list)
    input_size: list[int] = dataclasses.field(default_factory=lambda: [511, 511])
    max_objects: int = 128
    gaussian_iou: float = 0.3
    # model.type saccade: objects whose longer side lies in att_ranges[j] (px of the 255 crop,
    # inclusive) mark attention map j (coarsest first); boxes shorter than min_scale are ignored
    att_ranges: list[list[int]] = dataclasses.field(default_factory=lambda: [[96, 256], [32, 96], [0, 32]])
    min_scale: int = 16
    flip: bool = True
    random_scale: list[float] = dataclasses.field(default_factory=lambda: [0.6, 1.4])
    random_crop: bool = True
    color_jitter: bool = True
    lighting: bool = True
    # Normalization of RGB images in [0, 1]: the original's BGR constants, reordered to RGB.
    mean: list[float] = dataclasses.field(default_factory=lambda: [0.47026115, 0.44719302, 0.40789654])
    std: list[float] = dataclasses.field(default_factory=lambda: [0.27809835, 0.27408164, 0.28863828])
    # The canvas around an image (test padding, batch padding, training crops past the image):
    # black pixels, the official code's (-mean / std once normalized), or the normalization mean,
    # mmdetection's (exactly 0 once normalized, and not colour-jittered in training).
    pad_value: Literal["black", "mean"] = "black"
    shuffle_buffer: int = 1000
    num_parallel_calls: int = -1  # -1 = tf.data.AUTOTUNE
    # the training stream's order is the sample index's: runs reproduce and resume exactly (costs
    # nothing measurable on the main job, docs/benchmarks.md); false lets tf.data reorder samples
    deterministic: bool = True
    seed: int = 0

    def validate(self) -> None:
        _check(len(self.input_size) == 2, f"data.input_size needs [height, width], got {self.input_size}")
        _check(all(s > 0 for s in self.input_size), f"data.input_size must be positive, got {self.input_size}")
        _check(self.max_objects >= 1, f"data.max_objects must be >= 1, got {self.max_objects}")
        _check(self.min_scale >= 0, f"data.min_scale must be >= 0, got {self.min_scale}")
        _check(0.0 < self.gaussian_iou < 1.0, f"data.gaussian_iou must be in (0, 1), got {self.gaussian_iou}")
        _check(
            len(self.random_scale) == 2 and 0 < self.random_scale[0] <= self.random_scale[1],
            f"data.random_scale needs [min, max] with 0 < min <= max, got {self.random_scale}",
        )
        _check(len(self.mean) == 3 and len(self.std) == 3, "data.mean and data.std need 3 values (RGB)")
        _check(all(s > 0 for s in self.std), f"data.std must be positive, got {self.std}")
        _check(self.shapes_train >= 1 and self.shapes_val >= 1, "data.shapes_train/shapes_val must be >= 1")
        _check(self.shapes_image_size >= 32, f"data.shapes_image_size must be >= 32, got {self.shapes_image_size}")
        _check(self.shapes_max_objects >= 1, f"data.shapes_max_objects must be >= 1, got {self.shapes_max_objects}")
        sides = self.shapes_object_size
        _check(
            not sides or (len(sides) == 2 and 4 <= sides[0] <= sides[1] <= self.shapes_image_size),
            f"data.shapes_object_size needs [min, max] with 4 <= min <= max <= data.shapes_image_size, got {sides}",
        )
        # Where each split is, is checked when the split is read (`tasks.data.split_files`): an
        # evaluation needs only the validation split, training only the training one.


@dataclasses.dataclass
class TrainConfig:
    """Optimisation, schedule, loss weights, checkpoints and logging."""

    batch_size: int = 49  # global batch, split over replicas
    steps: int = 500_000
    optimizer: Literal["adam", "adamw"] = "adam"
    learning_rate: float = 2.5e-4
    weight_decay: float = 0.0  # adamw only
    lr_schedule: Literal["constant", "step", "cosine"] = "step"
    lr_decay_steps: list[int] = dataclasses.field(default_factory=lambda: [450_000])
    lr_decay_factor: float = 0.1
    warmup_steps: int = 0
    clip_norm: float | None = None
    pull_weight: float = 0.1
    push_weight: float = 0.1
    offset_weight: float = 1.0
    mixed_precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = "float32"
    sync_batchnorm: bool = False
    # where each batch is resampled and its targets drawn: "step" inside the compiled training
    # step (on the accelerator), "pipeline" in tf.data (overlapped with the step), "auto" the
    # faster of the two for the strategy's devices (see training.strategy.finishes_in_step)
    finish_batches: Literal["auto", "step", "pipeline"] = "auto"
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 20
    eval_every: int = 0  # 0 = only at the end
    seed: int = 0

    def validate(self) -> None:
        _check(self.batch_size >= 1, f"train.batch_size must be >= 1, got {self.batch_size}")
        _check(self.steps >= 1, f"train.steps must be >= 1, got {self.steps}")
        _check(self.learning_rate > 0, f"train.learning_rate must be > 0, got {self.learning_rate}")
        _check(self.weight_decay >= 0, f"train.weight_decay must be >= 0, got {self.weight_decay}")
        _check(
            list(self.lr_decay_steps) == sorted(self.lr_decay_steps),
            f"train.lr_decay_steps must be increasing, got {self.lr_decay_steps}",
        )
        _check(0 < self.lr_decay_factor <= 1, f"train.lr_decay_factor must be in (0, 1], got {self.lr_decay_factor}")
        _check(self.warmup_steps >= 0, f"train.warmup_steps must be >= 0, got {self.warmup_steps}")
        _check(self.clip_norm is None or self.clip_norm > 0, f"train.clip_norm must be > 0, got {self.clip_norm}")
        for name in ("pull_weight", "push_weight", "offset_weight"):
            _check(getattr(self, name) >= 0, f"train.{name} must be >= 0, got {getattr(self, name)}")
        _check(self.checkpoint_every >= 1, f"train.checkpoint_every must be >= 1, got {self.checkpoint_every}")
        _check(self.keep_checkpoints >= 1, f"train.keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        _check(self.log_every >= 1, f"train.log_every must be >= 1, got {self.log_every}")
        _check(self.eval_every >= 0, f"train.eval_every must be >= 0, got {self.eval_every}")


@dataclasses.dataclass
class EvalConfig:
    """Which images an evaluation scores; how it decodes them is the `detection` section."""

    max_images: int = 0  # 0 = all

    def validate(self) -> None:
        _check(self.max_images >= 0, f"eval.max_images must be >= 0, got {self.max_images}")


@dataclasses.dataclass
class ExportConfig:
    """What a SavedModel bakes in besides the `detection` settings."""

    corner_pool: Literal["vectorized", "scan", "op"] = "vectorized"
    max_image_pixels: int = 40_000_000
    precision: Literal["float32", "bfloat16"] = "float32"

    def validate(self) -> None:
        _check(self.max_image_pixels >= 1, f"export.max_image_pixels must be >= 1, got {self.max_image_pixels}")


@dataclasses.dataclass
class Config:
    """The whole resolved configuration, saved beside every checkpoint and export."""

    name: str = "custom"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    detection: DetectionConfig = dataclasses.field(default_factory=DetectionConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)

    def validate(self) -> None:
        for section in (self.model, self.data, self.train, self.eval, self.export):
            section.validate()
        problems = self.detection.problems()
        _check(not problems, "; ".join(problems))
        model, procedure = self.model, self.detection.procedure
        problems = model.record.config_problems(self)
        _check(not problems, "; ".join(problems))
        if procedure.needs_attention:
            attention = [name for name, record in MODEL_TYPES.items() if record.attention]
            _check(
                model.record.attention,
                f"detection.test_mode {procedure.name} needs model.type {' or '.join(attention)} (attention maps), "
                f"got {model.type!r}",
            )
            _check(
                self.data.pad_value == "black",
                f"detection.test_mode {procedure.name} pads its crops black (the official test): data.pad_value must "
                f"be black, got {self.data.pad_value!r}",
            )
            _check(
                len(self.detection.att_nms_ks) == model.depth,
                f"detection.att_nms_ks needs one kernel per attention map (model.depth = {model.depth}), "
                f"got {self.detection.att_nms_ks}",
            )
        for side, out in zip(self.data.input_size, model.output_size(self.data.input_size)):
            _check(
                out % 2**model.depth == 0,
                f"data.input_size side {side} gives a {out}-pixel heatmap side (input + 1) // {model.stride}, "
                f"not divisible by 2**model.depth = {2**model.depth}; use e.g. {4 * model.size_divisor - 1} or "
                f"{4 * model.size_divisor} for model.type {model.type}, depth {model.depth}",
            )
        if self.data.class_names:
            _check(
                len(self.data.class_names) == self.model.num_classes,
                f"data.class_names has {len(self.data.class_names)} names but model.num_classes is "
                f"{self.model.num_classes}",
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def save(self, path: str | os.PathLike) -> None:
        """Write the resolved config atomically (write to a temporary file, then rename)."""
        atomic_write_text(path, self.to_yaml())


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp` and convert where lossless (int -> float)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        _check(value in args, f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None:
            _check(type(None) in args, f"{where}: must not be null")
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is list:
        _check(isinstance(value, (list, tuple)), f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float:
        _check(
            isinstance(value, (int, float)) and not isinstance(value, bool),
            f"{where}: expected a number, got {value!r}",
        )
        return float(value)
    if tp is int:
        _check(isinstance(value, int) and not isinstance(value, bool), f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        _check(isinstance(value, bool), f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        _check(isinstance(value, str), f"{where}: expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        _check(isinstance(value, dict), f"{where}: expected a mapping, got {value!r}")
        return _from_dict(tp, value, where)
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")


def _from_dict(cls: type, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    _check(
        not unknown,
        f"{where or 'config'}: unknown key(s) {unknown}; valid keys are {names}",
    )
    kwargs = {key: _coerce(value, hints[key], f"{where}.{key}" if where else key) for key, value in values.items()}
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        _check(isinstance(child, dict), f"override {dotted!r}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Split `section.key=value` and parse the value as YAML (so `8` is an int, `[1, 2]` a list)."""
    _check("=" in text, f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    _check(bool(key) and all(key.split(".")), f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({err})") from None
    return key, value


def resolve_config_path(path_or_name: str | os.PathLike) -> pathlib.Path:
    """A file path, or the name of a bundled config (`shapes_tiny` -> configs/shapes_tiny.yaml)."""
    candidate = pathlib.Path(path_or_name).expanduser()
    if candidate.is_file():
        return candidate
    name = candidate.name if candidate.suffix in (".yaml", ".yml") else f"{candidate.name}.yaml"
    if (CONFIG_DIR / name).is_file():
        return CONFIG_DIR / name
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config {str(path_or_name)!r} not found; bundled configs: {known}")


# Keys of configs saved before the `detection` section: eval's decoding settings moved there
# under the decode functions' names; export's own copies are gone (exports decode as evaluation).
_MOVED_EVAL_KEYS = {
    "top_k": "k",
    "nms_kernel": "nms_kernel",
    "ae_threshold": "ae_threshold",
    "num_dets": "num_dets",
    "max_per_image": "max_detections",
    "flip": "flip",
    "scales": "scales",
    "test_mode": "test_mode",
    "soft_nms_sigma": "soft_nms_sigma",
    "score_threshold": "score_threshold",
    "center_area_threshold": "center_area_threshold",
}
_DROPPED_EXPORT_KEYS = ("max_detections", "score_threshold", "flip", "test_mode")


def _upgrade(tree: dict[str, Any]) -> list[int] | None:
    """Rewrite the keys of older configs in place (`_MOVED_EVAL_KEYS`, `_DROPPED_EXPORT_KEYS`);
    returns their data.output_size, now derived from the model, for `_check_output_size`."""
    sections = {name: tree.get(name) for name in ("eval", "export", "data", "detection")}
    for name, section in sections.items():
        _check(section is None or isinstance(section, dict), f"{name}: expected a mapping, got {section!r}")
    old_eval = {key: value for key, value in (sections["eval"] or {}).items() if key in _MOVED_EVAL_KEYS}
    if old_eval:
        detection = tree.setdefault("detection", {}) or {}
        tree["detection"] = detection
        for key, value in old_eval.items():
            new = _MOVED_EVAL_KEYS[key]
            _check(new not in detection, f"eval.{key} and detection.{new} are both set; keep detection.{new}")
            detection[new] = max(value, MIN_SCORE_THRESHOLD) if new == "score_threshold" else value
            del tree["eval"][key]
    dropped = [key for key in _DROPPED_EXPORT_KEYS if key in (sections["export"] or {})]
    if dropped:
        for key in dropped:
            del tree["export"][key]
        warnings.warn(
            f"export.{', export.'.join(dropped)} no longer exist: exports decode with the detection "
            f"section, as evaluation does; set detection.* (or the export flags) instead",
            stacklevel=3,
        )
    return (sections["data"] or {}).pop("output_size", None)


def _check_output_size(config: Config, output_size: list[int] | None) -> None:
    """An older config's data.output_size must be the one the model gives its input size."""
    derived = config.model.output_size(config.data.input_size)
    _check(
        output_size is None or list(output_size) == derived,
        f"data.output_size {output_size} is not the {derived} a model.type {config.model.type} network gives "
        f"data.input_size {config.data.input_size}; remove data.output_size, it follows from the model",
    )


def config_from_dict(values: dict[str, Any], overrides: Iterable[str] = ()) -> Config:
    """Build and validate a `Config` from a nested mapping plus dotted overrides; `values` is
    copied whole, since overrides write into nested sections the caller still holds. Keys of
    older configs (eval.top_k, export.flip, data.output_size, ...) are upgraded."""
    tree = copy.deepcopy(dict(values or {}))
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    output_size = _upgrade(tree)
    config = _from_dict(Config, tree, "")
    config.validate()
    _check_output_size(config, output_size)
    return config


def load_config(path_or_name: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load a YAML config (default `shapes_tiny`), apply overrides and validate.

    Raises `ConfigError` naming the offending key for unknown keys, wrong types and
    impossible values.
    """
    path = resolve_config_path(path_or_name or "shapes_tiny")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    _check(isinstance(values, dict), f"{path}: top level must be a mapping of sections")
    values.setdefault("name", path.stem)
    return config_from_dict(values, overrides)
