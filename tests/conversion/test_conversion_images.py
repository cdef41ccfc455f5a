"""Reading images of every supported format with their real geometry."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conversion_helpers import write_png

from dataset_conversion.images import case_id_of, geometry_mismatch, list_case_files, read_image


def _volume() -> sitk.Image:
    image = sitk.GetImageFromArray(np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5))
    image.SetSpacing((0.5, 0.6, 2.0))
    image.SetOrigin((1.0, 2.0, 3.0))
    return image


def _write_dicom_series(image: sitk.Image, folder: Path, series_uid: str) -> None:
    """One file per slice with the tags a DICOM reader needs to stack them (series, position, spacing)."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for index in range(image.GetSize()[2]):
        slice_image = image[:, :, index]
        position = image.TransformIndexToPhysicalPoint((0, 0, index))
        for tag, value in (("0020|000e", series_uid), ("0020|0032", "\\".join(map(str, position))),
                           ("0020|0013", str(index)), ("0008|0060", "CT"),
                           ("0028|0030", f"{image.GetSpacing()[1]}\\{image.GetSpacing()[0]}")):
            slice_image.SetMetaData(tag, value)
        writer.SetFileName(os.fspath(folder / f"{series_uid}_{index}.dcm"))
        writer.Execute(slice_image)


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha", ".nrrd"])
def test_medical_formats_keep_their_geometry(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"case{suffix}"
    sitk.WriteImage(_volume(), str(path))
    image = read_image(path)
    assert geometry_mismatch(_volume(), image) is None
    with pytest.raises(ValueError, match="carry their own geometry"):
        read_image(path, pixel_spacing_mm=1.0)


def test_dicom_series_folder_is_one_case(tmp_path: Path) -> None:
    _write_dicom_series(_volume(), tmp_path / "patient7", "1.2.826.0.1.3680043.2.1125.1")
    image = read_image(tmp_path / "patient7")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(_volume()))
    np.testing.assert_allclose(image.GetSpacing(), (0.5, 0.6, 2.0))
    np.testing.assert_allclose(image.GetOrigin(), (1.0, 2.0, 3.0))
    assert list_case_files(tmp_path) == {"patient7": tmp_path / "patient7"}


def test_folder_with_two_dicom_series_is_refused(tmp_path: Path) -> None:
    _write_dicom_series(_volume(), tmp_path / "mixed", "1.2.826.0.1.3680043.2.1125.1")
    _write_dicom_series(_volume(), tmp_path / "mixed", "1.2.826.0.1.3680043.2.1125.2")
    with pytest.raises(ValueError, match=r"mixed: folder holds 2 DICOM series"):
        read_image(tmp_path / "mixed")


def test_natural_images_get_the_stated_spacing_origin_zero_identity(tmp_path: Path) -> None:
    path = write_png(tmp_path / "x.png", np.zeros((4, 6)))
    image = read_image(path, pixel_spacing_mm=(0.2, 0.3))
    assert image.GetSpacing() == (0.2, 0.3) and image.GetOrigin() == (0.0, 0.0)
    assert image.GetDirection() == (1.0, 0.0, 0.0, 1.0)
    # Pixel (row 2, column 5) lies at x = 5 * 0.2, y = 2 * 0.3 mm.
    np.testing.assert_allclose(image.TransformIndexToPhysicalPoint((5, 2)), (1.0, 0.6))
    with pytest.raises(ValueError, match=r"x.png: pixel spacing has 3 values"):
        read_image(path, pixel_spacing_mm=(0.2, 0.3, 0.4))
    with pytest.raises(ValueError, match=r"x.png: pixel spacing must be finite numbers > 0"):
        read_image(path, pixel_spacing_mm=(0.0,))


def test_unknown_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.png: image file not found"):
        read_image(tmp_path / "nothing.png", pixel_spacing_mm=1.0)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="notes.txt: unknown image format"):
        read_image(tmp_path / "notes.txt")
    assert list_case_files(tmp_path) == {}


def test_case_identifiers_strip_double_suffixes() -> None:
    assert case_id_of("a/b/JPCLN001.png") == "JPCLN001"
    assert case_id_of("ct_0000.nii.gz", strip="_0000") == "ct"
    assert case_id_of("scan.v2.MHA") == "scan.v2"


def test_geometry_mismatch_names_what_differs() -> None:
    other = _volume()
    other.SetOrigin((1.0, 2.0, 3.5))
    other.SetDirection((-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    message = geometry_mismatch(_volume(), other)
    assert message is not None and "origin [1.0, 2.0, 3.5] != [1.0, 2.0, 3.0]" in message and "direction" in message
    assert "spacing" not in message and "size" not in message
