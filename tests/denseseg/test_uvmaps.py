"""DenseSeg uv maps: mean shape, canonical frame, ground-truth uv fields and nearest-uv landmark read-out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnunet_babloss.core.landmarks.spec import LandmarkSpec
from nnunet_babloss.denseseg.uvmaps import (
    DenseSegTemplate,
    build_structure_template,
    canonical_frame,
    dense_uv_map,
    denseseg_structures,
    dilate_region,
    generalized_procrustes_mean,
    parse_uv_queries,
    polygon_mask,
    similarity_transform,
    simple_polygon_order,
    soft_match_uv,
    uv_at_points,
)

SPACING = (1.0, 0.8)  # anisotropic on purpose: mm and voxels differ


def _rotation(angle: float) -> np.ndarray:
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def _base_shape(count: int = 12) -> np.ndarray:
    """An egg-shaped contour (voxels of a 64 x 64 grid), in contour order."""
    angle = np.linspace(0, 2 * np.pi, count, endpoint=False)
    return np.stack((18 * np.sin(angle) + 2 * np.cos(2 * angle), 14 * np.cos(angle)), 1) + [32.0, 31.0]


def _training_shapes(seed: int = 0, count: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = []
    for _ in range(count):
        rotation = _rotation(rng.uniform(-0.2, 0.2))
        shape = rng.uniform(0.9, 1.1) * (_base_shape() - 32) @ rotation.T + 32 + rng.uniform(-3, 3, 2)
        shapes.append(shape + rng.normal(0, 0.5, shape.shape))
    return shapes


@pytest.fixture(scope="module")
def template():
    shapes_mm = [shape * np.asarray(SPACING) for shape in _training_shapes()]
    return build_structure_template("egg", 1, [f"p{i}" for i in range(12)], range(12), shapes_mm)


def test_similarity_transform_recovers_a_known_similarity_without_reflection() -> None:
    source = _base_shape()
    target = 1.7 * source @ _rotation(0.6).T + [3.0, -4.0]
    scale, rotation, translation = similarity_transform(source, target)
    assert scale == pytest.approx(1.7)
    np.testing.assert_allclose(rotation, _rotation(0.6), atol=1e-12)
    # A mirrored target is fitted with a proper rotation, never a reflection.
    _, rotation_mirrored, _ = similarity_transform(source, source * [1, -1])
    assert np.linalg.det(rotation_mirrored) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.ones((3, 2)), source[:3])


def test_procrustes_mean_of_similar_copies_is_the_shape_in_its_typical_pose() -> None:
    base = _base_shape()
    copies = [s * (base - 32) @ _rotation(a).T + 32 + t for s, a, t in ((1.0, 0.1, [1, 0]), (1.2, -0.1, [0, 2]), (0.8, 0.0, [-1, -2]))]
    mean = generalized_procrustes_mean(copies)
    scale, _, _ = similarity_transform(base, mean)
    aligned = _apply_similarity(base, mean)
    np.testing.assert_allclose(aligned, mean, atol=1e-8)  # same shape up to a similarity
    np.testing.assert_allclose(mean.mean(0), np.mean([c.mean(0) for c in copies], 0), atol=1e-8)  # typical position
    assert scale == pytest.approx(1.0, abs=0.05)  # mean size of the copies (RMS sizes 1.0, 1.2, 0.8)
    # Missing landmarks are allowed: the mean is still defined for every row.
    partial = [c.copy() for c in copies]
    partial[0][3] = np.nan
    assert np.isfinite(generalized_procrustes_mean(partial)).all()


def _apply_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    scale, rotation, translation = similarity_transform(source, target)
    return scale * source @ rotation.T + translation


def test_canonical_frame_fills_the_unit_square_isotropically(template) -> None:
    uv, origin, scale = canonical_frame(template.mean_shape_mm)
    assert uv.min() >= -1e-12 and uv.max() <= 1 + 1e-12
    extent = uv.max(0) - uv.min(0)
    assert extent.max() == pytest.approx(1.0)
    # Centred along the shorter side, and distances scale by one factor (isotropic).
    assert (uv.min(0) + uv.max(0))[np.argmin(extent)] == pytest.approx(1.0)
    mm_distance = np.linalg.norm(template.mean_shape_mm[0] - template.mean_shape_mm[5])
    assert np.linalg.norm(uv[0] - uv[5]) == pytest.approx(mm_distance / scale)


def test_landmarks_of_a_case_map_to_their_canonical_uv(template) -> None:
    rng = np.random.default_rng(1)
    case = _base_shape() @ _rotation(0.3).T * 0.9 + [5.0, -2.0] + rng.normal(0, 1.5, (12, 2))  # not a similarity copy
    np.testing.assert_allclose(uv_at_points(case, case, template, SPACING), template.canonical_uv, atol=1e-8)
    # With some landmarks missing, the present ones still land on their canonical uv.
    partial = case.copy()
    partial[[2, 7]] = np.nan
    present = [i for i in range(12) if i not in (2, 7)]
    np.testing.assert_allclose(uv_at_points(case[present], partial, template, SPACING), template.canonical_uv[present], atol=1e-8)


def test_round_trip_on_the_mean_shape_is_the_canonical_normalisation(template) -> None:
    mean_vox = template.mean_shape_mm / np.asarray(SPACING)
    uv = dense_uv_map(mean_vox, template, SPACING, (64, 64))
    rows, cols = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    expected = (np.stack((rows, cols), -1) * np.asarray(SPACING) - template.uv_origin_mm) / template.uv_scale_mm
    np.testing.assert_allclose(uv.permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_two_landmark_structure_is_fitted_by_the_similarity_alone() -> None:
    shapes = [np.array([[10.0, 5.0], [10.0, 25.0]]), np.array([[12.0, 4.0], [12.0, 30.0]])]
    bar = build_structure_template("bar", 2, ["l", "r"], [0, 1], shapes)
    assert bar.polygon_order == ()
    case = np.array([[20.0, 10.0], [22.0, 40.0]])
    np.testing.assert_allclose(uv_at_points(case, case, bar, (1.0, 1.0)), bar.canonical_uv, atol=1e-8)
    midpoint = uv_at_points(case.mean(0, keepdims=True), case, bar, (1.0, 1.0))
    np.testing.assert_allclose(midpoint[0], bar.canonical_uv.mean(0), atol=1e-8)


def test_soft_matching_recovers_landmarks_and_a_new_query_between_them(template) -> None:
    rng = np.random.default_rng(2)
    case = (_base_shape() - 32) @ _rotation(-0.2).T * 1.1 + 32 + rng.normal(0, 1.0, (12, 2))
    uv = dense_uv_map(case, template, SPACING, (64, 64))
    region = polygon_mask(case, (64, 64))
    region = dilate_region(region, (2, 2))  # landmarks lie on the polygon's border
    found, distance = soft_match_uv(uv, region, torch.as_tensor(template.canonical_uv, dtype=torch.float32))
    assert np.abs(found.numpy() - case).max() < 0.5  # sub-voxel
    assert float(distance.max()) < 0.05
    # A landmark defined after training: the canonical uv halfway between landmarks 0 and 1.
    query = torch.as_tensor(template.canonical_uv[[0, 1]].mean(0, keepdims=True), dtype=torch.float32)
    found_query, _ = soft_match_uv(uv, region, query)
    truth = _locate_uv(case, template, query.numpy()[0])
    assert np.linalg.norm(found_query.numpy()[0] - truth) < 0.5
    # ... which lies between the two landmarks, not on either.
    assert np.linalg.norm(truth - case[0]) > 2 and np.linalg.norm(truth - case[1]) > 2
    empty, _ = soft_match_uv(uv, torch.zeros(64, 64, dtype=torch.bool), query)
    assert torch.isnan(empty).all()


def _locate_uv(case: np.ndarray, template, target_uv: np.ndarray) -> np.ndarray:
    """Where the continuous ground-truth field equals ``target_uv`` (Newton steps on the field)."""
    point = case[[0, 1]].mean(0)
    for _ in range(20):
        value = uv_at_points(point[None], case, template, SPACING)[0]
        step = 1e-4
        jacobian = np.stack(
            [(uv_at_points((point + step * np.eye(2)[axis])[None], case, template, SPACING)[0] - value) / step for axis in range(2)], 1
        )
        point = point - np.linalg.solve(jacobian, value - target_uv)
    return point


def test_polygon_mask_and_polygon_order() -> None:
    square = np.array([[2.0, 2.0], [2.0, 7.0], [7.0, 7.0], [7.0, 2.0]])
    mask = polygon_mask(square, (10, 10))
    assert int(mask.sum()) == 25  # rows 2..6 x cols 3..7 (see nnunet_babloss.core.rasterise for the convention)
    assert simple_polygon_order(square) == (0, 1, 2, 3)
    bow_tie = square[[0, 2, 1, 3]]
    order = simple_polygon_order(bow_tie)
    assert order and order != (0, 1, 2, 3)
    assert int(polygon_mask(bow_tie[list(order)], (10, 10)).sum()) == 25
    assert simple_polygon_order(square[:2]) == ()


def test_structures_come_from_single_label_bridges() -> None:
    labels = {"background": 0, "disc": 1, "bar": 2, "ignore": 3}
    names = ["a", "b", "c", "d", "e"]
    bridge = {"a": ["bar"], "b": ["bar"], "c": ["disc"], "d": ["disc"], "e": ["disc", "bar"]}
    assert denseseg_structures(LandmarkSpec(names=tuple(names), bridge=bridge), labels) == [("disc", 1, (2, 3)), ("bar", 2, (0, 1))]
    with pytest.raises(ValueError, match="bridge each landmark"):
        denseseg_structures(LandmarkSpec(names=tuple(names)), labels)
    with pytest.raises(ValueError, match="needs >= 2 landmarks"):
        denseseg_structures(LandmarkSpec(names=tuple(names), bridge={"a": ["bar"]}), labels)


def test_uv_queries_are_validated_and_accept_trained_names(template) -> None:
    full = DenseSegTemplate(structures=(template,), spacing_mm=SPACING)
    parsed = parse_uv_queries({"egg": {"new": [0.5, 0.25], "again": "p3"}}, full)
    names, uv = parsed["egg"]
    assert names == ("new", "again")
    np.testing.assert_allclose(uv, [[0.5, 0.25], template.canonical_uv[3]])
    with pytest.raises(ValueError, match="no DenseSeg structure"):
        parse_uv_queries({"lung": {"x": [0.1, 0.1]}}, full)
    with pytest.raises(ValueError, match=r"must be \[u, v\]"):
        parse_uv_queries({"egg": {"x": [0.1]}}, full)
    with pytest.raises(ValueError, match="not a trained landmark"):
        parse_uv_queries({"egg": {"x": "p99"}}, full)


def test_template_survives_json(template) -> None:
    full = DenseSegTemplate(structures=(template,), spacing_mm=SPACING, match_k=3)
    again = DenseSegTemplate.from_json(full.to_json())
    assert again.match_k == 3 and again.structures[0].landmark_names == template.landmark_names
    np.testing.assert_array_equal(again.structures[0].canonical_uv, template.canonical_uv)
