"""Landmark files: our JSON, 3D Slicer markups (``.mrk.json``, ``.fcsv``) and plain CSV.

In memory a :class:`LandmarkSet` holds world points in **LPS mm, ITK order** ``(x, y, z)`` / ``(x, y)`` (the
package convention); an absent landmark is a row of NaN. The format is chosen by the file suffix:

* ``.json`` (ours, 2D or 3D): ``{"format": "nnunet_babloss.landmarks", "version": 1, "coordinate_system": "LPS",
  "unit": "mm", "dimension": 3, "landmarks": {name: [x, y(, z)] or null}, "confidence": {name: number}}``;
  ``coordinate_system`` may be ``"RAS"``; ``dimension`` (optional) tells 2D from 3D when every landmark is null;
  ``confidence`` is optional (names not listed have unknown, NaN, confidence).
* ``.mrk.json``: 3D Slicer markups JSON with one ``"Fiducial"`` (point list) markup, LPS or RAS.
* ``.fcsv``: 3D Slicer fiducial CSV (versions 4.6 to 5.x), LPS or RAS.
* ``.csv``: header ``name,x,y`` or ``name,x,y,z``, one landmark per row, LPS mm; empty coordinate cells = absent.

Format details and choices:

* **RAS → LPS** negates ``x`` and ``y`` (the two frames differ by a 180° turn about the ``z`` axis); files are
  converted on reading and, for formats that record their frame, on writing (``coordinate_system=``).
* **Slicer formats are 3D only**: reading them always gives ``D = 3``; writing a 2D set pads ``z = 0``.
* ``.mrk.json``: a control point with ``positionStatus`` ``"missing"`` or ``"undefined"``, or without a
  ``position``, is absent; absent landmarks are written with ``positionStatus: "missing"`` and no position.
  ``coordinateUnits`` ``"um"`` is converted to mm.
* ``.fcsv`` has no "missing point" notion: absent landmarks are left out when writing (read with a
  :class:`~nnunet_babloss.core.landmarks.spec.LandmarkSpec` to get them back as NaN rows); on reading, empty ``x,y,z``
  cells also mean absent. ``# CoordinateSystem`` is ``LPS``/``RAS`` or the legacy numbers ``0`` (RAS) and ``1``
  (LPS); a file without that line is RAS, as in Slicer before 4.11.
* Slicer names come from the control point ``label`` (``name_field="label"``, default) or its description
  (``name_field="description"``, the ``desc`` column of ``.fcsv``) — some published sets (e.g. AFIDs) put
  numbers in the label and the anatomical name in the description.
* Confidence (per landmark, e.g. a decoded heatmap peak) is stored in our JSON only.
* Every malformed file raises :class:`ValueError` naming the file, the line / landmark and the problem
  (duplicate or invalid name, unknown name, wrong number of coordinates, NaN/inf, non-numeric value).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from nnunet_babloss.core.landmarks.spec import LandmarkSpec, landmark_name_problem

__all__ = [
    "FCSV_COLUMNS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SLICER_MARKUPS_SCHEMA",
    "CoordinateSystem",
    "LandmarkFileFormat",
    "LandmarkSet",
    "NameField",
    "landmark_file_format",
    "lps_to_ras",
    "ras_to_lps",
    "read_landmarks",
    "write_landmarks",
]

CoordinateSystem = Literal["LPS", "RAS"]
LandmarkFileFormat = Literal["json", "mrk.json", "fcsv", "csv"]
NameField = Literal["label", "description"]

FORMAT_NAME = "nnunet_babloss.landmarks"
FORMAT_VERSION = 1
SLICER_MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/main/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)
FCSV_VERSION = "4.11"
FCSV_COLUMNS = ("id", "x", "y", "z", "ow", "ox", "oy", "oz", "vis", "sel", "lock", "label", "desc", "associatedNodeID")

_COORDINATE_SYSTEMS: tuple[str, ...] = ("LPS", "RAS")
_NAME_FIELDS: tuple[str, ...] = ("label", "description")
_SUPPORTED_DIMENSIONS = (2, 3)
# Suffixes in matching order: ".mrk.json" must be tested before ".json".
_SUFFIX_FORMATS: tuple[tuple[str, LandmarkFileFormat], ...] = (
    (".mrk.json", "mrk.json"),
    (".json", "json"),
    (".fcsv", "fcsv"),
    (".csv", "csv"),
)
_OUR_JSON_KEYS = ("format", "version", "coordinate_system", "unit", "dimension", "landmarks", "confidence")
_MARKUPS_SCHEMA_MARK = "markups-schema-v1"
# Length unit of Slicer "coordinateUnits" -> factor to mm.
_MARKUPS_UNITS_TO_MM = {"mm": 1.0, "um": 1e-3}
_MARKUPS_ABSENT_STATUSES = ("missing", "undefined")
# Legacy numeric "# CoordinateSystem" values of .fcsv files (Slicer < 4.11).
_FCSV_COORDINATE_SYSTEMS = {"0": "RAS", "1": "LPS", "RAS": "RAS", "LPS": "LPS"}
_FCSV_VERSION_HEADER = "markups fiducial file version"
# The control point orientation Slicer writes: identity in RAS, expressed in the file's frame.
_MARKUPS_ORIENTATION = {
    "LPS": [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0],
    "RAS": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
}


def _flip_xy(points_mm: ArrayLike) -> NDArray[np.float64]:
    points = np.array(points_mm, dtype=np.float64, copy=True)
    if points.ndim != 2 or points.shape[1] not in _SUPPORTED_DIMENSIONS:
        raise ValueError(f"points_mm must have shape (N, 2) or (N, 3), got shape {points.shape}")
    points[:, :2] *= -1.0
    return points


def ras_to_lps(points_mm: ArrayLike) -> NDArray[np.float64]:
    """Convert ``(N, D)`` RAS points to LPS by negating ``x`` and ``y`` (NaN rows stay NaN).

    Raises:
        ValueError: ``points_mm`` is not ``(N, 2)`` or ``(N, 3)``.
    """
    return _flip_xy(points_mm)


def lps_to_ras(points_mm: ArrayLike) -> NDArray[np.float64]:
    """Convert ``(N, D)`` LPS points to RAS by negating ``x`` and ``y`` (the same map as :func:`ras_to_lps`).

    Raises:
        ValueError: ``points_mm`` is not ``(N, 2)`` or ``(N, 3)``.
    """
    return _flip_xy(points_mm)


@dataclass(frozen=True, eq=False)
class LandmarkSet:
    """Named world points of one image.

    The arrays are copied and made read-only. Equality is identity (compare ``names`` and the arrays instead).

    Attributes:
        names: ``K`` unique landmark names (see :func:`~nnunet_babloss.core.landmarks.spec.landmark_name_problem`).
        points_mm: ``(K, D)`` float64 world points, LPS mm, ITK order ``(x, y, z)``/``(x, y)``; a NaN row = absent.
        confidence: Optional ``(K,)`` float64 per-landmark confidence; NaN = unknown.

    Raises:
        ValueError: (from the constructor) invalid or duplicate names, wrong shapes, an infinite value, or a row
            that is only partly NaN.

    Example:
        >>> landmarks = LandmarkSet(("AC", "PC"), [[0.1, -2.9, -4.8], [np.nan] * 3])
        >>> landmarks.present.tolist(), landmarks.dimension
        ([True, False], 3)
    """

    names: tuple[str, ...]
    points_mm: NDArray[np.float64]
    confidence: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.names, str) or not isinstance(self.names, Sequence):
            raise ValueError(f"LandmarkSet.names must be a sequence of names, got {self.names!r}")
        names = tuple(self.names)
        seen: set[str] = set()
        for index, name in enumerate(names):
            problem = landmark_name_problem(name)
            if problem is not None:
                raise ValueError(f"LandmarkSet.names[{index}]: landmark name {problem}, got {name!r}")
            if name in seen:
                raise ValueError(f"LandmarkSet.names[{index}]: duplicate landmark name {name!r}")
            seen.add(name)
        try:
            points = np.array(self.points_mm, dtype=np.float64, copy=True)
        except (TypeError, ValueError) as error:
            raise ValueError(f"LandmarkSet.points_mm must be numeric, got {self.points_mm!r}") from error
        if points.ndim != 2 or points.shape[0] != len(names) or points.shape[1] not in _SUPPORTED_DIMENSIONS:
            raise ValueError(
                f"LandmarkSet.points_mm must have shape (K, 2) or (K, 3) with K = {len(names)} names, "
                f"got shape {points.shape}"
            )
        for index, row in enumerate(points):
            if np.isinf(row).any():
                raise ValueError(f"LandmarkSet: landmark {names[index]!r} has an infinite coordinate: {row.tolist()}")
            if np.isnan(row).any() and not np.isnan(row).all():
                raise ValueError(
                    f"LandmarkSet: landmark {names[index]!r} is partly NaN: {row.tolist()} "
                    "(an absent landmark is a row of NaN)"
                )
        points.setflags(write=False)
        confidence = None
        if self.confidence is not None:
            try:
                confidence = np.array(self.confidence, dtype=np.float64, copy=True)
            except (TypeError, ValueError) as error:
                raise ValueError(f"LandmarkSet.confidence must be numeric, got {self.confidence!r}") from error
            if confidence.shape != (len(names),):
                raise ValueError(
                    f"LandmarkSet.confidence must have shape ({len(names)},) like names, got {confidence.shape}"
                )
            if np.isinf(confidence).any():
                index = int(np.nonzero(np.isinf(confidence))[0][0])
                raise ValueError(
                    f"LandmarkSet.confidence of {names[index]!r} must be finite or NaN, got {confidence[index]}"
                )
            confidence.setflags(write=False)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "points_mm", points)
        object.__setattr__(self, "confidence", confidence)

    @property
    def dimension(self) -> int:
        """Spatial dimension ``D`` (2 or 3)."""
        return int(self.points_mm.shape[1])

    @property
    def present(self) -> NDArray[np.bool_]:
        """``(K,)`` bool: which landmarks have coordinates."""
        return ~np.isnan(self.points_mm).any(axis=1)

    def reorder(self, names: Sequence[str]) -> LandmarkSet:
        """The same landmarks in the order of ``names``; names not in this set become NaN rows.

        Raises:
            ValueError: this set has a landmark that ``names`` lacks (it would be dropped), or ``names`` is invalid.
        """
        if isinstance(names, str):
            raise ValueError(f"names must be a sequence of landmark names, got the string {names!r}")
        names = tuple(names)
        wanted = set(names)
        dropped = [name for name in self.names if name not in wanted]
        if dropped:
            raise ValueError(f"reorder would drop landmark(s) {dropped}: they are not in {list(names)}")
        row_of = {name: row for row, name in enumerate(self.names)}
        points = np.full((len(names), self.dimension), np.nan)
        confidence = None if self.confidence is None else np.full(len(names), np.nan)
        for row, name in enumerate(names):
            if name in row_of:
                points[row] = self.points_mm[row_of[name]]
                if confidence is not None and self.confidence is not None:
                    confidence[row] = self.confidence[row_of[name]]
        return LandmarkSet(names, points, confidence)

    def as_dict(self) -> dict[str, tuple[float, ...] | None]:
        """``{name: (x, y[, z]) in LPS mm, or None if absent}`` in the order of :attr:`names`."""
        return {
            name: tuple(float(value) for value in row) if present else None
            for name, row, present in zip(self.names, self.points_mm, self.present)
        }

    @classmethod
    def from_dict(
        cls,
        points_mm: Mapping[str, Sequence[float] | None],
        *,
        dimension: int | None = None,
        confidence: Mapping[str, float] | None = None,
    ) -> LandmarkSet:
        """Build a set from ``{name: (x, y[, z]) LPS mm or None}``.

        Args:
            points_mm: Coordinates per name, ``None`` for an absent landmark.
            dimension: ``D``; required when every landmark is absent, checked otherwise.
            confidence: Optional ``{name: confidence}``; names not listed get NaN.

        Raises:
            ValueError: inconsistent or unknown dimension, an unknown name in ``confidence``, or invalid values.
        """
        names = tuple(points_mm)
        lengths = {len(point) for point in points_mm.values() if point is not None}
        if dimension is not None:
            lengths.add(dimension)
        if len(lengths) != 1:
            raise ValueError(
                f"cannot tell the dimension: points have lengths {sorted(lengths)}"
                + ("" if lengths else " (all absent; pass dimension=2 or 3)")
            )
        (resolved,) = lengths
        points = np.full((len(names), resolved), np.nan)
        for row, point in enumerate(points_mm.values()):
            if point is not None:
                points[row] = point
        confidence_array = None
        if confidence is not None:
            unknown = [name for name in confidence if name not in points_mm]
            if unknown:
                raise ValueError(f"confidence names unknown landmark(s) {unknown}")
            confidence_array = np.array([confidence.get(name, np.nan) for name in names], dtype=np.float64)
        return cls(names, points, confidence_array)


def landmark_file_format(path: str | os.PathLike[str]) -> LandmarkFileFormat:
    """The landmark file format implied by the suffix of ``path`` (case-insensitive).

    Raises:
        ValueError: the suffix is not one of ``.json``, ``.mrk.json``, ``.fcsv``, ``.csv``.
    """
    name = Path(path).name.lower()
    for suffix, file_format in _SUFFIX_FORMATS:
        if name.endswith(suffix):
            return file_format
    raise ValueError(
        f"{path}: unknown landmark file suffix; supported: {[suffix for suffix, _ in _SUFFIX_FORMATS]}"
    )


def read_landmarks(
    path: str | os.PathLike[str],
    spec: LandmarkSpec | None = None,
    *,
    dimension: int | None = None,
    name_field: NameField = "label",
) -> LandmarkSet:
    """Read a landmark file (format from the suffix, see the module docstring) into LPS mm.

    Args:
        path: The file.
        spec: If given, every name must be in ``spec.names``; the result is ordered as ``spec.names`` and
            landmarks missing from the file become NaN rows.
        dimension: Expected ``D`` (2 or 3); also resolves our JSON files whose landmarks are all ``null`` and
            that carry no ``"dimension"``.
        name_field: Slicer formats only: name landmarks by the control point ``"label"`` or ``"description"``.

    Returns:
        The landmarks, in file order (or ``spec`` order).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unknown suffix, malformed file, a name not in ``spec``, or a dimension other than
            ``dimension``; the message names the file and the line/landmark.
    """
    source = str(path)
    file_format = landmark_file_format(path)
    if dimension is not None and dimension not in _SUPPORTED_DIMENSIONS:
        raise ValueError(f"dimension must be 2 or 3, got {dimension!r}")
    if name_field not in _NAME_FIELDS:
        raise ValueError(f"name_field must be one of {list(_NAME_FIELDS)}, got {name_field!r}")
    if name_field != "label" and file_format in ("json", "csv"):
        raise ValueError(f"{source}: name_field={name_field!r} applies to Slicer files only (.mrk.json, .fcsv)")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{source}: landmark file not found")
    if file_format == "json":
        landmarks = _read_our_json(Path(path), source, dimension)
    elif file_format == "mrk.json":
        landmarks = _read_markups_json(Path(path), source, name_field)
    elif file_format == "fcsv":
        landmarks = _read_fcsv(Path(path), source, name_field)
    elif file_format == "csv":
        landmarks = _read_csv(Path(path), source)
    else:  # pragma: no cover - landmark_file_format only returns the formats above
        raise ValueError(f"{source}: unsupported landmark format {file_format!r}")
    if dimension is not None and landmarks.dimension != dimension:
        raise ValueError(f"{source}: expected {dimension}D landmarks, the file holds {landmarks.dimension}D points")
    if spec is not None:
        unknown = [name for name in landmarks.names if name not in spec.names]
        if unknown:
            raise ValueError(
                f"{source}: landmark(s) {unknown} not in the landmark specification (known: {list(spec.names)})"
            )
        landmarks = landmarks.reorder(spec.names)
    return landmarks


def write_landmarks(
    path: str | os.PathLike[str],
    landmarks: LandmarkSet,
    *,
    coordinate_system: CoordinateSystem = "LPS",
) -> None:
    """Write ``landmarks`` (LPS mm) in the format implied by the suffix of ``path``; overwrites an existing file.

    Args:
        path: Output file; its folder must exist.
        landmarks: The landmarks.
        coordinate_system: Frame written to our JSON and Slicer files (``"LPS"`` or ``"RAS"``); CSV is always LPS.

    Raises:
        ValueError: unknown suffix or ``coordinate_system``; ``"RAS"`` for CSV; a set with confidence written to
            a format other than our JSON (drop it with ``dataclasses.replace(landmarks, confidence=None)``).
    """
    source = str(path)
    file_format = landmark_file_format(path)
    if not isinstance(landmarks, LandmarkSet):
        raise ValueError(f"landmarks must be a LandmarkSet, got {type(landmarks).__name__}")
    if coordinate_system not in _COORDINATE_SYSTEMS:
        raise ValueError(f"coordinate_system must be one of {list(_COORDINATE_SYSTEMS)}, got {coordinate_system!r}")
    if landmarks.confidence is not None and file_format != "json":
        raise ValueError(
            f"{source}: confidence is stored only in our .json format, not in {file_format!r}; write a .json file "
            "or drop it with dataclasses.replace(landmarks, confidence=None)"
        )
    if file_format == "json":
        text = _format_our_json(landmarks, coordinate_system)
    elif file_format == "mrk.json":
        text = _format_markups_json(landmarks, coordinate_system)
    elif file_format == "fcsv":
        text = _format_fcsv(landmarks, coordinate_system)
    elif file_format == "csv":
        if coordinate_system != "LPS":
            raise ValueError(f"{source}: CSV landmark files have no coordinate-system field and are always LPS")
        text = _format_csv(landmarks)
    else:  # pragma: no cover - landmark_file_format only returns the formats above
        raise ValueError(f"{source}: unsupported landmark format {file_format!r}")
    Path(path).write_text(text, encoding="utf-8", newline="")


# ---------------------------------------------------------------------------------------------------------------
# Shared parsing helpers


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json`` object hook that refuses repeated keys (the standard library silently keeps the last one)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _load_json(path: Path, source: str) -> Any:
    """Parse a JSON file, refusing repeated object keys.

    Raises:
        ValueError: invalid JSON, or a key repeated within one object (e.g. a duplicate landmark name).
    """
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"), object_pairs_hook=_unique_keys_object)
    except _DuplicateKeyError as error:
        raise ValueError(f"{source}: key {error.key!r} appears twice in one JSON object (duplicate name?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{source}: not valid JSON: {error}") from error


def _json_coordinates(value: Any, expected_lengths: Sequence[int], where: str, why_length: str = "") -> list[float]:
    """Validate a JSON coordinate list: numbers (not bools), finite, of an allowed length (``why_length`` says why)."""
    if not isinstance(value, list):
        raise ValueError(f"{where}: coordinates must be a list of numbers or null, got {value!r}")
    if len(value) not in expected_lengths:
        allowed = " or ".join(str(length) for length in expected_lengths)
        raise ValueError(f"{where}: expected {allowed} coordinates{why_length}, got {len(value)}: {value!r}")
    for coordinate in value:
        if isinstance(coordinate, bool) or not isinstance(coordinate, (int, float)):
            raise ValueError(f"{where}: coordinates must be numbers, got {coordinate!r} in {value!r}")
        if not math.isfinite(coordinate):
            raise ValueError(
                f"{where}: coordinates must be finite (NaN/inf are not allowed; write null for an absent "
                f"landmark), got {value!r}"
            )
    return [float(coordinate) for coordinate in value]


def _text_coordinates(cells: Sequence[str], where: str) -> list[float] | None:
    """Parse text coordinate cells; all empty -> ``None`` (absent).

    Raises:
        ValueError: some but not all cells empty, a non-numeric cell, or NaN/inf.
    """
    stripped = [cell.strip() for cell in cells]
    if all(cell == "" for cell in stripped):
        return None
    if any(cell == "" for cell in stripped):
        raise ValueError(
            f"{where}: coordinates are partly empty {stripped!r} (leave all of them empty for an absent landmark)"
        )
    values = []
    for cell in stripped:
        try:
            value = float(cell)
        except ValueError:
            raise ValueError(f"{where}: non-numeric coordinate {cell!r}") from None
        if not math.isfinite(value):
            raise ValueError(
                f"{where}: coordinates must be finite (NaN/inf are not allowed; leave the cells empty for an "
                f"absent landmark), got {cell!r}"
            )
        values.append(value)
    return values


def _check_name(name: Any, where: str, first_seen: dict[str, str]) -> str:
    """Validate a landmark name read from a file and record where it was first seen.

    Raises:
        ValueError: the name is invalid or was seen before.
    """
    problem = landmark_name_problem(name)
    if problem is not None:
        raise ValueError(f"{where}: landmark name {problem}, got {name!r}")
    if name in first_seen:
        raise ValueError(f"{where}: duplicate landmark name {name!r} (first at {first_seen[name]})")
    first_seen[name] = where
    return str(name)


def _build_set(
    source: str,
    names: Sequence[str],
    rows: Sequence[Sequence[float] | None],
    dimension: int,
    coordinate_system: str,
    unit_to_mm: float = 1.0,
    confidence: NDArray[np.float64] | None = None,
) -> LandmarkSet:
    """Assemble a :class:`LandmarkSet` from parsed rows, converting to LPS mm."""
    points = np.full((len(names), dimension), np.nan)
    for index, row in enumerate(rows):
        if row is not None:
            points[index] = row
    points *= unit_to_mm
    if coordinate_system == "RAS":
        points = ras_to_lps(points)
    try:
        return LandmarkSet(tuple(names), points, confidence)
    except ValueError as error:  # the readers check everything first; this only adds the file name
        raise ValueError(f"{source}: {error}") from error


def _coordinate_cells(points_mm: NDArray[np.float64], row: int) -> list[str]:
    """Coordinates as shortest exact text (``repr``), or empty cells for an absent landmark."""
    values = points_mm[row]
    if np.isnan(values).any():
        return [""] * len(values)
    return [repr(float(value)) for value in values]


def _slicer_points(landmarks: LandmarkSet, coordinate_system: str) -> NDArray[np.float64]:
    """``(K, 3)`` points in the Slicer file frame: 2D sets get ``z = 0``."""
    points = landmarks.points_mm
    if landmarks.dimension == 2:
        points = np.concatenate([points, np.zeros((len(points), 1))], axis=1)
        points[~landmarks.present] = np.nan
    return lps_to_ras(points) if coordinate_system == "RAS" else np.array(points, dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------------
# Our JSON


def _read_our_json(path: Path, source: str, dimension_hint: int | None) -> LandmarkSet:
    content = _load_json(path, source)
    if not isinstance(content, dict):
        raise ValueError(f"{source}: must hold a JSON object, got {type(content).__name__}")
    if content.get("format") != FORMAT_NAME:
        hint = " (a Slicer markups file? name it *.mrk.json)" if "markups" in content else ""
        raise ValueError(f"{source}: format: expected {FORMAT_NAME!r}, got {content.get('format')!r}{hint}")
    unknown = [key for key in content if key not in _OUR_JSON_KEYS]
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown}; allowed: {list(_OUR_JSON_KEYS)}")
    version = content.get("version")
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise ValueError(f"{source}: version: this reader supports version {FORMAT_VERSION}, got {version!r}")
    coordinate_system = content.get("coordinate_system", "LPS")
    if coordinate_system not in _COORDINATE_SYSTEMS:
        raise ValueError(
            f"{source}: coordinate_system: expected one of {list(_COORDINATE_SYSTEMS)}, got {coordinate_system!r}"
        )
    unit = content.get("unit", "mm")
    if unit != "mm":
        raise ValueError(f"{source}: unit: only 'mm' is supported, got {unit!r}")
    declared = content.get("dimension")
    if declared is not None and (isinstance(declared, bool) or declared not in _SUPPORTED_DIMENSIONS):
        raise ValueError(f"{source}: dimension: must be 2 or 3, got {declared!r}")
    entries = content.get("landmarks")
    if not isinstance(entries, dict):
        raise ValueError(f"{source}: landmarks: must be an object {{name: [x, y(, z)] or null}}, got {entries!r}")

    names: list[str] = []
    rows: list[list[float] | None] = []
    first_seen: dict[str, str] = {}
    dimension: int | None = declared
    first_with_dimension = "'dimension'"
    for name, value in entries.items():
        where = f"{source}: landmarks[{name!r}]"
        names.append(_check_name(name, where, first_seen))
        if value is None:
            rows.append(None)
            continue
        if dimension is None:
            point = _json_coordinates(value, _SUPPORTED_DIMENSIONS, where)
            dimension, first_with_dimension = len(point), f"landmark {name!r}"
        else:
            point = _json_coordinates(value, (dimension,), where, f" (as {first_with_dimension})")
        rows.append(point)
    if dimension is None:
        dimension = dimension_hint
    if dimension is None:
        raise ValueError(
            f"{source}: cannot tell 2D from 3D: every landmark is null and there is no 'dimension' key "
            "(add \"dimension\": 2 or 3, or pass dimension=)"
        )

    confidence = _our_json_confidence(content, source, names, first_seen)
    return _build_set(source, names, rows, dimension, coordinate_system, confidence=confidence)


def _our_json_confidence(
    content: Mapping[str, Any], source: str, names: Sequence[str], first_seen: Mapping[str, str]
) -> NDArray[np.float64] | None:
    """The ``confidence`` object as one value per landmark (NaN where not listed), or ``None`` without one.

    Raises:
        ValueError: ``confidence`` is not an object, names an unknown landmark or holds a non-finite value.
    """
    confidence = None
    if "confidence" in content:
        confidence_entries = content["confidence"]
        if not isinstance(confidence_entries, dict):
            raise ValueError(f"{source}: confidence: must be an object {{name: number}}, got {confidence_entries!r}")
        confidence = np.full(len(names), np.nan)
        for name, value in confidence_entries.items():
            where = f"{source}: confidence[{name!r}]"
            if name not in first_seen:
                raise ValueError(f"{where}: unknown landmark (not in 'landmarks')")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{where}: must be a finite number, got {value!r}")
            confidence[names.index(name)] = float(value)
    return confidence


def _format_our_json(landmarks: LandmarkSet, coordinate_system: str) -> str:
    points = lps_to_ras(landmarks.points_mm) if coordinate_system == "RAS" else landmarks.points_mm
    content: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "coordinate_system": coordinate_system,
        "unit": "mm",
        "dimension": landmarks.dimension,
        "landmarks": {
            name: [float(value) for value in points[row]] if landmarks.present[row] else None
            for row, name in enumerate(landmarks.names)
        },
    }
    if landmarks.confidence is not None:
        content["confidence"] = {
            name: float(value)
            for name, value in zip(landmarks.names, landmarks.confidence)
            if not math.isnan(value)
        }
    return json.dumps(content, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Slicer markups JSON (.mrk.json)


def _read_markups_json(path: Path, source: str, name_field: str) -> LandmarkSet:
    content = _load_json(path, source)
    if not isinstance(content, dict) or not isinstance(content.get("markups"), list):
        raise ValueError(f"{source}: not a Slicer markups file: no 'markups' list")
    schema = content.get("@schema")
    if not isinstance(schema, str) or _MARKUPS_SCHEMA_MARK not in schema.lower():
        raise ValueError(f"{source}: @schema: expected a Slicer markups schema v1 URL, got {schema!r}")
    markups = content["markups"]
    if len(markups) != 1:
        raise ValueError(f"{source}: markups: expected exactly one point list, got {len(markups)} markups")
    markup = markups[0]
    if not isinstance(markup, dict):
        raise ValueError(f"{source}: markups[0]: must be an object, got {type(markup).__name__}")
    if markup.get("type") != "Fiducial":
        raise ValueError(f"{source}: markups[0].type: expected 'Fiducial' (a point list), got {markup.get('type')!r}")
    coordinate_system = markup.get("coordinateSystem", "LPS")
    if coordinate_system not in _COORDINATE_SYSTEMS:
        raise ValueError(
            f"{source}: markups[0].coordinateSystem: expected one of {list(_COORDINATE_SYSTEMS)}, "
            f"got {coordinate_system!r}"
        )
    units = markup.get("coordinateUnits", "mm")
    unit = units[0] if isinstance(units, list) and units else units  # coded entry: [value, scheme, meaning]
    if unit not in _MARKUPS_UNITS_TO_MM:
        raise ValueError(
            f"{source}: markups[0].coordinateUnits: expected one of {list(_MARKUPS_UNITS_TO_MM)}, got {units!r}"
        )
    control_points = markup.get("controlPoints", [])
    if not isinstance(control_points, list):
        raise ValueError(f"{source}: markups[0].controlPoints: must be a list, got {type(control_points).__name__}")

    names: list[str] = []
    rows: list[list[float] | None] = []
    first_seen: dict[str, str] = {}
    for index, point in enumerate(control_points):
        where = f"{source}: controlPoints[{index}]"
        if not isinstance(point, dict):
            raise ValueError(f"{where}: must be an object, got {type(point).__name__}")
        name = _check_name(point.get(name_field), f"{where} ({name_field})", first_seen)
        where = f"{where} ({name!r})"
        names.append(name)
        status = point.get("positionStatus")
        if status in _MARKUPS_ABSENT_STATUSES or (status is None and "position" not in point):
            rows.append(None)
        elif status in (None, "defined"):
            if "position" not in point:
                raise ValueError(f"{where}: positionStatus is 'defined' but there is no position")
            rows.append(_json_coordinates(point["position"], (3,), where))
        else:
            raise ValueError(
                f"{where}: positionStatus must be 'defined', 'missing' or 'undefined', got {status!r}"
            )
    return _build_set(source, names, rows, 3, coordinate_system, _MARKUPS_UNITS_TO_MM[unit])


def _format_markups_json(landmarks: LandmarkSet, coordinate_system: str) -> str:
    points = _slicer_points(landmarks, coordinate_system)
    control_points = []
    for row, name in enumerate(landmarks.names):
        point: dict[str, Any] = {"id": str(row + 1), "label": name, "description": "", "associatedNodeID": ""}
        if landmarks.present[row]:
            point["position"] = [float(value) for value in points[row]]
        point.update(
            orientation=_MARKUPS_ORIENTATION[coordinate_system],
            selected=True,
            locked=False,
            visibility=True,
            positionStatus="defined" if landmarks.present[row] else "missing",
        )
        control_points.append(point)
    content = {
        "@schema": SLICER_MARKUPS_SCHEMA,
        "markups": [
            {
                "type": "Fiducial",
                "coordinateSystem": coordinate_system,
                "coordinateUnits": "mm",
                "controlPoints": control_points,
            }
        ],
    }
    return json.dumps(content, indent=4, allow_nan=False, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Slicer fiducial CSV (.fcsv)


def _read_fcsv(path: Path, source: str, name_field: str) -> LandmarkSet:
    text = path.read_text(encoding="utf-8-sig")
    # Split on line breaks only (str.splitlines would also split on characters that may occur inside names).
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    coordinate_system = "RAS"  # Slicer's meaning of a file without a "# CoordinateSystem" line
    columns: list[str] = list(FCSV_COLUMNS)
    has_version_header = False
    name_column = "label" if name_field == "label" else "desc"
    names: list[str] = []
    rows: list[list[float] | None] = []
    first_seen: dict[str, str] = {}
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if line.startswith("#"):
            key, _, value = line[1:].partition("=")
            key, value = key.strip().lower(), value.strip()
            if key == _FCSV_VERSION_HEADER:
                has_version_header = True
            elif key == "coordinatesystem":
                if value.upper() not in _FCSV_COORDINATE_SYSTEMS:
                    raise ValueError(
                        f"{source}: line {line_number}: CoordinateSystem must be LPS, RAS, 0 (RAS) or 1 (LPS), "
                        f"got {value!r}"
                    )
                coordinate_system = _FCSV_COORDINATE_SYSTEMS[value.upper()]
            elif key == "columns":
                columns = [column.strip() for column in value.split(",")]
                missing = [column for column in ("x", "y", "z", name_column) if column not in columns]
                if missing:
                    raise ValueError(f"{source}: line {line_number}: columns header lacks {missing}: {columns}")
            continue
        if not has_version_header:
            raise ValueError(
                f"{source}: line {line_number}: not a Slicer .fcsv file: expected a header line "
                "'# Markups fiducial file version = ...' before the data"
            )
        cells = next(csv.reader([line]))
        where = f"{source}: line {line_number}"
        if len(cells) != len(columns):
            raise ValueError(f"{where}: expected {len(columns)} columns ({','.join(columns)}), got {len(cells)}")
        row = dict(zip(columns, cells))
        name = _check_name(row[name_column].strip(), f"{where} ({name_column})", first_seen)
        names.append(name)
        rows.append(_text_coordinates([row["x"], row["y"], row["z"]], f"{where} ({name!r})"))
    if not has_version_header:
        raise ValueError(f"{source}: not a Slicer .fcsv file: no '# Markups fiducial file version = ...' header")
    return _build_set(source, names, rows, 3, coordinate_system)


def _format_fcsv(landmarks: LandmarkSet, coordinate_system: str) -> str:
    points = _slicer_points(landmarks, coordinate_system)
    buffer = io.StringIO()
    buffer.write(f"# Markups fiducial file version = {FCSV_VERSION}\n")
    buffer.write(f"# CoordinateSystem = {coordinate_system}\n")
    buffer.write(f"# columns = {','.join(FCSV_COLUMNS)}\n")
    writer = csv.writer(buffer, lineterminator="\n")
    for row, name in enumerate(landmarks.names):
        if not landmarks.present[row]:
            continue  # .fcsv cannot mark a point as missing; Slicer would read empty cells as 0
        # id, x, y, z, orientation quaternion (ow, ox, oy, oz) = identity, vis, sel, lock, label, desc, node ID
        orientation_and_flags = ["0", "0", "0", "1", "1", "1", "0"]
        writer.writerow([str(row + 1), *_coordinate_cells(points, row), *orientation_and_flags, name, "", ""])
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# Plain CSV


def _read_csv(path: Path, source: str) -> LandmarkSet:
    with path.open(encoding="utf-8-sig", newline="") as stream:
        reader = csv.reader(stream)
        header = next(reader, None)
        expected = (["name", "x", "y"], ["name", "x", "y", "z"])
        if header is None or [cell.strip() for cell in header] not in expected:
            raise ValueError(f"{source}: line 1: header must be 'name,x,y' or 'name,x,y,z', got {header!r}")
        dimension = len(header) - 1
        names: list[str] = []
        rows: list[list[float] | None] = []
        first_seen: dict[str, str] = {}
        for cells in reader:
            where = f"{source}: line {reader.line_num}"
            if not cells:  # a blank line
                continue
            if len(cells) != len(header):
                raise ValueError(
                    f"{where}: expected {len(header)} columns ({','.join(expected[dimension - 2])}), got {len(cells)}"
                )
            name = _check_name(cells[0].strip(), where, first_seen)
            names.append(name)
            rows.append(_text_coordinates(cells[1:], f"{where} ({name!r})"))
    return _build_set(source, names, rows, dimension, "LPS")


def _format_csv(landmarks: LandmarkSet) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "x", "y", "z"][: landmarks.dimension + 1])
    for row, name in enumerate(landmarks.names):
        writer.writerow([name, *_coordinate_cells(landmarks.points_mm, row)])
    return buffer.getvalue()
