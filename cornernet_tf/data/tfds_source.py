"""A split of a TensorFlow Datasets detection builder (`voc/2007`, `coco/2017`, `kitti`, ...) -> a `CocoSource`.

TFDS keeps a prepared split's images inside its record shards, while the input pipelines read
image files by path (and the image checks probe their headers). So a split's images are written
once as files into a cache folder, each one's encoded bytes exactly as the dataset holds them
(read with `tfds.decode.SkipDecoding`, never re-encoded), beside a COCO instances json of the
split; later uses read only that json. The split is then read by `coco.source_from_dataset`, so
it is accounted, trained on and scored exactly as a COCO json.

A builder's features must hold an `image` and a sequence of objects with a `bbox`
(`tfds.features.BBoxFeature`: normalized ymin, xmin, ymax, xmax): `objects`, or the one sequence
that has a bbox (WIDER FACE's `faces`). Their class is the sequence's ClassLabel `label` (KITTI's
`type`, or its only ClassLabel; without one, a single class named after the sequence: `face`);
category ids are label + 1, named by the ClassLabel. Boxes become COCO [x, y, w, h] pixels of the
image's stored size, read from its header. Objects the builder flags as crowd, difficult or
group-of (`is_crowd` in coco, `is_difficult` in voc, `is_group_of` in open_images_v4) become crowd
regions (`iscrowd: 1`): left out of training, and neither true nor false positives in evaluation,
as the COCO and VOC readers treat them. A numeric `area` (coco's) is kept as the object's area.

TFDS decodes images with TensorFlow, which never applies an EXIF orientation, and its builders'
boxes describe the pixels so decoded: a TFDS image is used as stored (its EXIF orientation, if
any, is ignored and counted as `exif_ignored_images`).

Cache layout: `<cache_dir>/<name>/<split>/` (`cache_dir` defaults to
`<data_dir>/cornernet_tf_images`, `data_dir` being where the builder is prepared) holds
`<index>.<jpg|png|gif|bmp>` per example (split order, zero-padded) and `instances.json`, whose
`info.tfds` names the builder's full name (with its version), the split and its example count; a
cache of another version or size is rebuilt. It is built under a temporary sibling name
(`.<split>.partial-*`) and renamed into place whole, so a killed run leaves no half cache that is
taken for a whole one, and a folder without its json is rebuilt.

The reader never downloads or prepares a dataset: a builder that is unknown or not prepared in
`data_dir`, or a split it does not have, is a `TfdsError` that says where it looked and how to
prepare it (`tfds build`, `download_and_prepare`). Builders are found by name as `tfds.builder`
finds them: the TFDS catalog, an imported `tfds.core.GeneratorBasedBuilder` subclass (registered
under its snake_case class name), or a dataset prepared in `data_dir` whose code is not imported.
`tensorflow_datasets` is an optional extra, imported only when a builder is read.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import re
import shutil
import uuid
from typing import Any

import numpy as np

from cornernet_tf.data import coco, image_header

log = logging.getLogger(__name__)

CACHE_DIR = "cornernet_tf_images"
ANNOTATIONS = "instances.json"
CACHE_FORMAT = 1
LABEL_KEYS = ("label", "type")  # an object's class feature (kitti: type), before its only ClassLabel
# per-object flags of TFDS builders that mark an object to ignore (a crowd region)
CROWD_FLAGS = ("is_crowd", "iscrowd", "is_difficult", "difficult", "is_group_of")
FILE_NAME_KEYS = ("image/filename", "image/file_name")  # voc, coco / kitti: the original file's name
EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "gif": ".gif", "bmp": ".bmp"}
UNKNOWN_EXTENSION = ".bin"  # bytes that are no image the pipeline decodes (the image check marks them)


class TfdsError(ValueError):
    """A TFDS builder that cannot be read: unknown, not prepared, without the split, or without boxes."""


@dataclasses.dataclass(frozen=True)
class ObjectFeatures:
    """Where a builder keeps its objects: the sequence's key, its class feature's key (None: one
    class), the class names, the crowd flags it has and whether it has a numeric `area`."""

    sequence: str
    label: str | None
    class_names: list[str]
    flags: tuple[str, ...]
    area: bool


def _tfds() -> Any:
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise ImportError(
            'reading TensorFlow Datasets needs the tensorflow-datasets package: pip install "cornernet-tf[tfds]"'
        ) from err
    return tfds


def _looked_in(data_dir: str | os.PathLike | None) -> str:
    return str(data_dir) if data_dir else "the default data_dir ($TFDS_DATA_DIR or ~/tensorflow_datasets)"


def _how_to_prepare(name: str, data_dir: str | os.PathLike | None) -> str:
    flag, argument = (f" --data_dir {data_dir}", f", data_dir={str(data_dir)!r}") if data_dir else ("", "")
    return (
        f"prepare it first with `tfds build {name}{flag}` or `tfds.builder({name!r}{argument}).download_and_prepare()` "
        "(this reader never downloads)"
    )


def builder(name: str, data_dir: str | os.PathLike | None = None, split: str | None = None) -> Any:
    """`tfds.builder(name, data_dir=...)`, which downloads nothing; TfdsError naming the builder, the
    split and where it looked when there is no such builder (or config, or version)."""
    tfds = _tfds()
    data_dir = os.fspath(pathlib.Path(data_dir).expanduser()) if data_dir else None
    wanted = f"{name!r}" + (f" (split {split!r})" if split else "")
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as err:
        reason = str(err).splitlines()[0]  # the rest lists every dataset of the catalog
        raise TfdsError(
            f"no TensorFlow Datasets builder {wanted}: {reason} It is neither in the TFDS catalog, nor an imported "
            f"builder class, nor prepared in {_looked_in(data_dir)}; check the name, or "
            f"{_how_to_prepare(name, data_dir)}"
        ) from None
    except ValueError as err:  # a config or version the builder does not have
        raise TfdsError(f"TensorFlow Datasets builder {wanted} in {_looked_in(data_dir)}: {err}") from None


def _describe(features: Any) -> str:
    """The builder's feature keys, a sequence of dicts as `key/{a, b}`."""
    tfds = _tfds()
    keys = []
    for key, feature in features.items():
        inner = feature.feature if isinstance(feature, tfds.features.Sequence) else None
        if isinstance(inner, tfds.features.FeaturesDict):
            keys.append(f"{key}/{{{', '.join(inner.keys())}}}")
        else:
            keys.append(key)
    return ", ".join(keys)


def object_features(dataset_builder: Any) -> ObjectFeatures:
    """The builder's objects (see the module docstring); TfdsError naming its features when it has
    no image or no sequence of objects with a bbox, or no single class feature."""
    tfds = _tfds()
    features = dataset_builder.info.features
    name = dataset_builder.info.full_name
    sequences = {
        key: dict(feature.feature.items())
        for key, feature in features.items()
        if isinstance(feature, tfds.features.Sequence) and isinstance(feature.feature, tfds.features.FeaturesDict)
    }
    with_boxes = [key for key, inner in sequences.items() if isinstance(inner.get("bbox"), tfds.features.BBoxFeature)]
    if not isinstance(dict(features.items()).get("image"), tfds.features.Image) or not with_boxes:
        raise TfdsError(
            f"TensorFlow Datasets {name}: expected an `image` (tfds.features.Image) and a sequence of objects with a "
            f"`bbox` (tfds.features.BBoxFeature), such as objects/bbox and objects/label; its features are "
            f"{_describe(features)}"
        )
    if len(with_boxes) > 1 and "objects" not in with_boxes:
        raise TfdsError(f"TensorFlow Datasets {name}: several sequences have a bbox ({with_boxes}); expected objects")
    sequence = "objects" if "objects" in with_boxes else with_boxes[0]
    inner = sequences[sequence]
    labels = [key for key, feature in inner.items() if isinstance(feature, tfds.features.ClassLabel)]
    named = [key for key in LABEL_KEYS if key in labels]
    label = named[0] if named else labels[0] if len(labels) == 1 else None
    if label is None and labels:
        raise TfdsError(
            f"TensorFlow Datasets {name}: {sequence} has several class features ({labels}) and none named "
            f"{' or '.join(LABEL_KEYS)}"
        )
    names = list(inner[label].names) if label else [sequence.removesuffix("s")]
    flags = tuple(key for key in CROWD_FLAGS if key in inner)
    area = "area" in inner and np.issubdtype(np.dtype(inner["area"].np_dtype), np.number)
    return ObjectFeatures(sequence, label, names, flags, bool(area))


def class_names(name: str, data_dir: str | os.PathLike | None = None) -> list[str]:
    """The class names of a builder's objects (its `objects/label` ClassLabel names), index order.
    The builder need not be prepared, but some (coco) name their classes only when prepared: before,
    their names are "0", "1", ... (a warning says so)."""
    dataset_builder = builder(name, data_dir)
    names = object_features(dataset_builder).class_names
    if names == [str(index) for index in range(len(names))] and not dataset_builder.is_prepared():
        log.warning("%s is not prepared in %s: its class names are known once it is", name, dataset_builder.data_dir)
    return names


def _safe(text: str) -> str:
    """A builder name or split as one folder name: `voc/2007` -> `voc_2007`, `train[:10%]` -> `train_10pct`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.replace("%", "pct")).strip("._") or "_"


def cache_folder(
    dataset_builder: Any, name: str, split: str, cache_dir: str | os.PathLike | None = None
) -> pathlib.Path:
    """Where the split's image files and json are: `<cache_dir>/<name>/<split>/`, `cache_dir`
    defaulting to `<the builder's data_dir>/cornernet_tf_images` (~/tensorflow_datasets' when the
    data_dir is not a local folder)."""
    if cache_dir:
        root = pathlib.Path(cache_dir).expanduser()
    else:
        data_root = os.fspath(dataset_builder.data_dir_root)
        if "://" in data_root:  # a bucket: the files go to the local default data_dir
            data_root = "~/tensorflow_datasets"
        root = pathlib.Path(data_root).expanduser() / CACHE_DIR
    return root / _safe(name) / _safe(split)


def _read_cache(folder: pathlib.Path, provenance: dict) -> dict | None:
    """The cached COCO dataset dict of the split, or None when missing, unreadable or of another
    build of the dataset."""
    try:
        dataset = json.loads((folder / ANNOTATIONS).read_text())
    except (OSError, ValueError):
        return None
    info = dataset.get("info") if isinstance(dataset, dict) else None
    return dataset if isinstance(info, dict) and info.get("tfds") == provenance else None


def _annotations(
    example: dict, image_id: int, width: int, height: int, objects: ObjectFeatures, first_id: int
) -> list[dict]:
    """The COCO annotations of one example's objects."""
    found = example[objects.sequence]
    boxes = np.asarray(found["bbox"], np.float64).reshape(-1, 4)
    labels = np.asarray(found[objects.label]).reshape(-1) if objects.label else np.zeros(len(boxes), np.int64)
    crowd = np.zeros(len(boxes), bool)
    for flag in objects.flags:
        crowd |= np.asarray(found[flag]).reshape(-1) > 0
    areas = np.asarray(found["area"], np.float64).reshape(-1) if objects.area else np.zeros(len(boxes))
    annotations = []
    for k, (ymin, xmin, ymax, xmax) in enumerate(boxes):
        bbox = [float(xmin * width), float(ymin * height), float((xmax - xmin) * width), float((ymax - ymin) * height)]
        annotations.append(
            {
                "id": first_id + k,
                "image_id": image_id,
                "category_id": int(labels[k]) + 1,
                "bbox": bbox,
                "area": float(areas[k]) if areas[k] > 0 else bbox[2] * bbox[3],
                "iscrowd": int(crowd[k]),
            }
        )
    return annotations


def _write_split(dataset_builder: Any, split: str, folder: pathlib.Path, objects: ObjectFeatures, count: int) -> dict:
    """Write every example's image bytes into `folder`; the split's COCO dataset dict (image ids
    1.. in split order, file names relative to `folder`), without its `info`."""
    tfds = _tfds()
    examples = dataset_builder.as_dataset(
        split=split, decoders={"image": tfds.decode.SkipDecoding()}, shuffle_files=False
    )
    digits = max(6, len(str(max(count - 1, 0))))
    images, annotations = [], []
    for index, example in enumerate(tfds.as_numpy(examples)):
        data = bytes(example["image"])
        try:
            header = image_header.header_of_bytes(data)
            extension, width, height = EXTENSIONS[header.format], header.width, header.height
        except (image_header.UnreadableImageError, image_header.UndecodableImageError):
            extension, width, height = UNKNOWN_EXTENSION, 0, 0
        file_name = f"{index:0{digits}d}{extension}"
        (folder / file_name).write_bytes(data)
        image = {"id": index + 1, "file_name": file_name, "width": width, "height": height}
        for key in FILE_NAME_KEYS:
            if key in example:
                value = example[key]
                image["tfds_file_name"] = value.decode() if isinstance(value, bytes) else str(value)
        images.append(image)
        if width:  # an image without a readable size is unusable (its check says why), its boxes unknown
            annotations += _annotations(example, index + 1, width, height, objects, len(annotations) + 1)
    categories = [{"id": index + 1, "name": name} for index, name in enumerate(objects.class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _build_cache(dataset_builder: Any, split: str, folder: pathlib.Path, provenance: dict) -> dict:
    """Write the split's cache under a temporary sibling name, then rename it into place whole."""
    objects = object_features(dataset_builder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    leftovers = sorted(p.name for p in folder.parent.glob(f".{folder.name}.partial-*"))
    if leftovers:
        log.warning("%s: partial caches of interrupted runs can be deleted: %s", folder.parent, ", ".join(leftovers))
    log.info("writing the %d images of %s into %s (once)", provenance["num_examples"], provenance["name"], folder)
    partial = folder.parent / f".{folder.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    partial.mkdir()
    try:
        dataset = _write_split(dataset_builder, split, partial, objects, provenance["num_examples"])
        dataset = {"info": {"tfds": provenance}, **dataset}
        (partial / ANNOTATIONS).write_text(json.dumps(dataset))
        if folder.exists():  # a folder without its json, or of another build of the dataset
            stale = folder.parent / f".{folder.name}.stale-{uuid.uuid4().hex[:8]}"
            os.replace(folder, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(partial, folder)
        except OSError:  # another process put its whole cache in place meanwhile
            if _read_cache(folder, provenance) is None:
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return dataset


def load_tfds(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    check_files: bool = True,
) -> coco.CocoSource:
    """One split of a prepared TFDS builder as a `CocoSource` named `tfds:<name>:<split>` (any split
    TFDS reads, such as `train[:10%]`); the first use writes its image files and json into the cache
    folder (`cache_folder`), later ones read the json only. TfdsError when the builder is unknown,
    not prepared in `data_dir`, without the split or without boxes."""
    dataset_builder = builder(name, data_dir, split)
    if not dataset_builder.is_prepared():
        raise TfdsError(
            f"TensorFlow Datasets {name!r} (split {split!r}) is not prepared in {dataset_builder.data_dir}: "
            f"{_how_to_prepare(name, data_dir)}"
        )
    try:
        count = int(dataset_builder.info.splits[split].num_examples)
    except (KeyError, ValueError, TypeError) as err:
        raise TfdsError(
            f"TensorFlow Datasets {name!r} (prepared in {dataset_builder.data_dir}) has no split {split!r}: "
            f"its splits are {sorted(dataset_builder.info.splits)} ({err})"
        ) from None
    if not count:
        raise TfdsError(f"TensorFlow Datasets {name!r}: split {split!r} has no example")
    folder = cache_folder(dataset_builder, name, split, cache_dir)
    provenance = {"format": CACHE_FORMAT, "name": dataset_builder.info.full_name, "split": split, "num_examples": count}
    dataset = _read_cache(folder, provenance) or _build_cache(dataset_builder, split, folder, provenance)
    source = coco.source_from_dataset(dataset, folder, f"tfds:{name}:{split}", check_files=check_files)
    # TFDS images are used as stored (module docstring): undo the EXIF orientation the check would apply
    turned = int(((source.orientation != 1) & (source.status == coco.USABLE)).sum())
    source.counts["reoriented_images"] -= turned
    source.counts["exif_ignored_images"] += turned
    source.orientation[:] = 1
    return source
