"""The one polygon rasteriser: the pixels whose centres lie inside a closed 2D polygon (even-odd rule).

Used by the contour pseudo labels (:mod:`pseudo_labels.prompts`) and by DenseSeg's landmark-polygon regions
(:func:`nnunet_babloss.denseseg.uvmaps.polygon_mask`). Pure numpy.

Pixel convention (voxel coordinates ``(row, col)``, integer values are pixel centres): a row counts an edge when
``(start_row <= row) != (end_row <= row)`` (half-open: a vertex exactly on a row is counted once, horizontal edges
never), and a crossing at column ``x`` toggles inside/outside for every column centre strictly right of ``x``. So the
axis-aligned square with corners ``(2, 2)`` and ``(7, 7)`` covers rows 2..6 and columns 3..7 (25 pixels); vertices
off the pixel lattice, as landmarks are, never meet these ties.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["fill_polygon"]


def fill_polygon(vertices_vox: ArrayLike, shape: Sequence[int]) -> NDArray[np.bool_]:
    """Rasterise a closed polygon: the voxels whose centres lie inside it (even-odd rule).

    Args:
        vertices_vox: ``(K, 2)`` vertices ``(row, col)`` in order; the last connects back to the first. NaN rows
            (absent landmarks) are dropped, joining their neighbours.
        shape: ``(H, W)`` of the output.

    Returns:
        ``(H, W)`` bool mask; all ``False`` for fewer than 3 present vertices.

    Raises:
        ValueError: bad shapes or infinite vertices.

    Example:
        >>> int(fill_polygon([[2.5, 3.5], [2.5, 9.5], [7.5, 9.5], [7.5, 3.5]], (12, 14)).sum())  # 5 rows x 6 cols
        30
    """
    sizes = tuple(int(size) for size in shape)
    if len(sizes) != 2 or min(sizes) < 1:
        raise ValueError(f"shape must be 2 positive sizes, got {tuple(shape)}")
    vertices = np.asarray(vertices_vox, dtype=np.float64)
    if vertices.ndim != 2 or vertices.shape[1] != 2:
        raise ValueError(f"vertices_vox must have shape (K, 2), got {vertices.shape}")
    if np.isinf(vertices).any():
        raise ValueError(f"vertices_vox must be finite or NaN (absent), got {vertices.tolist()}")
    vertices = vertices[~np.isnan(vertices).any(axis=1)]
    mask = np.zeros(sizes, dtype=bool)
    if vertices.shape[0] < 3:
        return mask
    height, width = sizes
    row_start, col_start = vertices[:, 0], vertices[:, 1]
    row_end, col_end = np.roll(row_start, -1), np.roll(col_start, -1)
    rows = np.arange(height, dtype=np.float64)[:, None]
    # Half-open rule (start <= y) != (end <= y): a vertex exactly on a row is counted once, horizontal edges never.
    crosses = (row_start[None, :] <= rows) != (row_end[None, :] <= rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = (rows - row_start[None, :]) / (row_end - row_start)[None, :]
    cross_col = col_start[None, :] + fraction * (col_end - col_start)[None, :]
    row_index, edge_index = np.nonzero(crosses)
    # The crossing toggles inside/outside for every column centre strictly right of it: first such column.
    first_col = np.clip(np.floor(cross_col[row_index, edge_index]).astype(np.int64) + 1, 0, width)
    toggles = np.zeros((height, width + 1), dtype=np.int64)
    np.add.at(toggles, (row_index, first_col), 1)
    mask[:] = (np.cumsum(toggles, axis=1)[:, :width] % 2) == 1
    return mask
