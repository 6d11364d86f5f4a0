"""Official CornerNet / CenterNet / CornerNet-Squeeze / CornerNet-Saccade (PyTorch) weights, and
mmdetection's CornerNet weights -> our Keras models (`python -m cornernet_tf.convert` is the
command line around it; `api.pretrained` converts the named presets with it).

The official state_dict keys are mapped onto our layers by walking the model: every layer
mirrors the original's module names (see `cornernet_tf.models`). Conv kernels go from OIHW to
HWIO, depthwise kernels (C, 1, kH, kW) to (kH, kW, C, 1), transposed-conv kernels (in, out, kH,
kW) to (kH, kW, out, in). The original reads BGR images while ours reads RGB, so the stem conv's
input channels are reversed: official(x_bgr) == ours(x_bgr[..., ::-1]). CornerNet-Lite keeps the
backbone under `hg.` (`hg.pre`, `hg.hgs`, ...) and calls the corner pools `tl_modules` /
`br_modules` and the offset heads `tl_offs` / `br_offs`; Saccade adds `att_modules.{stack}.{level}`.

mmdetection's CornerNet (`backbone.*` = HourglassNet, `bbox_head.*` = CornerHead) is the official
network under other module names (`_MMDET_PREFIXES`, `_MMDET_RENAMES`), with one difference that
matters: it reads RGB (mmdetection's preprocessor converts BGR -> RGB), so its stem is taken as it
is. `checkpoint_layout` tells the two apart, and `load_official_weights` loads either.
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal

import keras
import numpy as np

from cornernet_tf.config import ModelConfig
from cornernet_tf.model_types import MODEL_TYPES
from cornernet_tf.models import (
    CascadeCornerPoolModule,
    CornerNet,
    CornerNetSaccade,
    FireModule,
    PoolModule,
    PredictionHead,
    Residual,
)
from cornernet_tf.utils.torch_checkpoint import read_state_dict

# official BatchNorm2d entry -> Keras BatchNormalization variable
_BN_VARIABLES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
_OFFICIAL_KEYS = (
    "type",
    "model",
    "n",
    "nstack",
    "dims",
    "modules",
    "out_dim",
    "cnv_dim",
    "pre_dims",
    "pool_dim",
    "att_dim",
    "att_in_channels",
)
# the official config's "model" (its models/ or core/models/ file) -> our model.type
_OFFICIAL_MODELS = {
    "CornerNet": "cornernet",
    "CenterNet-104": "centernet",
    "CenterNet-52": "centernet",
    "CornerNet_Squeeze": "squeeze",
    "CornerNet_Saccade": "saccade",
}
# our per-stack layer lists -> CornerNet-Lite's names (CornerNet and CenterNet use ours)
_LITE_STACK_NAMES = {"tl_cnvs": "tl_modules", "br_cnvs": "br_modules", "tl_regrs": "tl_offs", "br_regrs": "br_offs"}
_MAX_LISTED = 20

# mmdetection's CornerNet (HourglassNet + CornerHead) names the official modules otherwise. These
# tables turn an official key into mmdetection's (the table of tests/fixtures/official/README.md,
# "mmdetection CornerNet", read from right to left), so that a load names every key as the
# checkpoint spells it. First the one matching prefix ...
_MMDET_PREFIXES = (
    ("pre.0.", "backbone.stem.0."),
    ("pre.1.", "backbone.stem.1.0."),
    ("kps.", "backbone.hourglass_modules."),
    ("cnvs.", "backbone.out_convs."),
    ("inters.", "backbone.inters."),
    ("inters_.", "backbone.conv1x1s."),
    ("cnvs_.", "backbone.remap_convs."),
    *(
        (f"{corner}_{official}.", f"bbox_head.{corner}_{mmdet}.")
        for corner in ("tl", "br")
        for official, mmdet in (("cnvs", "pool"), ("heats", "heat"), ("tags", "emb"), ("regrs", "off"))
    ),
)
# ... then every renaming inside a module: mmdetection wraps a conv and its BN (or a conv alone)
# in a ConvModule (`.conv`, `.bn`) where the official code has a Sequential (`.0`, `.1`) or a
# bare Conv2d / BatchNorm2d.
_MMDET_RENAMES = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"^(backbone\.(?:conv1x1s|remap_convs)\.\d+)\.0\.", r"\1.conv."),
        (r"^(backbone\.(?:conv1x1s|remap_convs)\.\d+)\.1\.", r"\1.bn."),
        (r"^(bbox_head\.(?:tl|br)_(?:heat|emb|off)\.\d+\.1)\.", r"\1.conv."),  # a head's last conv
        (r"\.skip\.", ".downsample."),  # a residual block's projection
        (r"\.p([12])_conv1\.", r".direction\1_conv."),  # the corner pools' two branches
        (r"\.p_(conv|bn)1\.", r".aftpool_conv.\1."),
        (r"^(bbox_head\.(?:tl|br)_pool\.\d+)\.(conv|bn)1\.", r"\1.conv1.\2."),
    )
)
# the modules that make a checkpoint mmdetection's CornerNet
_MMDET_CORNERNET_PREFIXES = ("backbone.hourglass_modules.", "bbox_head.tl_pool.")

Entry = tuple[str, Any, Callable[[np.ndarray], np.ndarray]]
Layout = Literal["official", "mmdetection"]


def _identity(a: np.ndarray) -> np.ndarray:
    return a


def _oihw_to_hwio(a: np.ndarray) -> np.ndarray:
    return np.transpose(a, (2, 3, 1, 0))


def _depthwise_to_hwcm(a: np.ndarray) -> np.ndarray:
    """Depthwise Conv2d (C, 1, kH, kW), groups = C -> Keras DepthwiseConv2D (kH, kW, C, 1)."""
    return np.transpose(a, (2, 3, 0, 1))


def _transposed_to_hwoi(a: np.ndarray) -> np.ndarray:
    """ConvTranspose2d (in, out, kH, kW) -> Keras Conv2DTranspose (kH, kW, out, in)."""
    return np.transpose(a, (2, 3, 1, 0))


def _stem_oihw_to_hwio(a: np.ndarray) -> np.ndarray:
    """The first conv: BGR input channels (official) -> RGB (ours), then OIHW -> HWIO."""
    return _oihw_to_hwio(a[:, ::-1])


def _conv(prefix: str, conv: keras.layers.Conv2D, kernel_fn=_oihw_to_hwio) -> Iterator[Entry]:
    yield f"{prefix}.weight", conv.kernel, kernel_fn
    if conv.use_bias:
        yield f"{prefix}.bias", conv.bias, _identity


def _bn(prefix: str, bn: keras.layers.BatchNormalization) -> Iterator[Entry]:
    for official, ours in _BN_VARIABLES.items():
        yield f"{prefix}.{official}", getattr(bn, ours), _identity


def _conv_bn_relu(prefix: str, layer, kernel_fn=_oihw_to_hwio) -> Iterator[Entry]:
    yield from _conv(f"{prefix}.conv", layer.conv, kernel_fn)
    if layer.bn is not None:
        yield from _bn(f"{prefix}.bn", layer.bn)


def _residual(prefix: str, layer) -> Iterator[Entry]:
    yield from _conv(f"{prefix}.conv1", layer.conv1)
    yield from _bn(f"{prefix}.bn1", layer.bn1)
    yield from _conv(f"{prefix}.conv2", layer.conv2)
    yield from _bn(f"{prefix}.bn2", layer.bn2)
    if layer.skip_conv is not None:
        yield from _conv(f"{prefix}.skip.0", layer.skip_conv)
        yield from _bn(f"{prefix}.skip.1", layer.skip_bn)


def _fire(prefix: str, layer: FireModule) -> Iterator[Entry]:
    yield from _conv(f"{prefix}.conv1", layer.conv1)
    yield from _bn(f"{prefix}.bn1", layer.bn1)
    yield from _conv(f"{prefix}.conv_1x1", layer.conv_1x1)
    yield from _conv(f"{prefix}.conv_3x3", layer.conv_3x3, _depthwise_to_hwcm)
    yield from _bn(f"{prefix}.bn2", layer.bn2)


def _blocks(prefix: str, layers) -> Iterator[Entry]:
    """A Sequential of residuals (CornerNet, CenterNet) or fire modules (CornerNet-Squeeze)."""
    for i, layer in enumerate(layers):
        if isinstance(layer, Residual):
            yield from _residual(f"{prefix}.{i}", layer)
        elif isinstance(layer, FireModule):
            yield from _fire(f"{prefix}.{i}", layer)
        else:
            raise TypeError(f"{prefix}.{i}: no official layout for {type(layer).__name__}")


def _hourglass(prefix: str, module) -> Iterator[Entry]:
    yield from _blocks(f"{prefix}.up1", module.up1)
    yield from _blocks(f"{prefix}.low1", module.low1)
    if isinstance(module.low2, list):
        yield from _blocks(f"{prefix}.low2", module.low2)
    else:
        yield from _hourglass(f"{prefix}.low2", module.low2)
    yield from _blocks(f"{prefix}.low3", module.low3)
    if isinstance(module.up2, keras.layers.Conv2DTranspose):  # CornerNet-Squeeze; else nearest
        yield from _conv(f"{prefix}.up2", module.up2, _transposed_to_hwoi)


def _pool(prefix: str, module: PoolModule) -> Iterator[Entry]:
    """Any pool module (corner, cascade corner, center): the shared part, then the look convs."""
    yield from _conv_bn_relu(f"{prefix}.p1_conv1", module.p1_conv1)
    yield from _conv_bn_relu(f"{prefix}.p2_conv1", module.p2_conv1)
    yield from _conv(f"{prefix}.p_conv1", module.p_conv1)
    yield from _bn(f"{prefix}.p_bn1", module.p_bn1)
    yield from _conv(f"{prefix}.conv1", module.conv1)
    yield from _bn(f"{prefix}.bn1", module.bn1)
    yield from _conv_bn_relu(f"{prefix}.conv2", module.conv2)
    if isinstance(module, CascadeCornerPoolModule):
        yield from _conv_bn_relu(f"{prefix}.look_conv1", module.look_conv1)
        yield from _conv_bn_relu(f"{prefix}.look_conv2", module.look_conv2)
        yield from _conv(f"{prefix}.P1_look_conv", module.P1_look_conv)
        yield from _conv(f"{prefix}.P2_look_conv", module.P2_look_conv)


def _head(prefix: str, head: PredictionHead) -> Iterator[Entry]:
    yield from _conv_bn_relu(f"{prefix}.0", head.conv)
    yield from _conv(f"{prefix}.1", head.out)


def model_type_of(model: CornerNet) -> str:
    """The model.type of a model: the type whose network class is the most derived one it is an
    instance of (`model_types.MODEL_TYPES`)."""
    classes = {name: record.network_class() for name, record in MODEL_TYPES.items()}
    matches = [(len(cls.__mro__), name) for name, cls in classes.items() if isinstance(model, cls)]
    if not matches:
        raise ValueError(f"{type(model).__name__} is none of {list(MODEL_TYPES)}")
    return max(matches)[1]


def official_entries(model: CornerNet) -> Iterator[Entry]:
    """(official key, our variable, numpy transform) for every weight of a built CornerNet,
    CenterNet, CornerNetSqueeze or CornerNetSaccade (its per-stack layers are listed in
    `model.stack_layer_names`; Saccade's attention heads in `att_modules`)."""
    return _official_walk(model, _stem_oihw_to_hwio)


def mmdetection_entries(model: CornerNet) -> Iterator[Entry]:
    """(mmdetection key, our variable, numpy transform) for every weight of a built CornerNet:
    `official_entries` under mmdetection's names, but with the stem's input channels as they
    are, since mmdetection's CornerNet reads RGB as ours does."""
    for key, variable, transform in _official_walk(model, _oihw_to_hwio):
        yield _mmdetection_key(key), variable, transform


def _mmdetection_key(key: str) -> str:
    """An official CornerNet key -> mmdetection's (`_MMDET_PREFIXES`, then `_MMDET_RENAMES`). Keys
    of modules mmdetection's CornerNet lacks (CenterNet's `ct_*`, CornerNet-Lite's `hg.*`) keep
    their names, so that a load reports them as missing under the names the model knows."""
    for official, mmdet in _MMDET_PREFIXES:
        if key.startswith(official):
            key = mmdet + key[len(official) :]
            break
    else:
        return key
    for pattern, replacement in _MMDET_RENAMES:
        key = pattern.sub(replacement, key)
    return key


def _official_walk(model: CornerNet, stem_transform: Callable[[np.ndarray], np.ndarray]) -> Iterator[Entry]:
    """`official_entries`, the stem conv's kernel read with `stem_transform`."""
    lite = MODEL_TYPES[model_type_of(model)].official_layout == "lite"
    hg, hourglasses = ("hg.", "hg.hgs") if lite else ("", "kps")
    stack_names = _LITE_STACK_NAMES if lite else {}
    backbone = model.backbone
    yield from _conv_bn_relu(f"{hg}pre.0", backbone.pre[0], stem_transform)
    for i, layer in enumerate(backbone.pre[1:], start=1):
        yield from _residual(f"{hg}pre.{i}", layer)
    for s, module in enumerate(backbone.kps):
        yield from _hourglass(f"{hourglasses}.{s}", module)
    for s, layer in enumerate(backbone.cnvs):
        yield from _conv_bn_relu(f"{hg}cnvs.{s}", layer)
    for name in model.stack_layer_names:
        for s, layer in enumerate(getattr(model, name)):
            entries = _head if isinstance(layer, PredictionHead) else _pool
            yield from entries(f"{stack_names.get(name, name)}.{s}", layer)
    if isinstance(model, CornerNetSaccade):
        for s, heads in enumerate(model.att_modules):
            for j, head in enumerate(heads):
                yield from _head(f"att_modules.{s}.{j}", head)
    for s, layer in enumerate(backbone.inters):
        yield from _residual(f"{hg}inters.{s}", layer)
    for s in range(len(backbone.inters)):
        yield from _conv(f"{hg}inters_.{s}.0", backbone.inters_conv[s])
        yield from _bn(f"{hg}inters_.{s}.1", backbone.inters_bn[s])
        yield from _conv(f"{hg}cnvs_.{s}.0", backbone.cnvs_conv[s])
        yield from _bn(f"{hg}cnvs_.{s}.1", backbone.cnvs_bn[s])


def _read_source(source: Mapping[str, Any] | str | os.PathLike) -> dict[str, np.ndarray]:
    """A flat {key: array} from a dict, a .npz, or a PyTorch .pkl/.pth/.pt checkpoint (its
    `state_dict` when it holds one, as mmcv / mmdetection checkpoints do), read without PyTorch
    (`torch_checkpoint`)."""
    if isinstance(source, Mapping):
        return {str(k): np.asarray(v) for k, v in source.items()}
    path = pathlib.Path(source)
    if not path.is_file():
        raise ValueError(f"weights file {str(path)!r} not found")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    if path.suffix in (".pkl", ".pth", ".pt"):
        return read_state_dict(path)
    raise ValueError(f"weights file {str(path)!r}: unsupported suffix {path.suffix!r}; use .npz, .pkl, .pth or .pt")


def _normalise_keys(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Drop the `module.` prefix (checkpoints saved from DataParallel) and BN step counters."""
    out = {}
    for key, value in params.items():
        if key.startswith("module."):
            key = key[len("module.") :]
        if key.endswith(".num_batches_tracked"):
            continue
        out[key] = value
    return out


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


def official_model_type(keys: Iterable[str]) -> str:
    """From official state_dict keys (a `module.` prefix allowed): the backbone under `hg.` is
    CornerNet-Lite, "saccade" with attention heads (`att_modules.*`), else "squeeze";
    "centernet" when they hold CenterNet's center branch (`ct_*`), else "cornernet"."""
    keys = [key.removeprefix("module.") for key in keys]
    if any(key.startswith("hg.") for key in keys):
        return "saccade" if any(key.startswith("att_modules.") for key in keys) else "squeeze"
    return "centernet" if any(key.startswith("ct_") for key in keys) else "cornernet"


def checkpoint_layout(keys: Iterable[str]) -> Layout:
    """Whose key layout a state_dict's keys (a `module.` prefix allowed) follow: "mmdetection"
    when they hold a detector's `backbone.*` or `bbox_head.*` (mmdetection's module names, which
    no official model uses), else "official" (princeton-vl CornerNet / CornerNet-Lite, CenterNet)."""
    mmdet = any(key.removeprefix("module.").startswith(("backbone.", "bbox_head.")) for key in keys)
    return "mmdetection" if mmdet else "official"


def _checkpoint_model_type(keys: Iterable[str], layout: Layout) -> str | None:
    """The model.type of a checkpoint's keys (after `_normalise_keys`) in `layout`; None for an
    mmdetection detector other than CornerNet, the one of them this package has."""
    if layout == "official":
        return official_model_type(keys)
    keys = list(keys)
    cornernet = all(any(key.startswith(prefix) for key in keys) for prefix in _MMDET_CORNERNET_PREFIXES)
    return "cornernet" if cornernet else None


def load_official_weights(model: CornerNet, source: Mapping[str, Any] | str | os.PathLike) -> None:
    """Assign official CornerNet / CenterNet / CornerNet-Squeeze / CornerNet-Saccade weights, or
    mmdetection's CornerNet weights, to a built model of the same type, all or nothing.

    source: {key: array} (NCHW / OIHW, as in the PyTorch state_dict), a .npz of that, or a PyTorch
    .pkl/.pth/.pt checkpoint (read without PyTorch, `torch_checkpoint`). Its key layout is told by
    `checkpoint_layout`: official keys load through `official_entries` (the stem's input
    channels reversed, BGR -> RGB), mmdetection's through `mmdetection_entries` (kept: its
    networks read RGB). A `module.` prefix and missing `num_batches_tracked` entries are
    accepted. Raises ValueError naming a checkpoint of another model, every unused checkpoint
    key, every model weight left unassigned, and every shape mismatch, in the checkpoint's own
    key names; nothing is assigned in that case.
    """
    if not model.built:
        raise ValueError("load_official_weights: build the model first (model.build((None, None, None, 3)))")
    params = _normalise_keys(_read_source(source))
    layout = checkpoint_layout(params)
    entries = list(official_entries(model) if layout == "official" else mmdetection_entries(model))
    expected = {key for key, _, _ in entries}
    problems = []
    model_type = model_type_of(model)
    checkpoint_type = _checkpoint_model_type(params, layout)
    if checkpoint_type is None:
        problems.append(
            "this is an mmdetection checkpoint, but not of CornerNet (whose keys include "
            + " and ".join(f"{prefix}*" for prefix in _MMDET_CORNERNET_PREFIXES)
            + "), the one mmdetection detector that converts"
        )
    elif checkpoint_type != model_type:
        article = "an mmdetection" if layout == "mmdetection" else "a"
        problems.append(
            f"this is {article} {checkpoint_type} checkpoint but a {model_type} model "
            f"(set model.type={checkpoint_type})"
        )
    missing = [f"{key} (for {v.path} {list(v.shape)})" for key, v, _ in entries if key not in params]
    unused = sorted(set(params) - expected)
    if missing:
        problems.append(f"{len(missing)} model weight(s) missing from the checkpoint: {_listing(missing)}")
    if unused:
        problems.append(
            f"{len(unused)} checkpoint key(s) not used by the model: "
            + _listing([f"{k} {list(np.shape(params[k]))}" for k in unused])
        )
    assignments = []
    mismatched = []
    for key, variable, transform in entries:
        if key not in params:
            continue
        value = transform(np.asarray(params[key]))
        if tuple(value.shape) != tuple(variable.shape):
            mismatched.append(f"{key} {list(np.shape(params[key]))} -> {variable.path} expects {list(variable.shape)}")
        assignments.append((variable, value))
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {_listing(mismatched)}")
    assigned = {id(v) for v, _ in assignments}
    unassigned = [w.path for w in model.weights if id(w) not in assigned]
    if unassigned and not missing:
        problems.append(f"{len(unassigned)} model weight(s) with no {layout} key: {_listing(unassigned)}")
    if problems:
        raise ValueError(f"{layout} weights do not fit this model: " + "; ".join(problems))
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype, copy=False))


def config_from_official(d: Mapping[str, Any], keys: Iterable[str] | None = None) -> ModelConfig:
    """ModelConfig from the original's hyperparameters {n, nstack, dims, modules, out_dim,
    cnv_dim, pre_dims, pool_dim, att_dim, att_in_channels} and an optional type ("cornernet" |
    "centernet" | "squeeze" | "saccade") or official model name ("model": "CornerNet",
    "CenterNet-104", "CenterNet-52", "CornerNet_Squeeze", "CornerNet_Saccade"); cnv_dim,
    pre_dims, pool_dim and att_dim (hard-coded in the original) default to 256, [128, 256], 128
    and 256 (every official model alike). Saccade's attention heads see the hourglass levels, so
    att_in_channels, when given, must be [dims[n - 1], ..., dims[0]]. Without a type or model
    name, the type is detected from the checkpoint `keys` when given (`official_model_type`), else
    "cornernet"; a type that contradicts the keys or the model name is an error."""
    unknown = sorted(set(d) - set(_OFFICIAL_KEYS))
    if unknown:
        raise ValueError(f"config_from_official: unknown key(s) {unknown}; valid keys are {list(_OFFICIAL_KEYS)}")
    missing = [k for k in ("n", "nstack", "dims", "modules", "out_dim") if k not in d]
    if missing:
        raise ValueError(f"config_from_official: missing key(s) {missing}")
    detected = None if keys is None else official_model_type(keys)
    named = None
    if "model" in d:
        named = _OFFICIAL_MODELS.get(d["model"])
        if named is None:
            raise ValueError(
                f"config_from_official: unknown official model {d['model']!r}; known: {list(_OFFICIAL_MODELS)}"
            )
    model_type = d.get("type", named or detected or "cornernet")
    if named not in (None, model_type):
        raise ValueError(f"config_from_official: type {model_type!r}, but model {d['model']!r} is a {named}")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"config_from_official: unknown type {model_type!r}; valid values are {list(MODEL_TYPES)}")
    if detected not in (None, model_type):
        raise ValueError(f"config_from_official: type {model_type!r}, but the checkpoint keys are a {detected}'s")
    config = ModelConfig(
        type=model_type,
        num_classes=int(d["out_dim"]),
        depth=int(d["n"]),
        nstack=int(d["nstack"]),
        dims=[int(v) for v in d["dims"]],
        modules=[int(v) for v in d["modules"]],
        cnv_dim=int(d.get("cnv_dim", 256)),
        pre_dims=[int(v) for v in d.get("pre_dims", [128, 256])],
        pool_dim=int(d.get("pool_dim", 128)),
        att_dim=int(d.get("att_dim", 256)),
    )
    config.validate()
    if "att_in_channels" in d:
        levels = [config.dims[level] for level in range(config.depth - 1, -1, -1)]
        if [int(c) for c in d["att_in_channels"]] != levels:
            raise ValueError(
                f"config_from_official: att_in_channels {list(d['att_in_channels'])} must be the hourglass "
                f"levels' widths [dims[n - 1], ..., dims[0]] = {levels}"
            )
    return config
