"""The built-in dataset: seeded synthetic images of shapes, written as a real COCO dataset.

It lets a new user see the whole system train, evaluate, export and serve with no download.
Each image has a textured background and 1 to `max_objects` filled shapes of three classes
(rectangle, ellipse, triangle) of varied sizes and colours. Shapes may overlap, but every object
keeps at least half of its pixels visible. Boxes are the tight bounds of each object's own
rendered pixels, so they match what is drawn exactly.

Layout under `root`: `train/*.png`, `val/*.png`, `annotations/instances_{train,val}.json` and a
`manifest.json` recording the parameters; an existing dataset with the same parameters is reused.

Object sides default to 10-60 % of the image side; `object_size` and `max_objects` make other
datasets, e.g. large images with many small objects, where CornerNet-Saccade's crops pay off.

CLI: `python -m cornernet_tf.data.shapes --out DIR --train 2000 --val 200`
     `python -m cornernet_tf.data.shapes --out DIR --size 384 --object_size 12 48 --max_objects 10`
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

import cv2
import numpy as np

from cornernet_tf.utils import cli

CLASS_NAMES = ("rectangle", "ellipse", "triangle")
FORMAT_VERSION = 1
MIN_VISIBLE_FRACTION = 0.5
MIN_COLOR_CONTRAST = 60.0
DEFAULT_MAX_OBJECTS = 6


@dataclasses.dataclass
class ShapeObject:
    """One drawn object: class index (0-based), its own pixel mask and its tight box."""

    class_index: int
    mask: np.ndarray  # [H, W] bool, before occlusion
    color: tuple[int, int, int]

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Tight box (x1, y1, x2, y2) in pixel-edge coordinates (x2 = last column + 1)."""
        ys, xs = np.nonzero(self.mask)
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    kind = rng.integers(3)
    base = rng.integers(0, 256, size=3).astype(np.float32)
    if kind == 0:  # flat colour
        image = np.broadcast_to(base, (size, size, 3)).copy()
    elif kind == 1:  # linear gradient in a random direction
        other = rng.integers(0, 256, size=3).astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
        t = np.cos(angle) * xx + np.sin(angle) * yy
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        image = base + (other - base) * t[..., None]
    else:  # smooth noise
        coarse = rng.normal(0, 25, size=(size // 16 + 1, size // 16 + 1, 3)).astype(np.float32)
        image = base + cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(image, 0, 255).astype(np.uint8)


def _shape_mask(rng: np.random.Generator, class_index: int, size: int, min_side: int, max_side: int) -> np.ndarray:
    w, h = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
    x1 = int(rng.integers(0, size - w + 1))
    y1 = int(rng.integers(0, size - h + 1))
    x2, y2 = x1 + w - 1, y1 + h - 1  # inclusive last pixel
    mask = np.zeros((size, size), np.uint8)
    if class_index == 0:
        cv2.rectangle(mask, (x1, y1), (x2, y2), 1, thickness=-1)
    elif class_index == 1:
        center = (round((x1 + x2) / 2), round((y1 + y2) / 2))
        axes = (max((x2 - x1) // 2, 1), max((y2 - y1) // 2, 1))
        cv2.ellipse(mask, center, axes, 0, 0, 360, 1, thickness=-1)
    else:
        apex = int(rng.integers(x1, x2 + 1))
        points = np.array([[x1, y2], [x2, y2], [apex, y1]], np.int32)
        cv2.fillPoly(mask, [points], 1)
    return mask.astype(bool)


def _contrasting_color(rng: np.random.Generator, under: np.ndarray) -> tuple[int, int, int]:
    reference = under.reshape(-1, 3).mean(axis=0)
    for _ in range(50):
        color = rng.integers(0, 256, size=3)
        if np.abs(color - reference).sum() / 3 >= MIN_COLOR_CONTRAST:
            break
    else:  # fall back to the complement, always far enough from a mean colour
        color = 255 - reference.round().astype(int)
    return int(color[0]), int(color[1]), int(color[2])


def default_object_size(size: int) -> tuple[int, int]:
    """The default (smallest, largest) object side of `size`-pixel images: 10 % and 60 %."""
    return max(8, size // 10), max(12, int(size * 0.6))


def render_image(
    rng: np.random.Generator,
    size: int = 128,
    max_objects: int = DEFAULT_MAX_OBJECTS,
    object_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, list[ShapeObject]]:
    """Draw one image [size, size, 3] uint8 RGB and return it with its objects in drawing order.

    object_size: (smallest, largest) side of a shape's box in pixels; None: `default_object_size`.
    """
    image = _background(rng, size)
    owner = np.full((size, size), -1, np.int32)  # index of the visible object at each pixel
    objects: list[ShapeObject] = []
    wanted = int(rng.integers(1, max_objects + 1))
    min_side, max_side = object_size or default_object_size(size)
    for _ in range(wanted * 10):
        if len(objects) == wanted:
            break
        class_index = int(rng.integers(len(CLASS_NAMES)))
        mask = _shape_mask(rng, class_index, size, min_side, max_side)
        trial = np.where(mask, len(objects), owner)
        visible_ok = all((trial == i).sum() >= MIN_VISIBLE_FRACTION * obj.mask.sum() for i, obj in enumerate(objects))
        if not visible_ok:
            continue
        color = _contrasting_color(rng, image[mask])
        image[mask] = color
        owner = trial
        objects.append(ShapeObject(class_index, mask, color))
    return image, objects


def _coco_annotation(obj: ShapeObject, image_id: int, annotation_id: int) -> dict:
    x1, y1, x2, y2 = obj.box
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": obj.class_index + 1,
        "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
        "area": float(obj.mask.sum()),
        "iscrowd": 0,
    }


def write_split(
    out_dir: pathlib.Path,
    split: str,
    count: int,
    size: int,
    seed: int,
    max_objects: int = DEFAULT_MAX_OBJECTS,
    object_size: tuple[int, int] | None = None,
) -> pathlib.Path:
    """Render `count` images into `out_dir/split/` and write `annotations/instances_{split}.json`.

    Args:
        out_dir: Dataset folder to write into.
        split: Split name ("train", "val", ...); also seeds the split's images.
        count: Number of images to render.
        size: Side of the square images in pixels.
        seed: Dataset seed; with the split and the image index, seeds each image.
        max_objects: Most objects in one image (each image draws 1 to max_objects).
        object_size: As `render_image`.

    Returns:
        Path of the written instances json.
    """
    images_dir = out_dir / split
    images_dir.mkdir(parents=True, exist_ok=True)
    split_key = {"train": 0, "val": 1}.get(split, sum(map(ord, split)))
    images, annotations = [], []
    started = time.time()
    for index in range(count):
        rng = np.random.default_rng([seed, split_key, index])
        image, objects = render_image(rng, size, max_objects, object_size)
        image_id = index + 1
        file_name = f"{split}_{image_id:06d}.png"
        cv2.imwrite(str(images_dir / file_name), image[..., ::-1])  # cv2 writes BGR
        images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        for obj in objects:
            annotations.append(_coco_annotation(obj, image_id, len(annotations) + 1))
        if (index + 1) % 500 == 0 or index + 1 == count:
            print(f"shapes: {split} {index + 1}/{count} images ({time.time() - started:.1f}s)", file=sys.stderr)
    dataset = {
        "info": {"description": "cornernet_tf built-in shapes dataset", "version": FORMAT_VERSION},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASS_NAMES)],
    }
    annotations_path = out_dir / "annotations" / f"instances_{split}.json"
    annotations_path.parent.mkdir(parents=True, exist_ok=True)
    annotations_path.write_text(json.dumps(dataset))
    return annotations_path


def ensure_dataset(
    root: str | os.PathLike,
    num_train: int,
    num_val: int,
    image_size: int = 128,
    seed: int = 0,
    max_objects: int = DEFAULT_MAX_OBJECTS,
    object_size: tuple[int, int] | None = None,
) -> dict[str, tuple[pathlib.Path, pathlib.Path]]:
    """Generate the dataset under `root` unless an identical one is cached there.

    Generation happens in a temporary folder that is renamed into place, so an interrupted run
    leaves nothing half-made.

    Args:
        root: Dataset folder (a leading ~ is expanded); replaced when its manifest differs.
        num_train: Number of training images.
        num_val: Number of validation images.
        image_size: Side of the square images in pixels.
        seed: Dataset seed.
        max_objects: Most objects in one image.
        object_size: (smallest, largest) object side in pixels; None: `default_object_size`.

    Returns:
        {"train": (instances json, images dir), "val": (...)}.
    """
    root = pathlib.Path(root).expanduser()
    manifest = {
        "version": FORMAT_VERSION,
        "train": num_train,
        "val": num_val,
        "image_size": image_size,
        "seed": seed,
    }
    if max_objects != DEFAULT_MAX_OBJECTS or object_size is not None:  # older datasets' manifests stay valid
        manifest.update(max_objects=max_objects, object_size=list(object_size or default_object_size(image_size)))
    layout = {split: (root / "annotations" / f"instances_{split}.json", root / split) for split in ("train", "val")}
    manifest_path = root / "manifest.json"
    if manifest_path.is_file() and json.loads(manifest_path.read_text()) == manifest:
        return layout
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        print(f"shapes: generating {num_train} train + {num_val} val images into {root}", file=sys.stderr)
        for split, count in (("train", num_train), ("val", num_val)):
            write_split(staging, split, count, image_size, seed, max_objects, object_size)
        (staging / "manifest.json").write_text(json.dumps(manifest))
        if root.exists():
            shutil.rmtree(root)
        os.replace(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return layout


def object_size_problem(object_size: list[int] | tuple[int, ...] | None, image_size: int) -> str | None:
    """Why (smallest, largest) object sides cannot be drawn in `image_size`-pixel images, or None."""
    if not object_size:
        return None
    if len(object_size) != 2 or not 4 <= object_size[0] <= object_size[1] <= image_size:
        return (
            f"object sizes must be MIN MAX with 4 <= MIN <= MAX <= the image size {image_size}, got {list(object_size)}"
        )
    return None


@cli.command
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="dataset folder (reused when parameters match)")
    parser.add_argument("--train", type=int, default=2000, help="number of training images")
    parser.add_argument("--val", type=int, default=200, help="number of validation images")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--object_size",
        type=int,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="object sides in pixels (default 10-60 %% of --size)",
    )
    parser.add_argument("--max_objects", type=int, default=DEFAULT_MAX_OBJECTS, help="most objects per image")
    cli.add_verbose_flag(parser)
    args = parser.parse_args(argv)
    if args.train < 1 or args.val < 1:
        parser.error("--train and --val must be >= 1")
    if args.size < 32:
        parser.error("--size must be >= 32")
    problem = object_size_problem(args.object_size, args.size)
    if problem:
        parser.error(problem)
    if args.max_objects < 1:
        parser.error("--max_objects must be >= 1")
    object_size = tuple(args.object_size) if args.object_size else None
    layout = ensure_dataset(args.out, args.train, args.val, args.size, args.seed, args.max_objects, object_size)
    for split, (annotations_path, images_dir) in layout.items():
        print(f"{split}: {annotations_path} ({images_dir})")


if __name__ == "__main__":
    sys.exit(main())
