"""Gaze CSV + images → multi-level pseudo masks → an nnU-Net raw dataset for ``GazeSupTrainer``.

Per image: fixations → duration-weighted Gaussian heatmap (:mod:`~pseudo_labels.gaze.heatmap`) → dense-CRF
refinement with the image (:mod:`~pseudo_labels.gaze.crf`; optional) → the nested level map at the thresholds
(:func:`nnunet_babloss.gazesup.levels.level_map_from_probability`: value = number of thresholds exceeded). Written as
a new raw dataset (all at once or not at all, :class:`dataset_conversion.writing.AtomicDatasetFolder`)::

    imagesTr/<case>_000C.nii.gz   the image (NIfTI, with its pixel spacing); colour images as 3 channels R, G, B
    labelsTr/<case>.nii.gz        the level map 0..L
    dataset.json                  nested regions (labels, regions_class_order) + the "gaze_levels" block
    gaze_maps/<case>_heatmap.nii.gz, <case>_crf.nii.gz   (on request) the float maps
    gaze_pseudo_labels_summary.csv  per case: fixations, total duration, fraction of the image in each level
    provenance.json               arguments, versions, gaze CSV SHA-256, whether the gaze was simulated

A gaze CSV with a ``<name>.simulation.json`` sidecar (written by :mod:`~pseudo_labels.gaze.simulator`) is recorded
as simulated in ``dataset.json`` and ``provenance.json``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray

from dataset_conversion.images import (
    is_natural_image,
    list_case_files,
    read_image,
    resolve_pixel_spacing,
    write_image,
)
from dataset_conversion.validation import ValidationReport
from dataset_conversion.writing import (
    AtomicDatasetFolder,
    RawDatasetWriter,
    check_output_folder,
    nnunet_raw_folder,
    provenance_record,
)
from nnunet_babloss.core.provenance import file_sha256
from nnunet_babloss.gazesup.levels import GAZE_LEVELS_KEY, GazeLevelSpec, level_map_from_probability
from pseudo_labels.gaze.crf import CrfSettings, refine_with_crf
from pseudo_labels.gaze.gaze_csv import FixationSequence, read_gaze_csv
from pseudo_labels.gaze.heatmap import DEFAULT_SIGMA_AT_REFERENCE_PX, fixation_heatmap, scaled_length_px
from pseudo_labels.gaze.simulator import simulation_sidecar

__all__ = [
    "DEFAULT_THRESHOLDS",
    "GazeDatasetResult",
    "GazeMaps",
    "GazePseudoLabelSettings",
    "gaze_maps",
    "generate_gaze_dataset",
    "read_case_channels",
]

DEFAULT_THRESHOLDS = (0.3, 0.5)
"""GazeSup's two levels."""
FILE_ENDING = ".nii.gz"
TOOL = "nnUNetv2_bab_gaze_pseudo_labels"


@dataclass(frozen=True)
class GazePseudoLabelSettings:
    """How gaze becomes level maps.

    Attributes:
        thresholds: Ascending level thresholds on the (refined) gaze map.
        sigma_at_reference_px: Heatmap σ on the 768-px reference canvas (scaled to each image).
        crf: CRF settings, or ``None`` to threshold the heatmap itself.
    """

    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    sigma_at_reference_px: float = DEFAULT_SIGMA_AT_REFERENCE_PX
    crf: CrfSettings | None = field(default_factory=CrfSettings)

    def __post_init__(self) -> None:
        GazeLevelSpec("check", tuple(self.thresholds))  # validates the thresholds (raises ValueError)
        if not self.sigma_at_reference_px > 0:
            raise ValueError(f"heatmap sigma must be > 0 px, got {self.sigma_at_reference_px}")

    def describe(self) -> dict[str, Any]:
        """JSON-ready record (for ``dataset.json`` and provenance)."""
        return {
            "thresholds": list(self.thresholds),
            "heatmap": "duration-weighted sum of Gaussians, normalised to max 1",
            "sigma_at_768px_canvas_px": self.sigma_at_reference_px,
            "crf": None if self.crf is None else {"pairwise": "bilateral only", **asdict(self.crf)},
            "length_scaling": "pixel lengths are stated on a 768 px canvas and scaled by max(H, W) / 768",
        }


@dataclass(frozen=True)
class GazeMaps:
    """The maps of one image.

    Attributes:
        heatmap: ``(H, W)`` float32 in ``[0, 1]``.
        refined: ``(H, W)`` float32 CRF foreground probability (``None`` without CRF).
        levels: ``(H, W)`` uint8 nested level map.
    """

    heatmap: NDArray[np.float32]
    refined: NDArray[np.float32] | None
    levels: NDArray[np.uint8]


def gaze_maps(image: NDArray[np.generic], sequence: FixationSequence, settings: GazePseudoLabelSettings) -> GazeMaps:
    """Heatmap, CRF probability and level map of one 2D image (``(H, W)`` grey or ``(H, W, 3)`` RGB).

    Raises:
        ValueError: the image is neither.
        ImportError: CRF requested without ``pydensecrf2``.
    """
    image = np.asarray(image)
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"image {sequence.image!r}: gaze pseudo labels need 2D images, got shape {image.shape}")
    shape = image.shape[:2]
    sigma_px = scaled_length_px(settings.sigma_at_reference_px, shape)
    heatmap = fixation_heatmap(sequence.pixel_positions(shape), sequence.duration_ms, shape, sigma_px)
    refined = None if settings.crf is None else refine_with_crf(image, heatmap, settings.crf)
    levels = level_map_from_probability(heatmap if refined is None else refined, settings.thresholds)
    return GazeMaps(heatmap, refined, levels)


@dataclass(frozen=True)
class GazeDatasetResult:
    """What :func:`generate_gaze_dataset` wrote."""

    dataset_folder: Path
    cases: tuple[str, ...]
    simulated: bool
    warnings: tuple[str, ...]


def _image_like(array: NDArray[Any], reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def read_case_channels(
    path: Path, pixel_spacing_mm: float | Sequence[float] | None
) -> tuple[list[sitk.Image], NDArray[Any]]:
    """The channel images of one 2D case and the array the CRF sees.

    Colour PNG/JPEG/... images (channels that differ, e.g. Kvasir-SEG endoscopy) become three channel images R, G, B
    and an ``(H, W, 3)`` array; everything else is read by :func:`dataset_conversion.images.read_image` (greyscale
    stored as RGB becomes one channel) and gives an ``(H, W)`` array.

    Raises:
        ValueError: not a 2D image, or a natural image without ``pixel_spacing_mm``.
    """
    if is_natural_image(path):
        raw = sitk.ReadImage(str(path))
        if raw.GetDimension() == 2 and raw.GetNumberOfComponentsPerPixel() >= 3:
            channels = [sitk.VectorIndexSelectionCast(raw, index) for index in range(3)]
            arrays = [sitk.GetArrayFromImage(channel) for channel in channels]
            if any(not np.array_equal(arrays[0], other) for other in arrays[1:]):
                if pixel_spacing_mm is None:
                    raise ValueError(f"{path}: PNG/JPEG/TIFF/BMP images need a pixel spacing (--pixel-spacing)")
                spacing = resolve_pixel_spacing(pixel_spacing_mm, 2, str(path))
                for channel in channels:
                    channel.SetSpacing(spacing)
                    channel.SetOrigin((0.0, 0.0))
                    channel.SetDirection((1.0, 0.0, 0.0, 1.0))
                return channels, np.stack(arrays, axis=-1)
    image = read_image(path, pixel_spacing_mm=pixel_spacing_mm if is_natural_image(path) else None)
    if image.GetDimension() != 2:
        raise ValueError(f"{path}: gaze pseudo labels need 2D images, got a {image.GetDimension()}D image")
    return [image], sitk.GetArrayFromImage(image)


def _check_inputs(
    images_folder: Path,
    gaze_csv: Path,
    image_files: Mapping[str, Path],
    sequences: Mapping[str, FixationSequence],
    pixel_spacing_mm: float | Sequence[float] | None,
    skip_images_without_gaze: bool,
    report: ValidationReport,
) -> None:
    """Errors into ``report``: images without fixations (unless skipped), a missing or needless pixel spacing."""
    without_gaze = sorted(set(image_files) - set(sequences))
    if without_gaze and not skip_images_without_gaze:
        report.error(
            gaze_csv,
            f"{len(without_gaze)} image(s) have no fixations, e.g. {without_gaze[:5]}; pass "
            "--skip-images-without-gaze to leave them out",
        )
    natural = [name for name, path in image_files.items() if is_natural_image(path)]
    if natural and pixel_spacing_mm is None:
        report.error(images_folder, f"{len(natural)} PNG/JPEG/TIFF/BMP image(s) need --pixel-spacing (mm)")
    if pixel_spacing_mm is not None:
        if not natural:  # as the converter: a stated spacing must not look as if it applied to NIfTI/MHA images
            report.error(images_folder, "--pixel-spacing was given, but no image is PNG/JPEG/TIFF/BMP (the others "
                         "carry their own spacing)")
        try:
            resolve_pixel_spacing(pixel_spacing_mm, 2, "--pixel-spacing")
        except ValueError as error:
            report.error(images_folder, str(error))


def _gaze_source(gaze_csv: Path, settings: GazePseudoLabelSettings) -> dict[str, Any]:
    """Where the gaze came from (CSV, its SHA-256, simulated or not, the simulation record) and how it was used."""
    sidecar_path = simulation_sidecar(gaze_csv)
    simulated = sidecar_path.is_file()
    return {
        "gaze_csv": str(gaze_csv),
        "gaze_csv_sha256": file_sha256(gaze_csv),
        "simulated": simulated,
        **({"simulation": json.loads(sidecar_path.read_text(encoding="utf-8"))} if simulated else {}),
        **settings.describe(),
    }


def _warn_about_aspect_ratio(
    sequence: FixationSequence, array: NDArray[Any], gaze_csv: Path, case: str, report: ValidationReport
) -> None:
    """A CSV image size whose aspect ratio differs (> 1 %) from the image's: warn (normalised positions are used)."""
    if sequence.image_height and sequence.image_width:
        stated = sequence.image_width / sequence.image_height
        actual = array.shape[1] / array.shape[0]
        if abs(stated / actual - 1.0) > 0.01:
            report.warning(
                gaze_csv,
                f"IMAGE_WIDTH/IMAGE_HEIGHT {sequence.image_width}/{sequence.image_height} has another aspect "
                f"ratio than the image ({array.shape[1]}x{array.shape[0]}); normalised coordinates were used",
                case=case,
            )


def _write_gaze_case(
    dataset: RawDatasetWriter,
    case: str,
    channels: Sequence[sitk.Image],
    array: NDArray[Any],
    sequence: FixationSequence,
    settings: GazePseudoLabelSettings,
    spec: GazeLevelSpec,
    save_maps: bool,
) -> dict[str, Any]:
    """Write one case's channels, level map and (on request) float maps; return its summary row."""
    image = channels[0]
    maps = gaze_maps(array, sequence, settings)
    for index, channel in enumerate(channels):
        dataset.write_image(channel, case, index)
    dataset.write_label(_image_like(maps.levels, image), case)
    if save_maps:
        maps_folder = dataset.folder / "gaze_maps"
        write_image(_image_like(maps.heatmap, image), maps_folder / f"{case}_heatmap{FILE_ENDING}")
        if maps.refined is not None:
            write_image(_image_like(maps.refined, image), maps_folder / f"{case}_crf{FILE_ENDING}")
    row: dict[str, Any] = {
        "case": case,
        "fixations": len(sequence),
        "total_duration_ms": float(np.sum(sequence.duration_ms)),
    }
    for level in range(1, spec.num_levels + 1):
        row[f"fraction_level_{level}"] = round(float(np.mean(maps.levels >= level)), 6)
    return row


def _write_gaze_cases(
    dataset: RawDatasetWriter,
    cases: Sequence[str],
    image_files: Mapping[str, Path],
    sequences: Mapping[str, FixationSequence],
    settings: GazePseudoLabelSettings,
    spec: GazeLevelSpec,
    pixel_spacing_mm: float | Sequence[float] | None,
    save_maps: bool,
    gaze_csv: Path,
    report: ValidationReport,
    progress: bool,
) -> tuple[list[dict[str, Any]], int | None]:
    """Write every case; returns the summary rows and the number of channels (``None`` without cases).

    Raises:
        ValueError: colour and grey images mixed.
    """
    from tqdm import tqdm

    rows: list[dict[str, Any]] = []
    num_channels: int | None = None
    for case in tqdm(cases, desc="gaze pseudo labels", unit="image", disable=not progress):
        path = image_files[case]
        channels, array = read_case_channels(path, pixel_spacing_mm)
        if num_channels is not None and len(channels) != num_channels:
            raise ValueError(
                f"{path}: {len(channels)} channel(s), but earlier images have {num_channels}; colour and grey "
                "images cannot be mixed in one dataset"
            )
        num_channels = len(channels)
        _warn_about_aspect_ratio(sequences[case], array, gaze_csv, case, report)
        rows.append(_write_gaze_case(dataset, case, channels, array, sequences[case], settings, spec, save_maps))
    return rows, num_channels


def _gaze_dataset_json(
    dataset_name: str,
    structure: str,
    spec: GazeLevelSpec,
    simulated: bool,
    num_channels: int | None,
    channel_name: str,
    num_training: int,
) -> dict[str, Any]:
    """``dataset.json``: nested level regions and the ``gaze_levels`` block; ``R``/``G``/``B`` for colour images."""
    return {
        "name": dataset_name,
        "description": (
            f"{'SIMULATED' if simulated else 'recorded'} gaze pseudo masks of '{structure}' at thresholds "
            f"{list(spec.thresholds)} (label = number of levels exceeded), written by {TOOL}"
        ),
        "channel_names": {"0": "R", "1": "G", "2": "B"} if num_channels == 3 else {"0": channel_name},
        **spec.labels_block(),
        "numTraining": num_training,
        "file_ending": FILE_ENDING,
        GAZE_LEVELS_KEY: spec.to_json(),
    }


def _write_summary_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """One row per case: fixations, total duration, fraction of the image in each level."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def generate_gaze_dataset(
    images_folder: str | os.PathLike[str],
    gaze_csv: str | os.PathLike[str],
    dataset_id: int,
    dataset_name: str,
    *,
    structure: str = "structure",
    settings: GazePseudoLabelSettings = GazePseudoLabelSettings(),
    raw_folder: str | os.PathLike[str] | None = None,
    pixel_spacing_mm: float | Sequence[float] | None = None,
    channel_name: str = "image",
    skip_images_without_gaze: bool = False,
    save_maps: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    arguments: Mapping[str, Any] | None = None,
) -> GazeDatasetResult:
    """Write ``Dataset<ID>_<name>`` with gaze-level pseudo masks for every image that has fixations.

    Args:
        images_folder: 2D images (NIfTI/MHA/NRRD, or PNG/JPEG/TIFF/BMP with ``pixel_spacing_mm``).
        gaze_csv: Fixations in the GazeMedSeg layout; ``IMAGE`` matches an image file name without its suffix.
        dataset_id, dataset_name: nnU-Net dataset id (1..999) and name.
        structure: Name of the gaze-annotated structure (region names ``<structure>_level_<k>``).
        settings: Heatmap, CRF and thresholds.
        raw_folder: ``nnUNet_raw`` (default: the environment variable).
        pixel_spacing_mm: Pixel spacing for natural images (mm).
        channel_name: ``channel_names`` entry of ``dataset.json`` for grey images (anything but ``CT`` gives
            z-score normalisation); colour images get ``R``, ``G``, ``B``.
        skip_images_without_gaze: Leave out images without fixations (otherwise an error).
        save_maps: Also write the heatmaps and CRF probabilities to ``gaze_maps/``.
        overwrite: Replace an existing dataset folder.
        progress: Show a progress bar.
        arguments: Command-line arguments for ``provenance.json``.

    Raises:
        FileNotFoundError: missing folder or CSV.
        ValueError: bad CSV (:class:`~pseudo_labels.gaze.gaze_csv.GazeCsvError`), images without gaze, 3D images,
            a taken dataset id; nothing is written then.
        ImportError: CRF requested without ``pydensecrf2``.
    """
    images_folder = Path(images_folder)
    gaze_csv = Path(gaze_csv)
    GazeLevelSpec(structure, tuple(settings.thresholds))  # validates structure and thresholds before any work
    if settings.crf is not None:
        from pseudo_labels.gaze.crf import load_densecrf

        load_densecrf()  # fail before any work when the optional package is missing
    report = ValidationReport()
    image_files = list_case_files(images_folder, allow_dicom_folders=False)
    if not image_files:
        raise ValueError(f"{images_folder}: no images found")
    sequences = read_gaze_csv(gaze_csv, known_images=image_files.keys())
    _check_inputs(images_folder, gaze_csv, image_files, sequences, pixel_spacing_mm, skip_images_without_gaze, report)
    target = check_output_folder(
        nnunet_raw_folder(raw_folder), dataset_id, dataset_name, overwrite=overwrite, report=report
    )
    report.raise_if_errors()
    cases = [name for name in image_files if name in sequences]
    source = _gaze_source(gaze_csv, settings)
    simulated = bool(source["simulated"])
    spec = GazeLevelSpec(structure, tuple(settings.thresholds), source=source)
    writer_folder = AtomicDatasetFolder(target, overwrite=overwrite)
    with writer_folder as folder:
        dataset = RawDatasetWriter(folder, FILE_ENDING)
        for sub in ("imagesTr", "labelsTr", *(("gaze_maps",) if save_maps else ())):
            (folder / sub).mkdir()
        rows, num_channels = _write_gaze_cases(
            dataset, cases, image_files, sequences, settings, spec, pixel_spacing_mm, save_maps, gaze_csv, report,
            progress,
        )
        dataset_json = _gaze_dataset_json(dataset_name, structure, spec, simulated, num_channels, channel_name,
                                          len(cases))
        _write_summary_csv(folder / "gaze_pseudo_labels_summary.csv", rows)
        dataset.write_metadata(
            dataset_json,
            provenance=provenance_record(TOOL, arguments or {}, {"images": str(images_folder), **source}, report),
        )
        writer_folder.commit()
    return GazeDatasetResult(target, tuple(cases), simulated, tuple(str(issue) for issue in report.warnings))
