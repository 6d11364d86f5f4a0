"""COCO instances json -> per-image boxes and contiguous class indices, for pipelines and evaluation.

Category ids (COCO: 1..90 with gaps) map to class indices 0..C-1 in increasing id order; the
map back (`category_ids[class_index]`) is what evaluation writes into detections. Annotations
that cannot train a detector are left out and counted: crowd regions, unknown categories,
degenerate boxes (width or height <= 0, not finite) and boxes outside the image (nothing left
after clipping to the image). Images without objects are kept: they are negatives (the
original trains on every image of the split).

Every image of the json stays in the source with a status: each file's header is read
(`image_header.probe_file`, no pixels decoded), and a file that is missing, empty or
unreadable, that is not a JPEG/PNG/GIF/BMP, or whose size disagrees with the json's
width/height is marked, counted and named once in a warning. Pipelines train only on usable
images; evaluation scores every image of the split, an unusable one as an image without
detections, so its ground truth stays in the metric. A JPEG's EXIF orientation is applied
(as `cv2.imread` does in the original) when the json's size describes the turned image, and
ignored when the json's size describes the pixels as stored.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import io
import logging
import os
import pathlib

import numpy as np
from pycocotools.coco import COCO

from cornernet_tf.data import image_header

log = logging.getLogger(__name__)

# Image status codes (`CocoSource.status`); the names are the reasons printed and counted.
USABLE, UNREADABLE, UNDECODABLE, SIZE_MISMATCH = range(4)
STATUS_NAMES = ("usable", "unreadable", "undecodable", "size mismatch")
COUNT_KEYS = (
    "unreadable_images",  # missing, empty or unreadable file
    "undecodable_images",  # not a JPEG/PNG/GIF/BMP, or a corrupt header
    "size_mismatch_images",  # the file's size is not the json's width/height
    "reoriented_images",  # usable, turned by their EXIF orientation
    "exif_ignored_images",  # usable, their EXIF orientation disagrees with the json's size
    "images_without_boxes",  # usable negatives
    "crowd_boxes",
    "unknown_category_boxes",
    "degenerate_boxes",
    "outside_boxes",
    "clipped_boxes",  # kept, but clipped to the image
    # sources converted in memory (`source_from_dataset`: data/voc.py, data/yolo.py)
    "unreadable_annotation_files",  # VOC: a missing or malformed XML file (its image left out)
    "malformed_boxes",  # VOC: an object without a numeric bndbox
    "images_without_label_file",  # YOLO: usable negatives, as Ultralytics counts them
    "malformed_label_lines",  # YOLO: a line that is not `class cx cy w h` or a polygon
)
_SKIP_KEYS = {UNREADABLE: "unreadable_images", UNDECODABLE: "undecodable_images", SIZE_MISMATCH: "size_mismatch_images"}
_PROBE_THREADS = 16  # header reads are I/O bound


@dataclasses.dataclass
class CocoSource:
    """One split of a COCO-format dataset: every image of its json, usable or not.

    Per image i (id order): `image_paths[i]`, `image_ids[i]` (COCO id), `image_sizes[i]` =
    (height, width) from the json, `boxes[i]` [N_i, 4] float32 (x1, y1, x2, y2, image px,
    clipped to the image), `classes[i]` [N_i] int32 (0-based), `status[i]` (USABLE,
    UNREADABLE, UNDECODABLE or SIZE_MISMATCH), `orientation[i]` (the EXIF orientation to apply
    after decoding, 1 = none). `problems` names each unusable image (and each annotation a
    converting reader could not read) and why; `counts` holds the `COUNT_KEYS`. `annotations`
    names the split in messages; `ground_truth` is what pycocotools scores it against: the json's
    path, or the annotation set of a source converted in memory (VOC, YOLO).
    """

    annotations: str
    image_paths: list[str]
    image_ids: np.ndarray  # [I] int64
    image_sizes: np.ndarray  # [I, 2] int32 (height, width)
    boxes: list[np.ndarray]
    classes: list[np.ndarray]
    category_ids: list[int]
    class_names: list[str]
    counts: dict[str, int]
    status: np.ndarray  # [I] int8
    orientation: np.ndarray  # [I] int8
    problems: list[str]
    ground_truth: str | COCO = ""

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def num_boxes(self) -> int:
        return int(sum(len(b) for b in self.boxes))

    @property
    def usable_rows(self) -> np.ndarray:
        """Rows of the images a pipeline can decode, in id order."""
        return np.flatnonzero(self.status == USABLE)

    @property
    def num_skipped(self) -> int:
        return len(self) - len(self.usable_rows)

    def summary(self) -> str:
        """One line: images (usable, skipped and why), boxes, classes and every non-zero count."""
        notes = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.counts.items() if v)
        return (
            f"{self.annotations}: {len(self)} images ({len(self.usable_rows)} usable, {self.num_skipped} skipped), "
            f"{self.num_boxes} boxes, {len(self.class_names)} classes; {notes or 'nothing dropped'}"
        )


def _load_json(annotations: str) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress to stdout
        return COCO(annotations)


def coco_from_dataset(dataset: dict) -> COCO:
    """A pycocotools annotation set of a COCO dataset dict held in memory."""
    ground_truth = COCO()
    ground_truth.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
    return ground_truth


def displayed_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file as displayed (EXIF orientation applied), from its header;
    (0, 0) when it cannot be read (the image check then marks and counts it)."""
    try:
        height, width = image_header.probe_file(str(path)).displayed_size
    except (image_header.UnreadableImageError, image_header.UndecodableImageError):
        return 0, 0
    return width, height


def _annotation_arrays(coco: COCO, row_of_image: dict[int, int], class_of_category: dict[int, int]):
    """All annotations as arrays: image row [A], class [A] (-1 unknown), bbox [A, 4] xywh, crowd [A]."""
    anns = [a for a in coco.dataset.get("annotations", []) if a["image_id"] in row_of_image]
    rows = np.array([row_of_image[a["image_id"]] for a in anns], np.int64)
    classes = np.array([class_of_category.get(a["category_id"], -1) for a in anns], np.int32)
    xywh = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
    crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], bool)
    return rows, classes, xywh, crowd


def _probe(path: str) -> image_header.ImageHeader | tuple[int, str]:
    """The header of one image file, or (status, reason) when it is not usable."""
    try:
        return image_header.probe_file(path)
    except image_header.UnreadableImageError as err:
        return UNREADABLE, str(err)
    except image_header.UndecodableImageError as err:
        return UNDECODABLE, str(err)


def check_image(header: image_header.ImageHeader | tuple[int, str], json_size: tuple[int, int]) -> tuple[int, int, str]:
    """(status, orientation to apply, reason) of an image given its probed header (or probe
    failure) and the (height, width) the json gives it."""
    if isinstance(header, tuple):
        return header[0], 1, header[1]
    json_size = (int(json_size[0]), int(json_size[1]))
    if header.displayed_size == json_size:
        return USABLE, header.orientation, ""
    if (header.height, header.width) == json_size:  # the json describes the pixels as stored
        return USABLE, 1, "EXIF orientation ignored"
    turned = f" once turned by its EXIF orientation {header.orientation}" if header.orientation != 1 else ""
    return (
        SIZE_MISMATCH,
        1,
        (
            f"the file is {header.displayed_size[1]}x{header.displayed_size[0]}{turned}, "
            f"the json says {json_size[1]}x{json_size[0]} (width x height)"
        ),
    )


def _check_images(paths: list[str], sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Status [I], orientation [I] and reasons [I] of every image, from their headers."""
    workers = min(_PROBE_THREADS, max(1, len(paths) // 64))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        headers = list(pool.map(_probe, paths, chunksize=64))
    checked = [check_image(header, size) for header, size in zip(headers, sizes)]
    status = np.array([c[0] for c in checked], np.int8).reshape(-1)
    orientation = np.array([c[1] for c in checked], np.int8).reshape(-1)
    return status, orientation, [c[2] for c in checked]


def _warn_unusable(annotations: str, names: list[str], status: np.ndarray, reasons: list[str]) -> list[str]:
    """Name every unusable image (`file: reason`); warn once with the counts and a few names."""
    problems = [f"{names[row]}: {STATUS_NAMES[status[row]]} ({reasons[row]})" for row in np.flatnonzero(status)]
    if problems:
        by_reason = ", ".join(
            f"{int((status == code).sum())} {STATUS_NAMES[code]}" for code in _SKIP_KEYS if (status == code).any()
        )
        log.warning(
            "%s: %d of %d images cannot be used (%s) and are skipped: %s%s",
            annotations,
            len(problems),
            len(names),
            by_reason,
            "; ".join(problems[:5]),
            " ..." if len(problems) > 5 else "",
        )
    return problems


def load_coco(annotations: str | os.PathLike, images_dir: str | os.PathLike, check_files: bool = True) -> CocoSource:
    """Read a COCO instances json and its image folder into a `CocoSource`.

    With `check_files` (the default), every image's header is read to find the unusable ones
    (see the module docstring); if no image file exists at all, raises FileNotFoundError
    naming the folder. Without it every image is taken as usable, as stored.
    """
    annotations = str(annotations)
    source = _read(_load_json(annotations), images_dir, annotations, check_files)
    source.ground_truth = annotations
    log.info("%s", source.summary())  # the commands print it (train, tfrecord): once, not twice
    return source


def source_from_dataset(
    dataset: dict,
    images_dir: str | os.PathLike,
    name: str,
    check_files: bool = True,
    counts: dict[str, int] | None = None,
    problems: list[str] | None = None,
) -> CocoSource:
    """`load_coco` of a COCO dataset dict that a reader converted in memory (VOC, YOLO), named
    `name` in messages; `counts` (of `COUNT_KEYS`) and `problems` are what the conversion could
    not read, added to the source's own. Its `ground_truth` is the dict's annotation set."""
    ground_truth = coco_from_dataset(dataset)
    source = _read(ground_truth, images_dir, name, check_files)
    if problems:
        log.warning(
            "%s: %d annotations could not be read and are left out: %s%s",
            name,
            len(problems),
            "; ".join(problems[:5]),
            " ..." if len(problems) > 5 else "",
        )
    for key, value in (counts or {}).items():
        source.counts[key] += value
    source.problems = [*(problems or []), *source.problems]
    source.ground_truth = ground_truth
    log.info("%s", source.summary())
    return source


def _read(coco: COCO, images_dir: str | os.PathLike, annotations: str, check_files: bool) -> CocoSource:
    """The `CocoSource` of a loaded annotation set (`load_coco`, `source_from_dataset`)."""
    images_dir = pathlib.Path(images_dir).expanduser()
    category_ids = sorted(coco.getCatIds())
    class_names = [coco.cats[c]["name"] for c in category_ids]
    class_of_category = {c: i for i, c in enumerate(category_ids)}
    infos = [coco.imgs[i] for i in sorted(coco.getImgIds())]
    if not infos:
        raise ValueError(f"{annotations}: the json lists no images")
    counts = dict.fromkeys(COUNT_KEYS, 0)

    paths = [str(images_dir / info["file_name"]) for info in infos]
    sizes = np.array([[info["height"], info["width"]] for info in infos], np.int32).reshape(-1, 2)
    status = np.full(len(infos), USABLE, np.int8)
    orientation = np.ones(len(infos), np.int8)
    problems: list[str] = []
    if check_files:
        status, orientation, reasons = _check_images(paths, sizes)
        if (status == UNREADABLE).all() and not any(os.path.exists(path) for path in paths):
            raise FileNotFoundError(
                f"{annotations}: none of its {len(infos)} image files is in {images_dir} "
                f"(first: {infos[0]['file_name']!r}); check the images folder for this split"
            )
        problems = _warn_unusable(annotations, [info["file_name"] for info in infos], status, reasons)
        for code, key in _SKIP_KEYS.items():
            counts[key] = int((status == code).sum())
        counts["reoriented_images"] = int(((status == USABLE) & (orientation != 1)).sum())
        counts["exif_ignored_images"] = sum(reason == "EXIF orientation ignored" for reason in reasons)

    row_of_image = {info["id"]: row for row, info in enumerate(infos)}
    rows, classes, xywh, crowd = _annotation_arrays(coco, row_of_image, class_of_category)

    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    limit = sizes[rows][:, ::-1].astype(np.float64)  # (width, height) per annotation
    clipped = np.clip(xyxy, 0.0, np.tile(limit, 2))
    degenerate = ~np.isfinite(xywh).all(axis=1) | (xywh[:, 2] <= 0) | (xywh[:, 3] <= 0)
    empty = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    unknown = classes < 0
    counts["crowd_boxes"] = int(crowd.sum())
    counts["unknown_category_boxes"] = int((unknown & ~crowd).sum())
    counts["degenerate_boxes"] = int((degenerate & ~crowd & ~unknown).sum())
    counts["outside_boxes"] = int((empty & ~degenerate & ~crowd & ~unknown).sum())
    keep = ~(crowd | unknown | degenerate | empty)
    counts["clipped_boxes"] = int((keep & (clipped != xyxy).any(axis=1)).sum())

    order = np.argsort(rows[keep], kind="stable")
    kept_rows = rows[keep][order]
    splits = np.searchsorted(kept_rows, np.arange(1, len(infos)))
    boxes = np.split(clipped[keep][order].astype(np.float32), splits)
    counts["images_without_boxes"] = int(sum(len(b) == 0 for b, s in zip(boxes, status) if s == USABLE))
    source = CocoSource(
        annotations=annotations,
        image_paths=paths,
        image_ids=np.array([info["id"] for info in infos], np.int64),
        image_sizes=sizes,
        boxes=boxes,
        classes=np.split(classes[keep][order], splits),
        category_ids=category_ids,
        class_names=class_names,
        counts=counts,
        status=status,
        orientation=orientation,
        problems=problems,
    )
    return source
