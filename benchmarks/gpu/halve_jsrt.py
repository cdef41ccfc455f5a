"""Write a half-resolution copy of the ``jsrt_512`` folder (256 px, 1.4 mm/px) in the same layout.

A GPU machine here receives the repository and at most 64 MiB beside it; nnU-Net's wheels take most of that, so the
JSRT study is carried at 256 px (4 MB instead of 18 MB). The studies train at 2.8 mm/px, so the network sees the same
resolution; only the scoring of masks happens at 1.4 instead of 0.7 mm/px.

- image: mean of each 2x2 block (uint8, rounded);
- ``labels_bits``: each structure's bit is set where at least 2 of the 4 pixels have it;
- ``labels``: the exclusive map recomputed from those bits with the source's painting order (clavicles over lungs);
- landmarks: JSRT coordinates count from pixel edges, so halving them is exact.

Usage::

    python benchmarks/gpu/halve_jsrt.py ../shared/data/jsrt_512 /tmp/jsrt_half/jsrt_512
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

# painting order of the exclusive map: later entries overwrite earlier ones (clavicles painted over lungs)
_EXCLUSIVE_ORDER = (("RL", 1), ("LL", 2), ("H", 3), ("RCLA", 4), ("LCLA", 5))


def _blocks(array: np.ndarray) -> np.ndarray:
    rows, columns = array.shape
    return array[: rows // 2 * 2, : columns // 2 * 2].reshape(rows // 2, 2, columns // 2, 2)


def halve_image(image: np.ndarray) -> np.ndarray:
    return np.rint(_blocks(image.astype(np.float64)).mean(axis=(1, 3))).astype(np.uint8)


def halve_bits(bits: np.ndarray, flags: dict[str, int]) -> np.ndarray:
    halved = np.zeros((bits.shape[0] // 2, bits.shape[1] // 2), dtype=bits.dtype)
    for flag in flags.values():
        votes = _blocks((bits & flag) > 0).sum(axis=(1, 3))
        halved[votes >= 2] |= flag
    return halved


def exclusive_labels(bits: np.ndarray, flags: dict[str, int]) -> np.ndarray:
    labels = np.zeros(bits.shape, dtype=np.uint8)
    for name, value in _EXCLUSIVE_ORDER:
        labels[(bits & flags[name]) > 0] = value
    return labels


def halve_folder(source: Path, target: Path) -> int:
    info = json.loads((source / "dataset_info.json").read_text())
    flags = info["labels_bits"]
    for folder in ("images", "labels", "labels_bits", "landmarks"):
        (target / folder).mkdir(parents=True, exist_ok=True)
    cases = sorted(path.stem for path in (source / "images").glob("*.png"))
    for case in cases:
        image = np.asarray(Image.open(source / "images" / f"{case}.png"))
        Image.fromarray(halve_image(image)).save(target / "images" / f"{case}.png")
        bits = halve_bits(np.asarray(Image.open(source / "labels_bits" / f"{case}.png")), flags)
        Image.fromarray(bits).save(target / "labels_bits" / f"{case}.png")
        Image.fromarray(exclusive_labels(bits, flags)).save(target / "labels" / f"{case}.png")
        record = json.loads((source / "landmarks" / f"{case}.json").read_text())
        record["image_size_wh"] = [size // 2 for size in record["image_size_wh"]]
        record["pixel_spacing_mm"] = record["pixel_spacing_mm"] * 2
        record["coords"] = record["coords"] + " (then halved: a 2x2-block downsampled copy)"
        record["landmarks"] = {group: [[x / 2, y / 2] for x, y in points] for group, points in record["landmarks"].items()}
        (target / "landmarks" / f"{case}.json").write_text(json.dumps(record))
    info["pixel_spacing_mm"] = info["pixel_spacing_mm"] * 2
    info["name"] = info["name"] + " (2x2-block downsampled copy)"
    (target / "dataset_info.json").write_text(json.dumps(info, indent=1))
    shutil.copy(source / "splits.json", target / "splits.json")
    return len(cases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a jsrt_512 folder")
    parser.add_argument("target", type=Path, help="the folder to write (same layout, half the pixels per side)")
    args = parser.parse_args()
    print(f"wrote {halve_folder(args.source, args.target)} cases to {args.target}")


if __name__ == "__main__":
    main()
