"""Fixtures of the conversion tests: tiny synthetic inputs written inline, and the real JSRT fixture."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conversion_helpers import write_labelme, write_png


@pytest.fixture
def png_dataset(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``root`` with images/, masks/ (two overlapping squares as bit flags) and LabelMe landmarks/.

    Case ``c<i>`` is a 24 x 32 (rows x columns) image. Structure ``a`` (bit 1) covers rows 4..11, columns 4..13;
    structure ``b`` (bit 2) rows 8..15, columns 10..19, so they overlap on rows 8..11, columns 10..13 (4 x 4 = 16 px).
    Landmarks ``p`` at (x, y) = (4, 4) (a corner of ``a``) and ``q`` at (19.5, 15.25) (sub-pixel, near ``b``).
    """

    def make(num_cases: int = 3, name: str = "data") -> Path:
        root = tmp_path / name
        for index in range(num_cases):
            case = f"c{index}"
            image = np.full((24, 32), 10 + index, dtype=np.uint8)
            bits = np.zeros((24, 32), dtype=np.uint8)
            bits[4:12, 4:14] |= 1
            bits[8:16, 10:20] |= 2
            image[bits > 0] = 200
            write_png(root / "images" / f"{case}.png", image)
            write_png(root / "masks" / f"{case}.png", bits)
            write_labelme(root / "landmarks" / f"{case}.json", {"p": [4.0, 4.0], "q": [19.5, 15.25]}, (32, 24))
        return root

    return make


@pytest.fixture
def jsrt_fixture(shared_data: Path) -> Path:
    """The real 8-case JSRT fixture at 256 px / 1.4 mm."""
    return shared_data / "jsrt_fixture_256"
