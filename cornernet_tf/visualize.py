"""Detections and heatmaps drawn onto RGB images, for notebooks, debugging and reports.

Images are uint8 RGB [H, W, 3] throughout; OpenCV (BGR) is only an implementation detail.
"""

from __future__ import annotations

import colorsys
import os
import pathlib
from typing import Sequence

import cv2
import numpy as np


def class_color(class_id: int) -> tuple[int, int, int]:
    """A stable, saturated RGB colour per class (golden-ratio hue steps keep neighbours apart)."""
    hue = (class_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    class_names: Sequence[str] = (),
    score_threshold: float = 0.3,
    thickness: int = 2,
) -> np.ndarray:
    """Draw boxes [N, 4] (x1, y1, x2, y2, image pixels) with "name 0.87" labels on a copy.

    Rows with score < score_threshold are skipped; classes [N] are 0-based indices into
    `class_names` (the index itself is printed when a name is missing). Returns uint8 [H, W, 3].
    """
    canvas = np.ascontiguousarray(image, dtype=np.uint8).copy()
    height, width = canvas.shape[:2]
    font, font_scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    for box, score, cls in zip(np.asarray(boxes), np.asarray(scores), np.asarray(classes)):
        if score < score_threshold:
            continue
        cls = int(cls)
        color = class_color(cls)
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        name = class_names[cls] if cls < len(class_names) else str(cls)
        label = f"{name} {score:.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(label, font, font_scale, 1)
        # Label above the box, or inside it when the box touches the top edge.
        top = y1 - text_h - baseline if y1 - text_h - baseline >= 0 else y1
        left = min(max(x1, 0), max(width - text_w, 0))
        cv2.rectangle(canvas, (left, top), (left + text_w, top + text_h + baseline), color, -1)
        cv2.putText(canvas, label, (left, top + text_h), font, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a heatmap [h, w, C] of probabilities (max over classes) over image [H, W, 3].

    The map is resized to the image (bilinear), coloured with the JET colormap and blended with
    weight `alpha`. Returns uint8 [H, W, 3].
    """
    image = np.asarray(image, dtype=np.uint8)
    peak = np.asarray(heatmap, dtype=np.float32).max(axis=-1)
    peak = cv2.resize(peak, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    levels = np.clip(peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
    colored = cv2.cvtColor(cv2.applyColorMap(levels, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(image, 1.0 - alpha, colored, alpha, 0.0)


def save_png(path: str | os.PathLike, image: np.ndarray) -> pathlib.Path:
    """Write an RGB uint8 image as PNG atomically (temporary file, then rename); returns the path."""
    path = pathlib.Path(path)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.asarray(image, dtype=np.uint8), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"image for {path}: OpenCV could not encode it as PNG (shape {np.shape(image)})")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(encoded.tobytes())
    os.replace(tmp, path)
    return path
