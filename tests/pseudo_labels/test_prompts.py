"""Prompt geometry: boxes hold the landmarks with their margin, line prompts lie on/beyond the segment, fills."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnunet_babloss.core.metrics import dice
from pseudo_labels.prompts import (
    Prompt,
    PromptSettings,
    PromptStrategy,
    build_prompt,
    contour_mask,
    fill_polygon,
    landmark_box,
    line_pairs,
    line_points,
    mask_box,
    parse_strategy,
    plan_slices,
    project_to_plane,
    prompt_roi,
    shift_prompt,
)

coordinate = st.floats(min_value=5.0, max_value=90.0, allow_nan=False)
spacing_value = st.floats(min_value=0.3, max_value=3.0, allow_nan=False)


@st.composite
def landmark_arrays(draw: st.DrawFn, min_size: int = 2, max_size: int = 12) -> np.ndarray:
    count = draw(st.integers(min_size, max_size))
    return np.array([[draw(coordinate), draw(coordinate)] for _ in range(count)])


@settings(max_examples=60, deadline=None)
@given(landmark_arrays(min_size=1), spacing_value, spacing_value, st.floats(0.0, 20.0))
def test_box_holds_every_landmark_with_exactly_the_margin(
    points: np.ndarray, row_spacing: float, col_spacing: float, margin_mm: float
) -> None:
    box = landmark_box(points, (row_spacing, col_spacing), margin_mm)
    margin_vox = np.array([margin_mm / row_spacing, margin_mm / col_spacing])
    # Every landmark is at least the margin inside the box ...
    assert np.all(points - box[:2] >= margin_vox - 1e-9) and np.all(box[2:] - points >= margin_vox - 1e-9)
    # ... and the box is tight: the extreme landmarks sit exactly at the margin.
    np.testing.assert_allclose(points.min(axis=0) - box[:2], margin_vox, atol=1e-9)
    np.testing.assert_allclose(box[2:] - points.max(axis=0), margin_vox, atol=1e-9)


def test_box_is_clipped_to_the_image_and_ignores_absent_landmarks() -> None:
    points = np.array([[1.0, 2.0], [np.nan, np.nan], [10.0, 30.0]])
    box = landmark_box(points, (1.0, 1.0), 5.0, shape=(12, 40))
    # Unclipped it would be (-4, -3, 15, 35); the image's voxel centres span [0, 11] x [0, 39].
    np.testing.assert_allclose(box, [0.0, 0.0, 11.0, 35.0])
    with pytest.raises(ValueError, match="at least one present landmark"):
        landmark_box(np.full((2, 2), np.nan), (1.0, 1.0), 0.0)


@settings(max_examples=60, deadline=None)
@given(landmark_arrays(min_size=2, max_size=2), spacing_value, spacing_value, st.floats(0.5, 15.0))
def test_line_prompt_foreground_on_segment_background_beyond_each_landmark(
    pair: np.ndarray, row_spacing: float, col_spacing: float, offset_mm: float
) -> None:
    spacing = np.array([row_spacing, col_spacing])
    start, end = pair
    if np.linalg.norm((end - start) * spacing) < 1e-3:
        return
    fractions = (0.2, 0.5, 0.8)
    points, labels = line_points(
        pair, spacing, pairs=[(0, 1)], foreground_fractions=fractions, background_offset_mm=offset_mm
    )
    assert labels.tolist() == [1, 1, 1, 0, 0]
    length_mm = np.linalg.norm((end - start) * spacing)
    for point, label in zip(points, labels):
        to_start_mm = np.linalg.norm((point - start) * spacing)
        to_end_mm = np.linalg.norm((point - end) * spacing)
        if label == 1:
            # On the segment: the two distances add up to its length.
            assert to_start_mm + to_end_mm == pytest.approx(length_mm, rel=1e-9, abs=1e-9)
        else:
            # On the extension: offset_mm beyond its nearest landmark, so offset_mm + length from the other one.
            near, far = sorted((to_start_mm, to_end_mm))
            assert near == pytest.approx(offset_mm, rel=1e-9)
            assert far == pytest.approx(offset_mm + length_mm, rel=1e-9)
    np.testing.assert_allclose(points[:3], start + np.array(fractions)[:, None] * (end - start))


def test_line_pairs_are_opposite_landmarks_spread_evenly() -> None:
    assert line_pairs(2, 4) == ((0, 1),)
    assert line_pairs(6, 4) == ((0, 3), (1, 4), (2, 5))
    # K = 44 (SCR right lung): half = 22, starts linspace(0, 21, 4) rounded = 0, 7, 14, 21.
    assert line_pairs(44, 4) == ((0, 22), (7, 29), (14, 36), (21, 43))
    assert line_pairs(1, 4) == ()


def test_points_outside_the_image_are_dropped() -> None:
    pair = np.array([[1.0, 5.0], [8.0, 5.0]])
    points, labels = line_points(
        pair, (1.0, 1.0), pairs=[(0, 1)], foreground_fractions=(0.5,), background_offset_mm=3.0, shape=(10, 10)
    )
    # Background points at rows -2 (outside [-0.5, 9.5)) and 11 (outside): only the foreground point remains.
    assert labels.tolist() == [1] and points.tolist() == [[4.5, 5.0]]


@pytest.mark.parametrize("strategy", ["box", "points", "line", "mixed"])
def test_build_prompt_strategies(strategy: str) -> None:
    square = np.array([[10.0, 10.0], [10.0, 30.0], [30.0, 30.0], [30.0, 10.0]])
    prompt = build_prompt(strategy, square, (1.0, 1.0), PromptSettings(box_margin_mm=2.0), (64, 64))
    assert (prompt.box_vox is not None) == (strategy in ("box", "mixed"))
    assert (prompt.num_foreground > 0) == (strategy != "box")
    assert (np.any(prompt.point_labels == 0)) == (strategy in ("line", "mixed"))
    # Foreground points of the diagonals (0, 2) and (1, 3) all lie inside the square.
    foreground = prompt.points_vox[prompt.point_labels == 1]
    assert np.all((foreground > 10.0) & (foreground < 30.0))
    with pytest.raises(ValueError, match="without a model"):
        build_prompt("contour", square, (1.0, 1.0), PromptSettings(), (64, 64))


def test_fill_polygon_rectangle_and_orientation() -> None:
    rectangle = np.array([[2.5, 3.5], [2.5, 9.5], [7.5, 9.5], [7.5, 3.5]])
    mask = fill_polygon(rectangle, (12, 14))
    # Pixel centres strictly inside rows 2.5..7.5 and cols 3.5..9.5: rows 3..7, cols 4..9 -> 5 x 6 = 30.
    assert mask.sum() == 30 and mask[3:8, 4:10].all()
    np.testing.assert_array_equal(fill_polygon(rectangle[::-1], (12, 14)), mask)
    assert not fill_polygon(rectangle[:2], (12, 14)).any()


def test_fill_polygon_area_of_a_disc() -> None:
    angles = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    circle = np.stack([50 + 30 * np.sin(angles), 50 + 30 * np.cos(angles)], axis=1)
    # Area of a disc of radius 30: pi * 900 = 2827.4; the 200-gon is 0.02 % smaller; pixel counting adds ~0.5 %.
    assert fill_polygon(circle, (100, 100)).sum() == pytest.approx(np.pi * 900, rel=0.01)


def test_contour_fill_matches_the_real_scr_masks(jsrt_fixture: Path) -> None:
    from pseudo_label_helpers import JSRT_ORGANS, jsrt_landmarks_vox, jsrt_mask

    scores = []
    for landmark_file in sorted((jsrt_fixture / "landmarks").glob("*.json")):
        landmark_json = json.loads(landmark_file.read_text())
        for group in JSRT_ORGANS:
            mask = contour_mask(jsrt_landmarks_vox(landmark_json, group), (256, 256))
            scores.append(dice(mask, jsrt_mask(jsrt_fixture, landmark_json["id"], group)))
    assert len(scores) == 40
    assert min(scores) >= 0.95, sorted(scores)[:5]


def test_contour_mask_3d_fills_slices_with_three_or_more_landmarks() -> None:
    square = np.array([[4.0, 4.0], [4.0, 12.0], [12.0, 12.0], [12.0, 4.0]])
    on_slice_2 = np.column_stack([np.full(4, 2.2), square])
    on_slice_5 = np.column_stack([np.full(2, 5.0), square[:2]])  # only 2: no polygon
    mask = contour_mask(np.concatenate([on_slice_2, on_slice_5]), (8, 16, 16), slice_axis=0)
    assert mask[2].sum() == fill_polygon(square, (16, 16)).sum() > 0
    assert mask.sum() == mask[2].sum()


def test_plan_slices_extent_and_seed() -> None:
    points = np.array([[2.4, 1.0, 1.0], [6.6, 1.0, 1.0], [3.0, 1.0, 1.0], [np.nan] * 3])
    slices, seed = plan_slices(points, (10, 4, 4), slice_axis=0)
    # Rounded extent 2..7; median of (2.4, 3.0, 6.6) = 3.0 -> seed 3.
    assert slices == (2, 3, 4, 5, 6, 7) and seed == 3
    slices, _ = plan_slices(points, (10, 4, 4), slice_axis=0, margin_slices=3)
    assert slices == tuple(range(0, 10))
    np.testing.assert_array_equal(project_to_plane(points[:1], 0), [[1.0, 1.0]])


def test_mask_box_and_roi() -> None:
    mask = np.zeros((50, 60), bool)
    mask[10:20, 30:45] = True
    np.testing.assert_allclose(mask_box(mask, 2.0), [8, 28, 21, 46])
    assert mask_box(np.zeros((5, 5), bool)) is None
    prompt = Prompt(np.zeros((0, 2)), np.zeros(0, np.int64), np.array([10.0, 30.0, 19.0, 44.0]))
    (row0, col0), (row1, col1) = prompt_roi(prompt, (50, 60), roi_scale=2.0, min_size_vox=8)
    # Longest extent 14 -> side 28, centred on (14.5, 37), shifted left to fit the 60 columns.
    assert (row1 - row0, col1 - col0) == (28, 28)
    assert row0 <= 10 and row1 > 19 and col0 <= 30 and col1 > 44 and col1 <= 60
    shifted = shift_prompt(prompt, (row0, col0))
    np.testing.assert_allclose(shifted.box_vox, prompt.box_vox - [row0, col0, row0, col0])


def test_invalid_inputs_raise_with_the_rule() -> None:
    with pytest.raises(ValueError, match="unknown prompt strategy 'boxes'"):
        parse_strategy("boxes")
    assert parse_strategy(" Box ") is PromptStrategy.BOX
    with pytest.raises(ValueError, match="box_margin_mm"):
        PromptSettings(box_margin_mm=-1.0)
    with pytest.raises(ValueError, match="foreground_fractions"):
        PromptSettings(foreground_fractions=(0.0, 0.5))
    with pytest.raises(ValueError, match="roi_scale"):
        PromptSettings(roi_scale=0.5)
    with pytest.raises(ValueError, match="slice_mode"):
        PromptSettings(slice_mode="all")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="point labels"):
        Prompt(np.zeros((2, 2)), np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="min <= max"):
        Prompt(np.zeros((0, 2)), np.zeros(0, np.int64), np.array([5.0, 0.0, 1.0, 1.0]))
