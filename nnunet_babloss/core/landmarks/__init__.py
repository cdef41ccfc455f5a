"""Landmarks: the dataset.json specification, file formats, and world/voxel geometry."""

from __future__ import annotations

from nnunet_babloss.core.landmarks.geometry import ImageGeometry, PreprocessingMap
from nnunet_babloss.core.landmarks.io import LandmarkSet, read_landmarks, write_landmarks
from nnunet_babloss.core.landmarks.spec import LandmarkSpec, LandmarkSpecError, has_landmarks_block

__all__ = [
    "ImageGeometry",
    "LandmarkSet",
    "LandmarkSpec",
    "LandmarkSpecError",
    "PreprocessingMap",
    "has_landmarks_block",
    "read_landmarks",
    "write_landmarks",
]
