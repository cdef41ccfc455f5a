"""One polygon rasteriser: its pixel convention, and both callers giving its pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnunet_babloss.core.rasterise import fill_polygon
from nnunet_babloss.denseseg.uvmaps import polygon_mask
from pseudo_labels.prompts import fill_polygon as prompts_fill_polygon


def test_pixel_convention_on_lattice_vertices() -> None:
    square = np.array([[2.0, 2.0], [2.0, 7.0], [7.0, 7.0], [7.0, 2.0]])
    expected = np.zeros((10, 10), dtype=bool)
    expected[2:7, 3:8] = True  # rows: half-open [2, 7); columns: centres strictly right of each crossing
    np.testing.assert_array_equal(fill_polygon(square, (10, 10)), expected)
    np.testing.assert_array_equal(fill_polygon(square[::-1], (10, 10)), expected)  # orientation does not matter


def test_absent_vertices_are_dropped_and_bad_input_raises() -> None:
    triangle = np.array([[1.5, 1.5], [np.nan, np.nan], [1.5, 8.5], [8.5, 1.5]])
    np.testing.assert_array_equal(fill_polygon(triangle, (10, 10)), fill_polygon(triangle[[0, 2, 3]], (10, 10)))
    assert not fill_polygon(triangle[:2], (10, 10)).any()
    with pytest.raises(ValueError, match="finite"):
        fill_polygon([[0, 0], [0, np.inf], [3, 3]], (4, 4))
    with pytest.raises(ValueError, match="shape"):
        fill_polygon([[0, 0], [0, 3], [3, 3]], (4,))


def test_every_caller_gives_the_same_pixels() -> None:
    rng = np.random.default_rng(0)
    polygons = [rng.uniform(-3.0, 35.0, (int(rng.integers(3, 12)), 2)) for _ in range(50)]
    polygons.append(np.array([[2.0, 2.0], [2.0, 7.0], [7.0, 7.0], [7.0, 2.0]]))  # lattice ties too
    assert prompts_fill_polygon is fill_polygon
    for polygon in polygons:
        expected = fill_polygon(polygon, (32, 30))
        mask = polygon_mask(polygon, (32, 30))
        assert mask.dtype == torch.bool and mask.shape == (32, 30)
        np.testing.assert_array_equal(mask.numpy(), expected)
    with pytest.raises(ValueError, match="3 finite"):
        polygon_mask([[0.0, 0.0], [np.nan, 1.0], [3.0, 3.0]], (4, 4))
