"""Helpers of the conversion tests: tiny synthetic image, mask and landmark files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

JSRT_BITS = {"right_lung": 1, "left_lung": 2, "heart": 4, "right_clavicle": 8, "left_clavicle": 16}
JSRT_BRIDGE = {
    "RL_*": ("right_lung",),
    "LL_*": ("left_lung",),
    "H_*": ("heart",),
    "RCLA_*": ("right_clavicle",),
    "LCLA_*": ("left_clavicle",),
}


def write_png(path: Path, array: np.ndarray) -> Path:
    """Write a 2D uint8 array as PNG (rows = y, columns = x)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.asarray(array, dtype=np.uint8)), str(path))
    return path


def write_labelme(path: Path, points: dict[str, list[float]] | list[tuple[str, list[float]]],
                  size_wh: tuple[int, int] | None = None) -> Path:
    """A LabelMe file with one point shape per (label, [x, y]); a list allows repeated labels."""
    items = list(points.items()) if isinstance(points, dict) else list(points)
    content: dict = {"version": "5.0.1", "shapes": [
        {"label": label, "points": [list(point)], "shape_type": "point", "flags": {}} for label, point in items
    ]}
    if size_wh is not None:
        content["imageWidth"], content["imageHeight"] = size_wh
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path
