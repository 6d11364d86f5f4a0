"""COCO instances json -> per-image boxes and contiguous class indices, for pipelines and evaluation.

Category ids (COCO: 1..90 with gaps) map to class indices 0..C-1 in increasing id order; the
map back (`category_ids[class_index]`) is what evaluation writes into detections. Annotations
that cannot train a detector are left out and counted: crowd regions, unknown categories,
degenerate boxes (width or height <= 0, not finite) and boxes outside the image (nothing left
after clipping to the image). Images whose file is missing are left out and named in a warning.
Images without objects are kept: they are negatives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import pathlib

import numpy as np
from pycocotools.coco import COCO

log = logging.getLogger(__name__)

COUNT_KEYS = (
    "crowd_boxes",
    "unknown_category_boxes",
    "degenerate_boxes",
    "outside_boxes",
    "clipped_boxes",  # kept, but clipped to the image
    "missing_images",
)


@dataclasses.dataclass
class CocoSource:
    """One split of a COCO-format dataset.

    Per image i: `image_paths[i]`, `image_ids[i]` (COCO id), `image_sizes[i]` = (height, width),
    `boxes[i]` [N_i, 4] float32 (x1, y1, x2, y2, image px, clipped to the image) and
    `classes[i]` [N_i] int32 (0-based). `counts` holds what was skipped (see `COUNT_KEYS`).
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

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def num_boxes(self) -> int:
        return int(sum(len(b) for b in self.boxes))

    def summary(self) -> str:
        """One line: images, boxes, classes and every non-zero skip count."""
        skipped = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.counts.items() if v)
        return (
            f"{self.annotations}: {len(self)} images, {self.num_boxes} boxes, "
            f"{len(self.class_names)} classes; {skipped or 'nothing skipped'}"
        )


def _load_json(annotations: str) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress to stdout
        return COCO(annotations)


def _annotation_arrays(coco: COCO, row_of_image: dict[int, int], class_of_category: dict[int, int]):
    """All annotations as arrays: image row [A], class [A] (-1 unknown), bbox [A, 4] xywh, crowd [A]."""
    anns = [a for a in coco.dataset.get("annotations", []) if a["image_id"] in row_of_image]
    rows = np.array([row_of_image[a["image_id"]] for a in anns], np.int64)
    classes = np.array([class_of_category.get(a["category_id"], -1) for a in anns], np.int32)
    xywh = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
    crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], bool)
    return rows, classes, xywh, crowd


def load_coco(
    annotations: str | os.PathLike, images_dir: str | os.PathLike, check_files: bool = True
) -> CocoSource:
    """Read a COCO instances json and its image folder into a `CocoSource`.

    With `check_files`, images whose file does not exist are skipped (warning with examples);
    if none exists at all, raises FileNotFoundError naming the folder.
    """
    annotations = str(annotations)
    images_dir = pathlib.Path(images_dir).expanduser()
    coco = _load_json(annotations)
    category_ids = sorted(coco.getCatIds())
    class_names = [coco.cats[c]["name"] for c in category_ids]
    class_of_category = {c: i for i, c in enumerate(category_ids)}
    infos = [coco.imgs[i] for i in sorted(coco.getImgIds())]
    if not infos:
        raise ValueError(f"{annotations}: the json lists no images")
    counts = dict.fromkeys(COUNT_KEYS, 0)

    paths = [str(images_dir / info["file_name"]) for info in infos]
    if check_files:
        exists = [os.path.isfile(p) for p in paths]
        missing = [info["file_name"] for info, ok in zip(infos, exists) if not ok]
        if missing and len(missing) == len(infos):
            raise FileNotFoundError(
                f"{annotations}: none of its {len(infos)} image files is in {images_dir} "
                f"(first: {missing[0]!r}); check the images folder for this split"
            )
        if missing:
            log.warning(
                "%s: %d of %d image files missing in %s (e.g. %s); those images are skipped",
                annotations, len(missing), len(infos), images_dir, ", ".join(missing[:5]),
            )
        counts["missing_images"] = len(missing)
        infos = [info for info, ok in zip(infos, exists) if ok]
        paths = [p for p, ok in zip(paths, exists) if ok]

    row_of_image = {info["id"]: row for row, info in enumerate(infos)}
    sizes = np.array([[info["height"], info["width"]] for info in infos], np.int32).reshape(-1, 2)
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
    source = CocoSource(
        annotations=annotations,
        image_paths=paths,
        image_ids=np.array([info["id"] for info in infos], np.int64),
        image_sizes=sizes,
        boxes=np.split(clipped[keep][order].astype(np.float32), splits),
        classes=np.split(classes[keep][order], splits),
        category_ids=category_ids,
        class_names=class_names,
        counts=counts,
    )
    unusual = any(counts[k] for k in ("unknown_category_boxes", "degenerate_boxes", "outside_boxes"))
    log.log(logging.WARNING if unusual else logging.INFO, "%s", source.summary())
    return source
