"""Nested gaze levels: thresholded pseudo masks of one gaze map stored as ONE label map, and the ``dataset.json`` block.

GazeSup (Zhong et al., "Weakly-supervised medical image segmentation with gaze annotations", MICCAI 2024) thresholds
one refined gaze map at several levels. Masks of one map at thresholds ``t_1 < t_2 < ... < t_L`` are nested
(``mask(t_L) ⊆ ... ⊆ mask(t_1)``), so all of them fit in one label map whose value is the number of thresholds a
pixel exceeds (``0..L``); level ``k``'s mask is ``label >= k``. nnU-Net preprocesses and augments that label map
unchanged (nearest-neighbour resampling keeps integer values, and nesting survives any spatial transform).

For nnU-Net the levels are *regions* (its region-based training): region ``k`` holds the label values ``k..L``.
nnU-Net's own ``ConvertSegmentationToRegionsTransform`` then turns the label map into the ``L`` nested binary
targets (one sigmoid channel each) at every deep-supervision scale, and the stock predictor writes, per pixel, the
highest region ``k`` whose probability exceeds 0.5 (regions are applied in ``regions_class_order`` = ``1..L``).

``dataset.json`` carries a ``"gaze_levels"`` block (nnU-Net copies ``dataset.json`` verbatim, so it reaches the
preprocessed and results folders)::

    "labels": {"background": 0, "heart_level_1": [1, 2], "heart_level_2": [2]},
    "regions_class_order": [1, 2],
    "gaze_levels": {"structure": "heart", "thresholds": [0.3, 0.5],
                    "encoding": "label = number of thresholds exceeded", "source": {...provenance...}}

This module is pure numpy: no nnU-Net import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "GAZE_LEVELS_KEY",
    "LEVEL_ENCODING",
    "GazeLevelSpec",
    "level_map_from_probability",
    "level_masks",
]

GAZE_LEVELS_KEY = "gaze_levels"
LEVEL_ENCODING = "label = number of thresholds exceeded (level k mask = label >= k; thresholds ascending)"


def _check_thresholds(thresholds: Sequence[float], where: str) -> tuple[float, ...]:
    values = tuple(float(value) for value in thresholds)
    if not values:
        raise ValueError(f"{where}: at least one threshold is needed, got {list(thresholds)!r}")
    if any(not 0.0 <= value < 1.0 for value in values):
        raise ValueError(f"{where}: thresholds must lie in [0, 1), got {list(values)}")
    if any(later <= earlier for earlier, later in zip(values, values[1:])):
        raise ValueError(f"{where}: thresholds must be strictly ascending, got {list(values)}")
    return values


@dataclass(frozen=True)
class GazeLevelSpec:
    """The gaze levels of a dataset.

    Attributes:
        structure: Name of the gaze-annotated structure (prefix of the region names).
        thresholds: Ascending thresholds ``t_1 < ... < t_L`` in ``[0, 1)``; level ``k`` = gaze map ``> t_k``.
        source: Free-form provenance (heatmap σ, CRF settings, whether the gaze was simulated, ...).
    """

    structure: str
    thresholds: tuple[float, ...]
    source: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.structure, str) or not self.structure.strip():
            raise ValueError(f"gaze levels: structure must be a non-empty name, got {self.structure!r}")
        object.__setattr__(self, "thresholds", _check_thresholds(self.thresholds, "gaze levels"))

    @property
    def num_levels(self) -> int:
        """``L``, the number of levels (= network output channels of a GazeSup model)."""
        return len(self.thresholds)

    def region_name(self, level: int) -> str:
        """Name of level ``level`` (1-based) in the ``labels`` block, e.g. ``heart_level_2``."""
        if not 1 <= level <= self.num_levels:
            raise ValueError(f"level must be in 1..{self.num_levels}, got {level}")
        return f"{self.structure}_level_{level}"

    def labels_block(self) -> dict[str, Any]:
        """``labels`` and ``regions_class_order`` entries of ``dataset.json`` (nnU-Net regions, nested)."""
        labels: dict[str, Any] = {"background": 0}
        for level in range(1, self.num_levels + 1):
            labels[self.region_name(level)] = list(range(level, self.num_levels + 1))
        return {"labels": labels, "regions_class_order": list(range(1, self.num_levels + 1))}

    def to_json(self) -> dict[str, Any]:
        """The ``"gaze_levels"`` block."""
        block: dict[str, Any] = {
            "structure": self.structure,
            "thresholds": list(self.thresholds),
            "encoding": LEVEL_ENCODING,
        }
        if self.source is not None:
            block["source"] = dict(self.source)
        return block

    @classmethod
    def from_dataset_json(cls, dataset_json: Mapping[str, Any], source: str = "dataset.json") -> GazeLevelSpec:
        """Read the ``"gaze_levels"`` block and check that ``labels`` encodes the same nested regions.

        Raises:
            ValueError: no block, bad thresholds or a ``labels`` block that does not match them (names the file).
        """
        block = dataset_json.get(GAZE_LEVELS_KEY)
        if not isinstance(block, Mapping):
            raise ValueError(
                f"{source}: no '{GAZE_LEVELS_KEY}' block; GazeSup needs a dataset written by "
                "nnUNetv2_bab_gaze_pseudo_labels (or one with the same block)"
            )
        try:
            spec = cls(
                structure=block.get("structure", ""),
                thresholds=tuple(block.get("thresholds", ())),
                source=block.get("source"),
            )
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: '{GAZE_LEVELS_KEY}': {error}") from error
        expected = spec.labels_block()
        labels = dataset_json.get("labels")
        if not isinstance(labels, Mapping) or {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in
                                               labels.items()} != expected["labels"]:
            raise ValueError(
                f"{source}: 'labels' {labels!r} do not encode the nested gaze levels of thresholds "
                f"{list(spec.thresholds)}; expected {expected['labels']!r}"
            )
        if list(dataset_json.get("regions_class_order", [])) != expected["regions_class_order"]:
            raise ValueError(
                f"{source}: 'regions_class_order' must be {expected['regions_class_order']}, "
                f"got {dataset_json.get('regions_class_order')!r}"
            )
        return spec


def level_map_from_probability(probability: NDArray[Any], thresholds: Sequence[float]) -> NDArray[np.uint8]:
    """The nested level map of a gaze probability map.

    Args:
        probability: ``(*spatial)`` map in ``[0, 1]``.
        thresholds: Ascending thresholds ``t_1 < ... < t_L``.

    Returns:
        ``(*spatial)`` uint8 map: the number of thresholds that ``probability`` exceeds (strictly), ``0..L``.

    Raises:
        ValueError: thresholds empty, outside ``[0, 1)`` or not ascending; a non-finite probability.
    """
    values = _check_thresholds(thresholds, "thresholds")
    probability = np.asarray(probability, dtype=np.float64)
    if not np.all(np.isfinite(probability)):
        raise ValueError("probability map holds NaN or infinite values")
    levels = np.zeros(probability.shape, dtype=np.uint8)
    for threshold in values:
        levels += probability > threshold
    return levels


def level_masks(level_map: NDArray[Any], num_levels: int) -> NDArray[np.bool_]:
    """The ``L`` nested binary masks of a level map.

    Args:
        level_map: ``(*spatial)`` integer map with values ``0..num_levels``.
        num_levels: ``L``.

    Returns:
        ``(L, *spatial)`` bool; channel ``k-1`` is ``level_map >= k``.

    Raises:
        ValueError: values outside ``0..L``.
    """
    level_map = np.asarray(level_map)
    if level_map.size and (level_map.min() < 0 or level_map.max() > num_levels):
        raise ValueError(f"level map values must lie in 0..{num_levels}, got {level_map.min()}..{level_map.max()}")
    return np.stack([level_map >= level for level in range(1, num_levels + 1)])
