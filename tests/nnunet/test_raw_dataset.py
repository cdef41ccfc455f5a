"""The one raw-dataset writer: nnU-Net's names, and files that read back as written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_babloss.core.landmarks.io import LandmarkSet, read_landmarks
from nnunet_babloss.nnunet.raw_dataset import RawDatasetWriter, dataset_folder_name


def test_folder_name_and_its_rules() -> None:
    assert dataset_folder_name(7, "Chest.v2") == "Dataset007_Chest.v2"
    for dataset_id, name in ((0, "X"), (1000, "X"), (True, "X"), (1, ""), (1, "a b")):
        with pytest.raises(ValueError):
            dataset_folder_name(dataset_id, name)


def test_writes_cases_and_metadata_under_nnunet_names(tmp_path: Path) -> None:
    writer = RawDatasetWriter(tmp_path / "Dataset001_X", ".nii.gz")
    image = sitk.GetImageFromArray(np.arange(12, dtype=np.float32).reshape(3, 4))
    image.SetSpacing((0.5, 2.0))
    writer.write_image(image, "a", 1)
    writer.write_label(sitk.Cast(image > 5, sitk.sitkUInt8), "a", test=True)
    writer.write_landmarks(LandmarkSet(("p", "q"), [[1.0, 2.0], [np.nan, np.nan]]), "a")
    writer.write_metadata({"name": "X"}, splits=[{"train": ["a"], "val": []}], provenance={"tool": "t"})
    files = sorted(str(path.relative_to(writer.folder)) for path in writer.folder.rglob("*") if path.is_file())
    assert files == ["dataset.json", "imagesTr/a_0001.nii.gz", "labelsTs/a.nii.gz", "landmarksTr/a.json",
                     "provenance.json", "splits_final.json"]
    read = sitk.ReadImage(str(writer.image_path("a", 1)))
    assert read.GetSpacing() == (0.5, 2.0) and sitk.GetArrayFromImage(read).tolist() == np.arange(12).reshape(3, 4).tolist()
    assert read_landmarks(writer.landmark_path("a")).names == ("p", "q")
    assert json.loads((writer.folder / "dataset.json").read_text()) == {"name": "X"}
    with pytest.raises(ValueError, match="file_ending"):
        RawDatasetWriter(tmp_path, "nii.gz")
