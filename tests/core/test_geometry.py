"""Specs for nnunet_babloss.core.landmarks.geometry: world ↔ voxel ↔ preprocessed index maps."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from nnunet_babloss.core.landmarks.geometry import (
    ImageGeometry,
    PreprocessingMap,
    contains_index,
    nnunet_index_from_world,
    preprocessed_index_to_world,
    world_from_nnunet_index,
    world_to_preprocessed_index,
)

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------------------------------------------
# strategies
# ----------------------------------------------------------------------------------------------------------------
def _rotation(dimension: int, angles_rad: tuple[float, float, float]) -> np.ndarray:
    """A proper rotation: one angle in 2D, z-y-x Euler angles in 3D."""
    a, b, c = angles_rad
    if dimension == 2:
        return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    rot_z = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rot_y = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rot_x = np.array([[1, 0, 0], [0, np.cos(c), -np.sin(c)], [0, np.sin(c), np.cos(c)]])
    return rot_z @ rot_y @ rot_x


@st.composite
def geometries(draw: st.DrawFn, dimension: int | None = None) -> ImageGeometry:
    """Anisotropic spacing; direction = rotation · axis permutation · flips (orthonormal, det ±1)."""
    dimension = draw(st.sampled_from([2, 3])) if dimension is None else dimension
    spacing = draw(st.lists(st.floats(0.1, 5.0), min_size=dimension, max_size=dimension))
    origin = draw(st.lists(st.floats(-500.0, 500.0), min_size=dimension, max_size=dimension))
    angles = tuple(draw(st.lists(st.floats(-np.pi, np.pi), min_size=3, max_size=3)))
    permutation = draw(st.permutations(range(dimension)))
    flips = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=dimension, max_size=dimension))
    direction = _rotation(dimension, angles) @ np.eye(dimension)[:, permutation] @ np.diag(flips)
    # Entries like sin(1e-311) are subnormal: ITK's inverse turns them into NaN (a falsifying example in CI), and no
    # image header stores them. Snap them to 0; the matrix stays orthonormal to 1e-12.
    direction[np.abs(direction) < 1e-12] = 0.0
    return ImageGeometry(tuple(spacing), tuple(origin), tuple(direction.ravel()))


def _points(draw: st.DrawFn, dimension: int, low: float, high: float, max_rows: int = 6) -> np.ndarray:
    rows = draw(st.integers(1, max_rows))
    values = draw(st.lists(st.floats(low, high), min_size=rows * dimension, max_size=rows * dimension))
    return np.reshape(values, (rows, dimension))


def _sitk_image(geometry: ImageGeometry) -> sitk.Image:
    image = sitk.Image([2] * geometry.dimension, sitk.sitkUInt8)
    image.SetSpacing(geometry.spacing_mm)
    image.SetOrigin(geometry.origin_mm)
    image.SetDirection(geometry.direction)
    return image


# ----------------------------------------------------------------------------------------------------------------
# ImageGeometry
# ----------------------------------------------------------------------------------------------------------------
@given(data=st.data())
@FAST
def test_index_world_round_trips(data: st.DataObject) -> None:
    geometry = data.draw(geometries())
    index = _points(data.draw, geometry.dimension, -50.0, 300.0)
    world = geometry.index_to_world(index)
    assert world.shape == index.shape and world.dtype == np.float64
    np.testing.assert_allclose(geometry.world_to_index(world), index, rtol=0, atol=1e-8)
    np.testing.assert_allclose(geometry.index_to_world(geometry.world_to_index(world)), world, rtol=0, atol=1e-8)


@given(data=st.data())
@FAST
def test_agrees_with_simpleitk(data: st.DataObject) -> None:
    # ITK takes/returns its continuous index in (x, y, z) order: the reverse of our array order.
    geometry = data.draw(geometries())
    image = _sitk_image(geometry)
    assert ImageGeometry.from_sitk(image) == geometry
    index = _points(data.draw, geometry.dimension, -20.0, 200.0)
    expected_world = np.array([image.TransformContinuousIndexToPhysicalPoint(row[::-1].tolist()) for row in index])
    np.testing.assert_allclose(geometry.index_to_world(index), expected_world, rtol=0, atol=1e-8)
    expected_index = np.array(
        [image.TransformPhysicalPointToContinuousIndex(point.tolist())[::-1] for point in expected_world]
    )
    np.testing.assert_allclose(geometry.world_to_index(expected_world), expected_index, rtol=0, atol=1e-8)


@given(data=st.data())
@FAST
def test_one_voxel_step_is_one_spacing(data: st.DataObject) -> None:
    # A unit step along array axis k moves the world point by spacing_mm_array_order[k] mm, whatever the rotation.
    geometry = data.draw(geometries())
    steps = np.vstack([np.zeros(geometry.dimension), np.eye(geometry.dimension)])
    world = geometry.index_to_world(steps)
    np.testing.assert_allclose(world[0], geometry.origin_mm, atol=1e-12)
    np.testing.assert_allclose(
        np.linalg.norm(world[1:] - world[0], axis=1), geometry.spacing_mm_array_order, rtol=1e-12
    )


@pytest.mark.parametrize("dimension", [2, 3])
def test_hand_derived_axis_aligned_example(dimension: int) -> None:
    # Identity direction, spacing (x, y, z) = (0.5, 2, 3), origin (10, 20, 30):
    # array index (z, y, x) = (1, 2, 4) is world (10 + 4*0.5, 20 + 2*2, 30 + 1*3) = (12, 24, 33).
    spacing, origin = (0.5, 2.0, 3.0)[:dimension], (10.0, 20.0, 30.0)[:dimension]
    geometry = ImageGeometry(spacing, origin, tuple(np.eye(dimension).ravel()))
    index = np.array([[1.0, 2.0, 4.0][-dimension:]])
    expected = np.array([[12.0, 24.0, 33.0][:dimension]])
    np.testing.assert_allclose(geometry.index_to_world(index), expected)
    np.testing.assert_allclose(geometry.world_to_index(expected), index)


def test_flip_and_permutation_hand_example() -> None:
    # direction columns: ITK index axis i -> world -y, j -> +x (a 90° turn with a flip in 2D).
    # idx (y, x) = (3, 1) -> idx_xyz (1, 3) -> world = origin + 1*2*(0, -1) + 3*5*(1, 0) = (15, -2).
    geometry = ImageGeometry((2.0, 5.0), (0.0, 0.0), (0.0, 1.0, -1.0, 0.0))
    np.testing.assert_allclose(geometry.index_to_world([[3.0, 1.0]]), [[15.0, -2.0]])
    np.testing.assert_allclose(geometry.world_to_index([[15.0, -2.0]]), [[3.0, 1.0]])


@pytest.mark.parametrize("dimension", [2, 3])
def test_nan_rows_pass_through(dimension: int) -> None:
    geometry = ImageGeometry.identity((1.0, 2.0, 3.0)[:dimension])
    points = np.ones((3, dimension))
    points[1] = np.nan
    points[2, 0] = np.nan  # a partly-NaN row is an absent landmark too: the whole row becomes NaN
    for mapped in (geometry.world_to_index(points), geometry.index_to_world(points)):
        assert np.isfinite(mapped[0]).all()
        assert np.isnan(mapped[1:]).all()


def test_inputs_are_not_modified() -> None:
    geometry = ImageGeometry.identity((1.0, 2.0, 3.0))
    points = np.array([[1.0, 2.0, 3.0], [np.nan, 5.0, 6.0]])
    before = points.copy()
    geometry.world_to_index(points)
    geometry.index_to_world(points)
    np.testing.assert_array_equal(points, before)


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (np.zeros(3), r"shape \(N, 3\).*points\[None\]"),
        (np.zeros((2, 2)), r"shape \(N, 3\)"),
        (np.array([[0.0, np.inf, 0.0]]), "finite or NaN"),
        ([[0.0, "x", 0.0]], "array of numbers"),
        ([[0.0, 0.0, 0.0], [1.0]], "array of numbers"),
    ],
)
def test_bad_points_raise(points: np.ndarray, message: str) -> None:
    geometry = ImageGeometry.identity((1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=message):
        geometry.world_to_index(points)
    with pytest.raises(ValueError, match=message):
        geometry.index_to_world(points)


@pytest.mark.parametrize(
    ("spacing", "origin", "direction", "message"),
    [
        ((1.0, 1.0, 1.0, 1.0), (0.0,) * 4, tuple(np.eye(4).ravel()), "2 or 3 entries"),
        ((1.0, 0.0, 1.0), (0.0,) * 3, tuple(np.eye(3).ravel()), "> 0"),
        ((1.0, 1.0, 1.0), (0.0,) * 2, tuple(np.eye(3).ravel()), "origin_mm must have 3"),
        ((1.0, 1.0, 1.0), (0.0,) * 3, tuple(np.eye(2).ravel()), "direction must have 3x3=9"),
        ((1.0, 1.0, 1.0), (0.0,) * 3, (1, 0, 0, 1, 0, 0, 0, 0, 1), "invertible"),
        ((1.0, np.nan, 1.0), (0.0,) * 3, tuple(np.eye(3).ravel()), "finite"),
        ((1.0, 1.0, 1.0), ("a", 0, 0), tuple(np.eye(3).ravel()), "numbers"),
    ],
)
def test_invalid_geometry_raises(spacing: tuple, origin: tuple, direction: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ImageGeometry(spacing, origin, direction)


def test_geometry_is_frozen_and_normalised() -> None:
    geometry = ImageGeometry(np.array([1, 2, 3]), [0, 0, 0], np.eye(3))  # type: ignore[arg-type]
    assert geometry.spacing_mm == (1.0, 2.0, 3.0) and all(type(v) is float for v in geometry.spacing_mm)
    assert geometry.direction == tuple(np.eye(3).ravel())
    assert geometry == ImageGeometry.identity((1.0, 2.0, 3.0))
    with pytest.raises(AttributeError):
        geometry.spacing_mm = (1.0, 1.0, 1.0)  # type: ignore[misc]


@pytest.mark.parametrize("dimension", [2, 3])
def test_from_sitk_stuff_matches_from_sitk(dimension: int) -> None:
    # nnU-Net's SimpleITKIO stores image.GetSpacing()/GetOrigin()/GetDirection() as they are (2 axes for 2D).
    direction = _rotation(dimension, (0.3, -0.2, 0.1)) @ np.diag([1.0] * (dimension - 1) + [-1.0])
    geometry = ImageGeometry((0.7, 1.3, 2.5)[:dimension], (5.0, -3.0, 8.0)[:dimension], tuple(direction.ravel()))
    image = _sitk_image(geometry)
    sitk_stuff = {"spacing": image.GetSpacing(), "origin": image.GetOrigin(), "direction": image.GetDirection()}
    assert ImageGeometry.from_sitk_stuff(sitk_stuff) == ImageGeometry.from_sitk(image)
    assert ImageGeometry.from_sitk_stuff(sitk_stuff).dimension == dimension


def test_from_sitk_stuff_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"not the whole properties dict"):
        ImageGeometry.from_sitk_stuff({"sitk_stuff": {}, "spacing": [1, 1, 1]})
    with pytest.raises(ValueError, match=r"missing key\(s\) \['direction'\]"):
        ImageGeometry.from_sitk_stuff({"spacing": (1.0, 1.0), "origin": (0.0, 0.0)})
    with pytest.raises(ValueError, match="mapping"):
        ImageGeometry.from_sitk_stuff([1, 2, 3])  # type: ignore[arg-type]


def test_contains_index_uses_voxel_extents() -> None:
    # Shape 4 covers [-0.5, 3.5): -0.5 is inside, 3.5 is outside (its nearest voxel centre would be 4).
    index = np.array([[-0.5, 0.0], [3.49, 0.0], [3.5, 0.0], [-0.51, 0.0], [np.nan, np.nan], [0.0, 1.6]])
    np.testing.assert_array_equal(contains_index(index, (4, 2)), [True, True, False, False, False, False])
    with pytest.raises(ValueError, match="positive sizes"):
        contains_index(index, (4, 0))
    with pytest.raises(ValueError, match="integers"):
        contains_index(index, (4, 2.5))


@given(data=st.data())
@FAST
def test_contains_matches_nearest_voxel_rule(data: st.DataObject) -> None:
    geometry = data.draw(geometries())
    shape = tuple(data.draw(st.lists(st.integers(1, 9), min_size=geometry.dimension, max_size=geometry.dimension)))
    index = _points(data.draw, geometry.dimension, -3.0, 12.0)
    nearest = np.floor(index + 0.5)
    expected = ((nearest >= 0) & (nearest <= np.asarray(shape) - 1)).all(axis=1)
    inside = geometry.contains(geometry.index_to_world(index), shape)
    # Points within float noise of a voxel edge may fall either way after the world round trip.
    on_edge = (np.abs(index + 0.5 - np.round(index + 0.5)) < 1e-9).any(axis=1)
    np.testing.assert_array_equal(inside[~on_edge], expected[~on_edge])


# ----------------------------------------------------------------------------------------------------------------
# PreprocessingMap
# ----------------------------------------------------------------------------------------------------------------
def test_preprocessing_hand_derived_example() -> None:
    # One axis: crop starting at 2, cropped shape 10 resampled to 20: p = (t - 2 + 0.5) * 2 - 0.5.
    #   t = 2  -> p = 0.5;   t = 11 -> p = 18.5;   voxel edges t = 1.5 / 11.5 -> p = -0.5 / 19.5 (edges to edges).
    mapping = PreprocessingMap((0, 1, 2), ((2, 12), (0, 5), (1, 4)), (10, 5, 3), (20, 5, 3))
    raw = np.array([[2.0, 0.0, 1.0], [11.0, 4.0, 3.0], [1.5, -0.5, 0.5], [11.5, 4.5, 3.5]])
    expected = np.array([[0.5, 0.0, 0.0], [18.5, 4.0, 2.0], [-0.5, -0.5, -0.5], [19.5, 4.5, 2.5]])
    np.testing.assert_allclose(mapping.raw_to_preprocessed(raw), expected)
    np.testing.assert_allclose(mapping.preprocessed_to_raw(expected), raw)


def test_preprocessing_transposed_hand_example() -> None:
    # transpose_forward (2, 0, 1): transposed axis 0 is raw x, 1 is raw z, 2 is raw y. No crop, no resampling,
    # so raw (z, y, x) = (1, 2, 3) becomes (x, z, y) = (3, 1, 2).
    mapping = PreprocessingMap((2, 0, 1), ((0, 6), (0, 4), (0, 5)), (6, 4, 5), (6, 4, 5))
    np.testing.assert_allclose(mapping.raw_to_preprocessed([[1.0, 2.0, 3.0]]), [[3.0, 1.0, 2.0]])
    np.testing.assert_allclose(mapping.preprocessed_to_raw([[3.0, 1.0, 2.0]]), [[1.0, 2.0, 3.0]])
    assert mapping.transpose_backward == (1, 2, 0)


@st.composite
def preprocessing_maps(draw: st.DrawFn) -> PreprocessingMap:
    dimension = 3
    transpose = tuple(draw(st.permutations(range(dimension))))
    lows = draw(st.lists(st.integers(0, 30), min_size=dimension, max_size=dimension))
    cropped = draw(st.lists(st.integers(1, 200), min_size=dimension, max_size=dimension))
    preprocessed = draw(st.lists(st.integers(1, 400), min_size=dimension, max_size=dimension))
    margins = draw(st.lists(st.integers(0, 30), min_size=dimension, max_size=dimension))
    return PreprocessingMap(
        transpose_forward=transpose,
        bbox=tuple((low, low + size) for low, size in zip(lows, cropped)),
        cropped_shape=tuple(cropped),
        preprocessed_shape=tuple(preprocessed),
        shape_before_cropping=tuple(low + size + margin for low, size, margin in zip(lows, cropped, margins)),
    )


@given(mapping=preprocessing_maps(), data=st.data())
@FAST
def test_preprocessing_round_trip(mapping: PreprocessingMap, data: st.DataObject) -> None:
    raw = _points(data.draw, 3, -10.0, 250.0)
    np.testing.assert_allclose(mapping.preprocessed_to_raw(mapping.raw_to_preprocessed(raw)), raw, atol=1e-9)
    preprocessed = _points(data.draw, 3, -10.0, 450.0)
    np.testing.assert_allclose(
        mapping.raw_to_preprocessed(mapping.preprocessed_to_raw(preprocessed)), preprocessed, atol=1e-9
    )


@given(mapping=preprocessing_maps())
@FAST
def test_crop_box_edges_map_to_preprocessed_edges(mapping: PreprocessingMap) -> None:
    # Half-pixel convention: the outer voxel edges of the crop box (lo - 0.5, hi - 0.5 per transposed axis) land on
    # the outer edges of the preprocessed array (-0.5, S_pre - 0.5).
    transposed_low = np.array([low for low, _ in mapping.bbox]) - 0.5
    transposed_high = np.array([high for _, high in mapping.bbox]) - 0.5
    raw_corners = np.vstack([transposed_low, transposed_high])[:, list(mapping.transpose_backward)]
    expected = np.vstack([np.full(3, -0.5), np.asarray(mapping.preprocessed_shape) - 0.5])
    np.testing.assert_allclose(mapping.raw_to_preprocessed(raw_corners), expected, atol=1e-9)


def test_from_nnunet_reads_pickled_properties() -> None:
    # What DefaultPreprocessor.run_case_npy writes: lists / numpy ints, all in transposed axis order.
    properties = {
        "spacing": [3.0, 1.0, 1.0],
        "shape_before_cropping": (30, 40, 50),
        "bbox_used_for_cropping": [[np.int64(2), np.int64(28)], [0, 40], [5, 45]],
        "shape_after_cropping_and_before_resampling": (26, 40, 40),
        "sitk_stuff": {"spacing": (1.0, 1.0, 3.0), "origin": (0.0, 0.0, 0.0), "direction": tuple(np.eye(3).ravel())},
    }
    mapping = PreprocessingMap.from_nnunet(properties, [0, 1, 2], (52, 40, 40))
    assert mapping.bbox == ((2, 28), (0, 40), (5, 45))
    assert mapping.shape_before_cropping == (30, 40, 50)
    np.testing.assert_allclose(mapping.scale, [2.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"bbox_used_for_cropping"):
        PreprocessingMap.from_nnunet({"shape_after_cropping_and_before_resampling": (1, 1, 1)}, [0, 1, 2], (1, 1, 1))
    with pytest.raises(ValueError, match=r"drop the channel axis"):
        PreprocessingMap.from_nnunet(properties, [0, 1, 2], (1, 52, 40, 40))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"transpose_forward": (0, 0, 1)}, "permutation"),
        ({"bbox": ((0, 4), (0, 4))}, r"3 \(lo, hi\) pairs"),
        ({"bbox": ((0, 5), (0, 4), (0, 4))}, r"hi - lo == cropped_shape\[0\] = 4"),
        ({"bbox": ((-1, 3), (0, 4), (0, 4))}, "0 <= lo"),
        ({"cropped_shape": (4, 4)}, "3 spatial sizes"),
        ({"preprocessed_shape": (0, 4, 4)}, "positive sizes"),
        ({"shape_before_cropping": (3, 4, 4)}, "contain bbox"),
        ({"bbox": ((0.5, 4.5), (0, 4), (0, 4))}, "integers"),
    ],
)
def test_invalid_preprocessing_map_raises(kwargs: dict, message: str) -> None:
    arguments = {
        "transpose_forward": (0, 1, 2),
        "bbox": ((0, 4), (0, 4), (0, 4)),
        "cropped_shape": (4, 4, 4),
        "preprocessed_shape": (8, 8, 8),
        "shape_before_cropping": (4, 4, 4),
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        PreprocessingMap(**arguments)


def test_preprocessing_nan_rows_pass_through() -> None:
    mapping = PreprocessingMap((2, 0, 1), ((1, 5), (0, 4), (2, 6)), (4, 4, 4), (8, 3, 5))
    points = np.array([[1.0, 2.0, 3.0], [np.nan] * 3, [np.nan, 2.0, 3.0]])
    for mapped in (mapping.raw_to_preprocessed(points), mapping.preprocessed_to_raw(points)):
        assert np.isfinite(mapped[0]).all() and np.isnan(mapped[1:]).all()


# ----------------------------------------------------------------------------------------------------------------
# 2D dummy axis and the full world <-> preprocessed chain
# ----------------------------------------------------------------------------------------------------------------
def test_2d_dummy_axis_is_prepended_and_removed() -> None:
    geometry = ImageGeometry((0.7, 1.4), (10.0, -5.0), (1.0, 0.0, 0.0, 1.0))
    # world (10 + 3*0.7, -5 + 2*1.4) is array index (y, x) = (2, 3), i.e. nnU-Net index (0, 2, 3).
    world = np.array([[10.0 + 3 * 0.7, -5.0 + 2 * 1.4], [np.nan, np.nan]])
    index = nnunet_index_from_world(geometry, world)
    np.testing.assert_allclose(index[0], [0.0, 2.0, 3.0])
    assert np.isnan(index[1]).all()
    np.testing.assert_allclose(world_from_nnunet_index(geometry, index), world)
    with pytest.raises(ValueError, match="dummy-axis index 2 outside the single slice"):
        world_from_nnunet_index(geometry, [[2.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        world_from_nnunet_index(geometry, [[1.0, 1.0]])


@given(geometry=geometries(dimension=3), data=st.data())
@FAST
def test_3d_nnunet_index_is_the_plain_index(geometry: ImageGeometry, data: st.DataObject) -> None:
    world = geometry.index_to_world(_points(data.draw, 3, -5.0, 60.0))
    np.testing.assert_array_equal(nnunet_index_from_world(geometry, world), geometry.world_to_index(world))


@given(data=st.data())
@FAST
def test_world_preprocessed_round_trip(data: st.DataObject) -> None:
    geometry = data.draw(geometries())
    mapping = data.draw(preprocessing_maps())
    if geometry.dimension == 2:  # nnU-Net never transposes or resamples the dummy axis of a 2D image
        mapping = PreprocessingMap(
            (0, 1, 2),
            ((0, 1), *mapping.bbox[1:]),
            (1, *mapping.cropped_shape[1:]),
            (1, *mapping.preprocessed_shape[1:]),
        )
    world = geometry.index_to_world(_points(data.draw, geometry.dimension, -5.0, 150.0))
    preprocessed = world_to_preprocessed_index(world, geometry, mapping)
    assert preprocessed.shape == (len(world), 3)
    np.testing.assert_allclose(preprocessed_index_to_world(preprocessed, geometry, mapping), world, atol=1e-7)


# ----------------------------------------------------------------------------------------------------------------
# real data: TotalSegmentator example CT (direction diag(-1, -1, 1))
# ----------------------------------------------------------------------------------------------------------------
VERTEBRAE_TOP_DOWN = ("vertebrae_T11", "vertebrae_T12", "vertebrae_L1", "vertebrae_L2")


@pytest.fixture(scope="module")
def totalseg(shared_data: Path) -> tuple[sitk.Image, dict[str, int]]:
    folder = shared_data / "totalseg_ct"
    if not (folder / "example_seg.nii.gz").is_file():
        pytest.skip(f"{folder / 'example_seg.nii.gz'} not found")
    labels = json.loads((folder / "labels.json").read_text())["labels"]
    return sitk.ReadImage(str(folder / "example_seg.nii.gz")), {name: int(value) for value, name in labels.items()}


def test_real_ct_vertebra_centroids_match_simpleitk(totalseg: tuple[sitk.Image, dict[str, int]]) -> None:
    image, label_of = totalseg
    geometry = ImageGeometry.from_sitk(image)
    assert geometry.direction != tuple(np.eye(3).ravel())  # the point of this test: a non-identity direction
    segmentation = sitk.GetArrayFromImage(image)
    index = np.array(
        ndimage.center_of_mass(np.ones_like(segmentation), segmentation, [label_of[n] for n in VERTEBRAE_TOP_DOWN])
    )
    world = geometry.index_to_world(index)
    expected = np.array([image.TransformContinuousIndexToPhysicalPoint(row[::-1].tolist()) for row in index])
    np.testing.assert_allclose(world, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(geometry.world_to_index(world), index, rtol=0, atol=1e-9)
    # Anatomy as a check of axis order and scale: LPS z points superior, so T11 > T12 > L1 > L2 in world z, and
    # consecutive thoracolumbar vertebral bodies are 20-45 mm apart (measured 32.7-34.3 mm here).
    assert np.all(np.diff(world[:, 2]) < 0)
    gaps_mm = np.linalg.norm(np.diff(world, axis=0), axis=1)
    assert np.all((gaps_mm > 20.0) & (gaps_mm < 45.0)), gaps_mm
    assert geometry.contains(world, segmentation.shape).all()


def test_real_ct_every_corner_matches_simpleitk(totalseg: tuple[sitk.Image, dict[str, int]]) -> None:
    image, _ = totalseg
    geometry = ImageGeometry.from_sitk(image)
    size_xyz = image.GetSize()
    corners_xyz = np.array(list(itertools.product(*[(-0.5, s - 0.5) for s in size_xyz])))
    expected = np.array([image.TransformContinuousIndexToPhysicalPoint(c.tolist()) for c in corners_xyz])
    np.testing.assert_allclose(geometry.index_to_world(corners_xyz[:, ::-1]), expected, rtol=0, atol=1e-6)
