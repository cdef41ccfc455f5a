"""The mean-training-shape baseline: predict, for every test case, where each landmark lies on average in training.

No image and no network: a landmark detector that does worse than this has learned nothing useful about the image,
so every landmark table of the project reports it next to the model.

Two variants, both in world LPS mm (the package convention; ``D`` = 2 or 3):

* :func:`mean_training_shape`: the per-landmark mean of the training cases' coordinates, as they are.
* :func:`similarity_aligned_mean_shape`: the generalised Procrustes mean (Gower 1975, "Generalized Procrustes
  analysis", Psychometrika 40:33-51) under similarity transforms (translation, proper rotation, isotropic scale),
  placed at the mean pose of the training cases. It keeps the shape sharp when the cases differ in position,
  size or tilt (the plain mean of rotated copies of one shape is a shrunken, blurred shape).

:func:`write_mean_shape_predictions` writes either as one landmark file per test case in the format the predictor
writes (``<case>.json``, our JSON, LPS mm, with a per-landmark confidence), so that
:func:`nnunet_babloss.core.evaluation.evaluate_folders` scores it exactly like a model.

Pure numpy: nothing here imports nnU-Net.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from nnunet_babloss import __version__
from nnunet_babloss.core.landmarks.io import LandmarkSet, read_landmarks, write_landmarks
from nnunet_babloss.core.landmarks.spec import LandmarkSpec
from nnunet_babloss.core.provenance import write_json

__all__ = [
    "PROVENANCE_FILE",
    "fit_similarity",
    "mean_training_shape",
    "similarity_aligned_mean_shape",
    "write_mean_shape_predictions",
]

# Not "provenance.json": the prediction CLI writes that one, and a baseline may share its folder.
PROVENANCE_FILE = "mean_shape_provenance.json"
_LANDMARK_SUFFIX = ".json"
_SLICER_SUFFIX = ".mrk.json"
_SUPPORTED_DIMENSIONS = (2, 3)
_MAX_NAMES_IN_MESSAGE = 10


def _stack_shapes(shapes: Sequence[np.ndarray]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Check and stack ``N`` ``(K, D)`` shapes into ``(N, K, D)`` plus the ``(N, K)`` presence mask.

    Raises:
        ValueError: no shape; shapes of different or unsupported size; an infinite value; a row only partly NaN.
    """
    if isinstance(shapes, np.ndarray) and shapes.ndim == 3:
        shapes = list(shapes)
    if len(shapes) == 0:
        raise ValueError("shapes must hold at least one (K, D) landmark array, got none")
    arrays = [np.asarray(shape, dtype=np.float64) for shape in shapes]
    first = arrays[0].shape
    if len(first) != 2 or first[1] not in _SUPPORTED_DIMENSIONS or first[0] == 0:
        raise ValueError(f"shapes[0] must have shape (K, 2) or (K, 3) with K >= 1, got shape {first}")
    for index, array in enumerate(arrays):
        if array.shape != first:
            raise ValueError(f"shapes[{index}] has shape {array.shape}, but shapes[0] has {first}: all must match")
        if np.isinf(array).any():
            raise ValueError(f"shapes[{index}] has an infinite coordinate (absent landmarks are rows of NaN)")
        partial = np.isnan(array).any(axis=1) & ~np.isnan(array).all(axis=1)
        if partial.any():
            row = int(np.nonzero(partial)[0][0])
            raise ValueError(
                f"shapes[{index}] row {row} is partly NaN: {array[row].tolist()} (an absent landmark is a row of NaN)"
            )
    stacked = np.stack(arrays)
    return stacked, ~np.isnan(stacked).any(axis=2)


def _masked_mean(stacked: NDArray[np.float64], present: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Mean over axis 0 of ``(N, K, D)`` using present rows only; NaN where no case has the landmark."""
    counts = present.sum(axis=0)
    sums = np.where(present[..., None], stacked, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts[:, None]
    mean[counts == 0] = np.nan
    return mean


def mean_training_shape(shapes: Sequence[np.ndarray]) -> NDArray[np.float64]:
    """Per-landmark mean over training cases (NaN rows, i.e. absent landmarks, are left out of each mean).

    Args:
        shapes: ``N >= 1`` arrays of shape ``(K, D)`` (``D`` = 2 or 3), world LPS mm, one per training case, rows in
            the same landmark order; a row of NaN is an absent landmark.

    Returns:
        ``(K, D)`` float64 mean positions, LPS mm; a landmark absent in every case stays a NaN row.

    Raises:
        ValueError: no shape, shapes of different sizes, ``D`` not 2 or 3, an infinite value, or a partly-NaN row.

    Example:
        >>> mean_training_shape([np.array([[0.0, 0.0], [np.nan, np.nan]]), np.array([[2.0, 4.0], [np.nan, np.nan]])])
        array([[ 1.,  2.],
               [nan, nan]])
    """
    stacked, present = _stack_shapes(shapes)
    return _masked_mean(stacked, present)


def fit_similarity(
    source: NDArray[np.float64], target: NDArray[np.float64]
) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    """Least-squares similarity ``target ≈ scale * source @ rotation.T + translation`` (Umeyama 1991).

    ``source`` and ``target`` are ``(n, D)`` corresponding points without NaN; ``rotation`` is proper (det +1: a
    mirror image is not a similarity of the same anatomy).
    """
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    source_variance = float((source_centred**2).sum())
    if source_variance <= 0.0:
        raise ValueError("cannot fit a similarity: the landmarks used for the fit all coincide")
    covariance = target_centred.T @ source_centred
    left, singular_values, right_transposed = np.linalg.svd(covariance)
    signs = np.ones(len(singular_values))
    if np.linalg.det(left) * np.linalg.det(right_transposed) < 0:
        signs[-1] = -1.0
    rotation = left @ np.diag(signs) @ right_transposed
    scale = float((singular_values * signs).sum()) / source_variance
    translation = target_mean - scale * rotation @ source_mean
    return scale, rotation, translation


def _nearest_rotation(matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    """The proper rotation closest to ``matrix`` in the Frobenius norm (its orthogonal polar factor, det +1)."""
    left, _, right_transposed = np.linalg.svd(matrix)
    signs = np.ones(matrix.shape[0])
    if np.linalg.det(left @ right_transposed) < 0:
        signs[-1] = -1.0
    return left @ np.diag(signs) @ right_transposed


def _normalised(shape: NDArray[np.float64]) -> NDArray[np.float64]:
    """``shape`` moved to the centroid of its present rows and scaled to unit root-mean-square size."""
    present = ~np.isnan(shape).any(axis=1)
    centred = shape - shape[present].mean(axis=0)
    size = math.sqrt(float((centred[present] ** 2).sum(axis=1).mean()))
    if size == 0.0:
        raise ValueError("the mean shape has zero size: every landmark lies at the same point")
    return centred / size


def similarity_aligned_mean_shape(
    shapes: Sequence[np.ndarray], *, max_iterations: int = 100, tolerance: float = 1e-10
) -> NDArray[np.float64]:
    """Generalised Procrustes mean shape (similarity transforms) placed at the mean pose of the training cases.

    Exactly:

    1. **Consensus** ``M``: start from :func:`mean_training_shape`; repeat {fit every case onto ``M`` by the
       least-squares similarity (translation, proper rotation, isotropic scale) on the landmarks present in both;
       ``M`` = per-landmark mean of the aligned cases (absent landmarks left out), re-centred on the centroid of its
       landmarks and scaled to unit root-mean-square distance from it} until ``M`` moves by less than ``tolerance``
       (RMS) or ``max_iterations`` is reached.
    2. **Poses**: fit ``M`` onto each case, ``case_i ≈ s_i R_i M + t_i`` (same rule for absent landmarks).
    3. **Mean pose**: ``s`` = geometric mean of the ``s_i``; ``R`` = the proper rotation nearest (Frobenius) to the
       arithmetic mean of the ``R_i`` (the chordal mean; in 2D, the rotation by the circular mean angle);
       ``t`` = arithmetic mean of the ``t_i`` (``t_i`` is where case ``i`` puts the centroid of ``M``).
    4. Result: ``s R M + t``.

    Applying one similarity transform to every training shape applies it to the result, and training shapes that
    are similarity copies of one shape with poses spread symmetrically about it (e.g. tilted by ±θ and scaled by
    ``c``, ``1/c`` about its centroid) give that shape back, where :func:`mean_training_shape` shrinks it.

    Args:
        shapes: ``N >= 1`` arrays ``(K, D)`` (``D`` = 2 or 3), world LPS mm, same landmark order; NaN row = absent.
        max_iterations: Upper bound on the consensus iterations (>= 1).
        tolerance: Convergence threshold on the RMS change of the unit-size consensus (> 0).

    Returns:
        ``(K, D)`` float64, LPS mm; a landmark absent in every case stays a NaN row.

    Raises:
        ValueError: invalid ``shapes`` (see :func:`mean_training_shape`) or parameters; a case sharing fewer than
            ``D`` landmarks with the consensus (its pose would be undetermined); a degenerate (zero-size) shape.
    """
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 1:
        raise ValueError(f"max_iterations must be an integer >= 1, got {max_iterations!r}")
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"tolerance must be a finite number > 0, got {tolerance!r}")
    stacked, present = _stack_shapes(shapes)
    dimension = stacked.shape[2]
    consensus = _masked_mean(stacked, present)
    known = ~np.isnan(consensus).any(axis=1)
    for case, case_present in enumerate(present):
        if int(case_present.sum()) < dimension:
            raise ValueError(
                f"shapes[{case}] has {int(case_present.sum())} landmark(s); a similarity pose needs at least "
                f"{dimension} in {dimension}D"
            )
    consensus = _normalised(consensus)

    def fit_onto(
        target: NDArray[np.float64], case: int, *, case_is_source: bool
    ) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
        rows = present[case] & known
        case_points = stacked[case][rows]
        if case_is_source:
            return fit_similarity(case_points, target[rows])
        return fit_similarity(target[rows], case_points)

    for _ in range(max_iterations):
        aligned = np.full_like(stacked, np.nan)
        for case in range(len(stacked)):
            scale, rotation, translation = fit_onto(consensus, case, case_is_source=True)
            rows = present[case]
            aligned[case][rows] = scale * stacked[case][rows] @ rotation.T + translation
        updated = _normalised(_masked_mean(aligned, present))
        change = math.sqrt(float(((updated[known] - consensus[known]) ** 2).sum(axis=1).mean()))
        consensus = updated
        if change < tolerance:
            break

    log_scales, rotations, translations = [], [], []
    for case in range(len(stacked)):
        scale, rotation, translation = fit_onto(consensus, case, case_is_source=False)
        log_scales.append(math.log(scale))
        rotations.append(rotation)
        translations.append(translation)
    mean_scale = math.exp(float(np.mean(log_scales)))
    mean_rotation = _nearest_rotation(np.mean(rotations, axis=0))
    mean_translation = np.mean(translations, axis=0)
    return mean_scale * consensus @ mean_rotation.T + mean_translation


def _names_for_message(names: Sequence[str]) -> str:
    shown = ", ".join(repr(name) for name in list(names)[:_MAX_NAMES_IN_MESSAGE])
    more = len(names) - _MAX_NAMES_IN_MESSAGE
    return shown + (f" and {more} more" if more > 0 else "")


def _landmark_cases(folder: Path) -> list[str]:
    """Case names of the ``<case>.json`` files in ``folder`` (Slicer ``.mrk.json`` files excluded), sorted."""
    return sorted(
        path.name[: -len(_LANDMARK_SUFFIX)]
        for path in folder.glob(f"*{_LANDMARK_SUFFIX}")
        if not path.name.endswith(_SLICER_SUFFIX)
    )


def write_mean_shape_predictions(
    train_landmark_folder: str | os.PathLike[str],
    spec: LandmarkSpec,
    cases: Sequence[str],
    output_folder: str | os.PathLike[str],
    *,
    training_cases: Sequence[str] | None = None,
    aligned: bool = False,
) -> NDArray[np.float64]:
    """Predict the mean training shape for every case: one ``<case>.json`` per case, as the predictor writes them.

    The files are our landmark JSON (LPS mm, landmarks in ``spec.names`` order, ``null`` for a landmark that no
    training case has). The confidence of a landmark is the fraction of training cases that annotate it (1 when
    every case does). ``mean_shape_provenance.json`` beside them records the method and the training cases.
    Existing files of the same names are overwritten, as the predictor does.

    Args:
        train_landmark_folder: Folder of the training cases' landmark files ``<case>.json`` (our format, e.g. a raw
            dataset's ``landmarksTr``).
        spec: The dataset's landmark specification; every file is read in its order (unknown names are an error).
        cases: The cases to write predictions for (the test or validation cases).
        output_folder: Where to write ``<case>.json`` (created if needed).
        training_cases: The training cases to average (each must have a file). Default: every ``<case>.json`` in
            ``train_landmark_folder`` that is not one of ``cases`` (so no case is predicted from its own reference).
        aligned: Use :func:`similarity_aligned_mean_shape` instead of :func:`mean_training_shape`.

    Returns:
        The ``(K, D)`` mean shape that was written, LPS mm (NaN rows: no training case has the landmark).

    Raises:
        FileNotFoundError: ``train_landmark_folder`` or a training case's file does not exist.
        ValueError: no case to predict or no training case; a case name given twice; training files that are
            malformed, name unknown landmarks or mix 2D and 3D (see also :func:`similarity_aligned_mean_shape`).

    Example:
        >>> write_mean_shape_predictions(raw / "landmarksTr", spec, val_cases, out, training_cases=train_cases)
        ... # doctest: +SKIP
    """
    folder = Path(train_landmark_folder)
    output = Path(output_folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"train_landmark_folder not found: {folder}")
    if not isinstance(spec, LandmarkSpec):
        raise ValueError(f"spec must be a LandmarkSpec, got {type(spec).__name__}")
    for argument, names in (("cases", cases), ("training_cases", training_cases)):
        if isinstance(names, str):
            raise ValueError(f"{argument} must be a sequence of case names, got the string {names!r}")
        if names is not None:
            repeated = sorted(name for name, count in Counter(map(str, names)).items() if count > 1)
            if repeated:
                raise ValueError(f"{argument} names case(s) more than once: {_names_for_message(repeated)}")
    cases = [str(case) for case in cases]
    if not cases:
        raise ValueError("cases must name at least one case to predict, got none")
    if training_cases is None:
        excluded = set(cases)
        training = [case for case in _landmark_cases(folder) if case not in excluded]
        if not training:
            raise ValueError(
                f"no training landmark files <case>{_LANDMARK_SUFFIX} in {folder} besides the {len(cases)} case(s) "
                "to predict"
            )
    else:
        training = [str(case) for case in training_cases]
        if not training:
            raise ValueError("training_cases must name at least one case, got none (or pass None for the folder)")

    shapes, dimensions = [], {}
    for case in training:
        landmarks = read_landmarks(folder / f"{case}{_LANDMARK_SUFFIX}", spec)
        dimensions.setdefault(landmarks.dimension, case)
        shapes.append(landmarks.points_mm)
    if len(dimensions) > 1:
        raise ValueError(
            f"training landmark files in {folder} mix dimensions: "
            + ", ".join(f"{dimension}D (e.g. {case!r})" for dimension, case in sorted(dimensions.items()))
        )
    mean_shape = similarity_aligned_mean_shape(shapes) if aligned else mean_training_shape(shapes)
    _, present = _stack_shapes(shapes)
    annotated_fraction = present.mean(axis=0)

    output.mkdir(parents=True, exist_ok=True)
    prediction = LandmarkSet(spec.names, mean_shape, annotated_fraction)
    for case in cases:
        write_landmarks(output / f"{case}{_LANDMARK_SUFFIX}", prediction)
    provenance = {
        "method": "similarity-aligned mean training shape" if aligned else "mean training shape",
        "aligned": aligned,
        "confidence": "fraction of training cases that annotate the landmark",
        "train_landmark_folder": str(folder.resolve()),
        "num_training_cases": len(training),
        "training_cases": training,
        "num_cases": len(cases),
        "nnunet_babloss_version": __version__,
    }
    write_json(output / PROVENANCE_FILE, provenance)
    return mean_shape
