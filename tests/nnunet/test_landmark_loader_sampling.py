"""Patch placement of the landmark loader: image-centred where the patch covers the image, inside the image
elsewhere (no nnU-Net run needed: the box logic is exercised on a loader shell)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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


# ---------------------------------------------------------------------------------------------------------------
# Keypoints are mapped once per case (issue 18, item 2): the cache changes nothing
# ---------------------------------------------------------------------------------------------------------------
class _Cases:
    """Preprocessed 2D cases with a rotated world frame, a crop and a resampling (every term of the mapping)."""

    identifiers = ["a", "b", "c"]

    def load_case(self, key: str):
        index = self.identifiers.index(key)
        cropped, preprocessed = [1, 30 + index, 26], [1, 40 + 2 * index, 33]
        angle = 0.3 + 0.1 * index
        direction = (np.cos(angle), -np.sin(angle), np.sin(angle), np.cos(angle))
        properties = {
            "sitk_stuff": {"spacing": (0.7, 0.9), "origin": (-3.0 + index, 5.0), "direction": direction},
            "spacing": [999.0, 0.9, 0.7],
            "shape_before_cropping": [1, 40 + index, 36],
            "bbox_used_for_cropping": [[0, 1], [4, 4 + cropped[1]], [5, 5 + cropped[2]]],
            "shape_after_cropping_and_before_resampling": cropped,
            "class_locations": {1: np.zeros((0, 4), dtype=np.int64)},
        }
        rng = np.random.default_rng(index)
        data = rng.normal(size=(1, *preprocessed)).astype(np.float32)
        seg = (rng.uniform(size=(1, *preprocessed)) > 0.5).astype(np.int16)
        return data, seg, None, properties


def _world_landmarks() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    landmarks = {key: rng.uniform(-5.0, 20.0, size=(4, 2)) for key in ("a", "b")}  # "c": no landmark file
    landmarks["b"][2] = np.nan  # absent landmark
    return landmarks


def _keypoint_loader(cls=LandmarkDataLoader) -> LandmarkDataLoader:
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    return cls(
        _Cases(), 4, (24, 24), (24, 24), LabelManager({"background": 0, "organ": 1}, regions_class_order=None),
        landmarks_world=_world_landmarks(), num_landmarks=4, transpose_forward=[0, 1, 2], ignore_label=None,
        landmark_centred_probability=0.5,
    )


class _UncachedLoader(LandmarkDataLoader):
    """The loader as it was: the world -> preprocessed mapping on every draw."""

    def case_keypoints(self, key, properties, preprocessed_shape):
        self._keypoints_cache.clear()
        return super().case_keypoints(key, properties, preprocessed_shape)


def test_cached_keypoints_are_the_mapped_keypoints_computed_once(monkeypatch) -> None:
    import nnunet_babloss.nnunet.landmark_loader as landmark_loader

    loader = _keypoint_loader()
    cases = _Cases()
    calls: list[int] = []
    mapping = landmark_loader.preprocessed_keypoints
    monkeypatch.setattr(landmark_loader, "preprocessed_keypoints", lambda *args: calls.append(1) or mapping(*args))
    for key in cases.identifiers:
        data, _, _, properties = cases.load_case(key)
        first = loader.case_keypoints(key, properties, tuple(data.shape[1:]))
        again = loader.case_keypoints(key, properties, tuple(data.shape[1:]))
        assert again is first and not first.flags.writeable
        if key in _world_landmarks():
            expected = mapping(_world_landmarks()[key], properties, [0, 1, 2], tuple(data.shape[1:]))
            np.testing.assert_array_equal(first, expected)  # bit-identical, NaN rows included
        else:
            assert first.shape == (4, 3) and np.isnan(first).all()
    assert len(calls) == 2  # once per case with a landmark file, however often it is drawn


def test_batches_are_identical_with_and_without_the_cache() -> None:
    cached, uncached = _keypoint_loader(), _keypoint_loader(_UncachedLoader)
    for draw in range(6):
        np.random.seed(draw)
        expected = uncached.generate_train_batch()
        np.random.seed(draw)
        got = cached.generate_train_batch()
        assert list(got["keys"]) == list(expected["keys"])
        for name in ("data", "target", "keypoints", "slice_offsets_vox", "has_mask", "has_landmarks"):
            assert torch.equal(torch.nan_to_num(got[name], nan=-1e9), torch.nan_to_num(expected[name], nan=-1e9)), name
    assert set(cached._keypoints_cache) == {"a", "b", "c"}
    assert not np.isnan(got["keypoints"].numpy()).all()  # the batches do carry landmarks
