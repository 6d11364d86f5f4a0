"""One record per model type: what `model.type` means to every part of the package.

The config, the task layer, the Keras task and the converters read a model type's record instead
of comparing its name, so a new type is one `ModelType` here plus its own modules (its network in
`models/`, its bundled configs, a key mapping in `convert.py` if it has official weights).
Standard library only, as `config.py` which validates against it: the network class is named by
its import path and imported on first use (`network_class`), so reading a config never loads
TensorFlow.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any, Literal

# A check of a ModelConfig or of a whole Config (duck-typed: this module is below config.py), one
# message per problem.
Check = Callable[[Any], list[str]]


@dataclasses.dataclass(frozen=True)
class ModelType:
    """What a model type is and what it supports.

    name: the `model.type` value. network: "module:Class" of its Keras model (a `CornerNet`
    subclass, built from `ModelConfig`'s common fields plus `network_arguments`). stride: input
    pixels per output-map pixel (the stem's downsampling). center_keypoints: CenterNet's center
    heatmap and offsets (targets, loss, decoding) and its gaussian radius formula ("centernet").
    attention: CornerNet-Saccade's attention maps: training samples are crops around a reference
    object with ignore maps and attention targets, the loss adds the attention focal loss, and the
    "saccade" test procedure becomes possible. target_coordinate_dtype: of corner positions when
    targets are drawn (the official Saccade sampler's numpy 1 computed them in float64).
    trains_with_fit: `ObjectDetector.fit` can train it (Keras-style {"boxes", "labels"} batches).
    official_layout: the key names of its official checkpoints ("cornernet": CornerNet's and
    CenterNet's; "lite": CornerNet-Lite's, the backbone under `hg.`, its per-stack layer names).
    coco_configs: the bundled COCO config of its official checkpoints, by number of stacks.
    model_checks / config_checks: problems of a ModelConfig / of a whole Config that only this
    type has (run by `ModelConfig.validate` / `Config.validate`).
    """

    name: str
    network: str
    description: str
    stride: int = 4
    network_arguments: tuple[str, ...] = ()
    center_keypoints: bool = False
    attention: bool = False
    target_coordinate_dtype: Literal["float32", "float64"] = "float32"
    trains_with_fit: bool = True
    official_layout: Literal["cornernet", "lite"] = "cornernet"
    coco_configs: Mapping[int, str] = dataclasses.field(default_factory=dict)
    model_checks: tuple[Check, ...] = ()
    config_checks: tuple[Check, ...] = ()

    @property
    def radius_formula(self) -> Literal["cornernet", "centernet"]:
        """The gaussian radius of its corner targets (`objective.targets`)."""
        return "centernet" if self.center_keypoints else "cornernet"

    def network_class(self) -> type:
        """The Keras model class (imports `models/`, and so TensorFlow, on first use)."""
        module, _, name = self.network.partition(":")
        return getattr(importlib.import_module(module), name)

    def model_problems(self, model_config: Any) -> list[str]:
        """This type's own problems with a ModelConfig (empty when valid)."""
        return [message for check in self.model_checks for message in check(model_config)]

    def config_problems(self, config: Any) -> list[str]:
        """This type's own problems with a whole Config (empty when valid)."""
        return [message for check in self.config_checks for message in check(config)]

    def coco_config(self, nstack: int) -> str | None:
        """The bundled COCO config of an official checkpoint with `nstack` stacks, if any."""
        if len(self.coco_configs) == 1:
            return next(iter(self.coco_configs.values()))
        return self.coco_configs.get(nstack)


def _even_dims(model_config: Any) -> list[str]:
    odd = [d for d in model_config.dims if d % 2]
    return [f"model.dims must be even for type squeeze (fire modules halve them), got {odd}"] if odd else []


def _saccade_crops(config: Any) -> list[str]:
    problems = []
    if list(config.data.input_size) != [255, 255]:
        problems.append(
            "model.type saccade trains on 255 x 255 crops (the official sampler's object sizes are set for them): "
            f"data.input_size must be [255, 255], got {config.data.input_size}"
        )
    ranges, depth = config.data.att_ranges, config.model.depth
    if not (len(ranges) == depth and all(len(r) == 2 and 0 <= r[0] <= r[1] for r in ranges)):
        problems.append(
            f"data.att_ranges needs one [min, max] object side per attention map (model.depth = {depth}), got {ranges}"
        )
    return problems


MODEL_TYPES: dict[str, ModelType] = {
    record.name: record
    for record in (
        ModelType(
            name="cornernet",
            network="cornernet_tf.models.cornernet:CornerNet",
            description="CornerNet: corner pairs grouped by embeddings, corner pooling, Hourglass backbone",
            coco_configs={2: "cornernet_hg104_coco"},
        ),
        ModelType(
            name="centernet",
            network="cornernet_tf.models.centernet:CenterNet",
            description="CenterNet (keypoint triplets): CornerNet plus a center keypoint, cascade and center pooling",
            center_keypoints=True,
            coco_configs={2: "centernet_hg104_coco", 1: "centernet_hg52_coco"},
        ),
        ModelType(
            name="squeeze",
            network="cornernet_tf.models.squeeze:CornerNetSqueeze",
            description="CornerNet-Squeeze (CornerNet-Lite): stride-8 stem, fire-module hourglasses, 1x1 heads",
            stride=8,
            official_layout="lite",
            coco_configs={2: "squeeze_coco"},
            model_checks=(_even_dims,),
        ),
        ModelType(
            name="saccade",
            network="cornernet_tf.models.saccade:CornerNetSaccade",
            description="CornerNet-Saccade (CornerNet-Lite): attention maps on every hourglass level, crop search",
            network_arguments=("att_dim",),
            attention=True,
            target_coordinate_dtype="float64",
            trains_with_fit=False,
            official_layout="lite",
            coco_configs={3: "saccade_coco"},
            config_checks=(_saccade_crops,),
        ),
    )
}


def model_type(name: str) -> ModelType:
    """The record of `name`; ValueError naming the known types otherwise."""
    if name not in MODEL_TYPES:
        raise ValueError(f"model.type {name!r} is not one of {list(MODEL_TYPES)}")
    return MODEL_TYPES[name]
