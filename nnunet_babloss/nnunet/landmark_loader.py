"""nnU-Net's data loader, extended with landmark keypoints and per-sample annotation flags.

Landmarks stay in world mm at dataset level (``landmarksTr``) and are mapped to each case's preprocessed voxels
from the case's properties (``sitk_stuff``, crop box, shapes) — see :mod:`nnunet_babloss.core.landmarks.geometry` —
once per case, on the case's first draw (:meth:`LandmarkDataLoader.case_keypoints`); later draws reuse the result,
which depends only on the case (its properties and preprocessed shape do not change during a run). Caching at first
read rather than writing the points at preprocessing keeps nothing in nnU-Net's preprocessed folders, which nnU-Net
rebuilds and whose unknown files it trips over. A patch of a landmark-only case is centred on one of its landmarks
(nnU-Net would crop such a case blindly, since it has no class locations), and stays inside the image where the
image is larger than the patch. Along axes where the patch covers the whole image, every patch is centred on the
image (``image_centred_patches``): a random shift would only move the anatomy inside an empty canvas. Keypoints then
go through the keypoint-aware augmentation of :mod:`nnunet_babloss.nnunet.keypoint_transforms`.

Each batch gains:

* ``keypoints``: ``(B, K, D)`` float32 voxel coordinates in the patch, NaN where a landmark is absent or not
  annotated (and only then);
* ``slice_offsets_vox``: ``(B, K)`` float32 signed distance, in slices, of each landmark from the sampled slice when
  a 2D patch is taken out of a 3D volume (landmark slice minus sampled slice); 0 for 3D patches and 2D images, NaN
  where ``keypoints`` is NaN. A landmark on another slice is *annotated but not here*: it keeps its in-plane
  coordinates and its offset, so that its target on this slice is the slice of its 3D Gaussian (about zero far
  from the landmark) and a peak on a slice without the landmark is penalised. Marking it NaN instead would make it
  indistinguishable from a landmark nobody annotated, which no loss may touch;
* ``has_mask``: ``(B,)`` bool, the case has a mask (some voxel is neither the ignore label nor padding);
* ``has_landmarks``: ``(B,)`` bool, the case has a landmark file.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from threadpoolctl import threadpool_limits

from nnunet_babloss.core.landmarks.geometry import ImageGeometry, PreprocessingMap, world_to_preprocessed_index
from nnunet_babloss.nnunet.keypoint_transforms import KEYPOINT_SLICE_OFFSETS_KEY

__all__ = ["LandmarkDataLoader", "preprocessed_keypoints"]


def preprocessed_keypoints(
    points_mm: np.ndarray, properties: Mapping, transpose_forward: list[int], preprocessed_shape: tuple[int, ...]
) -> np.ndarray:
    """Map world landmarks ``(K, D)`` of one case to its preprocessed voxel indices ``(K, 3)`` (NaN stays NaN)."""
    geometry = ImageGeometry.from_sitk_stuff(properties["sitk_stuff"])
    mapping = PreprocessingMap.from_nnunet(properties, transpose_forward, preprocessed_shape)
    return world_to_preprocessed_index(points_mm, geometry, mapping)


class LandmarkDataLoader(nnUNetDataLoader):
    """``nnUNetDataLoader`` that also delivers landmark keypoints and annotation flags.

    Args:
        *args, **kwargs: as for ``nnUNetDataLoader``.
        landmarks_world: case id -> ``(K, D)`` world points (NaN rows = absent) for cases with a landmark file.
        num_landmarks: ``K``.
        transpose_forward: the plans' ``transpose_forward``.
        ignore_label: the dataset's ignore label (``None`` if it has none).
        landmark_centred_probability: probability that a patch of a case *with landmarks* is centred on one of
            them even when the case also has a mask (landmark-only cases are always centred on a landmark).
        image_centred_patches: along axes where this loader's patch covers the image, centre the patch on the image
            (no landmark-centred crop, no random shift) whatever the case's annotations.
    """

    def __init__(
        self,
        *args,
        landmarks_world: Mapping[str, np.ndarray],
        num_landmarks: int,
        transpose_forward: list[int],
        ignore_label: int | None,
        landmark_centred_probability: float = 0.33,
        image_centred_patches: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.image_centred_patches = image_centred_patches
        self.landmarks_world = dict(landmarks_world)
        self.num_landmarks = num_landmarks
        self.transpose_forward = list(transpose_forward)
        self.ignore_label = ignore_label
        self.landmark_centred_probability = landmark_centred_probability
        self._has_mask_cache: dict[str, bool] = {}
        self._keypoints_cache: dict[str, np.ndarray] = {}

    def _annotated(self, seg: np.ndarray) -> bool:
        labels = seg[0]
        if self.ignore_label is None:
            return True
        return bool(np.any((labels != self.ignore_label) & (labels >= 0)))

    def _landmark_bbox(self, data_shape: tuple[int, ...], keypoints: np.ndarray) -> tuple[list[int], list[int]]:
        """A patch box whose centre lies near a randomly chosen present landmark (jittered by a quarter patch), moved
        inside the image where the image is larger than the patch."""
        present = np.flatnonzero(~np.isnan(keypoints).any(axis=1))
        chosen = keypoints[np.random.choice(present)]
        lower = []
        for axis, size in enumerate(self.patch_size):
            jitter = np.random.randint(-(size // 4), size // 4 + 1) if size > 1 else 0
            centre = int(round(chosen[axis])) + jitter
            centre = min(max(centre, 0), data_shape[axis] - 1)
            low = centre - size // 2
            if data_shape[axis] >= size:
                low = min(max(low, 0), data_shape[axis] - size)
            lower.append(low)
        return lower, [low + size for low, size in zip(lower, self.patch_size)]

    def _centre_covering_axes(self, data_shape: tuple[int, ...], lower: list[int]) -> tuple[list[int], list[int]]:
        """The box with every axis that the patch covers centred on the image (when ``image_centred_patches``)."""
        lower = list(lower)
        if self.image_centred_patches:
            for axis, size in enumerate(self.patch_size):
                if size >= data_shape[axis]:
                    lower[axis] = -((size - data_shape[axis]) // 2)
        return lower, [low + size for low, size in zip(lower, self.patch_size)]

    def generate_train_batch(self) -> dict:
        selected_keys = self.get_indices()
        images, targets, keypoints_all, slice_offsets_all, has_mask, has_landmarks = [], None, [], [], [], []
        with torch.no_grad(), threadpool_limits(limits=1, user_api=None):
            for sample_index, key in enumerate(selected_keys):
                force_fg = self.get_do_oversample(sample_index)
                data, seg, seg_prev, properties = self._data.load_case(key)
                shape = data.shape[1:]
                world = self.landmarks_world.get(key)
                keypoints = self.case_keypoints(key, properties, tuple(shape))
                case_has_landmarks = world is not None and not np.isnan(keypoints).all()
                case_has_mask = self._annotated_case(key, seg)
                if case_has_landmarks and (not case_has_mask or np.random.uniform() < self.landmark_centred_probability):
                    lower, upper = self._landmark_bbox(shape, keypoints)
                else:
                    lower, upper = self.get_bbox(shape, force_fg, properties["class_locations"])
                lower, upper = self._centre_covering_axes(tuple(shape), lower)
                bbox = [[low, high] for low, high in zip(lower, upper)]
                data_cropped = torch.from_numpy(crop_and_pad_nd(data, bbox, 0)).float()
                seg_cropped = torch.from_numpy(crop_and_pad_nd(seg, bbox, -1, cast_cropped_to=np.int16)).to(torch.int16)
                if seg_prev is not None:
                    seg_prev_cropped = crop_and_pad_nd(seg_prev, bbox, -1, cast_cropped_to=np.int16)
                    seg_cropped = torch.cat((seg_cropped, torch.from_numpy(seg_prev_cropped).to(torch.int16)[None]), dim=0)
                patch_keypoints = keypoints - np.asarray(lower, dtype=np.float64)
                slice_offsets = np.where(np.isnan(keypoints).any(axis=1), np.nan, 0.0)
                if self.patch_size_was_2d:
                    data_cropped, seg_cropped = data_cropped[:, 0], seg_cropped[:, 0]
                    # The patch is the slice ``lower[0]``: the first coordinate is each landmark's offset from it.
                    slice_offsets = patch_keypoints[:, 0].copy()
                    patch_keypoints = patch_keypoints[:, 1:]
                sample = {
                    "image": data_cropped,
                    "segmentation": seg_cropped,
                    "keypoints": torch.from_numpy(patch_keypoints.astype(np.float32)),
                    KEYPOINT_SLICE_OFFSETS_KEY: torch.from_numpy(slice_offsets.astype(np.float32)),
                }
                if self.transforms is not None:
                    sample = self.transforms(**sample)
                images.append(sample["image"])
                segmentation = sample["segmentation"]
                if targets is None:
                    targets = [[] for _ in segmentation] if isinstance(segmentation, list) else []
                if isinstance(segmentation, list):
                    for level, level_target in enumerate(segmentation):
                        targets[level].append(level_target)
                else:
                    targets.append(segmentation)
                keypoints_all.append(sample["keypoints"])
                slice_offsets_all.append(sample[KEYPOINT_SLICE_OFFSETS_KEY])
                has_mask.append(case_has_mask)
                has_landmarks.append(world is not None)
        stacked_targets = [torch.stack(level) for level in targets] if targets and isinstance(targets[0], list) else torch.stack(targets)
        return {
            "data": torch.stack(images),
            "target": stacked_targets,
            "keys": selected_keys,
            "keypoints": torch.stack(keypoints_all),
            "slice_offsets_vox": torch.stack(slice_offsets_all),
            "has_mask": torch.tensor(has_mask, dtype=torch.bool),
            "has_landmarks": torch.tensor(has_landmarks, dtype=torch.bool),
        }

    def case_keypoints(self, key: str, properties: Mapping, preprocessed_shape: tuple[int, ...]) -> np.ndarray:
        """Case ``key``'s landmarks as preprocessed voxel indices ``(K, 3)``, computed on first use and cached.

        Args:
            key: The case identifier (the cache key).
            properties: The case's nnU-Net properties (read only on the first call for ``key``).
            preprocessed_shape: Spatial shape of the case's preprocessed array (3 axes).

        Returns:
            A read-only ``(K, 3)`` float64 array; all NaN for a case without a landmark file, NaN rows for absent
            landmarks.
        """
        keypoints = self._keypoints_cache.get(key)
        if keypoints is None:
            world = self.landmarks_world.get(key)
            keypoints = (
                preprocessed_keypoints(world, properties, self.transpose_forward, preprocessed_shape)
                if world is not None
                else np.full((self.num_landmarks, 3), np.nan)
            )
            keypoints.setflags(write=False)  # shared by every later draw of the case
            self._keypoints_cache[key] = keypoints
        return keypoints

    def _annotated_case(self, key: str, seg: np.ndarray) -> bool:
        """Whether the case has a mask: any voxel that is neither the ignore label nor padding (cached per case)."""
        if key not in self._has_mask_cache:
            self._has_mask_cache[key] = self._annotated(np.asarray(seg[:1]))
        return self._has_mask_cache[key]

    def case_has_mask(self, key: str) -> bool:
        """Whether case ``key`` has a mask (reads its segmentation once; the answer is cached for training)."""
        if key not in self._has_mask_cache:
            self._annotated_case(key, self._data.load_case(key)[1])
        return self._has_mask_cache[key]
