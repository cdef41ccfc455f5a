"""A small synthetic *heterogeneous* partially-labelled 2D dataset in nnU-Net raw format.

Each image shows a bright ellipse ("disc") above a darker rectangle ("bar"). Six landmarks lie exactly on the
boundaries of these shapes (the four extreme points of the disc and the two short-side mid-points of the bar), so
the landmark/boundary relation BaBLoss relies on holds by construction. Training cases are split into mask-only
cases (landmarks withheld; no landmark file), landmark-only cases (the label file is filled with the ignore label)
and a few cases with both. Test cases carry both annotations so predictions can be scored.

The geometry is deliberately not trivial: anisotropic pixels and a non-zero origin, so errors in mm differ from
errors in pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_babloss.core.landmarks.io import LandmarkSet
from nnunet_babloss.core.splits import annotation_kind, stratified_splits
from nnunet_babloss.nnunet.raw_dataset import RawDatasetWriter, dataset_folder_name

__all__ = ["SyntheticDatasetConfig", "LANDMARK_NAMES", "LABELS", "generate_synthetic_dataset", "render_case"]

LANDMARK_NAMES = ("disc_top", "disc_bottom", "disc_left", "disc_right", "bar_left_end", "bar_right_end")
LABELS = {"background": 0, "disc": 1, "bar": 2, "ignore": 3}
_MIRROR_PAIRS = (("disc_left", "disc_right"), ("bar_left_end", "bar_right_end"))
_BRIDGE = {name: ["disc"] if name.startswith("disc") else ["bar"] for name in LANDMARK_NAMES}


@dataclass(frozen=True)
class SyntheticDatasetConfig:
    """Sizes of the synthetic dataset. Defaults make a dataset nnU-Net plans and trains in seconds on a CPU."""

    num_mask_only: int = 8
    num_landmark_only: int = 8
    num_both: int = 4
    num_test: int = 4
    shape_yx: tuple[int, int] = (64, 64)
    spacing_xy_mm: tuple[float, float] = (0.8, 1.0)
    origin_xy_mm: tuple[float, float] = (-25.0, 40.0)
    noise_std: float = 0.08
    sigma_mm: float = 2.0
    boundary_range_mm: float = 4.0
    seed: int = 0

    def __post_init__(self) -> None:
        for field_name in ("num_mask_only", "num_landmark_only", "num_both", "num_test"):
            if getattr(self, field_name) < 0:
                raise ValueError(f"{field_name} must be >= 0, got {getattr(self, field_name)}")
        if min(self.shape_yx) < 32:
            raise ValueError(f"shape_yx must be at least 32 pixels per axis, got {self.shape_yx}")


def render_case(config: SyntheticDatasetConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one case.

    Returns:
        ``(image, labels, landmarks_mm)``: image float32 ``(H, W)``, labels uint8 ``(H, W)`` with values of
        :data:`LABELS`, landmarks ``(6, 2)`` world ``(x, y)`` mm in the order of :data:`LANDMARK_NAMES`.
    """
    height, width = config.shape_yx
    spacing_x, spacing_y = config.spacing_xy_mm
    extent_x, extent_y = width * spacing_x, height * spacing_y
    # Shape parameters in millimetres relative to the image's first voxel centre (index 0).
    disc_centre = np.array([rng.uniform(0.35, 0.65) * extent_x, rng.uniform(0.25, 0.35) * extent_y])
    disc_axes = np.array([rng.uniform(0.14, 0.22) * extent_x, rng.uniform(0.12, 0.18) * extent_y])
    bar_centre = np.array([rng.uniform(0.4, 0.6) * extent_x, rng.uniform(0.68, 0.78) * extent_y])
    bar_half = np.array([rng.uniform(0.2, 0.32) * extent_x, rng.uniform(0.05, 0.09) * extent_y])

    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    x_mm, y_mm = cols * spacing_x, rows * spacing_y
    disc = ((x_mm - disc_centre[0]) / disc_axes[0]) ** 2 + ((y_mm - disc_centre[1]) / disc_axes[1]) ** 2 <= 1.0
    bar = (np.abs(x_mm - bar_centre[0]) <= bar_half[0]) & (np.abs(y_mm - bar_centre[1]) <= bar_half[1])
    labels = np.zeros((height, width), dtype=np.uint8)
    labels[disc] = LABELS["disc"]
    labels[bar] = LABELS["bar"]

    image = np.full((height, width), 0.1, dtype=np.float32)
    image[disc] = 1.0
    image[bar] = 0.55
    image += rng.normal(0.0, config.noise_std, size=image.shape).astype(np.float32)

    relative = np.array(
        [
            disc_centre - [0.0, disc_axes[1]],
            disc_centre + [0.0, disc_axes[1]],
            disc_centre - [disc_axes[0], 0.0],
            disc_centre + [disc_axes[0], 0.0],
            bar_centre - [bar_half[0], 0.0],
            bar_centre + [bar_half[0], 0.0],
        ]
    )
    landmarks_mm = relative + np.asarray(config.origin_xy_mm)
    return image, labels, landmarks_mm


def _image(array: np.ndarray, config: SyntheticDatasetConfig) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(config.spacing_xy_mm)
    image.SetOrigin(config.origin_xy_mm)
    return image


def generate_synthetic_dataset(
    raw_folder: str | Path,
    dataset_id: int = 987,
    dataset_name: str = "BabSynthetic",
    config: SyntheticDatasetConfig = SyntheticDatasetConfig(),
    num_folds: int = 2,
) -> Path:
    """Write ``<raw_folder>/Dataset<ID>_<name>`` with imagesTr/labelsTr/landmarksTr, a test set and splits.

    Args:
        raw_folder: the ``nnUNet_raw`` folder to write into.
        dataset_id: nnU-Net dataset id (1..999).
        dataset_name: dataset name after the id.
        config: sizes, geometry and seed.
        num_folds: folds of the stratified ``splits_final.json``.

    Returns:
        The dataset folder.

    Raises:
        FileExistsError: if the dataset folder exists already (nothing is overwritten).
        ValueError: for an id outside 1..999.
    """
    if not 1 <= dataset_id <= 999:
        raise ValueError(f"dataset_id must be in 1..999, got {dataset_id}")
    dataset_folder = Path(raw_folder) / dataset_folder_name(dataset_id, dataset_name)
    if dataset_folder.exists():
        raise FileExistsError(f"{dataset_folder} exists already; remove it or choose another dataset id")
    for sub in ("imagesTr", "labelsTr", "landmarksTr", "imagesTs", "labelsTs", "landmarksTs"):
        (dataset_folder / sub).mkdir(parents=True)
    dataset = RawDatasetWriter(dataset_folder, ".nii.gz")

    rng = np.random.default_rng(config.seed)
    kinds: list[str] = (
        ["mask_only"] * config.num_mask_only + ["landmark_only"] * config.num_landmark_only + ["both"] * config.num_both
    )
    case_kinds: dict[str, str] = {}
    for index, kind in enumerate(kinds):
        case = f"synth_{index:03d}"
        image, labels, landmarks_mm = render_case(config, rng)
        has_mask, has_landmarks = kind in ("mask_only", "both"), kind in ("landmark_only", "both")
        case_kinds[case] = annotation_kind(has_mask, has_landmarks)
        dataset.write_image(_image(image, config), case)
        if not has_mask:
            labels = np.full_like(labels, LABELS["ignore"])
        dataset.write_label(_image(labels, config), case)
        if has_landmarks:
            dataset.write_landmarks(LandmarkSet(LANDMARK_NAMES, landmarks_mm), case)
    for index in range(config.num_test):
        case = f"synth_test_{index:03d}"
        image, labels, landmarks_mm = render_case(config, rng)
        dataset.write_image(_image(image, config), case, test=True)
        dataset.write_label(_image(labels, config), case, test=True)
        dataset.write_landmarks(LandmarkSet(LANDMARK_NAMES, landmarks_mm), case, test=True)

    dataset_json = {
        "name": dataset_name,
        "description": "Synthetic heterogeneous partially-labelled dataset generated by nnunet-babloss",
        "channel_names": {"0": "synthetic"},
        "labels": LABELS,
        "numTraining": len(kinds),
        "file_ending": ".nii.gz",
        "landmarks": {
            "names": list(LANDMARK_NAMES),
            "mirror_pairs": [list(pair) for pair in _MIRROR_PAIRS],
            "bridge": _BRIDGE,
            "sigma_mm": config.sigma_mm,
            "boundary_range_mm": config.boundary_range_mm,
        },
        "annotations": case_kinds,
    }
    splits = stratified_splits(case_kinds, num_folds=num_folds, seed=config.seed)
    dataset.write_metadata(dataset_json, splits=splits)
    return dataset_folder


def case_identifiers(folder: str | Path, suffix: str = "_0000.nii.gz") -> Sequence[str]:
    """Sorted case identifiers of an ``images*`` folder."""
    return sorted(path.name[: -len(suffix)] for path in Path(folder).glob(f"*{suffix}"))
