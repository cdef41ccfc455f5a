"""The one writer of nnU-Net raw datasets: folder name, case files, landmark files, ``dataset.json``, splits and
provenance, with nnU-Net's file names.

Used by the converter and the merger (:mod:`dataset_conversion`), the gaze pseudo labels (:mod:`pseudo_labels.gaze`)
and the synthetic demo dataset (:mod:`nnunet_babloss.apps.synthetic`). It writes into a folder it is given; writing a
dataset all at once or not at all is :mod:`nnunet_babloss.core.atomic_output`'s job. Imports no nnU-Net.

Layout (``<split>`` is ``Tr`` or ``Ts``)::

    Dataset<ID>_<name>/
        dataset.json  splits_final.json  provenance.json
        images<split>/<case>_<channel:04d><file_ending>
        labels<split>/<case><file_ending>
        landmarks<split>/<case>.json
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from nnunet_babloss.core.landmarks.io import LandmarkSet, write_landmarks
from nnunet_babloss.core.provenance import write_json

__all__ = ["DATASET_JSON", "PROVENANCE_JSON", "SPLITS_JSON", "RawDatasetWriter", "dataset_folder_name"]

DATASET_JSON = "dataset.json"
SPLITS_JSON = "splits_final.json"
PROVENANCE_JSON = "provenance.json"
_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def dataset_folder_name(dataset_id: int, dataset_name: str) -> str:
    """``Dataset<ID>_<name>`` as nnU-Net names raw datasets.

    Raises:
        ValueError: the id is not in 1..999, or the name is empty or has characters other than letters, digits,
            ``_``, ``.``, ``-``.
    """
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int) or not 1 <= dataset_id <= 999:
        raise ValueError(f"dataset id must be an integer in 1..999, got {dataset_id!r}")
    if not isinstance(dataset_name, str) or not _DATASET_NAME.match(dataset_name):
        raise ValueError(
            f"dataset name must start with a letter or digit and hold only letters, digits, '_', '.', '-', "
            f"got {dataset_name!r}"
        )
    return f"Dataset{dataset_id:03d}_{dataset_name}"


class RawDatasetWriter:
    """Writes the files of one raw dataset folder under nnU-Net's names; parent folders are created as needed.

    Args:
        folder: The dataset folder (``Dataset<ID>_<name>``, or the temporary folder that becomes it).
        file_ending: Image and label file ending (``.nii.gz``, ``.mha``, ...), as in ``dataset.json``.

    Example:
        >>> writer = RawDatasetWriter(Path("/raw/Dataset001_X"), ".nii.gz")
        >>> writer.image_path("case_01", channel=1, test=True).name
        'case_01_0001.nii.gz'
    """

    def __init__(self, folder: Path, file_ending: str) -> None:
        if not file_ending.startswith("."):
            raise ValueError(f"file_ending must start with '.', got {file_ending!r}")
        self.folder = Path(folder)
        self.file_ending = file_ending

    @staticmethod
    def _split(test: bool) -> str:
        return "Ts" if test else "Tr"

    def image_path(self, case: str, channel: int = 0, *, test: bool = False) -> Path:
        """``images<split>/<case>_<channel:04d><file_ending>``."""
        return self.folder / f"images{self._split(test)}" / f"{case}_{channel:04d}{self.file_ending}"

    def label_path(self, case: str, *, test: bool = False) -> Path:
        """``labels<split>/<case><file_ending>``."""
        return self.folder / f"labels{self._split(test)}" / f"{case}{self.file_ending}"

    def landmark_path(self, case: str, *, test: bool = False) -> Path:
        """``landmarks<split>/<case>.json``."""
        return self.folder / f"landmarks{self._split(test)}" / f"{case}.json"

    @staticmethod
    def write_image_file(image: sitk.Image, path: Path) -> Path:
        """Write ``image`` to ``path`` (compressed where the format allows), creating the folder."""
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(path), useCompression=True)
        return path

    def write_image(self, image: sitk.Image, case: str, channel: int = 0, *, test: bool = False) -> Path:
        """Write one channel of a case's image; returns its path."""
        return self.write_image_file(image, self.image_path(case, channel, test=test))

    def write_label(self, label: sitk.Image, case: str, *, test: bool = False) -> Path:
        """Write a case's label image; returns its path."""
        return self.write_image_file(label, self.label_path(case, test=test))

    def write_landmarks(self, landmarks: LandmarkSet, case: str, *, test: bool = False) -> Path:
        """Write a case's landmark file (world mm, our JSON format); returns its path."""
        path = self.landmark_path(case, test=test)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_landmarks(path, landmarks)
        return path

    def write_metadata(
        self,
        dataset_json: Mapping[str, Any],
        *,
        splits: Sequence[Mapping[str, Any]] | None = None,
        provenance: Mapping[str, Any] | None = None,
    ) -> None:
        """Write ``dataset.json`` and, when given, ``splits_final.json`` and ``provenance.json``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.folder / DATASET_JSON, dataset_json)
        if splits is not None:
            write_json(self.folder / SPLITS_JSON, splits)
        if provenance is not None:
            write_json(self.folder / PROVENANCE_JSON, provenance)
