"""Augmentation for upright images (radiographs): bounded rotation and scaling, no flips — shared by the landmark
trainers and a segmentation-only trainer with the same augmentation.

nnU-Net rotates square 2D patches by up to ±180°, scales by 0.7–1.4 and flips every axis. For upright chest X-rays
and cephalograms, ±180° shows the network anatomy it never meets, and a 180° rotation followed by an up-down flip is
a disguised left-right flip, which sided labels and landmarks cannot follow. :class:`HeatmapTrainer` bounds both
(``landmark_rotation_deg``, ``landmark_scaling``); :class:`nnUNetTrainerUprightAugmentation` applies the same bounds
to stock segmentation training, so that a segmentation-only model can be compared with the landmark trainers with
nothing but the landmark task changed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size

from nnunet_babloss.nnunet.mirroring import nnUNetTrainerNoLateralMirroring

__all__ = ["bounded_rotation", "nnUNetTrainerUprightAugmentation", "walk_transforms", "with_spatial_scaling"]


def bounded_rotation(
    patch_size: Sequence[int], degrees: float, dummy_2d: bool
) -> tuple[tuple[float, float], list[int]]:
    """Rotation range ``±degrees`` (radians, as nnU-Net takes it) and the loader's initial patch for it.

    The initial patch follows nnU-Net's own rule (its fixed 0.85–1.25 scale margin) at the new rotation; with
    dummy 2D augmentation of 3D patches the first axis keeps its size.
    """
    angle = math.radians(float(degrees))
    rotation = (-angle, angle)
    dimension = len(patch_size)
    initial_patch_size = get_patch_size(patch_size[-dimension:], rotation, rotation, rotation, (0.85, 1.25))
    if dummy_2d:
        initial_patch_size[0] = patch_size[0]
    return rotation, initial_patch_size


def walk_transforms(transform: BasicTransform) -> Iterator[BasicTransform]:
    """``transform`` and every transform nested in it (batchgeneratorsv2 containers hold a ``transforms`` or
    ``list_of_transforms`` list, or one ``transform``)."""
    yield transform
    for child in (getattr(transform, "transforms", None) or []) + (getattr(transform, "list_of_transforms", None) or []):
        yield from walk_transforms(child)
    inner = getattr(transform, "transform", None)
    if isinstance(inner, BasicTransform):
        yield from walk_transforms(inner)


def with_spatial_scaling(transforms: BasicTransform, scaling: Sequence[float]) -> BasicTransform:
    """Set the scaling range of every :class:`SpatialTransform` in ``transforms`` (in place); returns them."""
    for transform in walk_transforms(transforms):
        if isinstance(transform, SpatialTransform):
            transform.scaling = tuple(float(value) for value in scaling)
    return transforms


class nnUNetTrainerUprightAugmentation(nnUNetTrainerNoLateralMirroring):  # noqa: N801 (nnU-Net's naming)
    """Stock nnU-Net segmentation with the landmark trainers' augmentation: rotation ±``rotation_deg``, scaling
    ``scaling``, no flips in training or at test time. The segmentation-only reference of the JSRT study."""

    rotation_deg: float = 10.0
    scaling: tuple[float, float] = (0.9, 1.1)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):  # noqa: N802 (nnU-Net's name)
        """nnU-Net's choice with the rotation bounded and no mirror axes (nor test-time mirroring)."""
        _, dummy_2d, _, _ = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        rotation, initial_patch_size = bounded_rotation(self.configuration_manager.patch_size, self.rotation_deg, dummy_2d)
        # ``None``, not ``()``: nnU-Net's predictors take ``None`` as "no mirroring" but call max() on an empty tuple.
        self.inference_allowed_mirroring_axes = None
        self.print_to_log_file(
            f"upright augmentation: rotation +-{self.rotation_deg:g} deg, scaling {tuple(self.scaling)}, no mirroring"
        )
        return rotation, dummy_2d, initial_patch_size, ()

    def get_training_transforms(self, *args, **kwargs) -> BasicTransform:  # nnU-Net's is a staticmethod
        """nnU-Net's training transforms with the scaling range set to :attr:`scaling`."""
        return with_spatial_scaling(super().get_training_transforms(*args, **kwargs), self.scaling)
