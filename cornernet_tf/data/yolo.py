"""Ultralytics YOLO datasets (a `data.yaml` with `path`, `train`, `val`, `names`) -> a `CocoSource`.

The layout Ultralytics trains on and Roboflow exports: each split is a folder of images (searched
recursively), a `.txt` file listing image paths, or a list of those; an image's labels are the
`.txt` file found by replacing its last `images` folder with `labels` and its extension with
`.txt`, one object per line: `class cx cy w h`, normalized by the image's width and height (a line
of more values is a polygon, `class x1 y1 x2 y2 ...`, whose bounding box is taken, as Ultralytics
does for segmentation labels). An image without a label file is a negative.

A split is converted to COCO form in memory (pixel coordinates from each image's header) and read
by `coco.source_from_dataset`, so it is accounted, trained on and scored exactly as a COCO json.
Relative paths: `path` relative to the yaml's folder (absent: the yaml's folder), the splits
relative to `path`, and a list file's `./` entries relative to the list file.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import yaml

from cornernet_tf.data import coco

# how far past the image edge a normalized coordinate may be and still be taken as the edge (labels
# are commonly written with 6 decimals)
_ROUNDING = 1e-5
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


class YoloError(ValueError):
    """A data.yaml that cannot be used (missing, no names, a split it does not define)."""


def read_yaml(path: str | os.PathLike) -> dict:
    """The data.yaml as a mapping, with `names` as a list (Ultralytics also writes {index: name})."""
    path = pathlib.Path(path).expanduser()
    try:
        values = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise YoloError(f"{path}: no such data.yaml (data.yolo_yaml)") from None
    except yaml.YAMLError as err:
        raise YoloError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(values, dict):
        raise YoloError(f"{path}: expected a mapping with path, train, val and names")
    names = values.get("names")
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise YoloError(f"{path}: names must be indexed 0..{len(names) - 1}, got {sorted(names)}")
        names = [names[index] for index in range(len(names))]
    if not isinstance(names, list) or not names:
        raise YoloError(f"{path}: names must list the class names (a list, or a mapping index -> name)")
    return {**values, "names": [str(name) for name in names]}


def _root(yaml_path: pathlib.Path, values: dict) -> pathlib.Path:
    root = pathlib.Path(str(values.get("path") or "")).expanduser()
    return root if root.is_absolute() else (yaml_path.parent / root).resolve()


def split_images(yaml_path: str | os.PathLike, split: str) -> list[pathlib.Path]:
    """The image paths of `split` ("train", "val", ...) in a stable order (sorted per folder,
    listed order per list file)."""
    yaml_path = pathlib.Path(yaml_path).expanduser()
    values = read_yaml(yaml_path)
    entries = values.get(split)
    if not entries:
        raise YoloError(f"{yaml_path}: defines no {split!r} split")
    root = _root(yaml_path, values)
    paths: list[pathlib.Path] = []
    for entry in entries if isinstance(entries, list) else [entries]:
        location = pathlib.Path(str(entry)).expanduser()
        location = location if location.is_absolute() else root / location
        if location.is_dir():
            paths += sorted(p for p in location.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif location.is_file():
            for line in location.read_text().splitlines():
                line = line.strip()
                if line:
                    listed = pathlib.Path(
                        line.replace("./", f"{location.parent}{os.sep}", 1) if line.startswith("./") else line
                    )
                    paths.append(listed if listed.is_absolute() else root / listed)
        else:
            raise YoloError(f"{yaml_path}: split {split!r} names {location}, which is neither a folder nor a list file")
    return paths


def label_path(image: pathlib.Path) -> pathlib.Path:
    """Ultralytics' rule: the last `images` folder of the path becomes `labels`, the suffix `.txt`."""
    parts = list(image.parts)
    if "images" in parts:
        index = len(parts) - 1 - parts[::-1].index("images")
        parts[index] = "labels"
    return pathlib.Path(*parts).with_suffix(".txt")


def _boxes(text: str, file_name: str, problems: list[str]) -> list[tuple[int, list[float]]]:
    """(class index, normalized [x1, y1, x2, y2]) of every well-formed line; the others go to `problems`."""
    boxes = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words:
            continue
        try:
            values = [float(word) for word in words]
            if not float(values[0]).is_integer():
                raise ValueError
        except ValueError:
            problems.append(f"{file_name} line {number}: not numbers ({line.strip()[:60]!r})")
            continue
        if len(values) == 5:
            cx, cy, w, h = values[1:]
            corners = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        elif len(values) >= 7 and len(values) % 2 == 1:
            xs, ys = values[1::2], values[2::2]
            corners = [min(xs), min(ys), max(xs), max(ys)]
        else:
            problems.append(f"{file_name} line {number}: {len(values)} values, not 'class cx cy w h' or a polygon")
            continue
        # labels written with few decimals overshoot the image edge by a rounding error: snap those
        corners = [min(max(v, 0.0), 1.0) if -_ROUNDING < v < 1.0 + _ROUNDING else v for v in corners]
        boxes.append((int(values[0]), corners))
    return boxes


def to_coco(
    yaml_path: str | os.PathLike, split: str, class_names: Sequence[str]
) -> tuple[dict, dict[str, int], list[str]]:
    """The COCO dataset dict of a split (image ids 1.. in split order, category ids 1..C in
    `class_names` order, absolute file names), the counts of what could not be converted
    (`images_without_label_file`, `malformed_label_lines`) and a line per problem."""
    images, annotations, problems = [], [], []
    counts = {"images_without_label_file": 0, "malformed_label_lines": 0}
    for number, path in enumerate(split_images(yaml_path, split), start=1):
        width, height = coco.displayed_size(path)
        images.append({"id": number, "file_name": str(path), "width": width, "height": height})
        if not width:
            continue  # an image without a readable size: unusable (its check says why), its boxes unknown
        labels = label_path(path)
        try:
            text = labels.read_text()
        except FileNotFoundError:
            counts["images_without_label_file"] += 1
            continue
        except (OSError, UnicodeDecodeError) as err:
            counts["malformed_label_lines"] += 1
            problems.append(f"{labels}: unreadable ({err})")
            continue
        found = len(problems)
        for index, (x1, y1, x2, y2) in _boxes(text, labels.name, problems):
            box = [x1 * width, y1 * height, (x2 - x1) * width, (y2 - y1) * height]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": number,
                    "category_id": index + 1 if 0 <= index < len(class_names) else 0,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
        counts["malformed_label_lines"] += len(problems) - found
    categories = [{"id": index + 1, "name": name} for index, name in enumerate(class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}, counts, problems


def load_yolo(yaml_path: str | os.PathLike, split: str, check_files: bool = True) -> coco.CocoSource:
    """One split of a YOLO dataset as a `CocoSource` (named `<yaml>:<split>`), classes from `names`."""
    names = read_yaml(yaml_path)["names"]
    dataset, counts, problems = to_coco(yaml_path, split, names)
    if not dataset["images"]:
        raise YoloError(f"{yaml_path}: split {split!r} has no image")
    return coco.source_from_dataset(
        dataset, "", f"{yaml_path}:{split}", check_files=check_files, counts=counts, problems=problems
    )
