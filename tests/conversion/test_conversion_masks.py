"""Label encodings: exclusive priority maps and nnU-Net region-based labels for overlapping structures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conversion_helpers import write_png

from dataset_conversion.masks import BinaryMaskFolders, BitFlagMasks, LabelEncoding, LabelMapMasks, LoadedMask
from dataset_conversion.validation import ValidationReport


def _structures() -> dict[str, np.ndarray]:
    # Three 1-D "images" of 6 pixels: a covers 0..3, b covers 2..4, c covers 5. a and b overlap on pixels 2, 3.
    a = np.array([1, 1, 1, 1, 0, 0], dtype=bool)
    b = np.array([0, 0, 1, 1, 1, 0], dtype=bool)
    c = np.array([0, 0, 0, 0, 0, 1], dtype=bool)
    return {"a": a, "b": b, "c": c}


def _loaded(structures: dict[str, np.ndarray]) -> LoadedMask:
    return LoadedMask(sitk.Image(6, 1, sitk.sitkUInt8), "masks/x.png", structures=structures)


def test_priority_later_structures_win() -> None:
    encoding = LabelEncoding(("a", "b", "c"), "priority", ("b", "a", "c"))
    encoded = encoding.encode(_loaded(_structures()), ValidationReport(), "x")
    # Values follow the declaration order (a=1, b=2, c=3); painting b then a makes a win on the overlap.
    assert encoded.tolist() == [1, 1, 1, 1, 2, 3]
    assert encoding.labels_json(with_ignore=True) == {"background": 0, "a": 1, "b": 2, "c": 3, "ignore": 4}


def test_default_priority_is_declaration_order() -> None:
    encoded = LabelEncoding(("a", "b", "c"), "priority").encode(_loaded(_structures()), ValidationReport(), "x")
    assert encoded.tolist() == [1, 1, 2, 2, 2, 3]


def test_regions_keep_every_structure_and_decode_exactly() -> None:
    structures = _structures()
    encoding = LabelEncoding(("a", "b", "c"), "regions")
    encoded = encoding.encode(_loaded(structures), ValidationReport(), "x")
    # Bit codes a=1, b=2, c=4: the overlap is 1 + 2 = 3.
    assert encoded.tolist() == [1, 1, 3, 3, 2, 4]
    decoded = encoding.decode_structures(encoded)
    for name, mask in structures.items():
        assert np.array_equal(decoded[name], mask)
    labels = encoding.labels_json(with_ignore=True)
    assert labels["a"] == [1, 3, 5, 7] and labels["c"] == [4, 5, 6, 7]
    assert labels["ignore"] == 8 and list(labels)[-1] == "ignore"
    assert encoding.regions_class_order() == [1, 2, 4]


def test_overlap_error_names_file_structures_and_pixel_count() -> None:
    report = ValidationReport()
    assert LabelEncoding(("a", "b", "c")).encode(_loaded(_structures()), report, "x") is None
    (error,) = report.errors
    assert error.file == "masks/x.png" and "a & b: 2 pixels" in error.problem and "--overlap" in error.problem


def test_nnunet_label_manager_accepts_regions_with_the_ignore_label() -> None:
    label_handling = pytest.importorskip("nnunetv2.utilities.label_handling.label_handling")
    encoding = LabelEncoding(("a", "b", "c"), "regions")
    manager = label_handling.LabelManager(encoding.labels_json(with_ignore=True), encoding.regions_class_order())
    assert manager.has_regions and manager.ignore_label == 8
    # nnU-Net's dataset check wants consecutive values 0..N, then the ignore label.
    assert [*manager.all_labels, manager.ignore_label] == list(range(9))
    assert len(manager.foreground_regions) == 3


def test_bit_flags_with_unknown_bits_are_refused(tmp_path: Path) -> None:
    write_png(tmp_path / "m" / "x.png", np.array([[0, 1, 2, 4]]))
    report = ValidationReport()
    assert BitFlagMasks(tmp_path / "m", {"a": 1, "b": 2}).load("x", report) is None
    assert "value(s) [4]" in report.errors[0].problem and report.errors[0].file.endswith("x.png")


def test_label_map_values_are_renumbered_and_unknown_values_refused(tmp_path: Path) -> None:
    write_png(tmp_path / "m" / "x.png", np.array([[0, 30, 31, 30]]))
    loaded = LabelMapMasks(tmp_path / "m", {"L1": 31, "L2": 30}).load("x", ValidationReport())
    assert loaded is not None and loaded.exclusive.tolist() == [[0, 2, 1, 2]]
    report = ValidationReport()
    assert LabelMapMasks(tmp_path / "m", {"L1": 31}).load("x", report) is None
    assert "unexpected label value(s) [30]" in report.errors[0].problem
    kept = LabelMapMasks(tmp_path / "m", {"L1": 31}, unlisted="background").load("x", ValidationReport())
    assert kept is not None and kept.exclusive.tolist() == [[0, 0, 1, 0]]


@pytest.mark.parametrize("values", [[0, 1], [0, 255]])
def test_binary_masks_accept_0_1_and_0_255(tmp_path: Path, values: list[int]) -> None:
    write_png(tmp_path / "a" / "x.png", np.array([values]))
    loaded = BinaryMaskFolders({"a": tmp_path / "a"}).load("x", ValidationReport())
    assert loaded is not None and loaded.structures["a"].tolist() == [[False, True]]


def test_non_binary_mask_is_refused_naming_file_and_values(tmp_path: Path) -> None:
    path = write_png(tmp_path / "a" / "x.png", np.array([[0, 1, 2]]))
    report = ValidationReport()
    assert BinaryMaskFolders({"a": tmp_path / "a"}).load("x", report) is None
    (error,) = report.errors
    assert error.file == str(path) and "not binary" in error.problem and "[0, 1, 2]" in error.problem


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"structures": ("a", "a")}, "given twice"),
        ({"structures": ("background",)}, "reserved"),
        ({"structures": ("a", "b"), "overlap": "priority", "priority": ("a",)}, "every structure exactly once"),
        ({"structures": ("a",), "overlap": "regions", "priority": ("a",)}, "only with overlap='priority'"),
        ({"structures": tuple(f"s{index}" for index in range(16)), "overlap": "regions"}, "at most 15"),
    ],
)
def test_invalid_encodings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LabelEncoding(**kwargs)
