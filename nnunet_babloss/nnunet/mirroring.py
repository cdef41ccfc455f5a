"""Lateral mirroring guard: no left-right flips for datasets whose labels or landmarks are sided but unpaired.

A flip along the patient's left-right axis turns a right lung into something that looks like a left lung. With
``mirror_pairs`` (landmarks) and ``label_mirror_pairs`` (sided labels) declared,
:class:`~nnunet_babloss.nnunet.heatmap_trainer.HeatmapTrainer` swaps the paired landmarks and label values
under the same flip and all is well. Without landmark pairs (JSRT: 44 right-lung and 50 left-lung contour points
cannot be paired), a flipped image would teach "right-lung point 3" to sit on either side, and mirror test-time
augmentation would average a landmark with its mirror image; with landmark pairs but unpaired sided labels, a flip
would move a landmark to the other lung while its bridge still names the first one (BaBLoss would pull it to the
wrong boundary). The guard drops the lateral axis from nnU-Net's mirror axes for training *and* for inference
(``inference_allowed_mirroring_axes`` is stored in the checkpoint, so the stock and our predictor follow it), says why
in the training log and as a warning; the other axes keep nnU-Net's flips.
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_babloss.core.landmarks.geometry import ImageGeometry
from nnunet_babloss.nnunet.checkpoint_selection import WeightsOnlyCheckpointLoading

__all__ = [
    "LateralMirroringGuard",
    "common_lateral_patch_axis",
    "lateral_array_axis",
    "lateral_patch_axis",
    "nnUNetTrainerNoLateralMirroring",
    "read_case_geometries",
]


def lateral_array_axis(geometry: ImageGeometry) -> int:
    """The array axis (numpy order) whose world direction is closest to the patient's left-right axis (LPS x)."""
    direction = geometry.direction_matrix
    itk_axis = int(np.argmax(np.abs(direction[0])))
    return geometry.dimension - 1 - itk_axis


def lateral_patch_axis(geometry: ImageGeometry, transpose_forward: Sequence[int], patch_dimension: int) -> int | None:
    """The patch axis along which a flip exchanges left and right, or ``None`` if no patch axis does.

    Args:
        geometry: Geometry of the raw image (2D or 3D; nnU-Net holds 2D images as ``(1, H, W)``).
        transpose_forward: The plans' ``transpose_forward``.
        patch_dimension: 2 or 3 (2D patches of a 3D array drop the first preprocessed axis).

    Returns:
        The axis index within the patch, or ``None`` for 2D patches whose dropped axis is the lateral one.
    """
    array_axis = lateral_array_axis(geometry) + (1 if geometry.dimension == 2 else 0)
    preprocessed_axis = list(transpose_forward).index(array_axis)
    patch_axis = preprocessed_axis - (1 if patch_dimension == 2 else 0)
    return patch_axis if patch_axis >= 0 else None


def common_lateral_patch_axis(
    geometries: Mapping[str, ImageGeometry], transpose_forward: Sequence[int], patch_dimension: int
) -> int | None:
    """The lateral patch axis (see :func:`lateral_patch_axis`) that every case of a dataset agrees on.

    Args:
        geometries: Case identifier -> raw image geometry (at least one case).
        transpose_forward: The plans' ``transpose_forward``.
        patch_dimension: 2 or 3.

    Returns:
        The common patch axis, or ``None`` when no patch axis flips left and right in any case.

    Raises:
        ValueError: no cases, or two cases put the patient's left-right axis on different patch axes (the
            message names both, with their direction matrices): one flip axis cannot serve both.
    """
    if not geometries:
        raise ValueError("no case geometries to find the lateral axis in")
    axes = {
        case: lateral_patch_axis(geometry, transpose_forward, patch_dimension) for case, geometry in geometries.items()
    }
    first_case, first_axis = next(iter(axes.items()))
    for case, axis in axes.items():
        if axis != first_axis:
            raise ValueError(
                f"the cases disagree on the patient's left-right axis: in {first_case!r} a flip of patch axis "
                f"{first_axis} exchanges left and right (direction {geometries[first_case].direction}), in {case!r} "
                f"patch axis {axis} does (direction {geometries[case].direction}); one mirror axis cannot serve both. "
                "Bring the images to one orientation (e.g. resample them, or preprocess with nnU-Net's "
                "SimpleITKIOWithReorient), or train without left-right flips"
            )
    return first_axis


def read_case_geometries(
    preprocessed_folder: str | os.PathLike[str], identifiers: Sequence[str]
) -> dict[str, ImageGeometry]:
    """The raw image geometry of every case, from the ``<case>.pkl`` properties nnU-Net writes at preprocessing.

    Only the small properties files are read (no image data), so every case can be checked.

    Raises:
        FileNotFoundError: a case has no properties file.
        ValueError: a properties file holds no world frame (``sitk_stuff``); the message names the file.
    """
    geometries = {}
    for identifier in identifiers:
        path = os.path.join(os.fspath(preprocessed_folder), f"{identifier}.pkl")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"properties file of case {identifier!r} not found: {path}")
        with open(path, "rb") as handle:
            properties = pickle.load(handle)  # nnU-Net's own preprocessing output, as its data loader reads it
        try:
            geometries[identifier] = ImageGeometry.from_sitk_stuff(properties.get("sitk_stuff"))
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
    return geometries


class LateralMirroringGuard:
    """Mixin for nnU-Net trainers: removes the lateral patch axis from the mirror axes, loudly, when
    :meth:`lateral_mirroring_problems` finds a reason (default: always)."""

    def lateral_mirroring_problems(self) -> tuple[str, ...]:
        """Why left-right flips would teach wrong targets; empty when they are safe (subclasses decide, e.g. from
        their landmark specification). The reasons name the ``dataset.json`` field that would fix them."""
        return ("this trainer cannot swap sided labels (e.g. right/left lung) under a left-right flip",)

    def dataset_lateral_patch_axis(self) -> int | None:
        """The patch axis that flips left and right, agreed on by every preprocessed case (their properties files).

        Raises:
            ValueError: two cases disagree (see :func:`common_lateral_patch_axis`).
        """
        dataset_class = self.dataset_class or infer_dataset_class(self.preprocessed_dataset_folder)
        identifiers = sorted(dataset_class.get_identifiers(self.preprocessed_dataset_folder))
        if not identifiers:
            return None
        geometries = read_case_geometries(self.preprocessed_dataset_folder, identifiers)
        return common_lateral_patch_axis(
            geometries, self.plans_manager.transpose_forward, len(self.configuration_manager.patch_size)
        )

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):  # noqa: N802 (nnU-Net's name)
        rotation, dummy_2d, initial_patch_size, mirror_axes = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        problems = self.lateral_mirroring_problems() if mirror_axes else ()
        if problems:
            lateral = self.dataset_lateral_patch_axis()
            if lateral is not None and lateral in mirror_axes:
                mirror_axes = tuple(axis for axis in mirror_axes if axis != lateral)
                self.inference_allowed_mirroring_axes = mirror_axes
                message = (
                    f"{type(self).__name__}: left-right mirroring off (patch axis {lateral}), for training and "
                    f"test-time mirroring; mirror axes now {mirror_axes}. Why: " + " ".join(
                        f"({number}) {problem}." for number, problem in enumerate(problems, 1)
                    )
                )
                self.print_to_log_file(message)
                warnings.warn(message, stacklevel=2)
        return rotation, dummy_2d, initial_patch_size, mirror_axes


class nnUNetTrainerNoLateralMirroring(WeightsOnlyCheckpointLoading, LateralMirroringGuard, nnUNetTrainer):  # noqa: N801 (nnU-Net's naming)
    """Stock nnU-Net without left-right flips (the other axes still mirror): for sided labels such as right/left lung."""
