"""Pascal VOC (`Annotations/*.xml`, `JPEGImages/`, `ImageSets/Main/<set>.txt`) -> a `CocoSource`.

The layout LabelImg, CVAT and Roboflow export, and the VOC devkit's. An image set is converted to
COCO form in memory and read by `coco.source_from_dataset`, so a VOC split is accounted, trained
on and scored exactly as a COCO json: the same image checks, box checks and counts.

Coordinates follow the VOC devkit: pixels are 1-based and a box covers pixels xmin..xmax
inclusive, so its area is (xmax - xmin + 1)(ymax - ymin + 1); in COCO's 0-based continuous
coordinates that is x = xmin - 1, w = xmax - xmin + 1 (and the same for y). A COCO json written to
VOC this way and read back gives the same boxes. (Some libraries subtract 1 from both corners
instead, which makes every box one pixel smaller than the devkit counts it.)

`difficult` objects are ignored as the VOC protocol ignores them: in evaluation they are crowd
regions (a detection on one is neither a true nor a false positive), and in training they are
left out unless `train_difficult`. Class names are the config's, or those found in the XML files
of the image sets (sorted); an object of another class is counted as an unknown category.
"""

from __future__ import annotations

import os
import pathlib
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Sequence

from cornernet_tf.data import coco, image_header

ANNOTATIONS, IMAGES, IMAGE_SETS = "Annotations", "JPEGImages", os.path.join("ImageSets", "Main")


class VocError(ValueError):
    """A VOC folder that cannot be read at all (no image set file, nothing usable)."""


def image_set_ids(root: str | os.PathLike, image_set: str) -> list[str]:
    """The image ids listed in `ImageSets/Main/<image_set>.txt` (first word of each line)."""
    path = pathlib.Path(root).expanduser() / IMAGE_SETS / f"{image_set}.txt"
    if not path.is_file():
        found = sorted(p.stem for p in path.parent.glob("*.txt") if "_" not in p.stem) if path.parent.is_dir() else []
        raise VocError(
            f"{path}: no such image set file; the VOC folder {root} has the image sets {found or 'none'} "
            "(data.voc_train_set / data.voc_val_set name them)"
        )
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise VocError(f"{path}: the image set lists no image")
    return ids


def _text(node: ElementTree.Element | None, tag: str) -> str | None:
    found = None if node is None else node.find(tag)
    return None if found is None or found.text is None else found.text.strip()


def _parse(path: pathlib.Path) -> ElementTree.Element:
    """The root of one annotation file; ValueError naming the file when it is missing or malformed."""
    try:
        return ElementTree.parse(path).getroot()
    except FileNotFoundError:
        raise ValueError(f"{path.name}: annotation file missing") from None
    except (ElementTree.ParseError, OSError) as err:
        raise ValueError(f"{path.name}: not readable XML ({err})") from None


def class_names_of(root: str | os.PathLike, image_sets: Iterable[str]) -> list[str]:
    """The sorted class names of every object in the annotation files of `image_sets`."""
    names: set[str] = set()
    annotations = pathlib.Path(root).expanduser() / ANNOTATIONS
    for image_set in image_sets:
        for image_id in image_set_ids(root, image_set):
            try:
                xml = _parse(annotations / f"{image_id}.xml")
            except ValueError:
                continue  # counted when the set is read
            names.update(name for obj in xml.iter("object") if (name := _text(obj, "name")))
    return sorted(names)


def _box(obj: ElementTree.Element) -> list[float]:
    """COCO [x, y, w, h] of a VOC object's 1-based inclusive bndbox; ValueError when malformed."""
    values = [_text(obj.find("bndbox"), tag) for tag in ("xmin", "ymin", "xmax", "ymax")]
    if None in values:
        raise ValueError("an object without a complete bndbox")
    try:
        xmin, ymin, xmax, ymax = (float(v) for v in values)
    except ValueError:
        raise ValueError(f"a bndbox that is not numbers ({values})") from None
    return [xmin - 1.0, ymin - 1.0, xmax - xmin + 1.0, ymax - ymin + 1.0]


def to_coco(
    root: str | os.PathLike, image_set: str, class_names: Sequence[str], train_difficult: bool = False
) -> tuple[dict, dict[str, int], list[str]]:
    """The COCO dataset dict of an image set (image ids 1.. in set order, category ids 1..C in
    `class_names` order, file names relative to `JPEGImages/`), the counts of what could not be
    converted (`unreadable_annotation_files`, `malformed_boxes`) and a line per problem.

    `difficult` objects become crowd regions (ignored by training and by pycocotools' matching);
    with `train_difficult` they are ordinary boxes. An image whose annotation file is missing or
    malformed is left out; an image without a size in its file gets it from the image header.
    """
    root = pathlib.Path(root).expanduser()
    category_of = {name: index + 1 for index, name in enumerate(class_names)}
    images, annotations, problems = [], [], []
    counts = {"unreadable_annotation_files": 0, "malformed_boxes": 0}
    for number, image_id in enumerate(image_set_ids(root, image_set), start=1):
        try:
            xml = _parse(root / ANNOTATIONS / f"{image_id}.xml")
        except ValueError as err:
            counts["unreadable_annotation_files"] += 1
            problems.append(str(err))
            continue
        file_name = _text(xml, "filename") or f"{image_id}.jpg"
        if not (root / IMAGES / file_name).exists() and (root / IMAGES / f"{image_id}.jpg").exists():
            file_name = f"{image_id}.jpg"  # a filename tag that names another copy
        size = xml.find("size")
        width, height = (_text(size, tag) for tag in ("width", "height"))
        try:
            width, height = int(float(width)), int(float(height))
        except (TypeError, ValueError):
            width = height = 0
        if width <= 0 or height <= 0:
            width, height = _size_from_header(root / IMAGES / file_name)
        images.append({"id": number, "file_name": file_name, "width": width, "height": height, "voc_id": image_id})
        for obj in xml.iter("object"):
            try:
                bbox = _box(obj)
            except ValueError as err:
                counts["malformed_boxes"] += 1
                problems.append(f"{image_id}.xml: {err}")
                continue
            difficult = _text(obj, "difficult") in ("1", "true", "True")
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": number,
                    "category_id": category_of.get(_text(obj, "name") or "", 0),
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": int(difficult and not train_difficult),
                    "difficult": int(difficult),
                }
            )
    categories = [{"id": category_of[name], "name": name} for name in class_names]
    return {"images": images, "annotations": annotations, "categories": categories}, counts, problems


def _size_from_header(path: pathlib.Path) -> tuple[int, int]:
    """(width, height) of an image file as displayed; (0, 0) when it cannot be read (the image
    check then marks it)."""
    try:
        header = image_header.probe_file(str(path))
    except (image_header.UnreadableImageError, image_header.UndecodableImageError):
        return 0, 0
    height, width = header.displayed_size
    return width, height


def load_voc(
    root: str | os.PathLike,
    image_set: str,
    class_names: Sequence[str] = (),
    train_difficult: bool = False,
    check_files: bool = True,
) -> coco.CocoSource:
    """One image set of a VOC folder as a `CocoSource` (named `<root>:<image_set>`); class names
    default to those of this image set's files (pass the training set's to keep indices stable)."""
    names = list(class_names) or class_names_of(root, [image_set])
    dataset, counts, problems = to_coco(root, image_set, names, train_difficult)
    if not dataset["images"]:
        raise VocError(
            f"{root}: no annotation file of image set {image_set!r} could be read ({'; '.join(problems[:3])})"
        )
    images = pathlib.Path(root).expanduser() / IMAGES
    return coco.source_from_dataset(
        dataset, images, f"{root}:{image_set}", check_files=check_files, counts=counts, problems=problems
    )
