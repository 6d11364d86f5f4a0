"""Tiny COCO datasets written on the fly for the data tests."""

from __future__ import annotations

import json
import pathlib
import struct
from collections.abc import Callable

import cv2
import numpy as np
import pytest


def encode(image: np.ndarray, ext: str = ".png") -> bytes:
    """RGB(A) or grey uint8 array -> encoded file bytes (cv2 wants BGR order)."""
    if image.ndim == 3 and image.shape[2] >= 3:
        image = image[..., [2, 1, 0, *range(3, image.shape[2])]]
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


def write_coco(
    root: pathlib.Path,
    images: list[tuple[str, bytes | None, int, int]],
    annotations: list[tuple[int, int, list[float], int]],
    categories: list[tuple[int, str]],
) -> tuple[pathlib.Path, pathlib.Path]:
    """Write image files and an instances json.

    images: (file_name, encoded bytes or None for a missing file, height, width), ids 1..n.
    annotations: (image_id, category_id, [x, y, w, h], iscrowd). Returns (json, images dir).
    """
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    for name, data, _, _ in images:
        if data is not None:
            (images_dir / name).write_bytes(data)
    dataset = {
        "images": [
            {"id": i + 1, "file_name": name, "height": h, "width": w} for i, (name, _, h, w) in enumerate(images)
        ],
        "annotations": [
            {
                "id": k + 1,
                "image_id": image_id,
                "category_id": cat,
                "bbox": bbox,
                "iscrowd": crowd,
                "area": float(bbox[2] * bbox[3]),
            }
            for k, (image_id, cat, bbox, crowd) in enumerate(annotations)
        ],
        "categories": [{"id": cid, "name": name} for cid, name in categories],
    }
    path = root / "instances.json"
    path.write_text(json.dumps(dataset))
    return path, images_dir


@pytest.fixture
def coco_writer(tmp_path: pathlib.Path) -> Callable[..., tuple[pathlib.Path, pathlib.Path]]:
    """`write_coco` bound to a fresh temporary folder per call."""
    counter = iter(range(1000))

    def make(*args, **kwargs):
        return write_coco(tmp_path / f"coco{next(counter)}", *args, **kwargs)

    return make


@pytest.fixture
def encode_image() -> Callable[..., bytes]:
    """`encode` as a fixture, for tests that build their own files."""
    return encode


def with_exif_orientation(jpeg: bytes, orientation: int, byte_order: str = "<") -> bytes:
    """A JPEG with an EXIF APP1 segment (one IFD0 entry: orientation) inserted after its SOI."""
    order = {"<": b"II", ">": b"MM"}[byte_order]
    ifd = struct.pack(byte_order + "H", 1) + struct.pack(byte_order + "HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff = order + struct.pack(byte_order + "HI", 42, 8) + ifd + struct.pack(byte_order + "I", 0)
    payload = b"Exif\0\0" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]
