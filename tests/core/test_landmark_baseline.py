"""The mean-training-shape baseline: plain and similarity-aligned means, and predictions scored like a model's."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from nnunet_babloss.core.evaluation import evaluate_folders
from nnunet_babloss.core.landmarks.baseline import (
    PROVENANCE_FILE,
    mean_training_shape,
    similarity_aligned_mean_shape,
    write_mean_shape_predictions,
)
from nnunet_babloss.core.landmarks.io import LandmarkSet, read_landmarks, write_landmarks
from nnunet_babloss.core.landmarks.spec import LandmarkSpec

NAN2 = [np.nan, np.nan]


def rotation(angle: float, dimension: int) -> np.ndarray:
    """Rotation by ``angle`` rad in the x-y plane (about z in 3D)."""
    cos, sin = math.cos(angle), math.sin(angle)
    matrix = np.eye(dimension)
    matrix[:2, :2] = [[cos, -sin], [sin, cos]]
    return matrix


def similarity(shape: np.ndarray, scale: float, turn: np.ndarray, shift: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """``shape`` scaled and turned about ``centre``, then shifted."""
    return scale * (shape - centre) @ turn.T + centre + shift


def skull(dimension: int) -> np.ndarray:
    """Six landmarks of an irregular shape (no symmetry that would make a pose ambiguous)."""
    points = np.array([[0.0, 0.0, 1.0], [40.0, 5.0, -2.0], [55.0, 30.0, 4.0], [20.0, 60.0, 0.0],
                       [-10.0, 35.0, 3.0], [12.0, 22.0, -5.0]])
    return points[:, :dimension] + 100.0


# ------------------------------------------------------------------------------------------ mean_training_shape
def test_mean_of_three_shapes_is_the_per_landmark_mean() -> None:
    shapes = [np.array([[0.0, 0.0], [10.0, 0.0]]), np.array([[2.0, 0.0], [12.0, 3.0]]),
              np.array([[1.0, 3.0], [11.0, -3.0]])]
    # landmark 0: x (0 + 2 + 1) / 3 = 1, y (0 + 0 + 3) / 3 = 1; landmark 1: x 33 / 3 = 11, y 0 / 3 = 0
    np.testing.assert_allclose(mean_training_shape(shapes), [[1.0, 1.0], [11.0, 0.0]])


def test_absent_landmarks_are_left_out_and_never_annotated_ones_stay_nan() -> None:
    shapes = [np.array([[0.0, 0.0, 0.0], [np.nan] * 3, [np.nan] * 3]),
              np.array([[4.0, 2.0, 6.0], [1.0, 1.0, 1.0], [np.nan] * 3]),
              np.array([[2.0, 4.0, 0.0], [3.0, 5.0, 7.0], [np.nan] * 3])]
    with np.errstate(all="raise"):  # no "mean of empty slice" warning either
        mean = mean_training_shape(shapes)
    np.testing.assert_allclose(mean[:2], [[2.0, 2.0, 2.0], [2.0, 3.0, 4.0]])  # landmark 1: mean of two cases only
    assert np.isnan(mean[2]).all()


@pytest.mark.parametrize(
    ("shapes", "match"),
    [
        ([], "at least one"),
        ([np.zeros((2, 2)), np.zeros((3, 2))], r"shapes\[1\] has shape"),
        ([np.zeros((2, 4))], r"\(K, 2\) or \(K, 3\)"),
        ([np.array([[0.0, np.inf]])], "infinite"),
        ([np.array([[0.0, np.nan]])], "partly NaN"),
    ],
)
def test_invalid_shapes_are_refused_with_the_reason(shapes: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        mean_training_shape(shapes)


# -------------------------------------------------------------------------------------- similarity_aligned_mean_shape
@pytest.mark.parametrize("dimension", [2, 3])
def test_similarity_copies_posed_symmetrically_give_the_shape_back(dimension: int) -> None:
    shape = skull(dimension)
    centre = shape.mean(axis=0)
    none = np.zeros(dimension)
    # Tilted by +/-0.4 rad and scaled by 1.25 / (1 / 1.25) about the centroid: mean pose = the shape's own pose.
    copies = [similarity(shape, 1.25, rotation(0.4, dimension), none, centre),
              similarity(shape, 1 / 1.25, rotation(-0.4, dimension), none, centre)]
    np.testing.assert_allclose(similarity_aligned_mean_shape(copies), shape, atol=1e-9)
    # The plain mean of the same copies is shrunken by cos(0.4) ~ 0.92 (and blurred): several mm off.
    assert np.abs(mean_training_shape(copies) - shape).max() > 1.0


@pytest.mark.parametrize("dimension", [2, 3])
def test_one_similarity_copy_is_its_own_aligned_mean(dimension: int) -> None:
    copy = similarity(skull(dimension), 0.7, rotation(1.0, dimension), np.full(dimension, -30.0), np.zeros(dimension))
    np.testing.assert_allclose(similarity_aligned_mean_shape([copy]), copy, atol=1e-9)


@pytest.mark.parametrize("dimension", [2, 3])
def test_aligned_mean_moves_with_the_training_shapes(dimension: int) -> None:
    rng = np.random.default_rng(dimension)
    shapes = [skull(dimension) + rng.normal(scale=3.0, size=(6, dimension)) for _ in range(5)]
    shapes[1][2] = np.nan  # and an absent landmark
    scale, turn, shift = 1.7, rotation(2.5, dimension), np.arange(dimension, dtype=float) * 10.0
    moved = [scale * shape @ turn.T + shift for shape in shapes]
    expected = scale * similarity_aligned_mean_shape(shapes) @ turn.T + shift
    np.testing.assert_allclose(similarity_aligned_mean_shape(moved), expected, atol=1e-8)


def test_aligned_mean_keeps_never_annotated_landmarks_nan_and_needs_enough_points() -> None:
    shapes = [np.vstack([skull(2), NAN2]), np.vstack([skull(2) + 1.0, NAN2])]
    mean = similarity_aligned_mean_shape(shapes)
    np.testing.assert_allclose(mean[:6], skull(2) + 0.5, atol=1e-9)  # two translated copies: halfway between
    assert np.isnan(mean[6]).all()
    lonely = np.full((7, 2), np.nan)
    lonely[0] = [1.0, 2.0]
    with pytest.raises(ValueError, match=r"shapes\[1\] has 1 landmark"):
        similarity_aligned_mean_shape([shapes[0], lonely])
    with pytest.raises(ValueError, match="max_iterations"):
        similarity_aligned_mean_shape(shapes, max_iterations=0)


# -------------------------------------------------------------------------------------- write_mean_shape_predictions
SPEC = LandmarkSpec(names=("A", "B"))
DATASET_JSON = {"labels": {"background": 0}, "file_ending": ".png", "landmarks": {"names": ["A", "B"]}}


def write_case(folder: Path, case: str, points: list) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_landmarks(folder / f"{case}.json", LandmarkSet(SPEC.names, np.array(points, dtype=float)))


def test_predictions_are_scored_like_a_model(tmp_path: Path) -> None:
    references = tmp_path / "landmarksTr"
    write_case(references, "train_1", [[0.0, 0.0], [10.0, 0.0]])
    write_case(references, "train_2", [[2.0, 2.0], [12.0, 2.0]])  # mean shape: A (1, 1), B (11, 1)
    write_case(references, "val_1", [[1.0, 4.0], [15.0, 4.0]])  # errors: A 3, B |(4, 3)| = 5
    write_case(references, "val_2", [[1.0, 1.0], [11.0, -11.0]])  # errors: A 0, B 12
    output = tmp_path / "baseline"
    mean = write_mean_shape_predictions(references, SPEC, ["val_1", "val_2"], output)  # default: the other files
    np.testing.assert_allclose(mean, [[1.0, 1.0], [11.0, 1.0]])
    predicted = read_landmarks(output / "val_1.json", SPEC)
    np.testing.assert_allclose(predicted.points_mm, mean)
    np.testing.assert_allclose(predicted.confidence, [1.0, 1.0])  # both training cases annotate both landmarks
    provenance = json.loads((output / PROVENANCE_FILE).read_text())
    assert provenance["training_cases"] == ["train_1", "train_2"] and provenance["aligned"] is False

    summary = evaluate_folders(output, DATASET_JSON, reference_landmarks_folder=references,
                               cases=["val_1", "val_2"]).summary["landmarks"]
    assert summary["mre_mm"] == pytest.approx((3 + 5 + 0 + 12) / 4)
    assert summary["n_evaluated"] == 4 and summary["n_missed"] == 0


def test_explicit_training_cases_absent_landmarks_and_the_aligned_variant(tmp_path: Path) -> None:
    references = tmp_path / "landmarksTr"
    write_case(references, "t1", [[0.0, 0.0], NAN2])
    write_case(references, "t2", [[4.0, 0.0], [4.0, 3.0]])
    write_case(references, "t3", [[100.0, 100.0], [0.0, 0.0]])  # not a training case below
    output = tmp_path / "plain"
    mean = write_mean_shape_predictions(references, SPEC, ["t3"], output, training_cases=["t1", "t2"])
    np.testing.assert_allclose(mean, [[2.0, 0.0], [4.0, 3.0]])
    assert read_landmarks(output / "t3.json", SPEC).confidence.tolist() == [1.0, 0.5]  # B: one case of two

    # Two translated copies of a two-landmark shape: the aligned mean is the plain mean (halfway between).
    write_case(references, "u1", [[0.0, 0.0], [10.0, 0.0]])
    write_case(references, "u2", [[0.0, 2.0], [10.0, 2.0]])
    aligned = write_mean_shape_predictions(references, SPEC, ["t3"], tmp_path / "aligned", training_cases=["u1", "u2"],
                                           aligned=True)
    np.testing.assert_allclose(aligned, [[0.0, 1.0], [10.0, 1.0]], atol=1e-9)
    assert json.loads((tmp_path / "aligned" / PROVENANCE_FILE).read_text())["aligned"] is True


def test_bad_inputs_name_the_problem(tmp_path: Path) -> None:
    references = tmp_path / "landmarksTr"
    write_case(references, "only", [[0.0, 0.0], [1.0, 1.0]])
    with pytest.raises(FileNotFoundError, match="not found"):
        write_mean_shape_predictions(tmp_path / "nowhere", SPEC, ["only"], tmp_path / "out")
    with pytest.raises(ValueError, match="besides the 1 case"):
        write_mean_shape_predictions(references, SPEC, ["only"], tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        write_mean_shape_predictions(references, SPEC, ["only"], tmp_path / "out", training_cases=["missing"])
    with pytest.raises(ValueError, match="more than once"):
        write_mean_shape_predictions(references, SPEC, ["x", "x"], tmp_path / "out", training_cases=["only"])
    with pytest.raises(ValueError, match="not in the landmark specification"):
        write_mean_shape_predictions(references, LandmarkSpec(names=("A",)), ["x"], tmp_path / "out",
                                     training_cases=["only"])
