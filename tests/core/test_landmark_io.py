"""Landmark files: round trips of every format, RAS/LPS conversion, validation messages, and the real AFIDs file."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnunet_babloss.core.landmarks.io import (
    FORMAT_NAME,
    SLICER_MARKUPS_SCHEMA,
    LandmarkSet,
    landmark_file_format,
    lps_to_ras,
    ras_to_lps,
    read_landmarks,
    write_landmarks,
)
from nnunet_babloss.core.landmarks.spec import LandmarkSpec, landmark_name_problem

SUFFIXES = {"json": ".json", "mrk.json": ".mrk.json", "fcsv": ".fcsv", "csv": ".csv"}
FCSV_HEADER = (
    "# Markups fiducial file version = 4.11\n"
    "# CoordinateSystem = {system}\n"
    "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n"
)


def _assert_same(actual: LandmarkSet, expected: LandmarkSet) -> None:
    assert actual.names == expected.names
    assert actual.points_mm.shape == expected.points_mm.shape
    assert np.array_equal(actual.points_mm, expected.points_mm, equal_nan=True)  # exact: repr floats round-trip


# ----------------------------------------------------------------------------------------------------------------
# Round trips (hypothesis)

_names = st.text(min_size=1, max_size=10).filter(lambda name: landmark_name_problem(name) is None)
_coordinates = st.floats(min_value=-1e5, max_value=1e5, allow_nan=False, allow_infinity=False)


@st.composite
def _landmark_sets(draw: st.DrawFn, dimension: int, with_confidence: bool = False) -> LandmarkSet:
    names = draw(st.lists(_names, min_size=0, max_size=6, unique=True))
    rows = [
        draw(st.none() | st.lists(_coordinates, min_size=dimension, max_size=dimension)) for _ in names
    ]
    points = np.array([[np.nan] * dimension if row is None else row for row in rows], dtype=np.float64)
    confidence = None
    if with_confidence and draw(st.booleans()):
        values = [draw(st.none() | st.floats(0.0, 1.0)) for _ in names]
        confidence = np.array([np.nan if value is None else value for value in values], dtype=np.float64)
    return LandmarkSet(tuple(names), points.reshape(len(names), dimension), confidence)


@pytest.mark.parametrize("dimension", [2, 3])
@pytest.mark.parametrize("file_format", ["json", "csv"])
def test_our_json_and_csv_round_trip_exactly(file_format: str, dimension: int) -> None:
    systems = ["LPS", "RAS"] if file_format == "json" else ["LPS"]

    @settings(max_examples=40, deadline=None)
    @given(landmarks=_landmark_sets(dimension, with_confidence=file_format == "json"), system=st.sampled_from(systems))
    def check(landmarks: LandmarkSet, system: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"case{SUFFIXES[file_format]}"
            write_landmarks(path, landmarks, coordinate_system=system)  # type: ignore[arg-type]
            read = read_landmarks(path)
        _assert_same(read, landmarks)
        if landmarks.confidence is None:
            assert read.confidence is None
        else:
            assert read.confidence is not None
            assert np.array_equal(read.confidence, landmarks.confidence, equal_nan=True)

    check()


@pytest.mark.parametrize("dimension", [2, 3])
@pytest.mark.parametrize("file_format", ["mrk.json", "fcsv"])
def test_slicer_round_trip_is_3d_and_keeps_every_present_point(file_format: str, dimension: int) -> None:
    @settings(max_examples=40, deadline=None)
    @given(landmarks=_landmark_sets(dimension), system=st.sampled_from(["LPS", "RAS"]))
    def check(landmarks: LandmarkSet, system: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"case{SUFFIXES[file_format]}"
            write_landmarks(path, landmarks, coordinate_system=system)  # type: ignore[arg-type]
            read = read_landmarks(path)
            spec_read = read_landmarks(path, LandmarkSpec(landmarks.names)) if landmarks.names else None
        # Slicer files are 3D: a 2D point (x, y) comes back as (x, y, 0)
        expected = np.full((len(landmarks.names), 3), np.nan)
        expected[:, :dimension] = landmarks.points_mm
        expected[landmarks.present, dimension:] = 0.0
        full = LandmarkSet(landmarks.names, expected)
        if file_format == "mrk.json":  # markups mark absent points as "missing": names survive
            _assert_same(read, full)
        else:  # .fcsv leaves absent points out: only present names come back, in order
            present_names = tuple(np.array(landmarks.names, dtype=object)[landmarks.present])
            _assert_same(read, _only_present(full))
            assert read.names == present_names
        if spec_read is not None:  # with a specification, absent points come back as NaN rows in spec order
            _assert_same(spec_read, full)

    check()


def _only_present(landmarks: LandmarkSet) -> LandmarkSet:
    keep = landmarks.present
    return LandmarkSet(tuple(np.array(landmarks.names, dtype=object)[keep]), landmarks.points_mm[keep])


# ----------------------------------------------------------------------------------------------------------------
# RAS <-> LPS


def test_ras_lps_flip_x_and_y_only() -> None:
    ras = np.array([[1.0, 2.0, 3.0], [np.nan, np.nan, np.nan]])
    assert np.array_equal(ras_to_lps(ras), [[-1.0, -2.0, 3.0], [np.nan] * 3], equal_nan=True)
    assert np.array_equal(lps_to_ras(ras_to_lps(ras)), ras, equal_nan=True)
    assert np.array_equal(ras_to_lps([[4.0, -5.0]]), [[-4.0, 5.0]])
    assert ras[0, 0] == 1.0  # input untouched
    with pytest.raises(ValueError, match=r"shape \(N, 2\) or \(N, 3\)"):
        ras_to_lps([1.0, 2.0, 3.0])


RAS_POINT = [10.0, 20.0, 30.0]
LPS_POINT = [-10.0, -20.0, 30.0]  # RAS -> LPS negates x (R->L) and y (A->P)


@pytest.mark.parametrize(
    ("suffix", "text"),
    [
        (".json", json.dumps({"format": FORMAT_NAME, "version": 1, "coordinate_system": "RAS",
                              "landmarks": {"AC": RAS_POINT}})),
        (".mrk.json", json.dumps({"@schema": SLICER_MARKUPS_SCHEMA, "markups": [{
            "type": "Fiducial", "coordinateSystem": "RAS", "controlPoints": [
                {"label": "AC", "position": RAS_POINT, "positionStatus": "defined"}]}]})),
        (".fcsv", FCSV_HEADER.format(system="RAS") + "1,10,20,30,0,0,0,1,1,1,0,AC,,\n"),
        (".fcsv", FCSV_HEADER.format(system="0") + "1,10,20,30,0,0,0,1,1,1,0,AC,,\n"),  # legacy 0 = RAS
        (".fcsv", FCSV_HEADER.replace("# CoordinateSystem = {system}\n", "") + "1,10,20,30,0,0,0,1,1,1,0,AC,,\n"),
    ],
    ids=["json", "mrk.json", "fcsv", "fcsv-legacy-0", "fcsv-no-system-line"],
)
def test_ras_files_are_read_as_lps(tmp_path: Path, suffix: str, text: str) -> None:
    path = tmp_path / f"case{suffix}"
    path.write_text(text, encoding="utf-8")
    landmarks = read_landmarks(path)
    assert landmarks.names == ("AC",)
    assert landmarks.points_mm.tolist() == [LPS_POINT]


@pytest.mark.parametrize("system", ["LPS", "1"])
def test_lps_fcsv_is_read_unchanged(tmp_path: Path, system: str) -> None:
    path = tmp_path / "case.fcsv"
    path.write_text(FCSV_HEADER.format(system=system) + "1,10,20,30,0,0,0,1,1,1,0,AC,,\n", encoding="utf-8")
    assert read_landmarks(path).points_mm.tolist() == [RAS_POINT]  # numbers as written: already LPS


def test_writing_ras_stores_flipped_numbers(tmp_path: Path) -> None:
    landmarks = LandmarkSet(("AC",), [LPS_POINT])
    write_landmarks(tmp_path / "a.json", landmarks, coordinate_system="RAS")
    ours = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    assert (ours["coordinate_system"], ours["landmarks"]["AC"]) == ("RAS", RAS_POINT)
    write_landmarks(tmp_path / "a.mrk.json", landmarks, coordinate_system="RAS")
    markup = json.loads((tmp_path / "a.mrk.json").read_text(encoding="utf-8"))["markups"][0]
    assert (markup["coordinateSystem"], markup["controlPoints"][0]["position"]) == ("RAS", RAS_POINT)
    write_landmarks(tmp_path / "a.fcsv", landmarks, coordinate_system="RAS")
    lines = (tmp_path / "a.fcsv").read_text(encoding="utf-8").splitlines()
    assert lines[1] == "# CoordinateSystem = RAS"
    assert [float(value) for value in lines[3].split(",")[1:4]] == RAS_POINT


def test_slicer_markups_file_layout(tmp_path: Path) -> None:
    path = tmp_path / "a.mrk.json"
    write_landmarks(path, LandmarkSet(("a", "b"), [[1.0, 2.0, 3.0], [np.nan] * 3]))
    content = json.loads(path.read_text(encoding="utf-8"))
    assert content["@schema"] == SLICER_MARKUPS_SCHEMA
    markup = content["markups"][0]
    assert (markup["type"], markup["coordinateSystem"], markup["coordinateUnits"]) == ("Fiducial", "LPS", "mm")
    present, absent = markup["controlPoints"]
    assert {"id", "label", "position", "orientation", "selected", "locked", "visibility"} <= set(present)
    assert (present["label"], present["position"], present["positionStatus"]) == ("a", [1.0, 2.0, 3.0], "defined")
    assert (absent["label"], absent["positionStatus"]) == ("b", "missing") and "position" not in absent


def test_markups_absent_points_and_units(tmp_path: Path) -> None:
    points = [
        {"label": "missing", "positionStatus": "missing", "position": [0, 0, 0]},
        {"label": "undefined", "positionStatus": "undefined"},
        {"label": "no-position"},
        {"label": "placed", "position": [1000, 2000, 3000]},  # no positionStatus = defined (Slicer's default)
    ]
    path = tmp_path / "a.mrk.json"
    path.write_text(json.dumps({"@schema": SLICER_MARKUPS_SCHEMA, "markups": [
        {"type": "Fiducial", "coordinateUnits": "um", "controlPoints": points}]}), encoding="utf-8")
    landmarks = read_landmarks(path)
    assert landmarks.present.tolist() == [False, False, False, True]
    assert landmarks.points_mm[3].tolist() == [1.0, 2.0, 3.0]  # um -> mm; no coordinateSystem = LPS


def test_fcsv_description_names_and_quoted_labels(tmp_path: Path) -> None:
    path = tmp_path / "a.fcsv"
    path.write_text(
        FCSV_HEADER.format(system="LPS")
        + '1,1,2,3,0,0,0,1,1,1,0,"left, upper",first,\n'
        + "2,,,,0,0,0,1,1,1,0,2,second,\n",
        encoding="utf-8",
    )
    by_label = read_landmarks(path)
    assert by_label.names == ("left, upper", "2") and by_label.present.tolist() == [True, False]
    assert read_landmarks(path, name_field="description").names == ("first", "second")


def test_2d_to_slicer_pads_z_with_zero(tmp_path: Path) -> None:
    landmarks = LandmarkSet(("a",), [[1.5, -2.5]])
    for suffix in (".mrk.json", ".fcsv"):
        write_landmarks(tmp_path / f"a{suffix}", landmarks)
        assert read_landmarks(tmp_path / f"a{suffix}").points_mm.tolist() == [[1.5, -2.5, 0.0]]
        with pytest.raises(ValueError, match=r"expected 2D landmarks, the file holds 3D"):
            read_landmarks(tmp_path / f"a{suffix}", dimension=2)


# ----------------------------------------------------------------------------------------------------------------
# Specification and dimension


def test_reading_with_a_spec_orders_fills_and_refuses_unknown_names(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("name,x,y\nb,1,2\na,3,4\n", encoding="utf-8")
    landmarks = read_landmarks(path, LandmarkSpec(names=("a", "b", "c")))
    assert landmarks.names == ("a", "b", "c")
    assert np.array_equal(landmarks.points_mm, [[3, 4], [1, 2], [np.nan, np.nan]], equal_nan=True)
    with pytest.raises(ValueError, match=r"a\.csv: landmark\(s\) \['b'\] not in the landmark specification"):
        read_landmarks(path, LandmarkSpec(names=("a", "c")))


def test_all_null_json_needs_a_dimension(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"format": FORMAT_NAME, "version": 1, "landmarks": {"a": None}}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"a\.json: cannot tell 2D from 3D"):
        read_landmarks(path)
    assert read_landmarks(path, dimension=2).points_mm.shape == (1, 2)


def test_expected_dimension_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("name,x,y\na,1,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"a\.csv: expected 3D landmarks, the file holds 2D"):
        read_landmarks(path, dimension=3)


# ----------------------------------------------------------------------------------------------------------------
# Malformed files: each message names the file, where, and the problem

_OURS = {"format": FORMAT_NAME, "version": 1, "coordinate_system": "LPS", "unit": "mm"}
_MRK = {"@schema": SLICER_MARKUPS_SCHEMA}
_FCSV = FCSV_HEADER.format(system="LPS")

MALFORMED = [
    # our JSON
    (".json", '{"format": "%s", "version": 1, "landmarks": {"a": [1, 2], "a": [3, 4]}}' % FORMAT_NAME,
     "key 'a' appears twice"),
    (".json", json.dumps({**_OURS, "landmarks": {"a": [1, 2], "b": [1, 2, 3]}}),
     "landmarks['b']: expected 2 coordinates (as landmark 'a'), got 3"),
    (".json", json.dumps({**_OURS, "landmarks": {"a": [1, 2, 3, 4]}}), "landmarks['a']: expected 2 or 3 coordinates"),
    (".json", json.dumps({**_OURS, "dimension": 3, "landmarks": {"a": [1, 2]}}),
     "landmarks['a']: expected 3 coordinates (as 'dimension'), got 2"),
    (".json", '{"format": "%s", "version": 1, "landmarks": {"a": [NaN, 2]}}' % FORMAT_NAME,
     "landmarks['a']: coordinates must be finite"),
    (".json", '{"format": "%s", "version": 1, "landmarks": {"a": [Infinity, 2]}}' % FORMAT_NAME,
     "landmarks['a']: coordinates must be finite"),
    (".json", json.dumps({**_OURS, "landmarks": {"a": ["1", 2]}}), "landmarks['a']: coordinates must be numbers"),
    (".json", json.dumps({**_OURS, "landmarks": {"a": [True, 2]}}), "landmarks['a']: coordinates must be numbers"),
    (".json", json.dumps({**_OURS, "landmarks": {"": [1, 2]}}), "landmarks['']: landmark name must not be empty"),
    (".json", json.dumps({**_OURS, "landmarks": {"a": [1, 2]}, "confidence": {"b": 0.5}}),
     "confidence['b']: unknown landmark"),
    (".json", json.dumps({**_OURS, "landmarks": {"a": [1, 2]}, "confidence": {"a": "high"}}),
     "confidence['a']: must be a finite number"),
    (".json", json.dumps({**_OURS, "landmarks": {}, "dimension": 2, "extra": 1}), "unknown key(s) ['extra']"),
    (".json", json.dumps({**_OURS, "format": "other", "landmarks": {}}), "format: expected"),
    (".json", json.dumps({**_MRK, "markups": []}), "name it *.mrk.json"),
    (".json", json.dumps({**_OURS, "version": 2, "landmarks": {}}), "version: this reader supports version 1"),
    (".json", json.dumps({**_OURS, "coordinate_system": "IJK", "landmarks": {}}), "coordinate_system: expected"),
    (".json", json.dumps({**_OURS, "unit": "cm", "landmarks": {}}), "unit: only 'mm'"),
    (".json", "[1, 2]", "must hold a JSON object"),
    (".json", "{oops", "not valid JSON"),
    # Slicer markups
    (".mrk.json", json.dumps({**_MRK, "markups": [{"type": "Fiducial", "controlPoints": [
        {"label": "a", "position": [1, 2, 3]}, {"label": "a", "position": [1, 2, 3]}]}]}),
     "controlPoints[1] (label): duplicate landmark name 'a' (first at"),
    (".mrk.json", json.dumps({**_MRK, "markups": [{"type": "Fiducial", "controlPoints": [
        {"label": "a", "position": [1, 2]}]}]}), "controlPoints[0] ('a'): expected 3 coordinates, got 2"),
    (".mrk.json", json.dumps({**_MRK, "markups": [{"type": "Fiducial", "controlPoints": [
        {"label": "a", "position": [1, "x", 3]}]}]}), "controlPoints[0] ('a'): coordinates must be numbers"),
    (".mrk.json", json.dumps({**_MRK, "markups": [{"type": "Fiducial", "controlPoints": [
        {"label": "a", "positionStatus": "defined"}]}]}), "controlPoints[0] ('a'): positionStatus is 'defined' but"),
    (".mrk.json", json.dumps({**_MRK, "markups": [{"type": "Fiducial", "controlPoints": [
        {"label": "a", "positionStatus": "preview", "position": [1, 2, 3]}]}]}), "got 'preview'"),
    (".mrk.json", json.dumps({**_MRK, "markups": [{"type": "Fiducial", "controlPoints": [{"position": [1, 2, 3]}]}]}),
     "controlPoints[0] (label): landmark name must be a string, got NoneType"),
    (".mrk.json", json.dumps({**_MRK, "markups": [{"type": "Line", "controlPoints": []}]}),
     "markups[0].type: expected 'Fiducial'"),
    (".mrk.json", json.dumps({**_MRK, "markups": [{"type": "Fiducial"}, {"type": "Fiducial"}]}),
     "expected exactly one point list, got 2"),
    (".mrk.json", json.dumps({**_MRK, "markups": [{"type": "Fiducial", "coordinateSystem": "IJK"}]}),
     "markups[0].coordinateSystem: expected"),
    (".mrk.json", json.dumps({**_MRK, "markups": [{"type": "Fiducial", "coordinateUnits": "cm"}]}),
     "markups[0].coordinateUnits: expected"),
    (".mrk.json", json.dumps({"markups": []}), "@schema: expected a Slicer markups schema"),
    (".mrk.json", json.dumps({"landmarks": {}}), "not a Slicer markups file"),
    # Slicer fcsv
    (".fcsv", _FCSV + "1,1,2,3,0,0,0,1,1,1,0,a,,\n2,4,5,6,0,0,0,1,1,1,0,a,,\n",
     "line 5 (label): duplicate landmark name 'a' (first at"),
    (".fcsv", _FCSV + "1,1,2,3,0,0,0,1,1,1,0,a,\n", "line 4: expected 14 columns"),
    (".fcsv", _FCSV + "1,1,abc,3,0,0,0,1,1,1,0,a,,\n", "line 4 ('a'): non-numeric coordinate 'abc'"),
    (".fcsv", _FCSV + "1,1,nan,3,0,0,0,1,1,1,0,a,,\n", "line 4 ('a'): coordinates must be finite"),
    (".fcsv", _FCSV + "1,1,,3,0,0,0,1,1,1,0,a,,\n", "line 4 ('a'): coordinates are partly empty"),
    (".fcsv", _FCSV + "1,1,2,3,0,0,0,1,1,1,0,,,\n", "line 4 (label): landmark name must not be empty"),
    (".fcsv", _FCSV.replace("= LPS", "= 2"), "line 2: CoordinateSystem must be LPS, RAS, 0 (RAS) or 1 (LPS)"),
    (".fcsv", "1,1,2,3,0,0,0,1,1,1,0,a,,\n", "line 1: not a Slicer .fcsv file"),
    (".fcsv", "# columns = id,x,y,z,label\n", "not a Slicer .fcsv file"),
    (".fcsv", "# Markups fiducial file version = 4.11\n# columns = id,x,y,label\n",
     "line 2: columns header lacks ['z']"),
    # CSV
    (".csv", "name,x,y\na,1,2\na,3,4\n", "line 3: duplicate landmark name 'a' (first at"),
    (".csv", "name,x,y\na,1,2,3\n", "line 2: expected 3 columns (name,x,y), got 4"),
    (".csv", "name,x,y,z\na,1,2\n", "line 2: expected 4 columns (name,x,y,z), got 3"),
    (".csv", "name,x,y\na,one,2\n", "line 2 ('a'): non-numeric coordinate 'one'"),
    (".csv", "name,x,y\na,inf,2\n", "line 2 ('a'): coordinates must be finite"),
    (".csv", "name,x,y\na,,2\n", "line 2 ('a'): coordinates are partly empty"),
    (".csv", "name,x,y\n,1,2\n", "line 2: landmark name must not be empty"),
    (".csv", "label,x,y\na,1,2\n", "line 1: header must be 'name,x,y' or 'name,x,y,z'"),
    (".csv", "", "line 1: header must be"),
]


@pytest.mark.parametrize(("suffix", "text", "problem"), MALFORMED)
def test_malformed_files_name_the_file_the_place_and_the_problem(
    tmp_path: Path, suffix: str, text: str, problem: str
) -> None:
    path = tmp_path / f"case_017{suffix}"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        read_landmarks(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert problem in message, message


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        read_landmarks(tmp_path / "nowhere.csv")
    with pytest.raises(ValueError, match=r"points\.txt: unknown landmark file suffix"):
        read_landmarks(tmp_path / "points.txt")
    assert [landmark_file_format(f"x{suffix}") for suffix in (".MRK.JSON", ".json", ".fcsv", ".Csv")] == [
        "mrk.json", "json", "fcsv", "csv"]
    csv_path = tmp_path / "a.csv"
    csv_path.write_text("name,x,y\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"a\.csv: name_field='description' applies to Slicer files only"):
        read_landmarks(csv_path, name_field="description")
    assert read_landmarks(csv_path).names == ()


def test_write_refuses_what_a_format_cannot_hold(tmp_path: Path) -> None:
    with_confidence = LandmarkSet(("a",), [[1.0, 2.0, 3.0]], confidence=[0.9])
    for suffix in (".csv", ".fcsv", ".mrk.json"):
        with pytest.raises(ValueError, match=r"confidence is stored only in our \.json format"):
            write_landmarks(tmp_path / f"a{suffix}", with_confidence)
    write_landmarks(tmp_path / "a.csv", dataclasses.replace(with_confidence, confidence=None))
    with pytest.raises(ValueError, match=r"a\.csv: CSV landmark files .* always LPS"):
        write_landmarks(tmp_path / "a.csv", LandmarkSet(("a",), [[1.0, 2.0]]), coordinate_system="RAS")
    with pytest.raises(ValueError, match=r"coordinate_system must be one of \['LPS', 'RAS'\], got 'ras'"):
        write_landmarks(
            tmp_path / "a.json", LandmarkSet(("a",), [[1.0, 2.0]]), coordinate_system="ras"  # type: ignore[arg-type]
        )


# ----------------------------------------------------------------------------------------------------------------
# LandmarkSet


def test_landmark_set_validates_and_is_read_only() -> None:
    landmarks = LandmarkSet(["a", "b"], [[1, 2], [np.nan, np.nan]], confidence=[0.5, np.nan])  # type: ignore[arg-type]
    assert landmarks.names == ("a", "b") and landmarks.dimension == 2
    assert landmarks.present.tolist() == [True, False]
    assert landmarks.points_mm.dtype == np.float64
    with pytest.raises(ValueError, match="read-only"):
        landmarks.points_mm[0, 0] = 5.0
    with pytest.raises(ValueError, match=r"landmark 'a' is partly NaN"):
        LandmarkSet(("a",), [[1.0, np.nan]])
    with pytest.raises(ValueError, match=r"landmark 'a' has an infinite coordinate"):
        LandmarkSet(("a",), [[1.0, np.inf]])
    with pytest.raises(ValueError, match=r"names\[1\]: duplicate landmark name 'a'"):
        LandmarkSet(("a", "a"), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"shape \(K, 2\) or \(K, 3\) with K = 2 names, got shape \(2, 4\)"):
        LandmarkSet(("a", "b"), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"confidence must have shape \(1,\)"):
        LandmarkSet(("a",), np.zeros((1, 3)), confidence=[0.1, 0.2])


def test_reorder_as_dict_and_from_dict() -> None:
    landmarks = LandmarkSet.from_dict({"b": (1.0, 2.0, 3.0), "a": None}, confidence={"b": 0.8})
    assert landmarks.as_dict() == {"b": (1.0, 2.0, 3.0), "a": None}
    reordered = landmarks.reorder(["a", "c", "b"])
    assert reordered.as_dict() == {"a": None, "c": None, "b": (1.0, 2.0, 3.0)}
    assert reordered.confidence is not None
    assert np.array_equal(reordered.confidence, [np.nan, np.nan, 0.8], equal_nan=True)
    with pytest.raises(ValueError, match=r"reorder would drop landmark\(s\) \['b'\]"):
        landmarks.reorder(["a"])
    with pytest.raises(ValueError, match="pass dimension=2 or 3"):
        LandmarkSet.from_dict({"a": None})
    with pytest.raises(ValueError, match=r"lengths \[2, 3\]"):
        LandmarkSet.from_dict({"a": (1.0, 2.0), "b": (1.0, 2.0, 3.0)})
    assert LandmarkSet.from_dict({"a": None}, dimension=2).points_mm.shape == (1, 2)


# ----------------------------------------------------------------------------------------------------------------
# Real data: AFIDs fiducials on the MNI152 2009 symmetric template (legacy fcsv, "CoordinateSystem = 0" = RAS)


def test_afids_fcsv_reads_as_lps_inside_the_mni_template(shared_data: Path) -> None:
    folder = shared_data / "mni152_afids"
    fcsv = folder / "tpl-MNI152NLin2009cSym_afids.fcsv"
    if not fcsv.is_file():
        pytest.skip(f"{fcsv} not found")
    landmarks = read_landmarks(fcsv, name_field="description")  # AFIDs: label = number, desc = anatomical name
    assert len(landmarks.names) == 32
    assert landmarks.dimension == 3 and landmarks.present.all()
    by_name = landmarks.as_dict()
    # File row "AC": RAS (-0.06725, 2.8625, -4.833) -> LPS (0.06725, -2.8625, -4.833)
    assert by_name["AC"] == pytest.approx((0.06725, -2.8625, -4.833))
    # File row "PC": RAS (-0.0845, -25.1645, -1.935) -> LPS (0.0845, 25.1645, -1.935)
    assert by_name["PC"] == pytest.approx((0.0845, 25.1645, -1.935))
    # Anatomy: in LPS the posterior commissure lies behind the anterior one (+y), right structures have x < 0
    assert by_name["PC"][1] > by_name["AC"][1]
    sides = {name: point[0] for name, point in by_name.items() if name[:2] in ("R ", "L ")}  # type: ignore[index]
    assert len(sides) == 22  # 11 left/right pairs (rows 6-9, 12-13, 15-18, 21-32)
    assert all((x < 0) == name.startswith("R ") for name, x in sides.items())
    # Label names are the numbers, same coordinates
    by_label = read_landmarks(fcsv)
    assert by_label.names == tuple(str(number) for number in range(1, 33))
    assert np.array_equal(by_label.points_mm, landmarks.points_mm)

    sitk = pytest.importorskip("SimpleITK")
    image = sitk.ReadImage(str(folder / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"))
    size_xyz = np.array(image.GetSize())
    for name in landmarks.names:
        index_xyz = np.array(image.TransformPhysicalPointToContinuousIndex(by_name[name]))
        assert np.all(index_xyz >= -0.5) and np.all(index_xyz <= size_xyz - 0.5), (name, index_xyz)
    # The AC sits on the mid-sagittal plane of the symmetric template: its x index is the middle column
    ac_index_x = image.TransformPhysicalPointToContinuousIndex(by_name["AC"])[0]
    assert abs(ac_index_x - (size_xyz[0] - 1) / 2) < 2.0
