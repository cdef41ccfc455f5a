"""Patch placement of the landmark loader: image-centred where the patch covers the image, inside the image
elsewhere (no nnU-Net run needed: the box logic is exercised on a loader shell)."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_babloss.nnunet.landmark_loader import LandmarkDataLoader


def _loader(patch_size, image_centred=True) -> LandmarkDataLoader:
    loader = object.__new__(LandmarkDataLoader)  # only the attributes the box logic reads
    loader.patch_size = tuple(patch_size)
    loader.image_centred_patches = image_centred
    return loader


@pytest.mark.parametrize("shape, patch, expected_lower", [
    ((1, 128, 100), (1, 150, 150), [0, -11, -25]),  # covering axes: centred (padding split, the odd voxel after)
    ((1, 129, 103), (1, 128, 112), [0, 7, -4]),     # rows not covered: the given lower bound is kept
])
def test_covering_axes_are_centred_on_the_image(shape, patch, expected_lower) -> None:
    lower, upper = _loader(patch)._centre_covering_axes(shape, [0, 7, 30])
    assert lower == expected_lower
    assert upper == [low + size for low, size in zip(expected_lower, patch)]
    for axis, size in enumerate(patch):
        if size >= shape[axis]:  # the image sits in the middle of the patch
            before, after = -lower[axis], upper[axis] - shape[axis]
            assert before >= 0 and after >= 0 and abs(before - after) <= 1


def test_centring_can_be_switched_off() -> None:
    assert _loader((1, 150, 150), image_centred=False)._centre_covering_axes((1, 128, 100), [0, 3, -7])[0] == [0, 3, -7]


def test_landmark_centred_boxes_stay_inside_a_larger_image() -> None:
    """A box centred (with jitter) on a landmark near the border is moved inside the image: no padding where the
    image has pixels to show."""
    np.random.seed(0)
    loader = _loader((1, 64, 64))
    keypoints = np.array([[0.0, 2.0, 3.0], [0.0, 250.0, 251.0]])
    for _ in range(200):
        lower, upper = loader._landmark_bbox((1, 256, 256), keypoints)
        assert 0 <= lower[1] and upper[1] <= 256 and 0 <= lower[2] and upper[2] <= 256
