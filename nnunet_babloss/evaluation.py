"""Score a prediction folder against reference masks and/or landmark files.

A metric is reported only where its reference exists: a case whose reference label map holds only the ignore
label gets no segmentation metrics, a case without a reference landmark file gets no landmark metrics. Missed and
spurious landmarks are counted, not silently dropped.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_babloss.landmarks.io import read_landmarks
from nnunet_babloss.landmarks.spec import LandmarkSpec, has_landmarks_block
from nnunet_babloss.metrics import landmark_detection_summary, radial_errors_mm, segmentation_metrics

__all__ = ["EvaluationResult", "evaluate_folders", "LANDMARK_SUFFIX"]

LANDMARK_SUFFIX = ".json"
_SDR_THRESHOLDS_MM = (2.0, 2.5, 3.0, 4.0)


@dataclass(frozen=True)
class EvaluationResult:
    """Where the evaluation wrote its files, and the summary it wrote."""

    summary_path: Path
    summary: dict


def _read_label_map(path: Path) -> tuple[np.ndarray, sitk.Image]:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image


def _check_same_geometry(reference: sitk.Image, prediction: sitk.Image, reference_path: Path, prediction_path: Path) -> None:
    if reference.GetSize() != prediction.GetSize():
        raise ValueError(
            f"geometry mismatch: {prediction_path} has size {prediction.GetSize()} but its reference {reference_path} "
            f"has size {reference.GetSize()}"
        )
    if not np.allclose(reference.GetSpacing(), prediction.GetSpacing(), rtol=1e-4, atol=1e-6):
        raise ValueError(
            f"geometry mismatch: {prediction_path} has spacing {prediction.GetSpacing()} but its reference "
            f"{reference_path} has spacing {reference.GetSpacing()}"
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
) -> EvaluationResult:
    """Compare predictions with references and write ``summary.json`` plus per-case and per-landmark CSVs.

    Args:
        prediction_folder: holds ``<case><file_ending>`` segmentations and/or ``<case>.json`` landmark files.
        dataset_json: the dataset's ``dataset.json`` (labels, file ending, optional landmarks block).
        reference_labels_folder: reference label maps ``<case><file_ending>``, or ``None``.
        reference_landmarks_folder: reference landmark files ``<case>.json``, or ``None``.
        output_folder: where to write the results (default: the prediction folder).
        file_ending: image file ending (default: ``dataset_json["file_ending"]``).
        nsd_tolerance_mm: tolerance of the normalised surface Dice.

    Returns:
        The path of ``summary.json`` and its content.

    Raises:
        ValueError: if neither reference is given, if a reference case has no prediction, or geometries differ.
        FileNotFoundError: if a given folder does not exist.
    """
    prediction_folder = Path(prediction_folder)
    output_folder = Path(output_folder) if output_folder is not None else prediction_folder
    file_ending = file_ending or dataset_json["file_ending"]
    if reference_labels_folder is None and reference_landmarks_folder is None:
        raise ValueError("give reference labels, reference landmarks, or both")
    for folder in (prediction_folder, reference_labels_folder, reference_landmarks_folder):
        if folder is not None and not Path(folder).is_dir():
            raise FileNotFoundError(f"folder not found: {folder}")
    output_folder.mkdir(parents=True, exist_ok=True)
    ignore_label = dataset_json["labels"].get("ignore")
    summary: dict = {"prediction_folder": str(prediction_folder), "nsd_tolerance_mm": nsd_tolerance_mm}

    if reference_labels_folder is not None:
        summary["segmentation"] = _evaluate_segmentations(
            prediction_folder, Path(reference_labels_folder), _labels_to_score(dataset_json), file_ending,
            ignore_label, nsd_tolerance_mm, output_folder,
        )
    if reference_landmarks_folder is not None:
        spec = LandmarkSpec.from_dataset_json(dataset_json) if has_landmarks_block(dataset_json) else None
        summary["landmarks"] = _evaluate_landmarks(prediction_folder, Path(reference_landmarks_folder), spec, output_folder)

    summary_path = output_folder / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2, allow_nan=False, default=_json_default))
    return EvaluationResult(summary_path, summary)


def _json_default(value: object) -> object:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _evaluate_segmentations(
    prediction_folder: Path,
    reference_folder: Path,
    labels: Mapping[str, int | Sequence[int]],
    file_ending: str,
    ignore_label: int | None,
    nsd_tolerance_mm: float,
    output_folder: Path,
) -> dict:
    references = sorted(reference_folder.glob(f"*{file_ending}"))
    if not references:
        raise ValueError(f"no reference label maps ending in {file_ending!r} in {reference_folder}")
    rows: list[dict] = []
    for reference_path in references:
        case = reference_path.name[: -len(file_ending)]
        prediction_path = prediction_folder / reference_path.name
        if not prediction_path.is_file():
            raise ValueError(f"case {case!r} has a reference {reference_path} but no prediction {prediction_path}")
        reference, reference_image = _read_label_map(reference_path)
        prediction, prediction_image = _read_label_map(prediction_path)
        _check_same_geometry(reference_image, prediction_image, reference_path, prediction_path)
        if ignore_label is not None and np.all(reference == ignore_label):
            continue  # no mask for this case: no segmentation metrics
        spacing_mm = tuple(reference_image.GetSpacing())[::-1]
        per_label = segmentation_metrics(prediction, reference, labels, spacing_mm, nsd_tolerance_mm, ignore_label)
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
    return {"num_cases": len({row["case"] for row in rows}), "mean_per_label": _clean_json(mean_per_label)}


def _evaluate_landmarks(prediction_folder: Path, reference_folder: Path, spec: LandmarkSpec | None, output_folder: Path) -> dict:
    references = sorted(reference_folder.glob(f"*{LANDMARK_SUFFIX}"))
    if not references:
        raise ValueError(f"no reference landmark files (*{LANDMARK_SUFFIX}) in {reference_folder}")
    cases, predicted_all, reference_all = [], [], []
    names: tuple[str, ...] | None = spec.names if spec is not None else None
    for reference_path in references:
        case = reference_path.name[: -len(LANDMARK_SUFFIX)]
        prediction_path = prediction_folder / reference_path.name
        if not prediction_path.is_file():
            raise ValueError(f"case {case!r} has reference landmarks {reference_path} but no prediction {prediction_path}")
        reference = read_landmarks(reference_path, spec)
        predicted = read_landmarks(prediction_path, spec)
        if names is None:
            names = reference.names
        reference, predicted = reference.reorder(names), predicted.reorder(names)
        if reference.points_mm.shape[1] != predicted.points_mm.shape[1]:
            raise ValueError(
                f"dimension mismatch for case {case!r}: {prediction_path} has {predicted.points_mm.shape[1]}D points, "
                f"{reference_path} has {reference.points_mm.shape[1]}D"
            )
        cases.append(case)
        predicted_all.append(predicted.points_mm)
        reference_all.append(reference.points_mm)
    assert names is not None
    predicted_array, reference_array = np.stack(predicted_all), np.stack(reference_all)
    summary = landmark_detection_summary(predicted_array, reference_array, thresholds_mm=_SDR_THRESHOLDS_MM)
    with open(output_folder / "landmarks_per_case.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "landmark", "radial_error_mm", "status"])
        for case, predicted, reference in zip(cases, predicted_array, reference_array):
            errors = radial_errors_mm(predicted, reference)
            for name, error, p, r in zip(names, errors, predicted, reference):
                p_present, r_present = not np.isnan(p).any(), not np.isnan(r).any()
                status = {(True, True): "evaluated", (False, True): "missed", (True, False): "spurious"}.get(
                    (p_present, r_present), "absent_in_both"
                )
                writer.writerow([case, name, "" if np.isnan(error) else f"{error:.6f}", status])
    per_landmark = summary.pop("per_landmark", None)
    if per_landmark is not None:
        summary["per_landmark"] = {name: entry for name, entry in zip(names, per_landmark)}
    return {"num_cases": len(cases), **_clean_json(summary)}


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
