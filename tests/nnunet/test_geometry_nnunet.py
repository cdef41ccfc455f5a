"""End-to-end check of the world → preprocessed-voxel map against nnU-Net's real preprocessing.

Tiny raw datasets (3 cases each) hold one bright Gaussian blob per case at a known world point, on images with a
rotated/flipped direction, anisotropic spacing that differs between cases (so nnU-Net resamples), and a zero border
(so nnU-Net's crop to the non-zero bounding box is not the full image). ``nnUNetv2_plan_and_preprocess`` runs once
in a subprocess; the test then loads each preprocessed case with nnU-Net's own dataset class and checks that
``PreprocessingMap`` sends the known world point to the blob's intensity-weighted centroid in the preprocessed
array, and back. Three datasets: 3D without transpose, 3D where nnU-Net transposes (lowest resolution on array
axis 2, so ``transpose_forward == [2, 0, 1]``), and 2D (nnU-Net's dummy leading axis).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_babloss.core.landmarks.geometry import (
    ImageGeometry,
    PreprocessingMap,
    preprocessed_index_to_world,
    world_to_preprocessed_index,
)

pytestmark = pytest.mark.e2e

BLOB_PEAK = 1000.0
BACKGROUND = 100.0


@dataclass(frozen=True)
class CaseSpec:
    """One synthetic raw case: ITK-order spacing, array shape, zero-border widths (array order, (before, after))."""

    spacing_mm: tuple[float, ...]
    shape: tuple[int, ...]
    border_vox: tuple[tuple[int, int], ...]
    blob_index_offset: tuple[float, ...]  # added to the interior centre, array order, voxels
    # Allowed |mapped point - blob centroid| per preprocessed axis. Cubic resampling keeps the centroid within
    # 0.003 voxel (measured); 0.02 still catches a forgotten half-pixel shift, which errs by 0.5 * |S_pre/S_crop - 1|,
    # about 0.05 voxel or more on every resampled axis here (spacing ratios 0.8-0.9 or 1.1-1.25).
    tolerance_vox: float = 0.02


@dataclass(frozen=True)
class DatasetSpec:
    dataset_id: int
    name: str
    direction: tuple[float, ...]
    blob_sigma_mm: float
    cases: tuple[CaseSpec, ...]
    expected_transpose_forward: tuple[int, int, int]


def _rotation_3d(angle_z_rad: float, angle_x_rad: float) -> np.ndarray:
    cz, sz, cx, sx = np.cos(angle_z_rad), np.sin(angle_z_rad), np.cos(angle_x_rad), np.sin(angle_x_rad)
    return np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])


# Rotation with a flip of ITK axis y: non-identity, det -1 (as in many scanners' LPS/RAS conversions).
DIRECTION_3D = tuple((_rotation_3d(0.35, -0.2) @ np.diag([1.0, -1.0, 1.0])).ravel())
_ROTATION_2D = np.array([[np.cos(0.4), -np.sin(0.4)], [np.sin(0.4), np.cos(0.4)]])
DIRECTION_2D = tuple((_ROTATION_2D @ np.diag([-1.0, 1.0])).ravel())

DATASETS = (
    # Lowest resolution along ITK z = array axis 0: nnU-Net keeps the axis order. Spacing differs per case, so the
    # median target spacing (0.9, 0.9, 2.0) resamples every case in at least one axis. case1 is anisotropic enough
    # (2.5 / 0.8 > nnU-Net's ANISO_THRESHOLD 3) for nnU-Net's "separate z" path: cubic in-plane, nearest-neighbour
    # along z, whose rounding of slice positions moves the centroid by 0.18 voxel (measured).
    DatasetSpec(
        991,
        "GeometryBlobs",
        DIRECTION_3D,
        3.0,
        (
            CaseSpec((0.8, 0.9, 2.0), (22, 40, 44), ((2, 3), (3, 1), (4, 2)), (0.3, -2.4, 1.7)),
            CaseSpec((1.0, 0.8, 2.5), (20, 44, 38), ((1, 2), (2, 4), (1, 3)), (-1.2, 1.6, -0.45), 0.3),
            CaseSpec((0.9, 1.0, 1.6), (26, 38, 40), ((3, 1), (1, 2), (2, 2)), (0.7, 0.2, 2.8)),
        ),
        (0, 1, 2),
    ),
    # Lowest resolution along ITK x = array axis 2: nnU-Net moves it first, transpose_forward = [2, 0, 1].
    DatasetSpec(
        992,
        "GeometryBlobsTransposed",
        DIRECTION_3D,
        4.0,
        (
            CaseSpec((4.0, 0.9, 1.0), (40, 44, 14), ((2, 3), (3, 1), (2, 2)), (1.3, -2.4, 0.35)),
            CaseSpec((4.0, 1.0, 1.2), (36, 40, 14), ((1, 2), (2, 4), (1, 3)), (-1.2, 1.6, -0.4)),
            CaseSpec((4.0, 0.8, 0.9), (44, 48, 15), ((3, 1), (1, 2), (3, 2)), (0.7, 0.2, 0.6)),
        ),
        (2, 0, 1),
    ),
    # 2D images: nnU-Net reads them as (1, H, W) with spacing (999 * max, y, x); the dummy axis is never resampled.
    DatasetSpec(
        993,
        "GeometryBlobs2D",
        DIRECTION_2D,
        3.0,
        (
            CaseSpec((0.8, 1.1), (44, 40), ((3, 1), (4, 2)), (-2.4, 1.7)),
            CaseSpec((1.0, 0.9), (40, 46), ((2, 4), (1, 3)), (1.6, -0.45)),
            CaseSpec((0.7, 1.0), (42, 50), ((1, 2), (2, 2)), (0.2, 2.8)),
        ),
        (0, 1, 2),
    ),
)


def _write_case(folder: Path, case_id: str, dataset: DatasetSpec, case: CaseSpec) -> np.ndarray:
    """Write image + label of one case; return the blob's world point (mm, ITK order)."""
    dimension = len(case.shape)
    geometry = sitk.Image(list(case.shape[::-1]), sitk.sitkUInt8)
    geometry.SetSpacing(case.spacing_mm)
    geometry.SetOrigin((12.5, -40.0, 7.25)[:dimension])
    geometry.SetDirection(dataset.direction)
    interior_low = np.array([before for before, _ in case.border_vox], dtype=float)
    interior_high = np.array(case.shape) - 1 - np.array([after for _, after in case.border_vox])
    blob_index = (interior_low + interior_high) / 2 + np.array(case.blob_index_offset)
    # Truth comes from SimpleITK alone (ITK index order is reversed), independent of the code under test.
    blob_world = np.array(geometry.TransformContinuousIndexToPhysicalPoint(blob_index[::-1].tolist()))

    source = sitk.PhysicalPointImageSource()
    source.SetOutputPixelType(sitk.sitkVectorFloat64)
    source.SetReferenceImage(geometry)
    voxel_world = sitk.GetArrayFromImage(source.Execute())  # (*shape, dimension), ITK order
    squared_distance_mm2 = np.sum((voxel_world - blob_world) ** 2, axis=-1)
    interior = np.zeros(case.shape, dtype=bool)
    interior[tuple(slice(before, size - after) for (before, after), size in zip(case.border_vox, case.shape))] = True
    blob = BLOB_PEAK * np.exp(-squared_distance_mm2 / (2 * dataset.blob_sigma_mm**2))
    image = np.where(interior, BACKGROUND + blob, 0.0)
    label = (interior & (squared_distance_mm2 <= (1.5 * dataset.blob_sigma_mm) ** 2)).astype(np.uint8)

    for array, path in ((image.astype(np.float32), folder / "imagesTr" / f"{case_id}_0000.nii.gz"),
                        (label, folder / "labelsTr" / f"{case_id}.nii.gz")):
        written = sitk.GetImageFromArray(array)
        written.CopyInformation(geometry)
        sitk.WriteImage(written, str(path))
    return blob_world


def _write_dataset(raw_root: Path, dataset: DatasetSpec) -> dict[str, np.ndarray]:
    folder = raw_root / f"Dataset{dataset.dataset_id:03d}_{dataset.name}"
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    blobs = {
        f"case{index}": _write_case(folder, f"case{index}", dataset, case) for index, case in enumerate(dataset.cases)
    }
    dataset_json = {
        "channel_names": {"0": "MR"},
        "labels": {"background": 0, "blob": 1},
        "numTraining": len(dataset.cases),
        "file_ending": ".nii.gz",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    return blobs


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[Path, dict[str, np.ndarray]]]:
    """Raw datasets written and preprocessed by the real nnU-Net CLI; per dataset id: (plans folder, blob points)."""
    root = tmp_path_factory.mktemp("nnunet_geometry")
    environment = dict(os.environ)
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / variable).mkdir()
        environment[variable] = str(root / variable)
    environment.update({"nnUNet_def_n_proc": "1", "OMP_NUM_THREADS": "1"})
    blobs = {dataset.dataset_id: _write_dataset(root / "nnUNet_raw", dataset) for dataset in DATASETS}
    command = [
        sys.executable,
        "-c",
        "from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import plan_and_preprocess_entry as main; "
        "main()",
        "-d", *(str(dataset.dataset_id) for dataset in DATASETS),
        "-c", "3d_fullres", "2d",
        "-np", "1",
        "-npfp", "1",
        "--no_pbar",
    ]  # fmt: skip
    result = subprocess.run(command, env=environment, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=600)
    if result.returncode != 0:
        pytest.fail(f"nnUNetv2_plan_and_preprocess failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    folder_of = {d.dataset_id: root / "nnUNet_preprocessed" / f"Dataset{d.dataset_id:03d}_{d.name}" for d in DATASETS}
    return {dataset_id: (folder_of[dataset_id], blobs[dataset_id]) for dataset_id in folder_of}


def _blob_centroid(volume: np.ndarray) -> np.ndarray:
    """Intensity-weighted centroid (array order, voxels) of the blob above the flat background."""
    excess = volume - np.median(volume)
    weights = np.where(excess > 0.01 * excess.max(), excess, 0.0)
    grids = np.indices(volume.shape, dtype=np.float64)
    return np.array([np.sum(grid * weights) / np.sum(weights) for grid in grids])


# 3D datasets are checked in both configurations: "2d" preprocesses 3D images too, leaving the first (transposed)
# axis unresampled. 2D images only get the "2d" configuration.
CHECKS = [(dataset, "3d_fullres") for dataset in DATASETS if len(dataset.cases[0].shape) == 3] + [
    (dataset, "2d") for dataset in DATASETS
]


@pytest.mark.parametrize(("dataset", "configuration"), CHECKS, ids=[f"{d.name}-{c}" for d, c in CHECKS])
def test_world_point_lands_on_the_preprocessed_blob(
    preprocessed: dict[int, tuple[Path, dict[str, np.ndarray]]], dataset: DatasetSpec, configuration: str
) -> None:
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    dataset_folder, blobs = preprocessed[dataset.dataset_id]
    plans = json.loads((dataset_folder / "nnUNetPlans.json").read_text())
    assert tuple(plans["transpose_forward"]) == dataset.expected_transpose_forward
    data_folder = dataset_folder / plans["configurations"][configuration]["data_identifier"]
    cases = infer_dataset_class(str(data_folder))(str(data_folder))

    resampled_cases = 0
    for case_id, blob_world in blobs.items():
        data, _, _, properties = cases.load_case(case_id)
        volume = np.asarray(data[0], dtype=np.float64)
        geometry = ImageGeometry.from_sitk_stuff(properties["sitk_stuff"])
        mapping = PreprocessingMap.from_nnunet(properties, plans["transpose_forward"], volume.shape)
        # Preconditions that give the test its meaning: a real crop, and (for most cases) real resampling.
        assert geometry.direction_matrix.round(6).tolist() != np.eye(geometry.dimension).tolist()
        assert mapping.cropped_shape != mapping.shape_before_cropping, case_id
        resampled_cases += mapping.cropped_shape != mapping.preprocessed_shape

        predicted = world_to_preprocessed_index(blob_world[None], geometry, mapping)[0]
        centroid = _blob_centroid(volume)
        residual_vox = np.abs(predicted - centroid)
        # And back: the centroid found in the preprocessed array, mapped to world.
        centroid_world = preprocessed_index_to_world(centroid[None], geometry, mapping)[0]
        residual_mm = float(np.linalg.norm(centroid_world - blob_world))
        print(f"{dataset.name}/{configuration}/{case_id}: residual {residual_vox.round(3)} preprocessed voxels "
              f"(transposed axes), {residual_mm:.3f} mm")
        tolerance_vox = dataset.cases[int(case_id.removeprefix("case"))].tolerance_vox
        assert np.all(residual_vox < tolerance_vox), (case_id, predicted, centroid)
        # A preprocessed voxel is spacing / scale mm long per axis, so the world error is at most
        # |residual_vox * that| (the direction is orthonormal).
        raw_spacing_transposed = np.array(geometry.spacing_mm_array_order)
        if geometry.dimension == 2:
            raw_spacing_transposed = np.concatenate([[0.0], raw_spacing_transposed])
        preprocessed_spacing_mm = raw_spacing_transposed[list(mapping.transpose_forward)] / mapping.scale
        assert residual_mm <= np.linalg.norm(residual_vox * preprocessed_spacing_mm) + 1e-6
        np.testing.assert_allclose(
            preprocessed_index_to_world(predicted[None], geometry, mapping)[0], blob_world, rtol=0, atol=1e-9
        )
    assert resampled_cases >= 2
