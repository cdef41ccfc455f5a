"""Reading input images of every supported format into ``SimpleITK`` images with their real geometry.

* Medical formats keep their own frame: NIfTI (``.nii``, ``.nii.gz``), MetaImage (``.mha``, ``.mhd``), NRRD
  (``.nrrd``, ``.nhdr``) and DICOM series (a folder holding the slices of exactly one series).
* "Natural" images (PNG, JPEG, TIFF, BMP) carry no trustworthy physical frame, so the caller must state the pixel
  spacing; they get origin 0 and the identity direction, which makes the world point of pixel ``(row, col)``
  ``(col · spacing_x, row · spacing_y)`` mm. Greyscale images stored as RGB(A) with equal colour channels are read as
  greyscale; true colour images are refused (nnU-Net would need one channel per colour).

Errors raise ``ValueError``/``FileNotFoundError`` naming the file and the problem.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_babloss.nnunet.raw_dataset import RawDatasetWriter

__all__ = [
    "DICOM_SERIES",
    "MEDICAL_IMAGE_SUFFIXES",
    "NATURAL_IMAGE_SUFFIXES",
    "OUTPUT_FILE_ENDINGS",
    "case_id_of",
    "describe_geometry",
    "find_case_file",
    "geometry_mismatch",
    "image_suffix",
    "is_natural_image",
    "list_case_files",
    "read_image",
    "resolve_pixel_spacing",
    "write_image",
]

NATURAL_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MEDICAL_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
OUTPUT_FILE_ENDINGS = (".nii.gz", ".mha")
DICOM_SERIES = "DICOM series"
"""What :func:`image_suffix` reports for a folder (read as one DICOM series)."""

# Geometry comparison tolerances: relative for spacing, absolute (mm) for the origin, absolute for direction cosines.
_SPACING_RTOL = 1e-5
_ORIGIN_ATOL_MM = 1e-3
_DIRECTION_ATOL = 1e-5


def image_suffix(path: str | os.PathLike[str]) -> str | None:
    """The known image suffix of ``path`` (lower case), :data:`DICOM_SERIES` for a folder, ``None`` otherwise."""
    path = Path(path)
    if path.is_dir():
        return DICOM_SERIES
    name = path.name.lower()
    for suffix in (*MEDICAL_IMAGE_SUFFIXES, *NATURAL_IMAGE_SUFFIXES):
        if name.endswith(suffix):
            return suffix
    return None


def is_natural_image(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a PNG/JPEG/TIFF/BMP image (no physical frame of its own)."""
    return image_suffix(path) in NATURAL_IMAGE_SUFFIXES


def case_id_of(path: str | os.PathLike[str], strip: str = "") -> str:
    """The case identifier of an image or mask file: its name without the image suffix (and without ``strip``).

    Args:
        path: An image file or DICOM folder.
        strip: A further ending to remove, e.g. ``"_0000"`` for nnU-Net channel files.

    Raises:
        ValueError: ``path`` has no known image suffix.
    """
    path = Path(path)
    suffix = image_suffix(path)
    if suffix is None:
        known = [*MEDICAL_IMAGE_SUFFIXES, *NATURAL_IMAGE_SUFFIXES]
        raise ValueError(f"{path}: not an image file: known suffixes are {known}")
    name = path.name if suffix == DICOM_SERIES else path.name[: -len(suffix)]
    if strip and name.endswith(strip):
        name = name[: -len(strip)]
    return name


def list_case_files(folder: str | os.PathLike[str], *, allow_dicom_folders: bool = True) -> dict[str, Path]:
    """Map case identifier -> image file (or DICOM folder) for every image in ``folder``, sorted by identifier.

    Files without an image suffix (and hidden files) are skipped: a folder may hold notes or checksums.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: two files give the same case identifier (e.g. ``a.png`` and ``a.nii.gz``), naming both.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir() and not allow_dicom_folders:
            continue
        suffix = image_suffix(path)
        if suffix is None:
            continue
        case_id = case_id_of(path)
        if case_id in found:
            raise ValueError(f"{folder}: two files for case {case_id!r}: {found[case_id].name} and {path.name}")
        found[case_id] = path
    return dict(sorted(found.items()))


def find_case_file(folder: str | os.PathLike[str], case_id: str) -> Path | None:
    """The image file (or DICOM folder) of ``case_id`` in ``folder``, or ``None`` if there is none.

    Raises:
        ValueError: more than one file matches, naming them.
    """
    folder = Path(folder)
    matches = [
        path
        for path in folder.glob(f"{_glob_escape(case_id)}*")
        if not path.name.startswith(".") and image_suffix(path) is not None and case_id_of(path) == case_id
    ]
    if len(matches) > 1:
        raise ValueError(f"{folder}: several files for case {case_id!r}: {sorted(path.name for path in matches)}")
    return matches[0] if matches else None


def _glob_escape(text: str) -> str:
    return "".join(f"[{character}]" if character in "*?[]" else character for character in text)


def resolve_pixel_spacing(pixel_spacing_mm: float | Sequence[float], dimension: int, source: str) -> tuple[float, ...]:
    """Pixel spacing in ITK order ``(x, y[, z])`` for an image of ``dimension`` axes.

    Args:
        pixel_spacing_mm: One value (isotropic) or one value per axis in ITK order ``(x, y[, z])``.
        dimension: Number of image axes.
        source: The image file, for messages.

    Raises:
        ValueError: wrong number of values, or a value that is not a finite number > 0.
    """
    values = (pixel_spacing_mm,) if isinstance(pixel_spacing_mm, (int, float)) else tuple(pixel_spacing_mm)
    if len(values) == 1:
        values = values * dimension
    if len(values) != dimension:
        raise ValueError(
            f"{source}: pixel spacing has {len(values)} values {list(values)} but the image has {dimension} axes; "
            "give one value (isotropic) or one per axis in x, y[, z] order"
        )
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
            raise ValueError(f"{source}: pixel spacing must be finite numbers > 0 (mm), got {list(values)}")
    return tuple(float(value) for value in values)


def read_image(
    path: str | os.PathLike[str], *, pixel_spacing_mm: float | Sequence[float] | None = None
) -> sitk.Image:
    """Read one image with its physical geometry.

    Args:
        path: An image file of a supported format, or a folder holding one DICOM series.
        pixel_spacing_mm: Required for PNG/JPEG/TIFF/BMP (which have no physical frame): one value or one per axis
            in ITK order ``(x, y[, z])``. Must be ``None`` for the medical formats, which carry their own spacing.

    Returns:
        A scalar ``SimpleITK.Image`` (2D or 3D).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown format, unreadable file, a natural image without (or a medical image with) a stated
            pixel spacing, a colour image, a folder without exactly one DICOM series, a 4D/vector image, or NaN or
            infinite pixels.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: image file not found")
    suffix = image_suffix(path)
    if suffix is None:
        raise ValueError(
            f"{path}: unknown image format; supported: {[*MEDICAL_IMAGE_SUFFIXES, *NATURAL_IMAGE_SUFFIXES]} files "
            "and folders holding one DICOM series"
        )
    natural = suffix in NATURAL_IMAGE_SUFFIXES
    if natural and pixel_spacing_mm is None:
        raise ValueError(
            f"{path}: {suffix} images carry no physical pixel spacing; state it (e.g. --pixel-spacing 0.7) so that "
            "distances come out in mm"
        )
    if not natural and pixel_spacing_mm is not None:
        raise ValueError(
            f"{path}: a pixel spacing was stated, but {suffix} images carry their own geometry; the stated spacing "
            f"applies only to {list(NATURAL_IMAGE_SUFFIXES)} images"
        )
    try:
        image = _read_dicom_series(path) if suffix == DICOM_SERIES else sitk.ReadImage(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path}: cannot read the image: {first_line}") from error
    if image.GetNumberOfComponentsPerPixel() > 1:
        image = _colour_to_grey(image, path)
    if image.GetDimension() not in (2, 3):
        raise ValueError(f"{path}: only 2D and 3D images are supported, got a {image.GetDimension()}D image")
    _check_finite(image, path)
    if natural:
        spacing_mm = resolve_pixel_spacing(pixel_spacing_mm, image.GetDimension(), str(path))  # type: ignore[arg-type]
        image.SetSpacing(spacing_mm)
        image.SetOrigin((0.0,) * image.GetDimension())
        image.SetDirection(tuple(np.eye(image.GetDimension()).ravel().tolist()))
    return image


def _check_finite(image: sitk.Image, path: Path) -> None:
    """NaN or infinite pixels would make nnU-Net's normalisation and every loss NaN; refuse them here."""
    if image.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
        return
    array = sitk.GetArrayViewFromImage(image)
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.argwhere(~finite)
        first = tuple(int(index) for index in bad[0][::-1])  # ITK order (x, y[, z]), as image viewers show it
        raise ValueError(
            f"{path}: {len(bad)} pixel(s) are NaN or infinite (the first at index (x, y[, z]) = {first}); "
            "replace them (e.g. by the background value) before converting"
        )


def _read_dicom_series(folder: Path) -> sitk.Image:
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise ValueError(f"{folder}: folder holds no DICOM series (a case folder must hold the slices of one series)")
    if len(series_ids) > 1:
        raise ValueError(
            f"{folder}: folder holds {len(series_ids)} DICOM series {list(series_ids)}; put each series in its own "
            "case folder"
        )
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0]))
    return reader.Execute()


def _colour_to_grey(image: sitk.Image, path: Path) -> sitk.Image:
    """The first channel of a multi-component image whose channels are equal (RGB(A)-stored greyscale)."""
    components = image.GetNumberOfComponentsPerPixel()
    channels = [sitk.VectorIndexSelectionCast(image, index) for index in range(components)]
    arrays = [sitk.GetArrayViewFromImage(channel) for channel in channels]
    colour = arrays[:3] if components >= 3 else arrays[:1]
    if any(not np.array_equal(colour[0], other) for other in colour[1:]):
        raise ValueError(
            f"{path}: colour image with {components} channels that differ; convert it to greyscale (or split the "
            "colours into separate channel images) before converting"
        )
    return channels[0]


def describe_geometry(image: sitk.Image) -> str:
    """A short text with size, spacing, origin and direction (for messages)."""
    return (
        f"size {list(image.GetSize())}, spacing {_rounded(image.GetSpacing())}, origin {_rounded(image.GetOrigin())}, "
        f"direction {_rounded(image.GetDirection())}"
    )


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(float(value), 6) for value in values]


def geometry_mismatch(reference: sitk.Image, other: sitk.Image) -> str | None:
    """What differs between the pixel grids of two images, or ``None`` if they agree.

    Sizes must be equal; spacings within a relative 1e-5, origins within 1e-3 mm, direction cosines within 1e-5.
    """
    if reference.GetDimension() != other.GetDimension():
        return f"dimension {other.GetDimension()}D differs from {reference.GetDimension()}D"
    differences = []
    if reference.GetSize() != other.GetSize():
        differences.append(f"size {list(other.GetSize())} != {list(reference.GetSize())}")
    if not np.allclose(other.GetSpacing(), reference.GetSpacing(), rtol=_SPACING_RTOL, atol=0.0):
        differences.append(f"spacing {_rounded(other.GetSpacing())} != {_rounded(reference.GetSpacing())}")
    if not np.allclose(other.GetOrigin(), reference.GetOrigin(), rtol=0.0, atol=_ORIGIN_ATOL_MM):
        differences.append(f"origin {_rounded(other.GetOrigin())} != {_rounded(reference.GetOrigin())}")
    if not np.allclose(other.GetDirection(), reference.GetDirection(), rtol=0.0, atol=_DIRECTION_ATOL):
        differences.append(f"direction {_rounded(other.GetDirection())} != {_rounded(reference.GetDirection())}")
    return "; ".join(differences) if differences else None


def write_image(image: sitk.Image, path: str | os.PathLike[str]) -> None:
    """Write ``image`` (compressed where the format allows).

    Raises:
        ValueError: ``path`` does not end in one of :data:`OUTPUT_FILE_ENDINGS`.
    """
    if not str(path).lower().endswith(OUTPUT_FILE_ENDINGS):
        raise ValueError(f"{path}: output images must end in one of {list(OUTPUT_FILE_ENDINGS)}")
    RawDatasetWriter.write_image_file(image, Path(path))
