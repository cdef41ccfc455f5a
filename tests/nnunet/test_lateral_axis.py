"""The lateral (left-right) mirror axis is read from every preprocessed case, and disagreement is an error."""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest

from nnunet_babloss.core.landmarks.geometry import ImageGeometry
from nnunet_babloss.nnunet.mirroring import (
    LateralMirroringGuard,
    common_lateral_patch_axis,
    read_case_geometries,
)

UPRIGHT = (1.0, 0.0, 0.0, 1.0)  # 2D: ITK axis x (array columns) along world x = the patient's left-right
TURNED = (0.0, 1.0, 1.0, 0.0)  # 2D: ITK axis y (array rows) along world x


def _geometry(direction: tuple[float, ...]) -> ImageGeometry:
    return ImageGeometry(spacing_mm=(0.7, 0.7), origin_mm=(0.0, 0.0), direction=direction)


def _preprocessed_folder(folder: Path, directions: dict[str, tuple[float, ...]]) -> Path:
    """A preprocessed folder as nnU-Net's blosc2 dataset lays it out: ``<case>.b2nd`` (here empty: never read)
    and ``<case>.pkl`` with the properties, of which only ``sitk_stuff`` matters here."""
    folder.mkdir()
    for case, direction in directions.items():
        (folder / f"{case}.b2nd").write_bytes(b"")
        properties = {"sitk_stuff": {"spacing": (0.7, 0.7), "origin": (0.0, 0.0), "direction": direction}}
        (folder / f"{case}.pkl").write_bytes(pickle.dumps(properties))
    return folder


class _Guard(LateralMirroringGuard):
    """The mixin on the attributes it reads from an nnU-Net trainer: a 2D configuration of 2D images."""

    def __init__(self, folder: Path) -> None:
        self.dataset_class = None
        self.preprocessed_dataset_folder = str(folder)
        self.plans_manager = SimpleNamespace(transpose_forward=[0, 1, 2])
        self.configuration_manager = SimpleNamespace(patch_size=[64, 64])


def test_every_case_agreeing_gives_their_axis() -> None:
    # nnU-Net holds a 2D image as (1, H, W): columns are array axis 2, patch axis 1 of a 2D patch.
    geometries = {"a": _geometry(UPRIGHT), "b": _geometry(UPRIGHT)}
    assert common_lateral_patch_axis(geometries, (0, 1, 2), 2) == 1
    assert common_lateral_patch_axis({"c": _geometry(TURNED)}, (0, 1, 2), 2) == 0


def test_disagreeing_cases_are_named_in_the_error() -> None:
    geometries = {"a": _geometry(UPRIGHT), "b": _geometry(UPRIGHT), "c": _geometry(TURNED)}
    with pytest.raises(ValueError, match=r"'a'.*patch axis 1.*'c'.*patch axis 0"):
        common_lateral_patch_axis(geometries, (0, 1, 2), 2)
    with pytest.raises(ValueError, match="no case"):
        common_lateral_patch_axis({}, (0, 1, 2), 2)


def test_the_trainer_reads_every_case_not_only_the_first(tmp_path: Path) -> None:
    """The first two cases (sorted) are upright, the last is turned: reading only the first case missed it."""
    agreeing = _preprocessed_folder(tmp_path / "agreeing", {"case_0": UPRIGHT, "case_1": UPRIGHT})
    assert _Guard(agreeing).dataset_lateral_patch_axis() == 1
    mixed = _preprocessed_folder(tmp_path / "mixed", {"case_0": UPRIGHT, "case_1": UPRIGHT, "case_2": TURNED})
    with pytest.raises(ValueError, match="'case_0'.*'case_2'"):
        _Guard(mixed).dataset_lateral_patch_axis()


def test_properties_without_a_world_frame_name_their_file(tmp_path: Path) -> None:
    folder = _preprocessed_folder(tmp_path / "data", {"case_0": UPRIGHT})
    (folder / "case_0.pkl").write_bytes(pickle.dumps({"spacing": (0.7, 0.7)}))
    with pytest.raises(ValueError, match=r"case_0\.pkl"):
        read_case_geometries(folder, ["case_0"])
    with pytest.raises(FileNotFoundError, match="case_9"):
        read_case_geometries(folder, ["case_9"])
