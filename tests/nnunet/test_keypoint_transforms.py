"""Keypoints through nnU-Net's real training augmentation: the analytic map must agree with warped heatmaps.

The reference is independent of our formulas: a Gaussian heatmap per keypoint goes through nnU-Net's own
resampling as ``regression_target`` (bilinear ``grid_sample``), and its centre is measured afterwards (centroid of
a level set, see ``_level_set_centroids``). A second, exact check compares the map with the sampling grid itself.
"""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
from batchgeneratorsv2.transforms.spatial.rot90 import Rot90Transform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.pseudo2d import Convert2DTo3DTransform, Convert3DTo2DTransform
from batchgeneratorsv2.transforms.utils.random import RandomTransform
from hypothesis import given, settings
from hypothesis import strategies as st
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_babloss.core.heatmaps import decode_heatmaps, render_gaussian_heatmaps
from nnunet_babloss.nnunet.keypoint_transforms import (
    KEYPOINTS_FIRST_AXIS_KEY,
    KeypointConvert2DTo3DTransform,
    KeypointConvert3DTo2DTransform,
    KeypointMirrorTransform,
    KeypointPassthrough,
    KeypointSpatialTransform,
    crop_or_resample_keypoints,
    make_keypoint_aware,
    mirror_keypoints,
)

# nnunet.md measured <= 0.01 voxel between the analytic map and the centre of a bilinearly warped Gaussian.
HEATMAP_TOLERANCE_VOX = 0.05
# Landmarks 0 and 1 are a left/right pair, 2 and 3 are unpaired.
PAIRS = (1, 0, 2, 3)


def _nodes(transform: BasicTransform) -> Iterator[BasicTransform]:
    yield transform
    for attr in ("transforms", "list_of_transforms"):
        for child in getattr(transform, attr, ()):
            yield from _nodes(child)
    if isinstance(getattr(transform, "transform", None), BasicTransform):
        yield from _nodes(transform.transform)


def _only(transform: BasicTransform, cls: type) -> BasicTransform:
    found = [node for node in _nodes(transform) if type(node) is cls]
    assert len(found) == 1, f"expected one {cls.__name__}, found {len(found)}"
    return found[0]


def _training_pipeline(
    patch_size: tuple[int, ...], dummy_2d: bool, ds_scales: list | None = None, **kwargs: object
) -> tuple[BasicTransform, tuple[int, ...]]:
    """nnU-Net's training pipeline with its own rotation range, and the loader's (initial) input shape."""
    if len(patch_size) == 2 or dummy_2d:
        rotation = (-np.pi, np.pi)
    else:
        rotation = (-np.pi / 6, np.pi / 6)
    mirror_axes = tuple(range(len(patch_size)))
    pipeline = nnUNetTrainer.get_training_transforms(
        patch_size, rotation, ds_scales, mirror_axes, dummy_2d, **kwargs
    )
    spatial = patch_size[1:] if dummy_2d else patch_size
    initial = [int(s) for s in get_patch_size(spatial, rotation, rotation, rotation, (0.85, 1.25))]
    if dummy_2d:
        initial = [patch_size[0], *initial]
    # odd sizes exercise floor(centre) on the crop-only path (axis 0 of pseudo-2D is not cropped: keep it)
    odd = [s + 1 if s % 2 == 0 and not (dummy_2d and axis == 0) else s for axis, s in enumerate(initial)]
    return pipeline, tuple(odd)


def _sample(
    shape: tuple[int, ...], keypoints: torch.Tensor, sigma_vox: tuple[float, ...], seg_channels: int = 1
) -> dict:
    generator = torch.Generator().manual_seed(0)
    heatmaps = render_gaussian_heatmaps(keypoints[None], shape, sigma_vox)[0]
    return {
        "image": torch.randn((1, *shape), generator=generator),
        "segmentation": torch.randint(0, 3, (seg_channels, *shape), generator=generator).to(torch.int16),
        "regression_target": heatmaps,
        "keypoints": keypoints.clone(),
    }


def _random_keypoints(
    rng: np.random.Generator, shape: tuple[int, ...], margin_vox: float | tuple[float, ...], count: int
) -> torch.Tensor:
    low = np.broadcast_to(np.asarray(margin_vox, dtype=float), (len(shape),))
    high = np.array(shape, dtype=float) - 1 - low
    return torch.from_numpy(rng.uniform(low, high, size=(count, len(shape)))).float()


def _level_set_centroids(heatmaps: torch.Tensor, relative_level: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Centroid of each channel above ``relative_level`` x its maximum, and whether that set is whole.

    A warped isotropic Gaussian stays radially symmetric about its true centre, so are its level sets: their
    centroid is unbiased wherever the set does not touch the patch border (the returned mask). Decoding the
    log-parabola through the 3 samples at the peak (``decode_heatmaps``) is not: bilinear interpolation flattens
    the peak, which biased it by 0.1-0.2 voxel here.

    Returns:
        ``(K, D)`` centroids and a ``(K,)`` mask of channels whose level set is whole and whose peak is > 0.5.
    """
    dimension = heatmaps.ndim - 1
    values = heatmaps.double()
    peak = values.flatten(1).amax(dim=1)
    weights = torch.where(values > relative_level * peak.view(-1, *[1] * dimension), values, 0.0)
    centroids = []
    touches_border = torch.zeros(heatmaps.shape[0], dtype=torch.bool)
    for axis in range(dimension):
        along = weights.sum(dim=[a + 1 for a in range(dimension) if a != axis])  # (K, S_axis)
        position = torch.arange(along.shape[1], dtype=torch.float64)
        centroids.append((along * position).sum(dim=1) / along.sum(dim=1))
        touches_border |= (along[:, 0] > 0) | (along[:, -1] > 0)
    return torch.stack(centroids, dim=1), (peak > 0.5) & ~touches_border


# (patch size, dummy 2D, heatmap sigma in voxels (anisotropic for the pseudo-2D case), draws, deep supervision).
# Larger sigmas are sampled more finely, so the discretisation error of the reference centroid shrinks with
# sigma (measured: 0.02-0.03 voxel at sigma 1.5, 0.001 at 3.5); the analytic map itself agrees with the
# sampling grid to float32 precision (test_resampling_map_sends_grid_sample_points_to_their_output_voxels).
CONFIGS = {
    "2d": ((48, 48), False, (3.0, 3.0), 40, [[1.0, 1.0], [0.5, 0.5], [0.25, 0.25]]),
    "3d": ((28, 36, 32), False, (1.5, 1.5, 1.5), 15, None),
    "3d_dummy_2d_anisotropic": ((8, 40, 36), True, (0.7, 3.0, 3.0), 15, [[1.0, 1.0, 1.0], [1.0, 0.5, 0.5]]),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_keypoints_follow_warped_heatmaps_through_nnunet_pipeline(name: str) -> None:
    patch_size, dummy_2d, sigma_vox, draws, ds_scales = CONFIGS[name]
    pipeline, input_shape = _training_pipeline(patch_size, dummy_2d, ds_scales)
    aware = make_keypoint_aware(pipeline, PAIRS, lateral_axes=(len(patch_size) - 1,), permute_regression_target=True)
    spatial = _only(aware, KeypointSpatialTransform)
    spatial.p_rotation = 1.0  # on the converted copy: rotation and scaling on every draw
    spatial.p_scaling = 1.0
    rng = np.random.default_rng(1)
    np.random.seed(1)
    torch.manual_seed(1)
    errors: list[float] = []
    for _ in range(draws):
        # inside the central patch-sized box, so that many stay inside the patch, and >= 4 sigma from the input
        # border (the whole Gaussian lies in the input); axis 0 of the pseudo-2D case is not resampled and only
        # needs its level set at 1e-3 (3.7 sigma = 2.6 voxels) off the border: 3 voxels margin
        margin_vox = tuple(
            3.0 if dummy_2d and axis == 0 else max(4 * sigma, (size - patch) / 2)
            for axis, (sigma, size, patch) in enumerate(zip(sigma_vox, input_shape, patch_size))
        )
        keypoints = _random_keypoints(rng, input_shape, margin_vox, len(PAIRS))
        out = aware(**_sample(input_shape, keypoints, sigma_vox))
        assert out["image"].shape[1:] == patch_size
        assert out["keypoints"].shape == keypoints.shape and out["keypoints"].dtype == keypoints.dtype
        assert KEYPOINTS_FIRST_AXIS_KEY not in out
        # channel k's centre sits at keypoint k (also after a left/right swap of both)
        centroids, whole = _level_set_centroids(out["regression_target"], 1e-3)
        errors.extend((centroids[whole] - out["keypoints"][whole].double()).abs().amax(dim=1).tolist())
    assert len(errors) >= draws, f"too few heatmaps stayed inside the patch ({len(errors)})"
    assert max(errors) < HEATMAP_TOLERANCE_VOX, (
        f"max |heatmap centre - keypoint| = {max(errors):.4f} voxel over {len(errors)} heatmaps"
    )


@pytest.mark.parametrize("dimension", [2, 3])
@pytest.mark.parametrize("align_corners", [False, True])
def test_resampling_map_sends_grid_sample_points_to_their_output_voxels(dimension: int, align_corners: bool) -> None:
    patch_size = (20, 24) if dimension == 2 else (12, 16, 14)
    input_shape = (31, 36) if dimension == 2 else (19, 25, 22)
    transform = make_keypoint_aware(
        SpatialTransform(
            patch_size,
            patch_center_dist_from_border=[p / 2 for p in patch_size],
            random_crop=True,
            p_rotation=1,
            rotation=(-np.pi, np.pi),
            p_scaling=1,
            scaling=(0.7, 1.4),
            align_corners=align_corners,
        ),
        None,
        (),
    )
    np.random.seed(2)
    size = torch.tensor(input_shape, dtype=torch.float64)
    voxels = torch.stack(torch.meshgrid(*[torch.arange(p) for p in patch_size], indexing="ij"), -1).double()
    for _ in range(10):
        params = transform.get_parameters(image=torch.zeros((1, *input_shape)))
        normalized = params["grid"].flip(-1).double()  # grid_sample lists axes as (x, y[, z]): back to array order
        # grid_sample's un-normalisation (torch docs): ((n + 1) S - 1) / 2, or (n + 1) (S - 1) / 2 with align_corners
        sampled = (normalized + 1) * (size - 1) / 2 if align_corners else ((normalized + 1) * size - 1) / 2
        mapped = transform._apply_to_keypoints(sampled.reshape(-1, dimension), **params)
        # the grid is float32: 1e-4 voxel is ~1e-6 relative on coordinates of size ~40
        assert torch.allclose(mapped, voxels.reshape(-1, dimension), atol=1e-4, rtol=0)


@pytest.mark.parametrize("dimension", [2, 3])
def test_crop_only_path_is_an_exact_integer_shift(dimension: int) -> None:
    patch_size = (48, 48) if dimension == 2 else (24, 32, 28)
    pipeline, input_shape = _training_pipeline(patch_size, False)
    aware = make_keypoint_aware(pipeline, None, ())
    spatial = _only(aware, KeypointSpatialTransform)
    spatial.p_rotation = spatial.p_scaling = 0.0
    _only(aware, KeypointMirrorTransform).allowed_axes = ()
    rng = np.random.default_rng(3)
    keypoints = _random_keypoints(rng, input_shape, 2.0, 3)
    out = aware(**_sample(input_shape, keypoints, (1.5,) * dimension))
    # nnU-Net centres the patch at S / 2 and crops from floor(S / 2) - P // 2; S odd, e.g. 81 -> 40 - 24 = 16
    start = torch.tensor([s // 2 - p // 2 for s, p in zip(input_shape, patch_size)], dtype=torch.float32)
    assert torch.equal(out["keypoints"], keypoints - start)
    decoded, _ = decode_heatmaps(out["regression_target"][None])
    inside = ((out["keypoints"] >= 1) & (out["keypoints"] <= torch.tensor(patch_size) - 2)).all(dim=1)
    assert torch.allclose(decoded[0][inside], out["keypoints"][inside], atol=1e-3)


def _flipped_axes(before: torch.Tensor, after: torch.Tensor) -> tuple[int, ...]:
    """Which spatial axes a mirror flipped, read from an image of distinct values."""
    dimension = before.ndim - 1
    for count in range(dimension + 1):
        for axes in itertools.combinations(range(dimension), count):
            if torch.equal(torch.flip(before, [a + 1 for a in axes]) if axes else before, after):
                return axes
    raise AssertionError("the image was not a flip of the input")


@pytest.mark.parametrize(
    ("shape", "lateral_axes"),
    [((9, 12), (1,)), ((9, 12), (0, 1)), ((5, 7, 8), (2,)), ((5, 7, 8), ())],
)
def test_mirror_swaps_pairs_exactly_when_an_odd_number_of_lateral_axes_flip(
    shape: tuple[int, ...], lateral_axes: tuple[int, ...]
) -> None:
    dimension = len(shape)
    mirror = make_keypoint_aware(MirrorTransform(tuple(range(dimension))), PAIRS, lateral_axes)
    image = torch.arange(float(np.prod(shape))).reshape(1, *shape)
    keypoints = _random_keypoints(np.random.default_rng(4), shape, 0.0, len(PAIRS))
    keypoints[3] = float("nan")
    torch.manual_seed(4)
    seen: set[tuple[int, ...]] = set()
    for _ in range(64):
        out = mirror(image=image.clone(), keypoints=keypoints.clone())
        axes = _flipped_axes(image, out["image"])
        seen.add(axes)
        expected = keypoints.clone()
        for a in axes:
            expected[:, a] = shape[a] - 1 - expected[:, a]
        if len(set(axes) & set(lateral_axes)) % 2 == 1:
            expected = expected[list(PAIRS)]
        torch.testing.assert_close(out["keypoints"], expected, equal_nan=True, atol=0, rtol=0)
    assert len(seen) == 2**dimension, f"not every flip combination was drawn: {sorted(seen)}"


def test_mirror_keeps_the_left_landmark_on_its_side() -> None:
    # width 50 along the lateral axis 1: "left" at x=10 and "right" at x=40; after a flip the image content at
    # x=40 moves to 49 - 40 = 9, and that point is now the patient's left, so row 0 must read x=9.
    keypoints = torch.tensor([[20.0, 10.0], [22.0, 40.0]])
    flipped = mirror_keypoints(keypoints, (1,), (30, 50), pair_permutation=(1, 0), lateral_axes=(1,))
    assert flipped.tolist() == [[22.0, 9.0], [20.0, 39.0]]
    # a flip along axis 0 (size 30) keeps sides: 29 - 20 = 9 and 29 - 22 = 7, rows unchanged
    not_lateral = mirror_keypoints(keypoints, (0,), (30, 50), pair_permutation=(1, 0), lateral_axes=(1,))
    assert not_lateral.tolist() == [[9.0, 10.0], [7.0, 40.0]]


@settings(max_examples=50, deadline=None)
@given(
    axes=st.sets(st.integers(0, 2)),
    lateral=st.sets(st.integers(0, 2)),
    seed=st.integers(0, 2**16),
)
def test_mirroring_twice_is_the_identity(axes: set[int], lateral: set[int], seed: int) -> None:
    keypoints = _random_keypoints(np.random.default_rng(seed), (6, 9, 11), 0.0, 4)
    keypoints[2] = float("nan")
    once = mirror_keypoints(keypoints, tuple(axes), (6, 9, 11), PAIRS, tuple(lateral))
    twice = mirror_keypoints(once, tuple(axes), (6, 9, 11), PAIRS, tuple(lateral))
    torch.testing.assert_close(twice, keypoints, equal_nan=True)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_transform_of_the_pipeline_keeps_keypoints_and_nan_rows(name: str) -> None:
    patch_size, dummy_2d, _, _, ds_scales = CONFIGS[name]
    pipeline, input_shape = _training_pipeline(patch_size, dummy_2d, ds_scales)
    aware = make_keypoint_aware(pipeline, PAIRS, (len(patch_size) - 1,))
    for node in _nodes(aware):  # on the converted copy: every transform runs on every draw
        if isinstance(node, RandomTransform):
            node.apply_probability = 1.0
    spatial = _only(aware, KeypointSpatialTransform)
    spatial.p_rotation = spatial.p_scaling = 1.0
    keypoints = _random_keypoints(np.random.default_rng(5), input_shape, 0.0, len(PAIRS))
    keypoints[1] = float("nan")
    sample = _sample(input_shape, keypoints, (1.0,) * len(patch_size))
    del sample["regression_target"]
    torch.manual_seed(5)
    np.random.seed(5)
    for _ in range(2):
        out = aware(**{key: value.clone() for key, value in sample.items()})
        assert out["keypoints"] is not None and out["keypoints"].shape == keypoints.shape
        nan_rows = torch.isnan(out["keypoints"]).all(dim=1)
        # row 1 (absent) is NaN; after a pair swap it is row 0 instead
        assert int(nan_rows.sum()) == 1 and bool(nan_rows[:2].any())
        assert bool(torch.isfinite(out["keypoints"][~nan_rows]).all())


def test_validation_and_cascade_region_pipelines_pass_keypoints_through() -> None:
    keypoints = torch.tensor([[3.5, 4.25], [float("nan"), float("nan")]])
    validation = make_keypoint_aware(
        nnUNetTrainer.get_validation_transforms([[1.0, 1.0], [0.5, 0.5]], regions=[[1, 2], [2]]), None, ()
    )
    out = validation(image=torch.rand(1, 16, 16), segmentation=torch.randint(0, 3, (1, 16, 16)), keypoints=keypoints)
    torch.testing.assert_close(out["keypoints"], keypoints, equal_nan=True, atol=0, rtol=0)
    pipeline, input_shape = _training_pipeline(
        (16, 16), False, None, use_mask_for_norm=[True], is_cascaded=True, foreground_labels=[1, 2],
        regions=[[1, 2], [2]], ignore_label=None,
    )
    aware = make_keypoint_aware(pipeline, None, ())
    sample = _sample(input_shape, _random_keypoints(np.random.default_rng(6), input_shape, 0.0, 2), (1.0, 1.0), 2)
    out = aware(**sample)
    assert out["keypoints"].shape == (2, 2) and bool(torch.isfinite(out["keypoints"]).all())


def test_conversion_copies_without_touching_the_original_and_pickles() -> None:
    pipeline, _ = _training_pipeline((8, 40, 36), True, [[1.0, 1.0, 1.0]])
    before = repr(pipeline)
    aware = make_keypoint_aware(pipeline, PAIRS, (2,))
    assert repr(pipeline) == before
    assert {type(node) for node in _nodes(pipeline)} & {KeypointSpatialTransform, KeypointMirrorTransform} == set()
    original_ids = {id(node) for node in _nodes(pipeline)}
    assert original_ids.isdisjoint(id(node) for node in _nodes(aware))
    for cls in (KeypointConvert3DTo2DTransform, KeypointSpatialTransform, KeypointConvert2DTo3DTransform):
        _only(aware, cls)
    spatial = _only(aware, KeypointSpatialTransform)
    assert spatial.patch_size == _only(pipeline, SpatialTransform).patch_size
    assert spatial.rotation == _only(pipeline, SpatialTransform).rotation
    restored = pickle.loads(pickle.dumps(aware))
    assert _only(restored, KeypointMirrorTransform).pair_permutation == PAIRS
    assert isinstance(make_keypoint_aware(aware, None, ()), ComposeTransforms)  # converting twice is fine


class _ShiftImage(BasicTransform):
    """A transform unknown to the converter; its default ``apply`` overwrites keypoints with None."""

    def _apply_to_image(self, img: torch.Tensor, **params: object) -> torch.Tensor:
        return img + 1


class _MySpatial(SpatialTransform):
    pass


def test_unknown_or_unsupported_transforms_are_refused_or_explicitly_passed_through() -> None:
    with pytest.raises(NotImplementedError, match="Rot90Transform"):
        make_keypoint_aware(ComposeTransforms([Rot90Transform(1, allowed_axes={0, 1})]), None, ())
    with pytest.raises(NotImplementedError, match="_MySpatial"):
        make_keypoint_aware(_MySpatial((8, 8), 0, False), None, ())
    with pytest.raises(ValueError, match="_ShiftImage"):
        make_keypoint_aware(ComposeTransforms([_ShiftImage()]), None, ())
    keypoints = torch.tensor([[1.0, 2.0]])
    assert _ShiftImage()(image=torch.zeros(1, 4, 4), keypoints=keypoints)["keypoints"] is None  # the hazard
    wrapped = make_keypoint_aware(ComposeTransforms([_ShiftImage()]), None, (), passthrough_types=(_ShiftImage,))
    assert isinstance(wrapped.transforms[0], KeypointPassthrough)
    out = wrapped(image=torch.zeros(1, 4, 4), keypoints=keypoints)
    assert torch.equal(out["keypoints"], keypoints) and float(out["image"].max()) == 1.0


def test_elastic_deformation_with_keypoints_raises() -> None:
    transform = make_keypoint_aware(SpatialTransform((8, 8), 0, False, p_elastic_deform=1.0), None, ())
    with pytest.raises(NotImplementedError, match="elastic"):
        transform(image=torch.zeros(1, 12, 12), keypoints=torch.tensor([[5.0, 5.0]]))
    absent = torch.full((2, 2), float("nan"))
    assert bool(torch.isnan(transform(image=torch.zeros(1, 12, 12), keypoints=absent)["keypoints"]).all())


def test_invalid_inputs_are_rejected_with_named_fields() -> None:
    spatial = make_keypoint_aware(SpatialTransform((8, 8), 0, False), None, ())
    with pytest.raises(ValueError, match=r"shape \(K, 2\)"):
        spatial(image=torch.zeros(1, 12, 12), keypoints=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="all finite or all NaN"):
        spatial(image=torch.zeros(1, 12, 12), keypoints=torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="own inverse"):
        make_keypoint_aware(MirrorTransform((0,)), (1, 2, 0), (0,))
    with pytest.raises(ValueError, match="lateral_axes"):
        make_keypoint_aware(MirrorTransform((0,)), None, (-1,))
    with pytest.raises(ValueError, match="3 rows"):
        mirror_keypoints(torch.zeros(3, 2), (1,), (4, 4), (1, 0), (1,))
    with pytest.raises(ValueError, match="invertible"):
        crop_or_resample_keypoints(
            torch.zeros(1, 2), spatial_shape=(4, 4), patch_size=(4, 4), center_vox=(2, 2), affine=np.zeros((2, 2))
        )
    to_3d = KeypointConvert2DTo3DTransform()
    with pytest.raises(ValueError, match=KEYPOINTS_FIRST_AXIS_KEY):
        to_3d(image=torch.zeros(4, 5, 5), nchannels_img=1, keypoints=torch.zeros(1, 2))


def test_pseudo_2d_round_trip_restores_the_first_coordinate() -> None:
    keypoints = torch.tensor([[1.25, 2.0, 3.0], [float("nan")] * 3])
    to_2d = make_keypoint_aware(Convert3DTo2DTransform(), None, ())
    folded = to_2d(image=torch.zeros(2, 4, 5, 6), keypoints=keypoints.clone())
    assert folded["image"].shape == (8, 5, 6)
    torch.testing.assert_close(folded["keypoints"], keypoints[:, 1:], equal_nan=True)
    restored = make_keypoint_aware(Convert2DTo3DTransform(), None, ())(**folded)
    assert restored["image"].shape == (2, 4, 5, 6) and KEYPOINTS_FIRST_AXIS_KEY not in restored
    torch.testing.assert_close(restored["keypoints"], keypoints, equal_nan=True, atol=0, rtol=0)
