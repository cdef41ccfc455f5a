"""Score a prediction folder against reference masks and/or landmark files.

A metric is reported only where its reference exists: a case whose reference label map holds only the ignore
label gets no segmentation metrics, a case without a reference landmark file gets no landmark metrics. Missed and
spurious landmarks are counted, not silently dropped.

Files written to the output folder:

* ``summary.json``: means per label (Dice, HD95, NSD) and the landmark summary (MRE, SD, median, SDR, counts of
  evaluated / missed / spurious landmarks, per landmark), with the settings (``surface_metric``, ``sdr_missed``,
  ``nsd_tolerance_mm``) and, in each block, ``definitions``: the sentence that defines each of its metrics
  (:data:`~nnunet_babloss.core.metrics.SURFACE_METRIC_DEFINITIONS`, :data:`~nnunet_babloss.core.metrics.SDR_MISSED_DEFINITIONS`);
* ``segmentation_per_case.csv``: one row per (case, label);
* ``landmarks_per_case.csv``: one row per (case, landmark): radial error, predicted confidence, status;
* ``landmarks_per_landmark.csv``: one row per landmark: MRE, SD, median, SDR per threshold and counts;
* ``overlays/`` (optional): PNGs of image, predicted contours and predicted vs reference landmarks.

Mismatches are errors, reported all at once: reference cases without a prediction, label values outside the
dataset's labels, and label maps whose size, spacing, origin or direction differ from their reference.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_babloss.core.atomic_output import AtomicFileSet
from nnunet_babloss.core.landmarks.io import FORMAT_NAME, LandmarkSet, read_landmarks
from nnunet_babloss.core.landmarks.spec import LandmarkSpec, has_landmarks_block
from nnunet_babloss.core.metrics import (
    SDR_MISSED_DEFINITIONS,
    SURFACE_METRIC_DEFINITIONS,
    SdrMissed,
    SurfaceMetric,
    landmark_detection_summary,
    radial_errors_mm,
    segmentation_metrics,
)

__all__ = ["EvaluationResult", "evaluate_folders", "LANDMARK_SUFFIX", "SDR_THRESHOLDS_MM"]

LANDMARK_SUFFIX = ".json"
SUMMARY_FILE = "summary.json"
OVERLAY_FOLDER = "overlays"
# Everything evaluation writes into its output folder; a new run replaces all of them (stale ones are removed).
RESULT_FILES = (
    SUMMARY_FILE, "segmentation_per_case.csv", "landmarks_per_case.csv", "landmarks_per_landmark.csv", OVERLAY_FOLDER,
)
SDR_THRESHOLDS_MM = (2.0, 2.5, 3.0, 4.0)
# Geometry tolerances: spacing relative (nnU-Net writes float32 headers), origin in mm, direction cosines absolute.
_SPACING_RTOL = 1e-4
_ORIGIN_ATOL_MM = 1e-3
_DIRECTION_ATOL = 1e-4
_MAX_NAMES_IN_MESSAGE = 10


@dataclass(frozen=True)
class EvaluationResult:
    """Where the evaluation wrote its files, and the summary it wrote."""

    summary_path: Path
    summary: dict


def _read_label_map(path: Path) -> tuple[np.ndarray, sitk.Image]:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image


def _check_same_geometry(reference: sitk.Image, prediction: sitk.Image, reference_path: Path, prediction_path: Path) -> None:
    checks = (
        ("size", reference.GetSize(), prediction.GetSize(), None),
        ("spacing", reference.GetSpacing(), prediction.GetSpacing(), dict(rtol=_SPACING_RTOL, atol=1e-6)),
        ("origin", reference.GetOrigin(), prediction.GetOrigin(), dict(rtol=0.0, atol=_ORIGIN_ATOL_MM)),
        ("direction", reference.GetDirection(), prediction.GetDirection(), dict(rtol=0.0, atol=_DIRECTION_ATOL)),
    )
    for field, expected, got, tolerance in checks:
        same = expected == got if tolerance is None else (
            len(expected) == len(got) and np.allclose(expected, got, **tolerance)
        )
        if not same:
            raise ValueError(
                f"geometry mismatch: {prediction_path} has {field} {tuple(got)} but its reference {reference_path} "
                f"has {field} {tuple(expected)}"
            )


def _names_for_message(names: Sequence[str]) -> str:
    shown = ", ".join(repr(name) for name in list(names)[:_MAX_NAMES_IN_MESSAGE])
    more = len(names) - _MAX_NAMES_IN_MESSAGE
    return shown + (f" and {more} more" if more > 0 else "")


def _check_label_values(array: np.ndarray, allowed: set[int], path: Path, what: str) -> None:
    """Raise if a label map holds values outside ``allowed`` (a label set that does not match the dataset's)."""
    unexpected = sorted(set(np.unique(array).tolist()) - allowed)
    if unexpected:
        raise ValueError(
            f"label set mismatch: {what} {path} holds label values {unexpected} that dataset.json 'labels' does not "
            f"define (allowed: {sorted(allowed)})"
        )


def _label_values(labels: Mapping[str, int | Sequence[int]]) -> set[int]:
    values: set[int] = set()
    for value in labels.values():
        values.update(int(item) for item in (np.atleast_1d(value).tolist()))
    return values


def _check_predictions_exist(references: Mapping[str, Path], prediction_folder: Path, suffix: str, what: str) -> None:
    missing = [case for case in references if not (prediction_folder / f"{case}{suffix}").is_file()]
    if missing:
        raise ValueError(
            f"case name mismatch: {len(missing)} of {len(references)} case(s) with a reference {what} have no "
            f"prediction <case>{suffix} in {prediction_folder}: {_names_for_message(missing)}"
        )


def _labels_to_score(dataset_json: Mapping) -> dict[str, int | Sequence[int]]:
    labels = dict(dataset_json["labels"])
    return {name: value for name, value in labels.items() if name not in ("background", "ignore")}


def _mean_ignoring_nan(values: Sequence[float]) -> float | None:
    finite = [value for value in values if value is not None and not np.isnan(value)]
    return float(np.mean(finite)) if finite else None


def evaluate_folders(
    prediction_folder: str | Path,
    dataset_json: Mapping,
    reference_labels_folder: str | Path | None = None,
    reference_landmarks_folder: str | Path | None = None,
    output_folder: str | Path | None = None,
    file_ending: str | None = None,
    nsd_tolerance_mm: float = 1.0,
    *,
    cases: Sequence[str] | None = None,
    images_folder: str | Path | None = None,
    write_overlays: bool = False,
    surface_metric: SurfaceMetric = "voxel",
    sdr_missed: SdrMissed = "exclude",
) -> EvaluationResult:
    """Compare predictions with references and write ``summary.json`` plus per-case and per-landmark CSVs.

    The result files appear together, ``summary.json`` last, replacing an earlier run's (stale ones removed); an
    error, Ctrl-C or SIGTERM leaves the earlier results as they were (see
    :class:`~nnunet_babloss.core.atomic_output.AtomicFileSet`).

    Args:
        prediction_folder: holds ``<case><file_ending>`` segmentations and/or ``<case>.json`` landmark files.
        dataset_json: the dataset's ``dataset.json`` (labels, file ending, optional landmarks block).
        reference_labels_folder: reference label maps ``<case><file_ending>``, or ``None``.
        reference_landmarks_folder: reference landmark files ``<case>.json``, or ``None``.
        output_folder: where to write the results (default: the prediction folder).
        file_ending: image file ending (default: ``dataset_json["file_ending"]``).
        nsd_tolerance_mm: tolerance of the normalised surface Dice.
        cases: evaluate only these cases (default: every case that has a reference); a listed case must have a
            reference in every given reference folder it could be in (labels and/or landmarks: at least one).
        images_folder: images ``<case>_0000<file_ending>`` for the overlays.
        write_overlays: write ``overlays/<case>[_z<slice>].png`` (image, predicted contours, predicted and
            reference landmarks; 3D images: the middle slice and every slice holding a landmark).
        surface_metric: definition of HD95 and NSD: ``"voxel"`` (boundary voxels, each weighing 1; default) or
            ``"surface"`` (corner-grid surface elements weighted by length/area, as DeepMind's surface-distance);
            see :mod:`nnunet_babloss.core.metrics`.
        sdr_missed: how missed landmarks enter the SDR: ``"exclude"`` (left out of the denominator; default) or
            ``"fail"`` (a failure at every threshold).

    Returns:
        The path of ``summary.json`` and its content.

    Raises:
        ValueError: neither reference is given; a reference case has no prediction (all such cases are listed);
            label values outside the dataset's labels; geometry differs from the reference; landmark names or
            dimensions do not match; overlays without ``images_folder``; an unknown ``surface_metric`` or
            ``sdr_missed``.
        FileNotFoundError: a given folder does not exist.
    """
    prediction_folder = Path(prediction_folder)
    output_folder = Path(output_folder) if output_folder is not None else prediction_folder
    file_ending = file_ending or dataset_json["file_ending"]
    if reference_labels_folder is None and reference_landmarks_folder is None:
        raise ValueError("give reference labels, reference landmarks, or both")
    if write_overlays and images_folder is None:
        raise ValueError("overlays need the images: give images_folder (the folder of <case>_0000<file_ending>)")
    if surface_metric not in SURFACE_METRIC_DEFINITIONS:
        raise ValueError(f"surface_metric must be one of {list(SURFACE_METRIC_DEFINITIONS)}, got {surface_metric!r}")
    if sdr_missed not in SDR_MISSED_DEFINITIONS:
        raise ValueError(f"sdr_missed must be one of {list(SDR_MISSED_DEFINITIONS)}, got {sdr_missed!r}")
    for folder in (prediction_folder, reference_labels_folder, reference_landmarks_folder, images_folder):
        if folder is not None and not Path(folder).is_dir():
            raise FileNotFoundError(f"folder not found: {folder}")
    selected = None if cases is None else [str(case) for case in cases]
    if selected is not None:
        _check_requested_cases(selected, reference_labels_folder, reference_landmarks_folder, file_ending)
    ignore_label = dataset_json["labels"].get("ignore")
    summary: dict = {
        "prediction_folder": str(prediction_folder),
        "nsd_tolerance_mm": nsd_tolerance_mm,
        "surface_metric": surface_metric,
        "sdr_missed": sdr_missed,
    }

    # Every result file is written to a hidden staging folder and moved in together at the end (summary.json last):
    # an error or a kill leaves the previous run's results untouched, never a new CSV beside an old summary.
    results = AtomicFileSet(output_folder, RESULT_FILES, last=(SUMMARY_FILE,))
    with results as staging:
        spec = LandmarkSpec.from_dataset_json(dataset_json) if has_landmarks_block(dataset_json) else None
        if reference_labels_folder is not None:
            summary["segmentation"] = _evaluate_segmentations(
                prediction_folder, Path(reference_labels_folder), dataset_json, file_ending,
                ignore_label, nsd_tolerance_mm, staging, selected, surface_metric,
            )
        if reference_landmarks_folder is not None:
            summary["landmarks"] = _evaluate_landmarks(
                prediction_folder, Path(reference_landmarks_folder), spec, staging, selected, sdr_missed
            )
        if write_overlays:
            written = _write_overlays(
                prediction_folder, dataset_json, reference_landmarks_folder, file_ending, selected,
                images_folder, staging, spec,  # type: ignore[arg-type]
            )
            summary["overlays"] = {"folder": str(output_folder / OVERLAY_FOLDER), "num_files": len(written)}

        (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, allow_nan=False, default=_json_default))
        results.commit()
    return EvaluationResult(output_folder / SUMMARY_FILE, summary)


def _write_overlays(
    prediction_folder: Path,
    dataset_json: Mapping,
    reference_landmarks_folder: str | Path | None,
    file_ending: str,
    selected: Sequence[str] | None,
    images_folder: str | Path,
    staging: Path,
    spec: LandmarkSpec | None,
) -> list[Path]:
    """Write the overlay PNGs of the evaluated cases into ``staging/overlays``; return the files written."""
    from nnunet_babloss.core.overlays import write_case_overlays

    overlay_cases = _overlay_cases(prediction_folder, file_ending, selected)
    written = []
    for case in overlay_cases:
        written += write_case_overlays(
            case,
            image_path=Path(images_folder) / f"{case}_0000{file_ending}",
            prediction_labels_path=_existing(prediction_folder / f"{case}{file_ending}"),
            predicted_landmarks_path=_existing(prediction_folder / f"{case}{LANDMARK_SUFFIX}"),
            reference_landmarks_path=None if reference_landmarks_folder is None
            else _existing(Path(reference_landmarks_folder) / f"{case}{LANDMARK_SUFFIX}"),
            output_folder=staging / OVERLAY_FOLDER,
            spec=spec,
            label_names={
                int(value): str(name) for name, value in dataset_json["labels"].items() if np.ndim(value) == 0
            },
        )
    return written


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def _check_requested_cases(
    cases: Sequence[str], labels_folder: str | Path | None, landmarks_folder: str | Path | None, file_ending: str
) -> None:
    missing = [
        case for case in cases
        if not any(
            folder is not None and (Path(folder) / f"{case}{suffix}").is_file()
            for folder, suffix in ((labels_folder, file_ending), (landmarks_folder, LANDMARK_SUFFIX))
        )
    ]
    if missing:
        raise ValueError(f"case name mismatch: {len(missing)} requested case(s) have no reference: {_names_for_message(missing)}")


def _overlay_cases(prediction_folder: Path, file_ending: str, cases: Sequence[str] | None) -> list[str]:
    if cases is not None:
        return list(cases)
    found = {path.name[: -len(file_ending)] for path in prediction_folder.glob(f"*{file_ending}")}
    found |= {
        path.name[: -len(LANDMARK_SUFFIX)] for path in prediction_folder.glob(f"*{LANDMARK_SUFFIX}")
        if not path.name.endswith(".mrk.json") and _is_landmark_file(path)
    }
    return sorted(found)


def _is_landmark_file(path: Path) -> bool:
    """Whether a ``.json`` in a prediction folder is one of our landmark files (not nnU-Net's dataset/plans)."""
    try:
        return json.loads(path.read_text()).get("format") == FORMAT_NAME
    except (ValueError, AttributeError, OSError):
        return False


def _json_default(value: object) -> object:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _evaluate_segmentations(
    prediction_folder: Path,
    reference_folder: Path,
    dataset_json: Mapping,
    file_ending: str,
    ignore_label: int | None,
    nsd_tolerance_mm: float,
    output_folder: Path,
    cases: Sequence[str] | None,
    surface_metric: SurfaceMetric,
) -> dict:
    labels = _labels_to_score(dataset_json)
    found = {path.name[: -len(file_ending)]: path for path in sorted(reference_folder.glob(f"*{file_ending}"))}
    if cases is not None:
        found = {case: path for case, path in found.items() if case in set(cases)}
    if not found:
        raise ValueError(f"no reference label maps ending in {file_ending!r} in {reference_folder}")
    _check_predictions_exist(found, prediction_folder, file_ending, "label map")
    defined = _label_values(dict(dataset_json["labels"]))
    predictable = defined - ({ignore_label} if ignore_label is not None else set())
    rows: list[dict] = []
    for case, reference_path in found.items():
        prediction_path = prediction_folder / reference_path.name
        reference, reference_image = _read_label_map(reference_path)
        prediction, prediction_image = _read_label_map(prediction_path)
        _check_same_geometry(reference_image, prediction_image, reference_path, prediction_path)
        _check_label_values(reference, defined, reference_path, "reference")
        _check_label_values(prediction, predictable, prediction_path, "prediction")
        if ignore_label is not None and np.all(reference == ignore_label):
            continue  # no mask for this case: no segmentation metrics
        spacing_mm = tuple(reference_image.GetSpacing())[::-1]
        per_label = segmentation_metrics(
            prediction, reference, labels, spacing_mm, nsd_tolerance_mm, ignore_label, surface_metric=surface_metric
        )
        for label_name, metrics in per_label.items():
            rows.append({"case": case, "label": label_name, **{key: float(value) for key, value in metrics.items()}})
    metric_names = sorted({key for row in rows for key in row if key not in ("case", "label")})
    with open(output_folder / "segmentation_per_case.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["case", "label", *metric_names])
        writer.writeheader()
        writer.writerows(rows)
    mean_per_label = {
        label: {metric: _mean_ignoring_nan([row[metric] for row in rows if row["label"] == label]) for metric in metric_names}
        for label in labels
    }
    # inf HD95 (one side empty) makes a mean meaningless; report how often it happened instead.
    for label, metrics in mean_per_label.items():
        hd95_values = [row.get("hd95_mm") for row in rows if row["label"] == label]
        infinite = sum(1 for value in hd95_values if value is not None and np.isinf(value))
        finite = [value for value in hd95_values if value is not None and np.isfinite(value)]
        metrics["hd95_mm"] = float(np.mean(finite)) if finite else None
        metrics["hd95_num_infinite"] = infinite
    definitions = SURFACE_METRIC_DEFINITIONS[surface_metric]
    return {
        "num_cases": len({row["case"] for row in rows}),
        "num_cases_without_mask": len(found) - len({row["case"] for row in rows}),
        "definitions": {
            "surface_metric": surface_metric,
            "dice": "2 |P & R| / (|P| + |R|) over voxels",
            "hd95_mm": f"{definitions['hd95_mm']}; surface: {definitions['surface']}",
            "nsd": f"{definitions['nsd']} (tolerance {nsd_tolerance_mm:g} mm, inclusive); "
            f"surface: {definitions['surface']}",
        },
        "mean_per_label": _clean_json(mean_per_label),
    }


def _read_landmark_pair(
    case: str, reference_path: Path, prediction_path: Path, spec: LandmarkSpec | None, names: tuple[str, ...] | None
) -> tuple[LandmarkSet, LandmarkSet]:
    reference = read_landmarks(reference_path, spec)
    predicted = read_landmarks(prediction_path, spec)
    names = names if names is not None else reference.names
    for what, landmarks, path in (("reference", reference, reference_path), ("prediction", predicted, prediction_path)):
        unknown = [name for name in landmarks.names if name not in names]
        if unknown:
            raise ValueError(
                f"landmark name mismatch for case {case!r}: {what} {path} has landmark(s) {unknown} that are not in "
                f"{'the dataset.json landmarks block' if spec is not None else 'the first reference file'} "
                f"({list(names)})"
            )
    reference, predicted = reference.reorder(names), predicted.reorder(names)
    if reference.dimension != predicted.dimension:
        raise ValueError(
            f"dimension mismatch for case {case!r}: {prediction_path} has {predicted.dimension}D points, "
            f"{reference_path} has {reference.dimension}D"
        )
    return reference, predicted


def _evaluate_landmarks(
    prediction_folder: Path, reference_folder: Path, spec: LandmarkSpec | None, output_folder: Path,
    cases: Sequence[str] | None, sdr_missed: SdrMissed,
) -> dict:
    found = {
        path.name[: -len(LANDMARK_SUFFIX)]: path
        for path in sorted(reference_folder.glob(f"*{LANDMARK_SUFFIX}"))
        if not path.name.endswith(".mrk.json")
    }
    if cases is not None:
        found = {case: path for case, path in found.items() if case in set(cases)}
    if not found:
        raise ValueError(f"no reference landmark files (*{LANDMARK_SUFFIX}) in {reference_folder}")
    _check_predictions_exist(found, prediction_folder, LANDMARK_SUFFIX, "landmark file")
    names: tuple[str, ...] | None = spec.names if spec is not None else None
    pairs = []
    for case, reference_path in found.items():
        reference, predicted = _read_landmark_pair(
            case, reference_path, prediction_folder / reference_path.name, spec, names
        )
        names = reference.names
        pairs.append((case, reference, predicted))
    if names is None:  # pragma: no cover - found is not empty
        raise ValueError("no landmarks to evaluate")
    dimensions = {reference.dimension for _, reference, _ in pairs}
    if len(dimensions) > 1:
        raise ValueError(f"reference landmark files in {reference_folder} mix dimensions {sorted(dimensions)}")
    predicted_array = np.stack([predicted.points_mm for _, _, predicted in pairs])
    reference_array = np.stack([reference.points_mm for _, reference, _ in pairs])
    summary = landmark_detection_summary(
        predicted_array, reference_array, thresholds_mm=SDR_THRESHOLDS_MM, sdr_missed=sdr_missed
    )
    _write_landmarks_per_case(output_folder / "landmarks_per_case.csv", names, pairs)
    per_landmark = _write_landmarks_per_landmark(
        output_folder / "landmarks_per_landmark.csv", names, predicted_array, reference_array, sdr_missed
    )
    summary.pop("per_landmark", None)
    definitions = {
        "sdr_missed": sdr_missed,
        "sdr": f"{SDR_MISSED_DEFINITIONS[sdr_missed]}; thresholds inclusive, in mm",
        "mre_mm": "mean radial error (Euclidean distance in world mm) over the evaluated landmarks; missed and "
        "spurious landmarks are counted in n_missed / n_spurious",
    }
    return {
        "num_cases": len(pairs), "definitions": definitions, **_clean_json(summary),
        "per_landmark": _clean_json(per_landmark),
    }


def _write_landmarks_per_case(path: Path, names: Sequence[str], pairs: Sequence[tuple[str, LandmarkSet, LandmarkSet]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "landmark", "radial_error_mm", "confidence", "status"])
        for case, reference, predicted in pairs:
            errors = radial_errors_mm(predicted.points_mm, reference.points_mm)
            confidence = predicted.confidence if predicted.confidence is not None else np.full(len(names), np.nan)
            for name, error, score, p_present, r_present in zip(
                names, errors, confidence, predicted.present, reference.present
            ):
                status = {(True, True): "evaluated", (False, True): "missed", (True, False): "spurious"}.get(
                    (bool(p_present), bool(r_present)), "absent_in_both"
                )
                writer.writerow(
                    [case, name, "" if np.isnan(error) else f"{error:.6f}", "" if np.isnan(score) else f"{score:.6f}",
                     status]
                )


def _write_landmarks_per_landmark(
    path: Path, names: Sequence[str], predicted: np.ndarray, reference: np.ndarray, sdr_missed: SdrMissed
) -> dict[str, dict]:
    """One row per landmark (statistics over cases); returns the same as ``{name: statistics}``."""
    sdr_columns = [f"sdr_{threshold:g}mm" for threshold in SDR_THRESHOLDS_MM]
    statistics: dict[str, dict] = {}
    for index, name in enumerate(names):
        one = landmark_detection_summary(
            predicted[:, index : index + 1], reference[:, index : index + 1], thresholds_mm=SDR_THRESHOLDS_MM,
            sdr_missed=sdr_missed,
        )
        statistics[name] = {
            "mre_mm": one["mre_mm"], "sd_mm": one["sd_mm"], "median_mm": one["median_mm"],
            "sdr": one["sdr"], "n_evaluated": one["n_evaluated"], "n_missed": one["n_missed"],
            "n_spurious": one["n_spurious"],
        }
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["landmark", "n_evaluated", "n_missed", "n_spurious", "mre_mm", "sd_mm", "median_mm", *sdr_columns])
        for name, row in statistics.items():
            values = [row["mre_mm"], row["sd_mm"], row["median_mm"], *(row["sdr"][str(float(t))] for t in SDR_THRESHOLDS_MM)]
            writer.writerow(
                [name, row["n_evaluated"], row["n_missed"], row["n_spurious"],
                 *("" if np.isnan(value) else f"{value:.6f}" for value in values)]
            )
    return statistics


def _clean_json(value: object) -> object:
    """Replace NaN/inf by None recursively so that summary.json is strict JSON."""
    if isinstance(value, dict):
        return {str(key): _clean_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return _finite_or_none(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value
