"""Convert images + optional masks + optional landmark files into an nnU-Net raw dataset with landmarks.

Output (``<raw_folder>/Dataset<ID>_<name>``, written atomically by :class:`~dataset_conversion.writing.
AtomicDatasetFolder`)::

    imagesTr/<case>_0000<ending>     every training case (one file per channel)
    labelsTr/<case><ending>          the mask, or a map filled with the "ignore" label for a case without one
    landmarksTr/<case>.json          only for cases with landmarks (world LPS mm, our JSON)
    imagesTs/, labelsTs/, landmarksTs/   held-out test cases with all their annotations (if any were chosen)
    referenceTr/labels/, referenceTr/landmarks/   annotations withheld from training cases to simulate partial
                                     labels (``annotation_kinds``), kept so pseudo labels and predictions can be scored
    dataset.json                     nnU-Net keys + "landmarks" block + "annotations" {case: kind}
    splits_final.json                stratified folds: every fold validates every kind of case
    provenance.json                  arguments, versions, sources, warnings

2D images (X-rays given as PNG/JPEG/TIFF) are written as 2D NIfTI/MHA with their real pixel spacing, and pixel
landmarks are placed in that world frame, so nnU-Net and the metrics work in mm.

Every case is checked before anything becomes visible; problems are collected in a
:class:`~dataset_conversion.validation.ValidationReport` and raised together as a
:class:`~dataset_conversion.validation.DatasetValidationError`. ``dry_run`` checks without writing.
"""

from __future__ import annotations

import contextlib
import fnmatch
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray
from tqdm import tqdm

from dataset_conversion.images import (
    OUTPUT_FILE_ENDINGS,
    describe_geometry,
    geometry_mismatch,
    is_natural_image,
    list_case_files,
    read_image,
    write_image,
)
from dataset_conversion.landmark_sources import CaseLandmarks, LandmarkSource, NameMapping, PixelLandmarks
from dataset_conversion.masks import IGNORE_LABEL_NAME, LabelEncoding, MaskSource, OverlapMode, label_dtype
from dataset_conversion.validation import ValidationReport
from dataset_conversion.writing import (
    AtomicDatasetFolder,
    RawDatasetWriter,
    check_output_folder,
    dataset_folder_name,
    nnunet_raw_folder,
    provenance_record,
)
from nnunet_babloss.core.landmarks.geometry import ImageGeometry, contains_index
from nnunet_babloss.core.landmarks.io import LandmarkSet, write_landmarks
from nnunet_babloss.core.landmarks.spec import LandmarkSpec, LandmarkSpecError
from nnunet_babloss.core.splits import ANNOTATION_KINDS, annotation_kind, stratified_splits

__all__ = [
    "REFERENCE_FOLDER",
    "ConversionInputs",
    "ConversionResult",
    "ConversionSettings",
    "LandmarkOptions",
    "convert_dataset",
    "expand_bridge",
]

REFERENCE_FOLDER = "referenceTr"
"""Sub-folder of the dataset holding annotations withheld from training cases (``labels/``, ``landmarks/``)."""
_SLICER_Z_TOLERANCE_MM = 1e-6


@dataclass(frozen=True)
class ConversionInputs:
    """Where the data comes from.

    Attributes:
        image_folders: One folder per channel; the files are named by case (``<case>.png``, ``<case>.nii.gz``, or a
            ``<case>/`` DICOM folder). The first folder defines the cases.
        masks: Masks, or ``None`` for a landmark-only dataset.
        landmarks: Landmarks, or ``None`` for a segmentation-only dataset.
        name_mapping: Landmark selection and renaming (applied to the names in the files).
        annotation_kinds: Case -> ``"both"``/``"mask_only"``/``"landmark_only"``: withhold the other annotation (it
            goes to ``referenceTr``) to simulate a partially labelled dataset. Must list every training case.
        test_cases: Cases written to ``imagesTs``/``labelsTs``/``landmarksTs`` instead of the training set.
        cases: Convert only these cases (default: every image of the first folder).
    """

    image_folders: tuple[Path, ...]
    masks: MaskSource | None = None
    landmarks: LandmarkSource | None = None
    name_mapping: NameMapping = field(default_factory=NameMapping)
    annotation_kinds: Mapping[str, str] | None = None
    test_cases: frozenset[str] = frozenset()
    cases: tuple[str, ...] | None = None

    def describe(self) -> dict[str, Any]:
        """Sources for ``provenance.json``."""
        return {
            "image_folders": [str(folder) for folder in self.image_folders],
            "masks": self.masks.describe() if self.masks else None,
            "landmarks": self.landmarks.describe() if self.landmarks else None,
            "landmark_select": list(self.name_mapping.select),
            "landmark_rename": dict(self.name_mapping.rename),
            "annotation_kinds": dict(self.annotation_kinds) if self.annotation_kinds is not None else None,
            "test_cases": sorted(self.test_cases),
            "cases": list(self.cases) if self.cases is not None else None,
        }


@dataclass(frozen=True)
class LandmarkOptions:
    """The ``"landmarks"`` block and the landmark checks.

    Attributes:
        names: Landmark names in channel order (after renaming); default: the names in the files, in first-seen order.
        mirror_pairs: ``(left, right)`` name pairs swapped by a left-right flip.
        label_mirror_pairs: ``(left, right)`` label-name pairs (sided structures, e.g. right/left lung) whose values
            swap under the same flip.
        bridge: ``fnmatch`` pattern on landmark names -> label names the matching landmarks lie on
            (e.g. ``{"RL_*": ("right_lung",)}``); a pattern matching no landmark is an error.
        sigma_mm: Heatmap sigma.
        boundary_range_mm: BaBLoss boundary range.
        outside: A landmark outside its image: ``"error"`` or ``"drop"`` (warn, landmark absent).
    """

    names: tuple[str, ...] | None = None
    mirror_pairs: tuple[tuple[str, str], ...] = ()
    label_mirror_pairs: tuple[tuple[str, str], ...] = ()
    bridge: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sigma_mm: float = 2.0
    boundary_range_mm: float = 5.0
    outside: Literal["error", "drop"] = "error"


@dataclass(frozen=True)
class ConversionSettings:
    """What to write and how.

    Attributes:
        dataset_id: nnU-Net dataset id (1..999).
        dataset_name: Name after the id.
        raw_folder: The ``nnUNet_raw`` folder (default: the ``nnUNet_raw`` environment variable).
        channel_names: One per image folder (nnU-Net normalises ``"CT"`` differently from everything else);
            default ``("image",)`` / ``("channel0", "channel1", ...)``.
        description: ``dataset.json["description"]``.
        file_ending: ``".nii.gz"`` or ``".mha"``.
        pixel_spacing_mm: Spacing of PNG/JPEG/TIFF/BMP images, one value or one per axis (x, y[, z]); required for them.
        pixel_spacing_note: Where that spacing comes from (recorded in ``dataset.json`` and ``provenance.json``),
            e.g. ``"nominal, not documented by the dataset"``.
        overlap: How overlapping structures are encoded (see :mod:`dataset_conversion.masks`).
        priority: Painting order for ``overlap="priority"`` (later wins); default: the structure order.
        declared_labels: Label names of a dataset without masks (every label file is then all "ignore"), so that
            a ``bridge`` can name them and the label set matches a sibling dataset with masks.
        landmarks: Landmark block and checks.
        partial: Allow cases that lack a mask (they get the ignore label) or landmarks; otherwise a missing file is
            an error.
        num_folds: Folds of ``splits_final.json``.
        seed: Seed of the splits.
        overwrite: Replace an existing output dataset.
        dry_run: Check everything, write nothing.
        progress: Show a progress bar.
        tool: Tool name recorded in ``provenance.json``.
        extra_dataset_json: Further keys for ``dataset.json`` (must not clash with the ones written here).
    """

    dataset_id: int
    dataset_name: str
    raw_folder: Path | None = None
    channel_names: tuple[str, ...] | None = None
    description: str = ""
    file_ending: str = ".nii.gz"
    pixel_spacing_mm: tuple[float, ...] | None = None
    pixel_spacing_note: str | None = None
    overlap: OverlapMode = "error"
    priority: tuple[str, ...] | None = None
    declared_labels: tuple[str, ...] = ()
    landmarks: LandmarkOptions = field(default_factory=LandmarkOptions)
    partial: bool = False
    num_folds: int = 5
    seed: int = 12345
    overwrite: bool = False
    dry_run: bool = False
    progress: bool = True
    tool: str = "nnUNetv2_bab_convert"
    extra_dataset_json: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ConversionResult:
    """What a conversion did.

    Attributes:
        dataset_folder: The dataset folder (not created when ``written`` is false).
        written: False for a dry run.
        report: All warnings (errors raise instead).
        annotations: Training case -> annotation kind.
        test_cases: Cases written to the test folders.
        dataset_json: The ``dataset.json`` content.
        seconds: Wall time.
    """

    dataset_folder: Path
    written: bool
    report: ValidationReport
    annotations: dict[str, str]
    test_cases: tuple[str, ...]
    dataset_json: dict[str, Any]
    seconds: float


@dataclass
class _CasePlan:
    case_id: str
    images: tuple[Path, ...]
    test: bool
    mask_file: str | None = None
    landmarks: CaseLandmarks | None = None
    landmark_file: str | None = None
    use_mask: bool = False
    use_landmarks: bool = False

    @property
    def kind(self) -> str:
        return annotation_kind(self.use_mask, self.use_landmarks)


def expand_bridge(
    bridge: Mapping[str, Sequence[str]], names: Sequence[str], report: ValidationReport
) -> dict[str, list[str]]:
    """Expand ``{pattern: label names}`` over landmark ``names`` into ``{landmark: label names}`` (names order).

    A pattern matching nothing, or a landmark matched by two patterns, is recorded as an error.
    """
    result: dict[str, list[str]] = {}
    matched_by: dict[str, str] = {}
    for pattern, labels in bridge.items():
        matches = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
        if not matches:
            report.error("", f"bridge pattern {pattern!r} matches no landmark (landmarks: {_short(names)})")
        for name in matches:
            if name in matched_by:
                report.error(
                    "", f"landmark {name!r} is matched by bridge patterns {matched_by[name]!r} and {pattern!r}"
                )
                continue
            matched_by[name] = pattern
            result[name] = list(labels)
    return {name: result[name] for name in names if name in result}


def _short(names: Sequence[str], limit: int = 8) -> str:
    shown = list(names[:limit])
    return f"{shown}{f' ... ({len(names)} in all)' if len(names) > limit else ''}"


def _check_settings(settings: ConversionSettings, inputs: ConversionInputs) -> None:
    """Raise ``ValueError`` for settings that are wrong regardless of the data."""
    dataset_folder_name(settings.dataset_id, settings.dataset_name)
    if settings.file_ending not in OUTPUT_FILE_ENDINGS:
        raise ValueError(f"file_ending must be one of {list(OUTPUT_FILE_ENDINGS)}, got {settings.file_ending!r}")
    if not inputs.image_folders:
        raise ValueError("at least one image folder is needed")
    if settings.channel_names is not None and len(settings.channel_names) != len(inputs.image_folders):
        raise ValueError(
            f"channel_names has {len(settings.channel_names)} entries {list(settings.channel_names)} but there are "
            f"{len(inputs.image_folders)} image folders (one per channel)"
        )
    if settings.num_folds < 2:
        raise ValueError(f"num_folds must be >= 2, got {settings.num_folds}")
    if settings.landmarks.outside not in ("error", "drop"):
        raise ValueError(f"outside must be 'error' or 'drop', got {settings.landmarks.outside!r}")
    if settings.declared_labels and inputs.masks is not None:
        raise ValueError(
            "declared_labels is for datasets without masks; with masks the labels come from the mask input"
        )
    if inputs.annotation_kinds is not None:
        for case_id, kind in inputs.annotation_kinds.items():
            if kind not in ANNOTATION_KINDS:
                raise ValueError(
                    f"annotation_kinds[{case_id!r}]: must be one of {list(ANNOTATION_KINDS)}, got {kind!r}"
                )


def _encoding(inputs: ConversionInputs, settings: ConversionSettings) -> LabelEncoding | None:
    if inputs.masks is not None:
        return LabelEncoding(inputs.masks.structures, settings.overlap, settings.priority)
    if settings.declared_labels:
        return LabelEncoding(settings.declared_labels, settings.overlap, settings.priority)
    return None


def _plan_cases(
    inputs: ConversionInputs, settings: ConversionSettings, report: ValidationReport
) -> list[_CasePlan]:
    """Match images, masks and landmark files by case; record missing and orphan files."""
    channel_files = _list_channel_files(inputs, report)
    if channel_files is None:
        return []  # without the images, every mask and landmark file would look orphaned
    cases = _image_cases(inputs, channel_files, report)

    mask_files = inputs.masks.case_files(report) if inputs.masks is not None else {}
    landmark_files = inputs.landmarks.case_files(report) if inputs.landmarks is not None else {}
    for what, files in (("mask", mask_files), ("landmark file", landmark_files)):
        for case_id in sorted(set(files) - set(channel_files[0])):
            report.error(files[case_id], f"{what} for case {case_id!r}, which has no image (a typo in the name?)",
                         case=case_id)

    unknown_tests = sorted(inputs.test_cases - set(channel_files[0]))
    for case_id in unknown_tests:
        report.error(inputs.image_folders[0], f"test case {case_id!r} has no image", case=case_id)
    kinds = inputs.annotation_kinds
    if kinds is not None:
        for case_id in sorted(set(kinds) - set(channel_files[0])):
            report.error("annotation kinds", f"case {case_id!r} is listed but has no image", case=case_id)
        for case_id in cases:
            if case_id not in kinds and case_id not in inputs.test_cases:
                report.error("annotation kinds", f"training case {case_id!r} has no annotation kind", case=case_id)

    plans: list[_CasePlan] = []
    for case_id in cases:
        plan = _CasePlan(
            case_id,
            tuple(files.get(case_id, Path()) for files in channel_files),
            test=case_id in inputs.test_cases,
            mask_file=mask_files.get(case_id),
            landmark_file=landmark_files.get(case_id),
        )
        _choose_annotations(plan, inputs, settings, kinds, report)
        plans.append(plan)
    if inputs.masks is None and inputs.landmarks is None:
        report.error("", "nothing to train on: give masks, landmarks or both")
    return plans


def _list_channel_files(inputs: ConversionInputs, report: ValidationReport) -> list[dict[str, Path]] | None:
    """``{case: image file}`` of every image folder (one per channel); ``None`` if a folder could not be listed."""
    channel_files: list[dict[str, Path]] = []
    listing_failed = False
    for folder in inputs.image_folders:
        try:
            channel_files.append(list_case_files(folder))
        except (FileNotFoundError, ValueError) as error:
            report.error(folder, str(error).removeprefix(f"{folder}: "))
            channel_files.append({})
            listing_failed = True
    if listing_failed:
        return None
    return channel_files


def _image_cases(
    inputs: ConversionInputs, channel_files: list[dict[str, Path]], report: ValidationReport
) -> list[str]:
    """The cases to convert (those with a channel 0 image, or the requested ones); record missing channel images."""
    cases = list(channel_files[0])
    if not cases:
        report.error(
            inputs.image_folders[0], "no image files found (PNG, JPEG, TIFF, BMP, NIfTI, MHA/MHD, NRRD, DICOM)"
        )
    if inputs.cases is not None:
        unknown = [case_id for case_id in inputs.cases if case_id not in channel_files[0]]
        for case_id in unknown:
            report.error(inputs.image_folders[0], f"case {case_id!r} was requested but has no image", case=case_id)
        cases = [case_id for case_id in sorted(inputs.cases) if case_id in channel_files[0]]
    for channel, files in enumerate(channel_files[1:], start=1):
        for case_id in cases:
            if case_id not in files:
                report.error(inputs.image_folders[channel], f"no image of channel {channel} for case {case_id!r}",
                             case=case_id)
        for case_id in sorted(set(files) - set(channel_files[0])):
            report.error(files[case_id], f"channel {channel} image without a channel 0 image (case {case_id!r})",
                         case=case_id)
    return cases


def _choose_annotations(
    plan: _CasePlan,
    inputs: ConversionInputs,
    settings: ConversionSettings,
    kinds: Mapping[str, str] | None,
    report: ValidationReport,
) -> None:
    """Set which of its mask and landmarks a case uses; record annotations its kind needs but the case lacks."""
    case_id = plan.case_id
    has_mask, has_landmarks = plan.mask_file is not None, plan.landmark_file is not None
    if plan.test:
        plan.use_mask, plan.use_landmarks = has_mask, has_landmarks
    elif kinds is not None and case_id in kinds:
        plan.use_mask = kinds[case_id] in ("both", "mask_only")
        plan.use_landmarks = kinds[case_id] in ("both", "landmark_only")
        needed = [
            what
            for what, wanted, present in (("mask", plan.use_mask, has_mask),
                                          ("landmark file", plan.use_landmarks, has_landmarks))
            if wanted and not present
        ]
        for what in needed:
            report.error(plan.images[0], f"case {case_id!r} is {kinds[case_id]!r} but has no {what}",
                         case=case_id)
    else:
        plan.use_mask, plan.use_landmarks = has_mask, has_landmarks
        lacking = [
            what
            for what, source_given, present in (("mask", inputs.masks is not None, has_mask),
                                                ("landmark file", inputs.landmarks is not None, has_landmarks))
            if source_given and not present
        ]
        if lacking and not settings.partial:
            report.error(
                plan.images[0],
                f"case {case_id!r} has no {' and no '.join(lacking)} (pass --partial if some cases are meant to "
                "lack annotations)",
                case=case_id,
            )
        elif not has_mask and not has_landmarks:
            report.error(plan.images[0], f"case {case_id!r} has neither a mask nor landmarks", case=case_id)


def _load_landmarks(
    plans: list[_CasePlan], inputs: ConversionInputs, report: ValidationReport
) -> None:
    """Read every case's landmark file (selection and renaming applied) into the plans."""
    if inputs.landmarks is None:
        return
    for plan in plans:
        if plan.landmark_file is None:
            continue
        landmarks = inputs.landmarks.load(plan.case_id, report)
        if landmarks is None:
            continue
        plan.landmarks = inputs.name_mapping.apply(landmarks, report, plan.landmark_file, plan.case_id)


def _landmark_names(plans: list[_CasePlan], options: LandmarkOptions, report: ValidationReport) -> tuple[str, ...]:
    """The dataset's landmark names; records unknown names (error) and names a file lacks (warning)."""
    loaded = [plan for plan in plans if plan.landmarks is not None]
    if options.names is not None:
        names = tuple(options.names)
    else:
        seen: dict[str, None] = {}
        for plan in loaded:
            for name in plan.landmarks.names:  # type: ignore[union-attr]
                seen.setdefault(name, None)
        names = tuple(seen)
    known = set(names)
    for plan in loaded:
        file_names = plan.landmarks.names  # type: ignore[union-attr]
        unknown = [name for name in file_names if name not in known]
        if unknown:
            report.error(
                plan.landmark_file or "",
                f"unknown landmark name(s) {_short(unknown)}; the dataset's landmarks are {_short(names)} "
                "(select or rename landmarks, or list the names)",
                case=plan.case_id,
            )
            plan.landmarks = None
            continue
        lacking = [name for name in names if name not in set(file_names)]
        if lacking:
            report.warning(plan.landmark_file or "", f"lacks landmark(s) {_short(lacking)}; they are absent",
                           case=plan.case_id)
    return names


def _world_landmarks(
    plan: _CasePlan,
    image: sitk.Image,
    names: tuple[str, ...],
    options: LandmarkOptions,
    report: ValidationReport,
) -> LandmarkSet | None:
    """The case's landmarks in world mm, ordered as ``names``, checked against the image."""
    landmarks = plan.landmarks
    file = plan.landmark_file or ""
    geometry = ImageGeometry.from_sitk(image)
    size = tuple(image.GetSize())
    if isinstance(landmarks, PixelLandmarks):
        if landmarks.image_size is not None and tuple(landmarks.image_size) != size[: len(landmarks.image_size)]:
            report.error(
                file, f"the file is for an image of size {list(landmarks.image_size)} but the image "
                f"{plan.images[0].name} has size {list(size)}", case=plan.case_id,
            )
            return None
        if landmarks.pixel_spacing_mm is not None and not np.allclose(
            landmarks.pixel_spacing_mm, image.GetSpacing()[: len(landmarks.pixel_spacing_mm)], rtol=1e-6, atol=0.0
        ):
            report.error(
                file, f"the file declares a pixel spacing of {list(landmarks.pixel_spacing_mm)} mm but the image "
                f"{plan.images[0].name} has {list(image.GetSpacing())} mm", case=plan.case_id,
            )
            return None
        if landmarks.dimension != geometry.dimension:
            report.error(file, f"{landmarks.dimension}D pixel landmarks for a {geometry.dimension}D image",
                         case=plan.case_id)
            return None
        world = landmarks.to_world(geometry)
    elif landmarks is not None:
        world = landmarks
        if world.dimension == 3 and geometry.dimension == 2:
            # Slicer formats are 3D only; a 2D image's points come back with z = 0.
            z_values = world.points_mm[world.present, 2]
            if np.all(np.abs(z_values) <= _SLICER_Z_TOLERANCE_MM):
                world = LandmarkSet(world.names, world.points_mm[:, :2], world.confidence)
        if world.dimension != geometry.dimension:
            report.error(file, f"{world.dimension}D landmarks for the {geometry.dimension}D image "
                         f"{plan.images[0].name}", case=plan.case_id)
            return None
    else:
        return None
    world = world.reorder(names)
    index = geometry.world_to_index(world.points_mm)
    shape = size[::-1]
    outside = world.present & ~contains_index(index, shape)
    if outside.any():
        details = ", ".join(
            f"{name} at pixel/voxel (x, y{', z' if len(shape) == 3 else ''}) "
            f"{[round(float(value), 2) for value in row[::-1]]}"
            for name, row in zip(np.array(names)[outside], index[outside])
        )
        message = f"landmark(s) outside the image ({describe_geometry(image)}): {details}"
        if options.outside == "error":
            report.error(file, message + " (pass --outside drop to mark them absent)", case=plan.case_id)
            return None
        report.warning(file, message + "; marked absent", case=plan.case_id)
        points = np.array(world.points_mm)
        points[outside] = np.nan
        world = LandmarkSet(world.names, points, world.confidence)
    if not world.present.any():
        report.warning(file, "no landmark is present in this file", case=plan.case_id)
    return world


def _read_case_images(
    plan: _CasePlan, settings: ConversionSettings, report: ValidationReport
) -> list[sitk.Image] | None:
    images: list[sitk.Image] = []
    for path in plan.images:
        try:
            spacing = settings.pixel_spacing_mm if is_natural_image(path) else None
            image = read_image(path, pixel_spacing_mm=spacing)
        except (FileNotFoundError, ValueError) as error:
            report.error(path, str(error).removeprefix(f"{path}: "), case=plan.case_id)
            return None
        if images:
            mismatch = geometry_mismatch(images[0], image)
            if mismatch:
                report.error(
                    path, f"channel geometry differs from {plan.images[0].name}: {mismatch}", case=plan.case_id
                )
                return None
        images.append(image)
    return images


def _mask_array(
    plan: _CasePlan,
    image: sitk.Image,
    masks: MaskSource,
    encoding: LabelEncoding,
    report: ValidationReport,
) -> NDArray[Any] | None:
    loaded = masks.load(plan.case_id, report)
    if loaded is None:
        return None
    if is_natural_image(loaded.file):
        # PNG/TIFF masks take the stated geometry of their image; only the grids must agree.
        mismatch = None if loaded.image.GetSize() == image.GetSize() else (
            f"size {list(loaded.image.GetSize())} != {list(image.GetSize())}"
        )
    else:
        mismatch = geometry_mismatch(image, loaded.image)
    if mismatch:
        report.error(loaded.file, f"mask geometry does not match the image {plan.images[0]}: {mismatch}",
                     case=plan.case_id)
        return None
    return encoding.encode(loaded, report, plan.case_id)


def _label_image(array: NDArray[Any], image: sitk.Image) -> sitk.Image:
    label = sitk.GetImageFromArray(array)
    label.CopyInformation(image)
    return label


def _labels_block(encoding: LabelEncoding | None, with_ignore: bool) -> dict[str, Any]:
    if encoding is None:
        return {"background": 0, IGNORE_LABEL_NAME: 1}
    return encoding.labels_json(with_ignore)


def _ignore_value(encoding: LabelEncoding | None) -> int:
    return 1 if encoding is None else encoding.ignore_value


def _plan_and_read_landmarks(
    inputs: ConversionInputs, settings: ConversionSettings, report: ValidationReport
) -> tuple[list[_CasePlan], tuple[str, ...]]:
    """Match the input files to cases and read the landmark files; returns the case plans and the landmark names."""
    plans = _plan_cases(inputs, settings, report)
    _load_landmarks(plans, inputs, report)
    # Multi-case landmark files report on every case they hold; keep warnings about the cases converted.
    converted = {plan.case_id for plan in plans}
    report.issues[:] = [
        issue for issue in report.issues if issue.severity == "error" or issue.case is None or issue.case in converted
    ]
    names = _landmark_names(plans, settings.landmarks, report) if inputs.landmarks is not None else ()
    has_natural_images = any(is_natural_image(plan.images[0]) for plan in plans)
    if settings.pixel_spacing_mm is not None and plans and not has_natural_images:
        report.error(
            "", "a pixel spacing was stated, but there are no PNG/JPEG/TIFF/BMP images (other formats carry their "
            "own spacing)"
        )
    return plans, names


def _channel_names(inputs: ConversionInputs, settings: ConversionSettings) -> dict[str, str]:
    """``dataset.json["channel_names"]``: the given names, else ``image`` (one folder) or ``channel<i>``."""
    names = settings.channel_names or (
        ("image",) if len(inputs.image_folders) == 1
        else tuple(f"channel{index}" for index in range(len(inputs.image_folders)))
    )
    return {str(index): name for index, name in enumerate(names)}


def _add_landmark_block(
    dataset_json: dict[str, Any],
    names: tuple[str, ...],
    inputs: ConversionInputs,
    settings: ConversionSettings,
    report: ValidationReport,
) -> LandmarkSpec | None:
    """In place: the ``landmarks`` block (when there are landmark names); returns its spec, ``None`` on errors."""
    if not names:
        if inputs.landmarks is not None and not report.has_errors:
            report.error("", "no landmarks were found in any landmark file")
        return None
    bridge = expand_bridge(settings.landmarks.bridge, names, report)
    dataset_json["landmarks"] = {
        "names": list(names),
        "mirror_pairs": [list(pair) for pair in settings.landmarks.mirror_pairs],
        "bridge": bridge,
        "label_mirror_pairs": [list(pair) for pair in settings.landmarks.label_mirror_pairs],
        "sigma_mm": settings.landmarks.sigma_mm,
        "boundary_range_mm": settings.landmarks.boundary_range_mm,
    }
    try:
        return LandmarkSpec.from_dataset_json(dataset_json)
    except LandmarkSpecError as error:
        report.error("dataset.json", str(error).removeprefix("dataset.json: "))
        return None


def _base_dataset_json(
    inputs: ConversionInputs,
    settings: ConversionSettings,
    encoding: LabelEncoding | None,
    plans: list[_CasePlan],
    names: tuple[str, ...],
    report: ValidationReport,
) -> tuple[dict[str, Any], LandmarkSpec | None]:
    """``dataset.json`` before the cases are converted, and the landmark spec (``None`` without landmarks).

    Raises:
        ValueError: ``extra_dataset_json`` repeats a key the converter writes.
    """
    training = [plan for plan in plans if not plan.test]
    with_ignore = any(not plan.use_mask for plan in training)
    dataset_json: dict[str, Any] = {
        "name": settings.dataset_name,
        "description": settings.description,
        "channel_names": _channel_names(inputs, settings),
        "labels": _labels_block(encoding, with_ignore),
        "numTraining": len(training),
        "file_ending": settings.file_ending,
    }
    if encoding is not None and encoding.regions_class_order() is not None:
        dataset_json["regions_class_order"] = encoding.regions_class_order()
    if encoding is not None:
        dataset_json["label_encoding"] = {
            "overlap": encoding.overlap,
            "priority": list(encoding.priority or encoding.structures) if encoding.overlap == "priority" else None,
        }
    spec = _add_landmark_block(dataset_json, names, inputs, settings, report)
    if settings.pixel_spacing_mm is not None:
        dataset_json["pixel_spacing"] = {
            "spacing_mm": list(settings.pixel_spacing_mm),
            "applies_to": "PNG/JPEG/TIFF/BMP input images",
            "source": settings.pixel_spacing_note or "stated by the user",
        }
    for key, value in settings.extra_dataset_json.items():
        if key in dataset_json:
            raise ValueError(f"extra_dataset_json: key {key!r} is written by the converter itself")
        dataset_json[key] = value
    return dataset_json, spec


@dataclass
class _ConvertedCases:
    """What the converted cases add up to: training case -> annotation kind, test cases, withheld references."""

    annotations: dict[str, str] = field(default_factory=dict)
    tests: list[str] = field(default_factory=list)
    has_references: bool = False


def _convert_all_cases(
    plans: list[_CasePlan],
    inputs: ConversionInputs,
    settings: ConversionSettings,
    encoding: LabelEncoding | None,
    names: tuple[str, ...],
    folder: Path | None,
    target: Path,
    report: ValidationReport,
) -> _ConvertedCases:
    """Convert (or, with ``folder=None``, only check) every case; errors go to ``report``."""
    converted = _ConvertedCases()
    if folder is not None:
        for sub in ("imagesTr", "labelsTr"):
            (folder / sub).mkdir()
    progress = tqdm(plans, desc=f"{'checking' if settings.dry_run else 'converting'} {target.name}",
                    unit="case", disable=not settings.progress)
    for plan in progress:
        written = _convert_case(plan, inputs, settings, encoding, names, folder, report)
        if written is None:
            continue
        if plan.test:
            converted.tests.append(plan.case_id)
        else:
            converted.annotations[plan.case_id] = written
        converted.has_references = converted.has_references or _has_reference(plan)
    return converted


def _complete_dataset_json(dataset_json: dict[str, Any], converted: _ConvertedCases) -> None:
    """In place: annotations, the reference folder and the test cases."""
    dataset_json["annotations"] = dict(sorted(converted.annotations.items()))
    if converted.has_references:
        dataset_json["reference_folder"] = REFERENCE_FOLDER
    if converted.tests:
        dataset_json["test_cases"] = sorted(converted.tests)


def _splits(
    annotations: Mapping[str, str], settings: ConversionSettings, report: ValidationReport
) -> list[dict[str, list[str]]] | None:
    """Stratified folds, or ``None`` (with a warning) when there are fewer training cases than folds."""
    if len(annotations) >= settings.num_folds:
        return stratified_splits(annotations, num_folds=settings.num_folds, seed=settings.seed)
    report.warning("", f"splits_final.json not written: {len(annotations)} training case(s) are fewer than "
                   f"{settings.num_folds} folds (nnU-Net will make its own split)")
    return None


def convert_dataset(
    inputs: ConversionInputs,
    settings: ConversionSettings,
    *,
    arguments: Mapping[str, Any] | None = None,
) -> ConversionResult:
    """Check the inputs and write the nnU-Net raw dataset (see the module docstring for the layout).

    Args:
        inputs: Images, masks, landmark files and the partial-label and test selection.
        settings: Output id/name/folder, label encoding, landmark block, checks, splits.
        arguments: The command line arguments, recorded in ``provenance.json`` (default: ``settings``).

    Returns:
        What was written, with all warnings.

    Raises:
        ValueError: invalid settings (before reading anything).
        DatasetValidationError: the input has errors (every error listed); nothing was written.
    """
    started = time.perf_counter()
    _check_settings(settings, inputs)
    report = ValidationReport()
    raw_folder = nnunet_raw_folder(settings.raw_folder)
    target = check_output_folder(
        raw_folder, settings.dataset_id, settings.dataset_name, overwrite=settings.overwrite, report=report
    )
    _check_output_outside_inputs(target, inputs, report)
    encoding = _encoding(inputs, settings)
    plans, names = _plan_and_read_landmarks(inputs, settings, report)
    dataset_json, spec = _base_dataset_json(inputs, settings, encoding, plans, names, report)
    if report.has_errors:
        # Argument-level and file-matching errors: stop before reading every image.
        report.raise_if_errors()

    writer = None if settings.dry_run else AtomicDatasetFolder(target, overwrite=settings.overwrite)
    with writer if writer is not None else contextlib.nullcontext(None) as folder:
        converted = _convert_all_cases(plans, inputs, settings, encoding, names, folder, target, report)
        report.raise_if_errors()
        annotations = converted.annotations
        if spec is not None and annotations and all(kind == "mask_only" for kind in annotations.values()):
            report.warning("", "no training case has landmarks (all were withheld or absent)")
        _complete_dataset_json(dataset_json, converted)
        splits = _splits(annotations, settings, report)
        if writer is not None and folder is not None:
            provenance = provenance_record(
                settings.tool,
                arguments if arguments is not None else _settings_record(settings),
                inputs.describe(),
                report,
                pixel_spacing=dataset_json.get("pixel_spacing"),
                label_encoding=dataset_json.get("label_encoding"),
                counts={"training": len(annotations), "test": len(converted.tests),
                        "by_kind": {kind: list(annotations.values()).count(kind) for kind in ANNOTATION_KINDS}},
            )
            RawDatasetWriter(folder, settings.file_ending).write_metadata(
                dataset_json, splits=splits, provenance=provenance
            )
            writer.commit()
    return ConversionResult(
        dataset_folder=target,
        written=not settings.dry_run,
        report=report,
        annotations=dict(sorted(annotations.items())),
        test_cases=tuple(sorted(converted.tests)),
        dataset_json=dataset_json,
        seconds=time.perf_counter() - started,
    )


def _input_folders(inputs: ConversionInputs) -> list[Path]:
    """Every folder whose files the conversion lists (images, masks, landmark files; not a single landmark file's)."""
    folders = list(inputs.image_folders)
    for source in (inputs.masks, inputs.landmarks):
        folders += [Path(value) for value in getattr(source, "folders", {}).values()]
        folder = getattr(source, "folder", None)
        if folder is not None:
            folders.append(Path(folder))
    return folders


def _check_output_outside_inputs(target: Path, inputs: ConversionInputs, report: ValidationReport) -> None:
    """The dataset must not be written into a folder it reads: the next run would read its own output."""
    resolved = target.resolve()
    for folder in _input_folders(inputs):
        source = folder.resolve()
        if resolved == source or source in resolved.parents:
            report.error(
                target,
                f"the output dataset lies inside the input folder {folder}; the next conversion would read it as "
                "input. Choose an nnUNet_raw (--raw-folder) outside the inputs",
            )
            return


def _settings_record(settings: ConversionSettings) -> dict[str, Any]:
    record = asdict(settings)
    record["raw_folder"] = str(settings.raw_folder) if settings.raw_folder is not None else None
    return record


def _has_reference(plan: _CasePlan) -> bool:
    return not plan.test and (
        (plan.mask_file is not None and not plan.use_mask) or (plan.landmarks is not None and not plan.use_landmarks)
    )


def _convert_case(
    plan: _CasePlan,
    inputs: ConversionInputs,
    settings: ConversionSettings,
    encoding: LabelEncoding | None,
    names: tuple[str, ...],
    folder: Path | None,
    report: ValidationReport,
) -> str | None:
    """Check and write one case; its annotation kind (``""`` for a test case), or ``None`` on errors."""
    errors_before = len(report.errors)
    images = _read_case_images(plan, settings, report)
    if images is None:
        return None
    image = images[0]
    mask = None
    if plan.mask_file is not None and inputs.masks is not None and encoding is not None:
        mask = _mask_array(plan, image, inputs.masks, encoding, report)
    world = None
    if plan.landmarks is not None:
        world = _world_landmarks(plan, image, names, settings.landmarks, report)
    elif plan.landmark_file is not None and plan.use_landmarks:
        return None  # the file could not be read; the error is in the report
    if len(report.errors) > errors_before:
        return None
    use_landmarks = plan.use_landmarks and world is not None and bool(world.present.any())
    if plan.use_landmarks and not use_landmarks and not plan.test:
        plan.use_landmarks = False
        if not plan.use_mask:
            report.error(plan.landmark_file or "", f"case {plan.case_id!r} has no mask and no present landmark",
                         case=plan.case_id)
            return None
    kind = "" if plan.test else plan.kind
    if folder is None:
        return kind
    ending = settings.file_ending
    image_folder, label_folder, landmark_folder = (
        ("imagesTs", "labelsTs", "landmarksTs") if plan.test else ("imagesTr", "labelsTr", "landmarksTr")
    )
    (folder / image_folder).mkdir(exist_ok=True)
    for channel, channel_image in enumerate(images):
        write_image(channel_image, folder / image_folder / f"{plan.case_id}_{channel:04d}{ending}")
    if world is not None and isinstance(plan.landmarks, PixelLandmarks):
        # Pixel positions are placed with the geometry as stored in the written file (NIfTI keeps float32), so
        # that reading the dataset back maps them onto exactly the source pixels.
        stored = _stored_geometry(folder / image_folder / f"{plan.case_id}_0000{ending}")
        points = plan.landmarks.to_world(stored).reorder(names).points_mm.copy()
        points[~world.present] = np.nan
        world = LandmarkSet(names, points)
    if plan.test:
        if mask is not None:
            _write_label(mask, image, folder / label_folder / f"{plan.case_id}{ending}")
    elif plan.use_mask and mask is not None:
        _write_label(mask, image, folder / label_folder / f"{plan.case_id}{ending}")
    else:
        ignore = _ignore_value(encoding)
        filled = np.full(sitk.GetArrayViewFromImage(image).shape, ignore, dtype=label_dtype(ignore))
        _write_label(filled, image, folder / label_folder / f"{plan.case_id}{ending}")
        if mask is not None:
            _write_label(mask, image, folder / REFERENCE_FOLDER / "labels" / f"{plan.case_id}{ending}")
    if world is not None and world.present.any():
        if plan.test or plan.use_landmarks:
            target = folder / landmark_folder / f"{plan.case_id}.json"
        else:
            target = folder / REFERENCE_FOLDER / "landmarks" / f"{plan.case_id}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_landmarks(target, world)
    return kind


def _stored_geometry(path: Path) -> ImageGeometry:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return ImageGeometry(reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection())


def _write_label(array: NDArray[Any], image: sitk.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(_label_image(array, image), path)
