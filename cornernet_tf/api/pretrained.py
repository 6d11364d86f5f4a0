"""Pretrained COCO detectors by name: the published checkpoints fetched, checked, converted and
cached, so that every place that takes weights takes a name.

    python -m cornernet_tf.predict photos/ --weights cornernet_squeeze_coco
    ObjectDetector.from_preset("centernet_hourglass104_coco")

`resolve(weights)` is what the commands, `Detector.from_weights` and `ObjectDetector.from_preset`
call first: a preset name becomes the folder of its converted weights (fetched on first use), an
original checkpoint file (.pkl / .pth / .pt, the official or mmdetection layout) becomes the
folder of its conversion, anything else is returned as given. Such a folder holds
`model.weights.h5` and `config.yaml`, as a preset folder and a training run do, so everything
that reads weights reads it.

The cache is `$CORNERNET_TF_HOME` (default `~/.cache/cornernet_tf`, `$XDG_CACHE_HOME` honoured,
as Keras and torch keep theirs): `presets/<name>/` per named preset, `converted/<stem>-<sha>/` per
converted file. A folder is built under a hidden scratch name and renamed into place whole, so an
interrupted download or conversion leaves nothing a later run mistakes for a good folder; scratch
folders older than a day are swept. A later use reads the folder only: no network, no conversion.

Downloads: HTTPS with `keras.utils.get_file` (progress bar), Google Drive with `gdown` (the
`pretrained` extra; Drive's large-file confirmation page is what gdown exists for). Checkpoints
are read without PyTorch (`torch_checkpoint`). `$CORNERNET_TF_WEIGHTS_MIRROR` (a base URL) is
tried instead of the sources: the files are looked up there by their original names, for sites
behind a firewall and for the tests.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import pathlib
import secrets
import shutil
import time
from collections.abc import Callable

from cornernet_tf.config import CONFIG_DIR
from cornernet_tf.model_types import model_type
from cornernet_tf.training.checkpoint import PRESET_WEIGHTS as WEIGHTS_FILE  # what every weights loader reads
from cornernet_tf.training.checkpoint import SAVED_CONFIG as CONFIG_FILE

MIRROR_VARIABLE = "CORNERNET_TF_WEIGHTS_MIRROR"
HOME_VARIABLE = "CORNERNET_TF_HOME"
SOURCE_FILE = "source.json"
CHECKPOINT_SUFFIXES = (".pkl", ".pth", ".pt")
_SCRATCH_MAX_AGE_S = 24 * 3600
_MMDET_BASE = "https://download.openmmlab.com/mmdetection/v2.0/cornernet"

# The 80 COCO classes in category-id order, the class index order of every official and mmdetection model.
COCO_CLASS_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class PretrainedPreset:
    """A published checkpoint and how to use it."""

    name: str
    config: str  # the bundled config of its network and test procedure
    file_name: str  # the published file's name (looked up under it on a mirror)
    sources: tuple[str, ...]  # "gdrive:<file id>" or an https URL, tried in order
    box_ap: float  # COCO box AP as its authors published it
    ap_note: str  # where and how that AP was measured
    parameters: int  # trainable parameters (the file is about 4 bytes each)
    sha256: str = ""  # the file's sha256, or the start of it that its source publishes ("" = unknown)
    description: str = ""
    class_names: tuple[str, ...] = COCO_CLASS_NAMES


def _mmdet(variant: str, stamp: str, sha: str, ap: float) -> PretrainedPreset:
    folder = f"cornernet_hourglass104_mstest_{variant}_210e_coco"
    file_name = f"{folder}_{stamp}-{sha}.pth"
    return PretrainedPreset(
        name=f"cornernet_hourglass104_mmdet_coco_{variant}",
        config="cornernet_hg104_mmdet_coco",
        file_name=file_name,
        sources=(f"{_MMDET_BASE}/{folder}/{file_name}",),
        box_ap=ap,
        ap_note="COCO val2017, flip test (mmdetection's model zoo)",
        parameters=201_035_212,
        sha256=sha,
        description=f"CornerNet Hourglass-104 trained by mmdetection ({variant.replace('x', ' GPUs x ')} images)",
    )


PRESETS: dict[str, PretrainedPreset] = {
    preset.name: preset
    for preset in (
        PretrainedPreset(
            name="cornernet_hourglass104_coco",
            config="cornernet_hg104_coco",
            file_name="CornerNet_500000.pkl",
            sources=("gdrive:16bbMAyykdZr2_7afiMZrvvn4xkYa-LYk", "gdrive:1e8At_iZWyXQgLlMwHkB83kN-AN85Uff1"),
            box_ap=40.5,
            ap_note="COCO test-dev, single scale (paper)",
            parameters=201_035_212,
            description="CornerNet, Hourglass-104 (princeton-vl/CornerNet)",
        ),
        PretrainedPreset(
            name="centernet_hourglass104_coco",
            config="centernet_hg104_coco",
            file_name="CenterNet-104_480000.pkl",
            sources=("gdrive:1GVN-YrgExbPPcmzn_Lkr49f2IKjodg15",),
            box_ap=44.9,
            ap_note="COCO test-dev, single scale (paper)",
            parameters=210_062_960,
            description="CenterNet keypoint triplets, Hourglass-104 (Duankaiwen/CenterNet)",
        ),
        PretrainedPreset(
            name="centernet_hourglass52_coco",
            config="centernet_hg52_coco",
            file_name="CenterNet-52_480000.pkl",
            sources=("gdrive:14vJYw4P9sxDoltjp5zDkOS3QjUa2zZIP",),
            box_ap=41.6,
            ap_note="COCO test-dev, single scale (paper)",
            parameters=104_844_152,
            description="CenterNet keypoint triplets, Hourglass-52 (Duankaiwen/CenterNet)",
        ),
        PretrainedPreset(
            name="cornernet_squeeze_coco",
            config="squeeze_coco",
            file_name="CornerNet_Squeeze_500000.pkl",
            sources=("gdrive:1qM8BBYCLUBcZx_UmLT0qMXNTh-Yshp4X",),
            box_ap=34.4,
            ap_note="COCO test-dev (paper)",
            parameters=31_771_852,
            description="CornerNet-Squeeze, the fast one (princeton-vl/CornerNet-Lite)",
        ),
        PretrainedPreset(
            name="cornernet_saccade_coco",
            config="saccade_coco",
            file_name="CornerNet_Saccade_500000.pkl",
            sources=("gdrive:1MQDyPRI0HgDHxHToudHqQ-2m8TVBciaa",),
            box_ap=43.2,
            ap_note="COCO val2017 (paper)",
            parameters=116_969_339,
            description="CornerNet-Saccade, the accurate one (princeton-vl/CornerNet-Lite)",
        ),
        _mmdet("10x5", "20200824_185720", "5fefbf1c", 41.2),
        _mmdet("8x6", "20200825_150618", "79b44c30", 41.2),
        _mmdet("32x3", "20200819_203110", "1efaea91", 40.4),
    )
}


class PretrainedError(ValueError):
    """A preset or checkpoint that cannot be fetched or converted; the message says why and what to do."""


def home() -> pathlib.Path:
    """The cache folder: $CORNERNET_TF_HOME, else $XDG_CACHE_HOME/cornernet_tf, else ~/.cache/cornernet_tf."""
    if os.environ.get(HOME_VARIABLE):
        return pathlib.Path(os.environ[HOME_VARIABLE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base).expanduser() / "cornernet_tf"


def cached_folder(name: str) -> pathlib.Path:
    """Where preset `name`'s converted weights live (whether or not they are there yet)."""
    return home() / "presets" / name


def is_cached(name: str) -> bool:
    return _complete(cached_folder(name))


def _complete(folder: pathlib.Path) -> bool:
    return all((folder / part).is_file() for part in (WEIGHTS_FILE, CONFIG_FILE, SOURCE_FILE))


def looks_like_preset_name(value: str) -> bool:
    """A bare word (no folder, no suffix) that names no file: meant as a preset name."""
    return os.sep not in value and "/" not in value and "." not in value and not pathlib.Path(value).exists()


def resolve(
    weights: str | os.PathLike,
    config: str | os.PathLike | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> str:
    """What to load for `weights`: a preset name -> its cached folder (fetched and converted on
    first use); an original checkpoint file (.pkl / .pth / .pt) -> the folder of its conversion
    with `config` (a YAML path or bundled name; None: the COCO config its keys describe); anything
    else unchanged. Raises PretrainedError for an unknown bare name that is close to a preset's,
    and for every fetch or conversion failure."""
    text = os.fspath(weights)
    if text in PRESETS:
        return str(fetch(text, on_progress))
    path = pathlib.Path(text).expanduser()
    if path.suffix in CHECKPOINT_SUFFIXES and path.is_file():
        return str(convert_checkpoint(path, None if config is None else os.fspath(config), on_progress))
    if looks_like_preset_name(text) and not (CONFIG_DIR / f"{text}.yaml").is_file():
        near = difflib.get_close_matches(text, list(PRESETS), n=3, cutoff=0.5)
        if near:
            raise PretrainedError(f"{text!r} is no file and no preset; did you mean {', '.join(near)}?")
    return text


def fetch(name: str, on_progress: Callable[[str], None] | None = None) -> pathlib.Path:
    """The folder of preset `name`'s converted weights: the cached one, else downloaded, checked,
    converted and cached. Raises PretrainedError (unknown name, download, checksum, conversion)."""
    preset = _preset(name)
    target = cached_folder(name)
    if _complete(target):
        return target
    say = on_progress or _print
    with _scratch(target.parent) as scratch:
        checkpoint = scratch / preset.file_name
        _download(preset, checkpoint, say)
        digest = _sha256(checkpoint)
        if preset.sha256 and not digest.startswith(preset.sha256):
            raise PretrainedError(
                f"{preset.file_name}: sha256 {digest[:16]}... does not match the published {preset.sha256}: the "
                f"download is damaged or another file; nothing was cached, run again to download it anew"
            )
        say(f"converting {preset.file_name} to {preset.config} ...")
        provenance = {"preset": name, "file": preset.file_name, "sha256": digest}
        _convert_into(checkpoint, preset.config, preset.class_names, scratch, provenance)
        checkpoint.unlink()  # the converted weights are what is kept
        _publish(scratch, target)
    say(f"cached {name} in {target}")
    return target


def convert_checkpoint(
    path: str | os.PathLike, config: str | None = None, on_progress: Callable[[str], None] | None = None
) -> pathlib.Path:
    """The folder of an original checkpoint file's conversion (cached by the file's sha256 and the
    config's name). The config is `config`, else the bundled COCO config of the network its keys
    describe."""
    path = pathlib.Path(path).expanduser()
    digest = _sha256(path)
    target = home() / "converted" / f"{path.stem}-{digest[:12]}-{pathlib.Path(config).stem if config else 'coco'}"
    if _complete(target):
        return target
    say = on_progress or _print
    with _scratch(target.parent) as scratch:
        state = _read_checkpoint(path)
        names = None if config else COCO_CLASS_NAMES  # a COCO config chosen by the keys; a given one names its own
        config = config or config_for_checkpoint(state)
        say(f"converting {path} to {config} ...")
        _convert_into(state, config, names, scratch, {"file": str(path), "sha256": digest})
        _publish(scratch, target)
    say(f"cached the conversion of {path.name} in {target}")
    return target


def config_for_checkpoint(state: dict) -> str:
    """The bundled COCO config whose network an official or mmdetection state_dict describes."""
    from cornernet_tf.tasks.official_weights import checkpoint_layout, official_model_type

    keys = list(state)
    if checkpoint_layout(keys) == "mmdetection":
        return "cornernet_hg104_mmdet_coco"
    record = model_type(official_model_type(keys))
    stacks = {
        key.removeprefix("module.").split(".")[1] for key in keys if key.removeprefix("module.").startswith("kps.")
    }
    config = record.coco_config(len(stacks))
    if config is None:
        raise ValueError(f"no bundled COCO config has a {len(stacks)}-stack {record.name} network")
    return config


def describe() -> list[dict[str, object]]:
    """One row per preset: name, AP as published, file size, cached or not, description."""
    return [
        {
            "name": preset.name,
            "box_ap": preset.box_ap,
            "ap_note": preset.ap_note,
            "size_mb": round(preset.parameters * 4 / 2**20),
            "cached": is_cached(preset.name),
            "description": preset.description,
        }
        for preset in PRESETS.values()
    ]


def _preset(name: str) -> PretrainedPreset:
    if name not in PRESETS:
        near = difflib.get_close_matches(name, list(PRESETS), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(near)}?" if near else f"; known: {', '.join(PRESETS)}"
        raise PretrainedError(f"unknown preset {name!r}{hint}")
    return PRESETS[name]


def _print(message: str) -> None:
    print(message, flush=True)


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _scratch:
    """A hidden folder beside the cache entries, removed on exit whatever happens; sweeps scratch
    folders that a killed process left (older than a day)."""

    def __init__(self, parent: pathlib.Path) -> None:
        parent.mkdir(parents=True, exist_ok=True)
        now = time.time()
        for old in parent.glob(".*.partial"):
            if now - old.stat().st_mtime > _SCRATCH_MAX_AGE_S:
                shutil.rmtree(old, ignore_errors=True)
        self.path = parent / f".{secrets.token_hex(6)}.partial"

    def __enter__(self) -> pathlib.Path:
        self.path.mkdir()
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _publish(scratch: pathlib.Path, target: pathlib.Path) -> None:
    """Rename the finished scratch folder to `target` (an incomplete one there is replaced)."""
    built = scratch.with_name(scratch.name + ".done")
    os.rename(scratch, built)
    try:
        if target.exists():
            shutil.rmtree(target)
        os.rename(built, target)
    except OSError:
        if not _complete(target):  # else another process (a worker of the same job) published it first
            raise
    finally:
        shutil.rmtree(built, ignore_errors=True)


def _download(preset: PretrainedPreset, target: pathlib.Path, say: Callable[[str], None]) -> None:
    """The preset's file into `target`: from the mirror when $CORNERNET_TF_WEIGHTS_MIRROR is set,
    else from its sources in turn. Raises PretrainedError naming every place tried."""
    mirror = os.environ.get(MIRROR_VARIABLE, "").strip()
    sources = [f"{mirror.rstrip('/')}/{preset.file_name}"] if mirror else list(preset.sources)
    failures = []
    for source in sources:
        say(f"downloading {preset.name} ({preset.file_name}, about {preset.parameters * 4 / 1e6:.0f} MB) from {source}")
        try:
            if source.startswith("gdrive:"):
                _download_drive(source.removeprefix("gdrive:"), target)
            else:
                _download_url(source, target)
            return
        except PretrainedError:
            raise
        except Exception as err:  # urllib, http and gdown raise many kinds; each is reported
            target.unlink(missing_ok=True)
            failures.append(f"{source}: {' '.join(str(err).split()) or type(err).__name__}")
    raise PretrainedError(
        f"could not download {preset.file_name} ({'; '.join(failures)}). Offline or behind a firewall? Set "
        f"{MIRROR_VARIABLE} to a URL that serves {preset.file_name}, or download it yourself and pass the file "
        f"(--weights {preset.file_name})"
    )


def _download_url(url: str, target: pathlib.Path) -> None:
    """HTTP(S) with Keras' downloader (progress bar); a short body is an error (Content-Length)."""
    import keras

    folder = str(target.parent)
    keras.utils.get_file(fname=target.name, origin=url, cache_dir=folder, cache_subdir=folder, force_download=True)
    if not target.is_file() or target.stat().st_size == 0:
        raise OSError("empty download")


def _download_drive(file_id: str, target: pathlib.Path) -> None:
    try:
        import gdown
    except ImportError:
        raise PretrainedError(
            'downloading from Google Drive needs gdown: pip install "cornernet-tf[pretrained]" (or set '
            f"{MIRROR_VARIABLE}, or download the file yourself and pass it)"
        ) from None
    if gdown.download(id=file_id, output=str(target), quiet=False) is None:
        raise OSError(f"Google Drive file {file_id} could not be downloaded (quota exceeded or not shared)")


def _read_checkpoint(path: pathlib.Path) -> dict:
    from cornernet_tf.utils.torch_checkpoint import read_state_dict

    try:
        return read_state_dict(path)
    except ValueError as err:
        raise PretrainedError(f"{err}; nothing was cached") from None


def _convert_into(
    source: pathlib.Path | dict,
    config_name: str,
    class_names: tuple[str, ...] | None,
    folder: pathlib.Path,
    provenance: dict,
) -> None:
    """Convert `source` (a checkpoint file or its state_dict) into `folder`: the weights, the
    config (with `class_names` when given) and where they came from."""
    from cornernet_tf.config import load_config
    from cornernet_tf.tasks.model import build_model
    from cornernet_tf.tasks.official_weights import load_official_weights

    state = _read_checkpoint(source) if isinstance(source, pathlib.Path) else source
    names = [] if class_names is None else [f"data.class_names={json.dumps(list(class_names))}"]
    config = load_config(config_name, names)
    model = build_model(config.model, corner_pool="vectorized")
    try:
        load_official_weights(model, state)
    except ValueError as err:
        raise PretrainedError(f"{provenance['file']} is not a checkpoint of {config_name}: {err}") from None
    del state
    model.save_weights(str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(config.to_yaml())
    (folder / SOURCE_FILE).write_text(json.dumps({**provenance, "config": config_name}, indent=2) + "\n")
