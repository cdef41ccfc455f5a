"""Merge partially labelled nnU-Net raw datasets (e.g. one with masks, one with landmarks) into one.

Inputs are raw dataset folders as written by :func:`~dataset_conversion.convert.convert_dataset` (or any nnU-Net raw
dataset, with or without landmarks). The merge

* checks that the datasets agree on the number (and, unless told otherwise, the names) of channels and on 2D/3D;
* maps label *names* onto one label set (``label_aliases`` renames first), renumbering values consecutively with the
  ``ignore`` label last. A dataset whose masks lack a label the others have is ambiguous: its background may hide
  that structure. ``missing_labels`` decides: ``"error"`` (default), ``"background"`` (trust the background) or
  ``"ignore"`` (its background becomes the ignore label: only its own structures count as annotated);
* merges the landmark blocks (union of names; mirror pairs and bridges must not contradict each other) and
  reorders each landmark file to the merged names (names a dataset lacks are absent);
* records each case's source dataset and original identifier (``dataset.json["sources"]``) and which annotations it
  has (``"annotations"``), and writes stratified ``splits_final.json`` folds (by annotation kind and source);
* carries test folders (``imagesTs``/``labelsTs``/``landmarksTs``) and withheld references (``referenceTr``) along.

Region-based datasets can only be merged when all inputs share the same ``labels`` and ``regions_class_order``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray
from tqdm import tqdm

from dataset_conversion.convert import REFERENCE_FOLDER
from dataset_conversion.images import OUTPUT_FILE_ENDINGS, write_image
from dataset_conversion.masks import IGNORE_LABEL_NAME, label_dtype
from dataset_conversion.validation import DatasetValidationError, ValidationReport
from dataset_conversion.writing import (
    AtomicDatasetFolder,
    RawDatasetWriter,
    check_output_folder,
    nnunet_raw_folder,
    provenance_record,
)
from nnunet_babloss.core.landmarks.io import LandmarkSet, read_landmarks, write_landmarks
from nnunet_babloss.core.landmarks.spec import LandmarkSpec, LandmarkSpecError
from nnunet_babloss.core.provenance import JsonFileError, read_json_object
from nnunet_babloss.core.splits import ANNOTATION_KINDS, annotation_kind, stratified_splits

__all__ = ["MergeResult", "MergeSettings", "MissingLabelPolicy", "merge_datasets", "resolve_dataset_folder"]

MissingLabelPolicy = Literal["error", "background", "ignore"]
_MISSING_LABEL_POLICIES = ("error", "background", "ignore")
_REQUIRED_KEYS = ("labels", "channel_names", "numTraining", "file_ending")
# Above this ratio of two datasets' spacings (along any axis) merging warns: nnU-Net would resample one of them a lot.
_SPACING_RATIO_WARNING = 1.5


@dataclass(frozen=True)
class MergeSettings:
    """What to write and how.

    Attributes:
        dataset_id: Output dataset id (1..999).
        dataset_name: Output name.
        raw_folder: Output ``nnUNet_raw`` (default: the environment variable); inputs given by id are looked up here.
        label_aliases: Label name in an input -> name in the merged dataset (applied to every input).
        missing_labels: What an input's background means for labels only other inputs have (module docstring).
        prefix_case_ids: Prefix every case with its source dataset's name (needed when case identifiers collide).
        ignore_channel_names: Allow channels with different names (their number must still agree).
        file_ending: Output file ending; default: the first input's (if ``.nii.gz``/``.mha``), else ``.nii.gz``.
        description: ``dataset.json["description"]``.
        num_folds: Folds of ``splits_final.json``.
        seed: Seed of the splits.
        overwrite: Replace an existing output dataset.
        dry_run: Check everything, write nothing.
        progress: Show a progress bar.
    """

    dataset_id: int
    dataset_name: str
    raw_folder: Path | None = None
    label_aliases: Mapping[str, str] = field(default_factory=dict)
    missing_labels: MissingLabelPolicy = "error"
    prefix_case_ids: bool = False
    ignore_channel_names: bool = False
    file_ending: str | None = None
    description: str = ""
    num_folds: int = 5
    seed: int = 12345
    overwrite: bool = False
    dry_run: bool = False
    progress: bool = True


@dataclass(frozen=True)
class MergeResult:
    """What a merge did (see :class:`~dataset_conversion.convert.ConversionResult`)."""

    dataset_folder: Path
    written: bool
    report: ValidationReport
    annotations: dict[str, str]
    sources: dict[str, dict[str, str]]
    dataset_json: dict[str, Any]
    seconds: float


def resolve_dataset_folder(identifier: str | int | os.PathLike[str], raw_folder: Path | None) -> Path:
    """A raw dataset folder from a path, a dataset id (``12`` / ``"012"``) or a name (``"Dataset012_X"``).

    Raises:
        FileNotFoundError: nothing matches (naming where it looked).
        ValueError: an id matches several folders.
    """
    if isinstance(identifier, os.PathLike) or (isinstance(identifier, str) and os.sep in identifier):
        path = Path(identifier)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: dataset folder not found")
        return path
    text = str(identifier)
    if isinstance(identifier, str) and Path(text).is_dir():
        return Path(text)
    if raw_folder is None:
        raise FileNotFoundError(f"{text}: not a folder, and no nnUNet_raw folder to look it up in")
    if re.fullmatch(r"\d{1,3}", text):
        matches = sorted(path for path in raw_folder.glob(f"Dataset{int(text):03d}_*") if path.is_dir())
        if not matches:
            raise FileNotFoundError(f"{raw_folder}: no dataset with id {int(text)}")
        if len(matches) > 1:
            raise ValueError(f"{raw_folder}: several datasets with id {int(text)}: {[path.name for path in matches]}")
        return matches[0]
    path = raw_folder / text
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: dataset folder not found")
    return path


@dataclass
class _Source:
    folder: Path
    dataset_json: dict[str, Any]
    spec: LandmarkSpec | None
    cases: list[str]
    test_cases: list[str]

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def short_name(self) -> str:
        match = re.fullmatch(r"Dataset\d{3}_(.+)", self.folder.name)
        return match.group(1) if match else self.folder.name

    @property
    def json_path(self) -> Path:
        return self.folder / "dataset.json"

    @property
    def file_ending(self) -> str:
        return str(self.dataset_json["file_ending"])

    @property
    def num_channels(self) -> int:
        return len(self.dataset_json["channel_names"])

    @property
    def has_regions(self) -> bool:
        labels = self.dataset_json["labels"]
        return "regions_class_order" in self.dataset_json or any(isinstance(value, list) for value in labels.values())

    @property
    def ignore_value(self) -> int | None:
        value = self.dataset_json["labels"].get(IGNORE_LABEL_NAME)
        return int(value) if value is not None else None


def _list_cases(folder: Path, ending: str) -> list[str]:
    suffix = f"_0000{ending}"
    if not folder.is_dir():
        return []
    return sorted(path.name[: -len(suffix)] for path in folder.iterdir() if path.name.endswith(suffix))


def _load_source(folder: Path, report: ValidationReport) -> _Source | None:
    path = folder / "dataset.json"
    if not path.is_file():
        report.error(path, "dataset.json not found: not an nnU-Net raw dataset")
        return None
    try:
        content = read_json_object(path)
    except JsonFileError as error:
        report.error(path, error.reason)
        return None
    missing = [key for key in _REQUIRED_KEYS if key not in content]
    if missing:
        report.error(path, f"lacks the nnU-Net key(s) {missing}")
        return None
    spec = None
    if "landmarks" in content:
        try:
            spec = LandmarkSpec.from_dataset_json(content)
        except LandmarkSpecError as error:
            report.error(path, str(error).removeprefix("dataset.json: "))
            return None
    ending = str(content["file_ending"])
    cases = _list_cases(folder / "imagesTr", ending)
    if not cases:
        report.error(folder / "imagesTr", f"no training images <case>_0000{ending}")
        return None
    if len(cases) != content["numTraining"]:
        report.error(path, f"numTraining is {content['numTraining']} but imagesTr holds {len(cases)} cases")
    return _Source(folder, content, spec, cases, _list_cases(folder / "imagesTs", ending))


def _check_compatible(sources: list[_Source], settings: MergeSettings, report: ValidationReport) -> None:
    first = sources[0]
    first_names = list(first.dataset_json["channel_names"].values())
    for source in sources[1:]:
        names = list(source.dataset_json["channel_names"].values())
        if len(names) != len(first_names):
            report.error(
                source.json_path,
                f"{len(names)} channel(s) {names} but {first.json_path} has {len(first_names)} {first_names}; "
                "datasets with different channels cannot be merged",
            )
        elif names != first_names:
            message = f"channel names {names} differ from {first_names} in {first.json_path}"
            if settings.ignore_channel_names:
                report.warning(source.json_path, message + f"; the merged dataset uses {first_names}")
            else:
                report.error(
                    source.json_path,
                    message + " (nnU-Net normalises by channel name, e.g. 'CT'); pass --ignore-channel-names if they "
                    "are the same modality",
                )
    dimensions = {}
    headers: dict[str, tuple[Path, tuple[float, ...], str]] = {}
    for source in sources:
        image = source.folder / "imagesTr" / f"{source.cases[0]}_0000{source.file_ending}"
        reader = _read_header(image, report)
        if reader is None:
            continue
        dimensions[source.name] = reader.GetDimension()
        headers[source.name] = (image, tuple(reader.GetSpacing()), sitk.GetPixelIDValueAsString(reader.GetPixelID()))
    if len(set(dimensions.values())) > 1:
        report.error("", f"the datasets mix 2D and 3D images: {dimensions}")
    elif len(headers) > 1:
        _warn_about_different_images(headers, report)


def _read_header(path: Path, report: ValidationReport, case: str | None = None) -> sitk.ImageFileReader | None:
    """The image's header, or ``None`` after recording an error naming the file."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unreadable"
        report.error(path, f"cannot read the image header: {reason}", case=case)
        return None
    return reader


def _warn_about_different_images(
    headers: Mapping[str, tuple[Path, tuple[float, ...], str]], report: ValidationReport
) -> None:
    """Warn (merge-spacing, merge-pixel-type) where the datasets' first images look like different acquisitions.

    Channel names are checked elsewhere; converters name every channel ``image`` unless told otherwise, so X-rays
    and cephalograms arrive with the same name. Their spacings and pixel types still tell them apart.
    """
    (first_name, (first_image, first_spacing, first_type)), *others = headers.items()
    for name, (image, spacing, pixel_type) in others:
        ratio = max(max(a, b) / min(a, b) for a, b in zip(spacing, first_spacing) if min(a, b) > 0)
        if ratio > _SPACING_RATIO_WARNING:
            report.warning(
                image,
                f"merge-spacing: spacing {_rounded_mm(spacing)} mm differs {ratio:.1f}-fold from {first_name}'s "
                f"{_rounded_mm(first_spacing)} mm ({first_image.name}); nnU-Net resamples every case to one target "
                "spacing, so one dataset is strongly resampled. Check both spacings (is one nominal?)",
            )
        if pixel_type != first_type:
            report.warning(
                image,
                f"merge-pixel-type: pixel type {pixel_type!r} differs from {first_name}'s {first_type!r} "
                f"({first_image.name}): different modalities or scanners? nnU-Net normalises all images of a channel "
                "name alike; give different modalities different channel names",
            )


def _rounded_mm(spacing: Sequence[float]) -> list[float]:
    return [float(f"{value:.4g}") for value in spacing]


@dataclass
class _LabelPlan:
    labels: dict[str, Any]
    ignore_value: int
    lookups: dict[str, NDArray[np.int64]]
    regions_class_order: list[int] | None
    lacking: dict[str, list[str]]


def _alias(name: str, aliases: Mapping[str, str]) -> str:
    return aliases.get(name, name)


def _plan_labels(sources: list[_Source], settings: MergeSettings, report: ValidationReport) -> _LabelPlan | None:
    """One label set for the merge and a value lookup per source; ``None`` (with errors in ``report``) when the
    labels cannot be merged."""
    if any(source.has_regions for source in sources):
        return _plan_region_labels(sources, settings.label_aliases, report)
    return _plan_named_labels(sources, settings, report)


def _plan_region_labels(
    sources: list[_Source], aliases: Mapping[str, str], report: ValidationReport
) -> _LabelPlan | None:
    """Region-based datasets: every dataset must have the same labels and ``regions_class_order``; values stay."""
    renamed = [
        {_alias(name, aliases): value for name, value in source.dataset_json["labels"].items()}
        for source in sources
    ]
    orders = [source.dataset_json.get("regions_class_order") for source in sources]
    for source, labels, order in zip(sources[1:], renamed[1:], orders[1:]):
        if labels != renamed[0] or order != orders[0]:
            report.error(
                source.json_path,
                f"region-based labels can only be merged when every dataset has the same labels and "
                f"regions_class_order; {source.json_path} has {labels} / {order}, {sources[0].json_path} has "
                f"{renamed[0]} / {orders[0]}",
            )
            return None
    all_values = [
        int(value)
        for name, entry in renamed[0].items()
        if name != IGNORE_LABEL_NAME
        for value in (entry if isinstance(entry, list) else [entry])
    ]
    ignore_value = max(all_values) + 1
    labels = {name: value for name, value in renamed[0].items() if name != IGNORE_LABEL_NAME}
    lookups = {}
    for source in sources:
        lookup = np.arange(ignore_value + 1, dtype=np.int64)
        lookups[source.name] = lookup
    return _LabelPlan(labels, ignore_value, lookups, orders[0], {})


def _aliased_labels(
    sources: list[_Source], aliases: Mapping[str, str], report: ValidationReport
) -> tuple[list[str], dict[str, dict[str, int]]]:
    """The union of the (aliased) foreground label names in first-seen order, and per source name -> its value."""
    union: list[str] = []
    per_source: dict[str, dict[str, int]] = {}
    for source in sources:
        mapping: dict[str, int] = {}
        for name, value in source.dataset_json["labels"].items():
            if name in ("background", IGNORE_LABEL_NAME):
                continue
            new_name = _alias(name, aliases)
            if new_name in ("background", IGNORE_LABEL_NAME):
                report.error(source.json_path, f"label {name!r} is aliased to the reserved name {new_name!r}")
                continue
            if new_name in mapping:
                report.error(source.json_path, f"labels {name!r} and another label both become {new_name!r}")
                continue
            mapping[new_name] = int(value)
            if new_name not in union:
                union.append(new_name)
        per_source[source.name] = mapping
    unknown_aliases = sorted(
        set(aliases) - {name for source in sources for name in source.dataset_json["labels"]}
    )
    if unknown_aliases:
        report.error("", f"label alias(es) for {unknown_aliases}, which no dataset has")
    return union, per_source


def _plan_named_labels(sources: list[_Source], settings: MergeSettings, report: ValidationReport) -> _LabelPlan:
    """Labels matched by (aliased) name and renumbered 1.. in first-seen order, ``ignore`` last; a source lacking a
    label gets ``missing_labels``'s treatment of its background."""
    union, per_source = _aliased_labels(sources, settings.label_aliases, report)
    new_value = {name: index for index, name in enumerate(union, start=1)}
    ignore_value = len(union) + 1
    labels: dict[str, Any] = {"background": 0, **new_value}
    lookups: dict[str, NDArray[np.int64]] = {}
    lacking: dict[str, list[str]] = {}
    for source in sources:
        mapping = per_source[source.name]
        largest = max([0, *mapping.values(), source.ignore_value or 0])
        lookup = np.full(largest + 1, -1, dtype=np.int64)  # -1: a value the dataset does not declare
        lookup[0] = 0
        for name, value in mapping.items():
            lookup[value] = new_value[name]
        if source.ignore_value is not None:
            lookup[source.ignore_value] = ignore_value
        missing = [name for name in union if name not in mapping]
        if missing:
            lacking[source.name] = missing
            if settings.missing_labels == "ignore":
                lookup[0] = ignore_value
        lookups[source.name] = lookup
    return _LabelPlan(labels, ignore_value, lookups, None, lacking)


def _merge_pairs(
    new_pairs: Iterable[tuple[str, str]], partner: dict[str, str], merged: list[list[str]], what: str,
    json_path: Any, report: ValidationReport,
) -> None:
    """Add one dataset's left/right pairs to ``merged`` (``partner``: name -> partner so far); a pair that contradicts
    an earlier dataset's is an error of ``json_path``."""
    for left, right in new_pairs:
        if left in partner or right in partner:
            if partner.get(left) != right:
                report.error(
                    json_path,
                    f"{what} {[left, right]} contradicts another dataset's pairs "
                    f"({left!r} -> {partner.get(left)!r}, {right!r} -> {partner.get(right)!r})",
                )
            continue
        partner[left], partner[right] = right, left
        merged.append([left, right])


def _merge_landmark_blocks(
    sources: list[_Source], settings: MergeSettings, report: ValidationReport
) -> dict[str, Any] | None:
    specs: list[tuple[_Source, LandmarkSpec]] = []
    for source in sources:
        if source.spec is not None:
            specs.append((source, source.spec))
    if not specs:
        return None
    names: list[str] = []
    partner: dict[str, str] = {}
    pairs: list[list[str]] = []
    label_partner: dict[str, str] = {}
    label_pairs: list[list[str]] = []
    bridge: dict[str, list[str]] = {}
    first_source, first_spec = specs[0]
    for source, spec in specs:
        for name in spec.names:
            if name not in names:
                names.append(name)
        _merge_pairs(spec.mirror_pairs, partner, pairs, "mirror pair", source.json_path, report)
        renamed_label_pairs = [
            (_alias(left, settings.label_aliases), _alias(right, settings.label_aliases))
            for left, right in spec.label_mirror_pairs
        ]
        _merge_pairs(renamed_label_pairs, label_partner, label_pairs, "label mirror pair", source.json_path, report)
        for name, labels in spec.bridge:
            renamed = [_alias(label, settings.label_aliases) for label in labels]
            if name in bridge and bridge[name] != renamed:
                report.error(source.json_path, f"bridge of {name!r} is {renamed}, another dataset says {bridge[name]}")
                continue
            bridge[name] = renamed
        for field_name in ("sigma_mm", "boundary_range_mm"):
            if getattr(spec, field_name) != getattr(first_spec, field_name):
                report.warning(
                    source.json_path,
                    f"landmarks.{field_name} is {getattr(spec, field_name)}, {first_source.json_path} says "
                    f"{getattr(first_spec, field_name)}; the merged dataset uses {getattr(first_spec, field_name)}",
                )
    return {
        "names": names,
        "mirror_pairs": pairs,
        "bridge": {name: bridge[name] for name in names if name in bridge},
        "label_mirror_pairs": label_pairs,
        "sigma_mm": first_spec.sigma_mm,
        "boundary_range_mm": first_spec.boundary_range_mm,
    }


def _output_case_id(source: _Source, case_id: str, settings: MergeSettings) -> str:
    return f"{source.short_name}_{case_id}" if settings.prefix_case_ids else case_id


def _copy_or_convert_image(source_path: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    source_ending = "".join(source_path.suffixes[-2:]) if source_path.name.endswith(".nii.gz") else source_path.suffix
    target_ending = ".nii.gz" if target.name.endswith(".nii.gz") else target.suffix
    if source_ending == target_ending:
        shutil.copyfile(source_path, target)
    else:
        write_image(sitk.ReadImage(str(source_path)), target)


def _remap_label(
    path: Path, lookup: NDArray[np.int64], source: _Source, report: ValidationReport, case: str
) -> tuple[sitk.Image, NDArray[Any]] | None:
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        report.error(path, f"cannot read the label file: {str(error).strip().splitlines()[-1]}", case=case)
        return None
    array = sitk.GetArrayViewFromImage(image)
    values = np.unique(array)
    bad = [int(value) for value in values if value < 0 or value >= len(lookup) or lookup[int(value)] < 0]
    if bad:
        report.error(path, f"label value(s) {bad[:12]} are not declared in {source.json_path}", case=case)
        return None
    return image, lookup[np.asarray(array, dtype=np.int64)]


def _write_label(array: NDArray[Any], like: sitk.Image, path: Path, max_value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    label = sitk.GetImageFromArray(array.astype(label_dtype(max_value)))
    label.CopyInformation(like)
    write_image(label, path)


def _reorder_landmarks(path: Path, source: _Source, names: Sequence[str], report: ValidationReport,
                       case: str) -> LandmarkSet | None:
    try:
        landmarks = read_landmarks(path, source.spec)
    except (ValueError, FileNotFoundError) as error:
        report.error(path, str(error).removeprefix(f"{path}: "), case=case)
        return None
    return landmarks.reorder(names)


def _check_settings(inputs: Sequence[Any], settings: MergeSettings) -> None:
    """Reject too few inputs and settings outside their rules (``ValueError``)."""
    if len(inputs) < 2:
        raise ValueError(f"merging needs at least two datasets, got {len(inputs)}")
    if settings.missing_labels not in _MISSING_LABEL_POLICIES:
        raise ValueError(
            f"missing_labels must be one of {list(_MISSING_LABEL_POLICIES)}, got {settings.missing_labels!r}"
        )
    if settings.file_ending is not None and settings.file_ending not in OUTPUT_FILE_ENDINGS:
        raise ValueError(f"file_ending must be one of {list(OUTPUT_FILE_ENDINGS)}, got {settings.file_ending!r}")
    if settings.num_folds < 2:
        raise ValueError(f"num_folds must be >= 2, got {settings.num_folds}")


def _load_sources(
    inputs: Sequence[str | int | os.PathLike[str]], settings: MergeSettings, report: ValidationReport
) -> tuple[list[_Source], Path]:
    """Resolve and read the input datasets and check the output folder; returns the sources and the output folder.

    Raises:
        ValueError: a dataset is given twice.
        DatasetValidationError: an input cannot be read, or the output folder cannot be written.
    """
    raw_folder = nnunet_raw_folder(settings.raw_folder)
    folders = [resolve_dataset_folder(identifier, raw_folder) for identifier in inputs]
    duplicated = sorted({str(folder) for folder in folders if folders.count(folder) > 1})
    if duplicated:
        raise ValueError(f"a dataset is given twice: {duplicated}")
    target = check_output_folder(
        raw_folder, settings.dataset_id, settings.dataset_name, overwrite=settings.overwrite, report=report
    )
    if any(folder.resolve() == target.resolve() for folder in folders):
        report.error(target, "the output dataset is also an input")
    sources = [source for folder in folders if (source := _load_source(folder, report)) is not None]
    report.raise_if_errors()
    return sources, target


def _check_case_ids(sources: list[_Source], settings: MergeSettings, report: ValidationReport) -> None:
    """Case identifiers of different datasets that collide in the output are errors (unless prefixed)."""
    origin: dict[str, tuple[str, str]] = {}
    for source in sources:
        for case_id in [*source.cases, *source.test_cases]:
            new_id = _output_case_id(source, case_id, settings)
            if new_id in origin and origin[new_id][0] != source.name:
                report.error(
                    source.folder / "imagesTr",
                    f"case {case_id!r} also exists in {origin[new_id][0]}; pass --prefix-case-ids to keep both",
                    case=case_id,
                )
                continue
            origin[new_id] = (source.name, case_id)


def _base_dataset_json(
    settings: MergeSettings,
    sources: list[_Source],
    label_plan: _LabelPlan,
    landmark_block: dict[str, Any] | None,
    file_ending: str,
) -> dict[str, Any]:
    """The merged ``dataset.json`` before the cases are known (:func:`_complete_dataset_json` adds the rest)."""
    dataset_json: dict[str, Any] = {
        "name": settings.dataset_name,
        "description": settings.description,
        "channel_names": dict(sources[0].dataset_json["channel_names"]),
        "labels": dict(label_plan.labels),
        "numTraining": sum(len(source.cases) for source in sources),
        "file_ending": file_ending,
    }
    if label_plan.regions_class_order is not None:
        dataset_json["regions_class_order"] = label_plan.regions_class_order
    if landmark_block is not None:
        dataset_json["landmarks"] = landmark_block
    return dataset_json


@dataclass
class _MergedCases:
    """What the merged cases add up to, collected case by case.

    Attributes:
        annotations: Training case -> annotation kind.
        strata: Training case -> ``<kind>|<source dataset>`` (the split strata).
        case_sources: Training case -> ``{"dataset": ..., "case": ...}``.
        test_cases: Test case identifiers.
        uses_ignore: Some training case needs the ignore label.
        has_references: Some source has withheld references (``referenceTr``).
        warned_lacking: Sources whose lacking labels were already reported.
    """

    annotations: dict[str, str] = field(default_factory=dict)
    strata: dict[str, str] = field(default_factory=dict)
    case_sources: dict[str, dict[str, str]] = field(default_factory=dict)
    test_cases: list[str] = field(default_factory=list)
    uses_ignore: bool = False
    has_references: bool = False
    warned_lacking: set[str] = field(default_factory=set)


def _merge_all_cases(
    sources: list[_Source],
    settings: MergeSettings,
    label_plan: _LabelPlan,
    landmark_names: tuple[str, ...],
    folder: Path | None,
    file_ending: str,
    target: Path,
    report: ValidationReport,
) -> _MergedCases:
    """Copy (or, with ``folder=None``, only check) every case of every source; errors go to ``report``."""
    merged = _MergedCases()
    total = sum(len(source.cases) + len(source.test_cases) for source in sources)
    progress = tqdm(total=total, desc=f"{'checking' if settings.dry_run else 'merging into'} {target.name}",
                    unit="case", disable=not settings.progress)
    with progress:
        for source in sources:
            lookup = label_plan.lookups[source.name]
            for case_id, test in [*((case, False) for case in source.cases),
                                  *((case, True) for case in source.test_cases)]:
                progress.update(1)
                new_id = _output_case_id(source, case_id, settings)
                split = "Ts" if test else "Tr"
                outcome = _merge_case(
                    source, case_id, new_id, split, lookup, label_plan, landmark_names, folder, file_ending,
                    report,
                )
                if outcome is None:
                    continue
                has_mask, has_landmarks, references = outcome
                merged.has_references = merged.has_references or references
                if test:
                    merged.test_cases.append(new_id)
                    continue
                _record_training_case(source, case_id, new_id, has_mask, has_landmarks, settings, label_plan,
                                      report, merged)
    return merged


def _record_training_case(
    source: _Source,
    case_id: str,
    new_id: str,
    has_mask: bool,
    has_landmarks: bool,
    settings: MergeSettings,
    label_plan: _LabelPlan,
    report: ValidationReport,
    merged: _MergedCases,
) -> None:
    """Add a merged training case to ``merged``: its annotation kind, stratum and source (or an error)."""
    if has_mask and source.name in label_plan.lacking and source.name not in merged.warned_lacking:
        merged.warned_lacking.add(source.name)
        _report_lacking(source, label_plan.lacking[source.name], settings.missing_labels, report)
    merged.uses_ignore = merged.uses_ignore or not has_mask or (
        source.name in label_plan.lacking and settings.missing_labels == "ignore"
    )
    if not has_mask and not has_landmarks:
        report.error(source.folder / "labelsTr", f"case {case_id!r} has neither a mask nor landmarks",
                     case=case_id)
        return
    kind = annotation_kind(has_mask, has_landmarks)
    merged.annotations[new_id] = kind
    merged.strata[new_id] = f"{kind}|{source.name}"
    merged.case_sources[new_id] = {"dataset": source.name, "case": case_id}


def _complete_dataset_json(
    dataset_json: dict[str, Any],
    sources: list[_Source],
    label_plan: _LabelPlan,
    merged: _MergedCases,
    report: ValidationReport,
) -> None:
    """In place: the ignore label (when used), annotations, sources, references and test cases; then check the
    landmark block of the result (errors go to ``report``)."""
    if merged.uses_ignore:
        dataset_json["labels"][IGNORE_LABEL_NAME] = label_plan.ignore_value
    dataset_json["annotations"] = dict(sorted(merged.annotations.items()))
    dataset_json["sources"] = dict(sorted(merged.case_sources.items()))
    dataset_json["source_datasets"] = {
        source.name: {
            key: source.dataset_json[key]
            for key in ("description", "pixel_spacing", "label_encoding")
            if key in source.dataset_json
        }
        for source in sources
    }
    if merged.has_references:
        dataset_json["reference_folder"] = REFERENCE_FOLDER
    if merged.test_cases:
        dataset_json["test_cases"] = sorted(merged.test_cases)
    if "landmarks" in dataset_json:
        try:
            LandmarkSpec.from_dataset_json(dataset_json)
        except LandmarkSpecError as error:
            report.error("merged dataset.json", str(error).removeprefix("dataset.json: "))


def _merged_splits(
    merged: _MergedCases, settings: MergeSettings, report: ValidationReport
) -> list[dict[str, list[str]]] | None:
    """Stratified folds, or ``None`` (with a warning) when there are fewer training cases than folds."""
    if len(merged.annotations) >= settings.num_folds:
        return stratified_splits(merged.strata, num_folds=settings.num_folds, seed=settings.seed)
    report.warning("", f"splits_final.json not written: {len(merged.annotations)} training cases < "
                   f"{settings.num_folds} folds")
    return None


def merge_datasets(
    inputs: Sequence[str | int | os.PathLike[str]],
    settings: MergeSettings,
    *,
    arguments: Mapping[str, Any] | None = None,
) -> MergeResult:
    """Merge raw datasets into ``<raw_folder>/Dataset<ID>_<name>`` (see the module docstring).

    Args:
        inputs: Two or more datasets: folders, ids or ``Dataset<ID>_<name>`` names (looked up in the raw folder).
        settings: Output and merge rules.
        arguments: Command line arguments for ``provenance.json`` (default: ``settings``).

    Returns:
        What was written, with all warnings.

    Raises:
        ValueError: invalid settings.
        FileNotFoundError: an input dataset does not exist.
        DatasetValidationError: the inputs cannot be merged as asked (every error listed); nothing was written.
    """
    started = time.perf_counter()
    _check_settings(inputs, settings)
    report = ValidationReport()
    sources, target = _load_sources(inputs, settings, report)
    _check_compatible(sources, settings, report)
    label_plan = _plan_labels(sources, settings, report)
    landmark_block = _merge_landmark_blocks(sources, settings, report)
    landmark_names = tuple(landmark_block["names"]) if landmark_block else ()
    file_ending = settings.file_ending or (
        sources[0].file_ending if sources[0].file_ending in OUTPUT_FILE_ENDINGS else ".nii.gz"
    )
    _check_case_ids(sources, settings, report)
    if label_plan is None:  # _plan_labels recorded why
        raise DatasetValidationError(report.errors)
    dataset_json = _base_dataset_json(settings, sources, label_plan, landmark_block, file_ending)

    writer = None if settings.dry_run else AtomicDatasetFolder(target, overwrite=settings.overwrite)
    with writer if writer is not None else contextlib.nullcontext(None) as folder:
        merged = _merge_all_cases(sources, settings, label_plan, landmark_names, folder, file_ending, target, report)
        report.raise_if_errors()
        _complete_dataset_json(dataset_json, sources, label_plan, merged, report)
        report.raise_if_errors()
        splits = _merged_splits(merged, settings, report)
        if writer is not None and folder is not None:
            record = provenance_record(
                "nnUNetv2_bab_merge",
                arguments if arguments is not None else _settings_record(settings),
                {"datasets": [str(source.folder) for source in sources]},
                report,
                counts={"training": len(merged.annotations), "test": len(merged.test_cases),
                        "by_kind": {kind: list(merged.annotations.values()).count(kind) for kind in ANNOTATION_KINDS}},
            )
            RawDatasetWriter(folder, file_ending).write_metadata(dataset_json, splits=splits, provenance=record)
            writer.commit()
    return MergeResult(
        dataset_folder=target,
        written=not settings.dry_run,
        report=report,
        annotations=dict(sorted(merged.annotations.items())),
        sources=dict(sorted(merged.case_sources.items())),
        dataset_json=dataset_json,
        seconds=time.perf_counter() - started,
    )


def _report_lacking(source: _Source, lacking: list[str], policy: str, report: ValidationReport) -> None:
    if policy == "error":
        report.error(
            source.json_path,
            f"lacks label(s) {lacking} that other datasets have, so its background may hide them; choose "
            "--missing-labels background (its background is true background) or --missing-labels ignore (its "
            "background becomes the ignore label)",
        )
    elif policy == "background":
        report.warning(source.json_path, f"lacks label(s) {lacking}; its background is taken as true background")
    else:
        report.warning(source.json_path, f"lacks label(s) {lacking}; its background becomes the ignore label")


def _merge_case(
    source: _Source,
    case_id: str,
    new_id: str,
    split: str,
    lookup: NDArray[np.int64],
    label_plan: _LabelPlan,
    landmark_names: tuple[str, ...],
    folder: Path | None,
    file_ending: str,
    report: ValidationReport,
) -> tuple[bool, bool, bool] | None:
    """Copy one case; ``(has_mask, has_landmarks, wrote_references)`` or ``None`` on errors."""
    ending = source.file_ending
    has_mask = False
    label_path = source.folder / f"labels{split}" / f"{case_id}{ending}"
    if split == "Tr" and not label_path.is_file():
        report.error(label_path, "label file not found (every training case needs one)", case=case_id)
        return None
    remapped = None
    if label_path.is_file():
        remapped = _remap_label(label_path, lookup, source, report, case_id)
        if remapped is None:
            return None
        has_mask = bool(np.any(remapped[1] != label_plan.ignore_value))
    landmarks = None
    landmark_path = source.folder / f"landmarks{split}" / f"{case_id}.json"
    if landmark_path.is_file():
        if not landmark_names:
            report.error(landmark_path, f"landmark file, but {source.json_path} has no 'landmarks' block", case=case_id)
            return None
        landmarks = _reorder_landmarks(landmark_path, source, landmark_names, report, case_id)
        if landmarks is None:
            return None
    has_landmarks = landmarks is not None and bool(landmarks.present.any())
    references = False
    image_paths = [source.folder / f"images{split}" / f"{case_id}_{channel:04d}{ending}"
                   for channel in range(source.num_channels)]
    for image_path in image_paths:
        if not image_path.is_file():
            report.error(image_path, "image file not found", case=case_id)
            return None
        # Images are copied byte for byte: read each header so that a corrupt file is not copied into the merge.
        if _read_header(image_path, report, case_id) is None:
            return None
    if folder is not None:
        for channel, image_path in enumerate(image_paths):
            _copy_or_convert_image(image_path, folder / f"images{split}" / f"{new_id}_{channel:04d}{file_ending}")
        if remapped is not None:
            _write_label(remapped[1], remapped[0], folder / f"labels{split}" / f"{new_id}{file_ending}",
                         label_plan.ignore_value)
        if landmarks is not None and has_landmarks:
            landmark_target = folder / f"landmarks{split}" / f"{new_id}.json"
            landmark_target.parent.mkdir(parents=True, exist_ok=True)
            write_landmarks(landmark_target, landmarks)
        if split == "Tr":
            references = _copy_references(source, case_id, new_id, lookup, label_plan, landmark_names, folder,
                                          file_ending, report)
    elif split == "Tr":
        references = (source.folder / REFERENCE_FOLDER).is_dir()
    return has_mask, has_landmarks, references


def _copy_references(
    source: _Source,
    case_id: str,
    new_id: str,
    lookup: NDArray[np.int64],
    label_plan: _LabelPlan,
    landmark_names: tuple[str, ...],
    folder: Path,
    file_ending: str,
    report: ValidationReport,
) -> bool:
    copied = False
    reference = source.folder / REFERENCE_FOLDER
    label_path = reference / "labels" / f"{case_id}{source.file_ending}"
    if label_path.is_file():
        remapped = _remap_label(label_path, lookup, source, report, case_id)
        if remapped is not None:
            _write_label(remapped[1], remapped[0], folder / REFERENCE_FOLDER / "labels" / f"{new_id}{file_ending}",
                         label_plan.ignore_value)
            copied = True
    landmark_path = reference / "landmarks" / f"{case_id}.json"
    if landmark_path.is_file() and landmark_names:
        landmarks = _reorder_landmarks(landmark_path, source, landmark_names, report, case_id)
        if landmarks is not None:
            target = folder / REFERENCE_FOLDER / "landmarks" / f"{new_id}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            write_landmarks(target, landmarks)
            copied = True
    return copied


def _settings_record(settings: MergeSettings) -> dict[str, Any]:
    record = asdict(settings)
    record["raw_folder"] = str(settings.raw_folder) if settings.raw_folder is not None else None
    return record
