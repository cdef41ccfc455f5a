"""Landmark files of the formats users arrive with, read into world points (LPS mm) of their image.

Two kinds of coordinates come in:

* **World** coordinates (mm): the package's own formats, read by :func:`nnunet_babloss.core.landmarks.io.read_landmarks`
  (our JSON, 3D Slicer ``.mrk.json``/``.fcsv`` in LPS or RAS, plain CSV).
* **Pixel** coordinates ``x = column, y = row`` (``z = slice`` in 3D) of the image: LabelMe JSON point shapes,
  ISBI-2015-style text files (one ``x,y`` line per landmark), the JSRT/SCR group JSON (``{"landmarks": {group:
  [[x, y], ...]}}``, names ``<group>_<index>``), the Hamedan cephalometric file (all cases in one JSON, several
  annotators) and centroids of labels of a label map (:class:`LabelCentroids`, e.g. vertebrae). These become
  :class:`PixelLandmarks`, which :meth:`PixelLandmarks.to_world` maps through the image's
  :class:`~nnunet_babloss.core.landmarks.geometry.ImageGeometry`. Pixel coordinates are *continuous indices with integers
  at pixel centres* (the package's voxel-index convention): ``(x, y) = (3, 5)`` is the centre of column 3, row 5.
  The JSRT/SCR files count from pixel *edges* instead; :func:`jsrt_pixel_centres` (the one place that knows) turns
  them into centre coordinates as they are read.

Problems are recorded in a :class:`~dataset_conversion.validation.ValidationReport` naming the file: malformed
content is an error; a missing landmark is a warning (the landmark becomes absent); a label given twice in one
LabelMe file follows a :data:`DuplicatePolicy` (default: warn and mark it absent, because which point is right is
unknown).
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np
import SimpleITK as sitk
from numpy.typing import ArrayLike, NDArray

from dataset_conversion.images import find_case_file, list_case_files
from dataset_conversion.validation import ValidationReport
from nnunet_babloss.core.landmarks.geometry import ImageGeometry
from nnunet_babloss.core.landmarks.io import LandmarkSet, read_landmarks
from nnunet_babloss.core.landmarks.spec import landmark_name_problem
from nnunet_babloss.core.provenance import JsonFileError, read_json

__all__ = [
    "JSRT_OUTER_EDGE_INSET_PX",
    "LANDMARK_FORMATS",
    "CaseLandmarks",
    "DuplicatePolicy",
    "HamedanFile",
    "LabelCentroids",
    "LandmarkFolder",
    "LandmarkFormat",
    "LandmarkSource",
    "NameMapping",
    "PixelLandmarks",
    "default_landmark_names",
    "jsrt_pixel_centres",
    "label_centroids",
    "read_hamedan",
    "read_isbi_text",
    "read_jsrt_groups",
    "read_labelme",
]

LandmarkFormat = Literal["auto", "json", "mrk.json", "fcsv", "csv", "labelme", "isbi", "jsrt"]
LANDMARK_FORMATS: tuple[str, ...] = ("auto", "json", "mrk.json", "fcsv", "csv", "labelme", "isbi", "jsrt")
DuplicatePolicy = Literal["drop", "first", "error"]
_DUPLICATE_POLICIES = ("drop", "first", "error")
# File suffix per explicit format; "auto" recognises all of them (".json" content is sniffed).
_FORMAT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "json": (".json",),
    "mrk.json": (".mrk.json",),
    "fcsv": (".fcsv",),
    "csv": (".csv",),
    "labelme": (".json",),
    "isbi": (".txt",),
    "jsrt": (".json",),
    "auto": (".mrk.json", ".json", ".fcsv", ".csv", ".txt"),
}
_WORLD_FORMATS = ("json", "mrk.json", "fcsv", "csv")
_AUTO_FORMATS = {".mrk.json": "mrk.json", ".fcsv": "fcsv", ".csv": "csv", ".txt": "isbi"}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_ISBI_LINE = re.compile(rf"^\s*({_NUMBER})\s*[,;\s]\s*({_NUMBER})\s*$")


@dataclass(frozen=True, eq=False)
class PixelLandmarks:
    """Named landmarks in pixel coordinates of one image.

    Attributes:
        names: ``K`` landmark names.
        points_px: ``(K, D)`` float64 ``(x = column, y = row[, z = slice])``, continuous, integers at pixel centres;
            a NaN row = absent.
        source: The file they came from (for messages).
        image_size: The image size ``(width, height[, depth])`` the file declares, if it declares one.
        pixel_spacing_mm: The pixel spacing the file declares (ITK order), if it declares one.
    """

    names: tuple[str, ...]
    points_px: NDArray[np.float64]
    source: str = ""
    image_size: tuple[int, ...] | None = None
    pixel_spacing_mm: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        points = np.array(self.points_px, dtype=np.float64, copy=True)
        if points.ndim != 2 or points.shape[0] != len(self.names) or points.shape[1] not in (2, 3):
            raise ValueError(f"{self.source}: pixel landmarks must have 2 or 3 coordinates, got shape {points.shape}")
        points.setflags(write=False)
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "points_px", points)

    @property
    def dimension(self) -> int:
        """Number of coordinates ``D``."""
        return int(self.points_px.shape[1])

    def to_world(self, geometry: ImageGeometry) -> LandmarkSet:
        """World points (LPS mm, ITK order) of these pixel positions in an image of ``geometry``.

        Raises:
            ValueError: ``geometry`` has another dimension than the points.
        """
        if geometry.dimension != self.dimension:
            raise ValueError(
                f"{self.source}: {self.dimension}D pixel landmarks cannot be placed in a {geometry.dimension}D image"
            )
        # (x = column, y = row[, z]) is ITK index order; the package's voxel index is its reverse.
        return LandmarkSet(self.names, geometry.index_to_world(self.points_px[:, ::-1]))

    def select(self, keep: Sequence[bool]) -> PixelLandmarks:
        """The landmarks where ``keep`` is true."""
        mask = np.asarray(keep, dtype=bool)
        names = tuple(name for name, kept in zip(self.names, mask) if kept)
        return PixelLandmarks(names, self.points_px[mask], self.source, self.image_size, self.pixel_spacing_mm)

    def renamed(self, names: Sequence[str]) -> PixelLandmarks:
        """The same points under new names (same order)."""
        return PixelLandmarks(tuple(names), self.points_px, self.source, self.image_size, self.pixel_spacing_mm)


CaseLandmarks = Union[LandmarkSet, PixelLandmarks]
"""Landmarks of one case: world points, or pixel points that still need the image geometry."""


# ---------------------------------------------------------------------------------------------------------------
# Single-file readers of pixel formats


def _load_json(path: Path, report: ValidationReport) -> Any | None:
    try:
        return read_json(path)
    except FileNotFoundError:
        report.error(path, "landmark file not found")
    except JsonFileError as error:
        report.error(path, error.reason)
    return None


def _pixel_point(value: object, dimension: int | None = 2) -> list[float] | None:
    """``[x, y(, z)]`` floats if ``value`` is a list of finite numbers of the right length, else ``None``."""
    if not isinstance(value, (list, tuple)) or (dimension is not None and len(value) != dimension):
        return None
    if not all(isinstance(item, (int, float)) and not isinstance(item, bool) for item in value):
        return None
    point = [float(item) for item in value]
    return point if all(math.isfinite(item) for item in point) else None


def read_labelme(
    path: str | os.PathLike[str], report: ValidationReport, *, duplicates: DuplicatePolicy = "drop"
) -> PixelLandmarks | None:
    """Read the point shapes of a LabelMe JSON file.

    Each ``shapes`` entry with ``shape_type`` ``"point"`` (or without a type and with one point) is a landmark
    named by its ``label``. Other shapes (polygons, boxes, ...) are skipped with a warning.

    Args:
        path: The LabelMe ``.json`` file.
        report: Receives the problems, naming the file.
        duplicates: A label given more than once: ``"drop"`` (warn, landmark absent), ``"first"`` (warn, keep the
            first point) or ``"error"``.

    Returns:
        The landmarks, or ``None`` if the file has errors (recorded in ``report``).
    """
    path = Path(path)
    if duplicates not in _DUPLICATE_POLICIES:
        raise ValueError(f"duplicates must be one of {list(_DUPLICATE_POLICIES)}, got {duplicates!r}")
    content = _load_json(path, report)
    if content is None:
        return None
    if not isinstance(content, dict) or not isinstance(content.get("shapes"), list):
        report.error(path, "not a LabelMe file: no 'shapes' list")
        return None
    points: dict[str, list[list[float]]] = {}
    errors_before = len(report.errors)
    for index, shape in enumerate(content["shapes"]):
        where = f"shapes[{index}]"
        if not isinstance(shape, dict):
            report.error(path, f"{where}: must be an object, got {type(shape).__name__}")
            continue
        label = shape.get("label")
        shape_type = shape.get("shape_type", "point")
        if shape_type != "point":
            report.warning(path, f"{where} ({label!r}): shape_type {shape_type!r} is not a point; skipped")
            continue
        problem = landmark_name_problem(label)
        if problem is not None:
            report.error(path, f"{where}: label {problem}, got {label!r}")
            continue
        shape_points = shape.get("points")
        point = _pixel_point(shape_points[0]) if isinstance(shape_points, list) and len(shape_points) == 1 else None
        if point is None:
            report.error(
                path, f"{where} ({label!r}): 'points' must be [[x, y]] with finite numbers, got {shape_points!r}"
            )
            continue
        points.setdefault(label, []).append(point)
    if len(report.errors) > errors_before:
        return None
    names: list[str] = []
    rows: list[list[float]] = []
    for label, candidates in points.items():
        if len(candidates) > 1:
            message = f"label {label!r} appears {len(candidates)} times, at (x, y) {candidates}"
            if duplicates == "error":
                report.error(path, f"{message}; each landmark must be given once")
                continue
            if duplicates == "drop":
                report.warning(path, f"{message}; it is ambiguous which is right, so {label!r} is marked absent")
                candidates = [[math.nan, math.nan]]
            else:
                report.warning(path, f"{message}; keeping the first")
        names.append(label)
        rows.append(candidates[0])
    if duplicates == "error" and len(report.errors) > errors_before:
        return None
    size = _size_of(content.get("imageWidth"), content.get("imageHeight"))
    return PixelLandmarks(tuple(names), np.array(rows, dtype=np.float64).reshape(-1, 2), str(path), size)


def _size_of(*values: object) -> tuple[int, ...] | None:
    if all(isinstance(value, int) and not isinstance(value, bool) and value > 0 for value in values):
        return tuple(int(value) for value in values)  # type: ignore[arg-type]
    return None


def default_landmark_names(count: int) -> tuple[str, ...]:
    """``("l1", "l2", ...)``: the names given to unnamed landmarks (ISBI text files, Hamedan)."""
    return tuple(f"l{index}" for index in range(1, count + 1))


def read_isbi_text(
    path: str | os.PathLike[str], report: ValidationReport, *, names: Sequence[str] | None = None
) -> PixelLandmarks | None:
    """Read an ISBI-2015-style text file: one ``x,y`` pixel position per line, in landmark order.

    The leading lines holding two numbers (comma, semicolon or white space between them) are the landmarks; reading
    stops at the first line that does not (the ISBI files go on with classification labels).

    Args:
        path: The ``.txt`` file.
        report: Receives the problems, naming the file and line.
        names: Landmark names in line order; default ``l1, l2, ...`` for as many lines as there are.

    Returns:
        The landmarks, or ``None`` if the file has errors.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        report.error(path, "landmark file not found")
        return None
    rows: list[list[float]] = []
    for line in lines:
        match = _ISBI_LINE.match(line)
        if match is None:
            break
        rows.append([float(match.group(1)), float(match.group(2))])
    if not rows:
        report.error(path, "no landmark lines: expected lines 'x,y' (pixel column, row) at the start of the file")
        return None
    if names is None:
        names = default_landmark_names(len(rows))
    elif len(rows) < len(names):
        report.error(path, f"{len(rows)} coordinate lines, but {len(names)} landmark names were given: {list(names)}")
        return None
    elif len(rows) > len(names):
        report.error(
            path,
            f"{len(rows)} coordinate lines, but only {len(names)} landmark names were given; line {len(names) + 1} "
            f"reads {lines[len(names)]!r}",
        )
        return None
    return PixelLandmarks(tuple(names), np.array(rows, dtype=np.float64), str(path))


def read_jsrt_groups(path: str | os.PathLike[str], report: ValidationReport) -> PixelLandmarks | None:
    """Read a JSRT/SCR landmark JSON: ``{"landmarks": {group: [[x, y], ...]}, "image_size_wh": [w, h], ...}``.

    Landmark ``i`` of group ``G`` is named ``G_ii`` (two digits, from 0): ``RL_00 ... RL_43``. The optional
    ``image_size_wh`` and ``pixel_spacing_mm`` are kept for checks against the image.

    Returns:
        The landmarks, or ``None`` if the file has errors.
    """
    path = Path(path)
    content = _load_json(path, report)
    if content is None:
        return None
    groups = content.get("landmarks") if isinstance(content, dict) else None
    if not isinstance(groups, dict) or not groups:
        report.error(path, "not a JSRT landmark file: no 'landmarks' object {group: [[x, y], ...]}")
        return None
    names: list[str] = []
    rows: list[list[float]] = []
    ok = True
    for group, points in groups.items():
        if not isinstance(points, list):
            report.error(path, f"landmarks[{group!r}]: must be a list of [x, y], got {type(points).__name__}")
            ok = False
            continue
        digits = max(2, len(str(len(points) - 1)))
        for index, value in enumerate(points):
            point = _pixel_point(value) if value is not None else [math.nan, math.nan]
            if point is None:
                report.error(
                    path, f"landmarks[{group!r}][{index}]: must be [x, y] finite numbers or null, got {value!r}"
                )
                ok = False
                continue
            names.append(f"{group}_{index:0{digits}d}")
            rows.append(point)
    if not ok:
        return None
    size = content.get("image_size_wh")
    spacing = content.get("pixel_spacing_mm")
    declared_spacing = None
    if isinstance(spacing, (int, float)) and not isinstance(spacing, bool) and spacing > 0:
        declared_spacing = (float(spacing), float(spacing))
    declared_size = _size_of(*size) if isinstance(size, list) and len(size) == 2 else None
    points = jsrt_pixel_centres(np.array(rows, dtype=np.float64).reshape(-1, 2), declared_size)
    return PixelLandmarks(tuple(names), points, str(path), declared_size, declared_spacing)


# How far inside the image a point on the far outer edge is placed (pixels): far below any annotation's precision,
# far above the rounding of a pixel -> world -> pixel round trip (~1e-13 px).
JSRT_OUTER_EDGE_INSET_PX = 1e-6


def jsrt_pixel_centres(
    points_xy: ArrayLike, image_size_wh: Sequence[int] | None = None
) -> NDArray[np.float64]:
    """JSRT/SCR landmark coordinates in the package's pixel convention (integers at pixel centres).

    The JSRT/SCR files (``landmarks/<ID>.json`` of ``jsrt_512`` and its fixtures) give ``[x = column, y = row]``
    in a pixel-**edge** frame: the image spans ``[0, W] x [0, H]`` and column ``i`` covers ``[i, i + 1)``, so the
    centre of column ``i`` is at ``x = i + 0.5``. This function subtracts 0.5. Why edges (checked on the 195
    ``jsrt_512`` cases):

    * the files are the 1024-px coordinates multiplied by 0.5 (their ``coords`` field), which keeps a point where
      it is only when coordinates count from edges (for centres the rescale would be ``(x + 0.5) / 2 - 0.5``);
    * the frame ``[0, W]`` is the image itself, so a contour that SCR clipped at the image border lies on the
      border: JPCLN089 of the full JSRT set has a point at ``x = 512.0``, the far edge of its 512-px image (a
      centre convention would put it half a pixel outside);
    * the masks do not decide: they sit between the two conventions. Filling each landmark polygon (pixel centres
      inside) and comparing with the SCR masks gives mean Dice 0.9954 / 0.9946 / 0.9933 / 0.9841 / 0.9806 (right
      lung / left lung / heart / right / left clavicle) with the edge convention and 0.9940 / 0.9948 / 0.9938 /
      0.9836 / 0.9795 with the centre one; the best fit is a shift of 0.25-0.375 px, and landmarks on opposite
      sides of an organ sit symmetric to the mask boundary at a shift of about 0.25 px. Either convention is off
      the masks by about a quarter pixel (0.18 mm at 0.7 mm/px).

    A point exactly on the far outer edge (``x == W`` or ``y == H``) becomes ``W - 0.5 - 1e-6``: the package's
    images cover ``[-0.5, S - 0.5)`` per axis (ITK's half-open rule, so that every point has a nearest pixel), which
    leaves out the far edge although the file's frame includes it; the point is placed just inside, on the last
    pixel. The near edge (``x == 0`` -> ``-0.5``) is inside already. Points beyond the frame are left where they
    are, so the converter reports them as outside the image.

    Args:
        points_xy: ``(K, 2)`` file coordinates ``[x = column, y = row]`` in pixels; NaN rows (absent) stay NaN.
        image_size_wh: The image size ``(W, H)`` in pixels, or ``None`` (then no point is moved off the edge).

    Returns:
        ``(K, 2)`` float64 ``(x, y)`` with integers at pixel centres (reverse for the package's array order).

    Raises:
        ValueError: ``points_xy`` is not ``(K, 2)``, or ``image_size_wh`` is not two positive sizes.
    """
    points = np.array(points_xy, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points_xy must have shape (K, 2) [x, y], got {points.shape}")
    centres = points - 0.5
    if image_size_wh is not None:
        size = np.asarray(image_size_wh, dtype=np.float64)
        if size.shape != (2,) or not np.all(size > 0):
            raise ValueError(f"image_size_wh must be two positive sizes (W, H), got {image_size_wh!r}")
        far_edge = size - 0.5
        with np.errstate(invalid="ignore"):
            on_far_edge = np.abs(centres - far_edge) <= 1e-9 * far_edge
        centres[on_far_edge] = np.broadcast_to(far_edge - JSRT_OUTER_EDGE_INSET_PX, centres.shape)[on_far_edge]
    return centres


def read_hamedan(
    path: str | os.PathLike[str], report: ValidationReport, *, annotator: str = "mean"
) -> dict[str, PixelLandmarks]:
    """Read the Hamedan cephalometric landmark file (all cases, several annotators, in one JSON).

    Layout: ``{"landmark_order": ["l1", ...], "cases": {"001": {"image_size_wh": [w, h], "<annotator>": [[x, y] or
    null, ...], ...}}}``. A ``null`` point (an annotator missed it) becomes an absent landmark and is reported as a
    warning naming the file, case, annotator and landmark.

    Args:
        path: The ``landmarks.json`` file.
        report: Receives the problems.
        annotator: Which annotator's points to use (e.g. ``"mean"``, ``"mollabashi"``, ``"farhadifar"``).

    Returns:
        Case identifier -> landmarks (empty if the file has errors).
    """
    path = Path(path)
    content = _load_json(path, report)
    if content is None:
        return {}
    order = _hamedan_landmark_order(content, path, report)
    if order is None:
        return {}
    annotators = sorted(
        {key for case in content["cases"].values() if isinstance(case, dict) for key in case if key != "image_size_wh"}
    )
    if annotator not in annotators:
        report.error(path, f"annotator {annotator!r} not in the file; choose one of {annotators}")
        return {}
    spacing = content.get("pixel_spacing_mm")
    declared_spacing = (float(spacing),) * 2 if isinstance(spacing, (int, float)) and spacing > 0 else None
    result: dict[str, PixelLandmarks] = {}
    for case_id, case in content["cases"].items():
        if not isinstance(case, dict) or annotator not in case:
            report.error(path, f"cases[{case_id!r}]: no points of annotator {annotator!r}", case=case_id)
            continue
        points = case[annotator]
        if not isinstance(points, list) or len(points) != len(order):
            count = len(points) if isinstance(points, list) else type(points).__name__
            report.error(
                path,
                f"cases[{case_id!r}][{annotator!r}]: must list {len(order)} points (one per landmark_order entry), "
                f"got {count}",
                case=case_id,
            )
            continue
        rows, bad = _hamedan_rows(path, case_id, case, annotator, annotators, order, report)
        duplicate_points = _coincident_points(rows, order)
        if duplicate_points:
            report.warning(
                path,
                f"case {case_id}, annotator {annotator!r}: landmarks at the same position {duplicate_points} "
                "(a label given twice?)",
                case=case_id,
            )
        if bad:
            continue
        size = case.get("image_size_wh")
        declared_size = _size_of(*size) if isinstance(size, list) and len(size) == 2 else None
        result[str(case_id)] = PixelLandmarks(
            tuple(order), np.array(rows, dtype=np.float64), f"{path} (case {case_id})", declared_size, declared_spacing
        )
    return result


def _hamedan_landmark_order(content: Any, path: Path, report: ValidationReport) -> list[Any] | None:
    """The file's ``landmark_order`` once the layout and the names are checked; ``None`` after recording an error."""
    if not isinstance(content, dict) or not isinstance(content.get("cases"), dict):
        report.error(path, "not a Hamedan landmark file: no 'cases' object")
        return None
    order = content.get("landmark_order")
    if not isinstance(order, list) or not order:
        report.error(path, f"landmark_order: must be a non-empty list of names, got {order!r}")
        return None
    for index, name in enumerate(order):
        problem = landmark_name_problem(name)
        if problem is not None:
            report.error(path, f"landmark_order[{index}]: landmark name {problem}, got {name!r}")
            return None
    duplicated = sorted({name for name in order if order.count(name) > 1})
    if duplicated:
        report.error(path, f"landmark_order: duplicate landmark name(s) {duplicated}")
        return None
    return order


def _hamedan_rows(
    path: Path,
    case_id: str,
    case: dict[str, Any],
    annotator: str,
    annotators: Sequence[str],
    order: Sequence[str],
    report: ValidationReport,
) -> tuple[list[list[float]], bool]:
    """One case's ``[x, y]`` rows of ``annotator`` (NaN for a null point, with a warning) and whether a point was bad.

    A point that is neither ``[x, y]`` nor ``null`` is recorded as an error and left out of the rows.
    """
    points = case[annotator]
    rows: list[list[float]] = []
    bad = False
    for position, (name, value) in enumerate(zip(order, points)):
        if value is None:
            missed_by = [
                other
                for other in annotators
                if other not in (annotator, "mean")
                and isinstance(case.get(other), list) and len(case[other]) == len(order)
                and case[other][position] is None
            ]
            report.warning(
                path,
                f"case {case_id}, annotator {annotator!r}: landmark {name!r} is missing (null"
                + (f"; also missed by {missed_by}" if missed_by else "")
                + "); it is absent",
                case=case_id,
            )
            rows.append([math.nan, math.nan])
            continue
        point = _pixel_point(value)
        if point is None:
            report.error(path, f"cases[{case_id!r}][{annotator!r}] {name!r}: must be [x, y] or null, got {value!r}",
                         case=case_id)
            bad = True
            continue
        rows.append(point)
    return rows, bad


def _coincident_points(rows: Sequence[Sequence[float]], names: Sequence[str]) -> list[list[str]]:
    """Groups of names whose points are exactly equal (a symptom of one point labelled twice)."""
    groups: dict[tuple[float, ...], list[str]] = {}
    for name, row in zip(names, rows):
        if not any(math.isnan(value) for value in row):
            groups.setdefault(tuple(row), []).append(name)
    return [group for group in groups.values() if len(group) > 1]


def label_centroids(label_array: ArrayLike, label_values: Mapping[str, int]) -> tuple[NDArray[np.float64], list[str]]:
    """Centroids of labels of a label map, as continuous voxel indices (e.g. vertebral bodies as landmarks).

    Args:
        label_array: Integer label map in array order ``(z, y, x)`` / ``(y, x)``.
        label_values: Landmark name -> label value whose voxels' centroid is the landmark.

    Returns:
        ``(index, missing)``: ``(K, D)`` centroids in array order (NaN rows for labels that do not occur) and the
        names of those absent labels.
    """
    array = np.asarray(label_array)
    names = tuple(label_values)
    index = np.full((len(names), array.ndim), np.nan)
    missing: list[str] = []
    for row, name in enumerate(names):
        voxels = np.argwhere(array == label_values[name])
        if len(voxels) == 0:
            missing.append(name)
            continue
        index[row] = voxels.mean(axis=0)
    return index, missing


# ---------------------------------------------------------------------------------------------------------------
# Selecting and renaming


@dataclass(frozen=True)
class NameMapping:
    """Which landmarks of the files to keep, and what to call them.

    Attributes:
        select: ``fnmatch`` patterns on the names in the files (e.g. ``"RL_*"``); empty = keep all.
        rename: Name in the files -> name in the dataset.
    """

    select: tuple[str, ...] = ()
    rename: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for new in self.rename.values():
            problem = landmark_name_problem(new)
            if problem is not None:
                raise ValueError(f"rename: new landmark name {problem}, got {new!r}")
        targets = list(self.rename.values())
        clashes = sorted({name for name in targets if targets.count(name) > 1})
        if clashes:
            raise ValueError(f"rename: several landmarks renamed to {clashes}")

    def keeps(self, name: str) -> bool:
        """Whether a landmark named ``name`` in the files is kept."""
        return not self.select or any(fnmatch.fnmatchcase(name, pattern) for pattern in self.select)

    def apply(self, landmarks: CaseLandmarks, report: ValidationReport, file: str, case: str) -> CaseLandmarks | None:
        """Select and rename; ``None`` (error recorded) if a renamed landmark clashes with a kept one."""
        keep = [self.keeps(name) for name in landmarks.names]
        names = [self.rename.get(name, name) for name, kept in zip(landmarks.names, keep) if kept]
        clashes = sorted({name for name in names if names.count(name) > 1})
        if clashes:
            report.error(file, f"after renaming, landmark name(s) {clashes} occur twice", case=case)
            return None
        if isinstance(landmarks, PixelLandmarks):
            return landmarks.select(keep).renamed(names)
        mask = np.asarray(keep, dtype=bool)
        return LandmarkSet(tuple(names), landmarks.points_mm[mask])


# ---------------------------------------------------------------------------------------------------------------
# Sources: where each case's landmarks come from


class LandmarkSource(ABC):
    """Landmarks of many cases: a folder of per-case files, one multi-case file, or centroids of label maps."""

    @abstractmethod
    def describe(self) -> str:
        """A short description for provenance and messages."""

    @abstractmethod
    def case_files(self, report: ValidationReport) -> dict[str, str]:
        """Case identifier -> the file its landmarks come from, for every case this source has landmarks for."""

    @abstractmethod
    def load(self, case_id: str, report: ValidationReport) -> CaseLandmarks | None:
        """The landmarks of ``case_id``, or ``None`` if they cannot be read (the problem is in ``report``)."""


def _case_id_and_format(path: Path, landmark_format: str) -> tuple[str, str] | None:
    name = path.name
    lower = name.lower()
    for suffix in _FORMAT_SUFFIXES[landmark_format]:
        if lower.endswith(suffix):
            case_id = name[: -len(suffix)]
            if landmark_format == "auto":
                # ".json" may be ours, LabelMe or JSRT: decided by content when the file is read.
                file_format = _AUTO_FORMATS.get(suffix, "?json")
            else:
                file_format = landmark_format
            return case_id, file_format
    return None


def _sniff_json_format(path: Path, report: ValidationReport) -> str | None:
    content = _load_json(path, report)
    if content is None:
        return None
    if isinstance(content, dict):
        if content.get("format") == "nnunet_babloss.landmarks":
            return "json"
        if isinstance(content.get("shapes"), list):
            return "labelme"
        if isinstance(content.get("markups"), list):
            return "mrk.json"
        if isinstance(content.get("landmarks"), dict) and all(
            isinstance(points, list) for points in content["landmarks"].values()
        ):
            return "jsrt"
    report.error(
        path,
        "cannot tell the landmark format of this .json file (expected our format with \"format\": "
        "\"nnunet_babloss.landmarks\", LabelMe 'shapes', Slicer 'markups' or JSRT {'landmarks': {group: [...]}}); "
        "name the format explicitly",
    )
    return None


@dataclass
class LandmarkFolder(LandmarkSource):
    """One landmark file per case, ``<case><suffix>``, in a folder.

    Attributes:
        folder: The folder.
        landmark_format: One of :data:`LANDMARK_FORMATS`; ``"auto"`` goes by suffix and, for ``.json``, by content.
        name_field: For Slicer files: take names from the ``"label"`` or the ``"description"`` (AFIDs) field.
        duplicates: LabelMe files: what to do with a label given twice (see :func:`read_labelme`).
        isbi_names: Names of the lines of ISBI text files (default ``l1, l2, ...``).
    """

    folder: Path
    landmark_format: LandmarkFormat = "auto"
    name_field: Literal["label", "description"] = "label"
    duplicates: DuplicatePolicy = "drop"
    isbi_names: tuple[str, ...] | None = None
    _formats: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _files: dict[str, Path] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        if self.landmark_format not in LANDMARK_FORMATS:
            raise ValueError(f"landmark format must be one of {list(LANDMARK_FORMATS)}, got {self.landmark_format!r}")
        if self.duplicates not in _DUPLICATE_POLICIES:
            raise ValueError(f"duplicates must be one of {list(_DUPLICATE_POLICIES)}, got {self.duplicates!r}")

    def describe(self) -> str:
        return f"landmark files in {self.folder} (format {self.landmark_format})"

    def case_files(self, report: ValidationReport) -> dict[str, str]:
        if not self.folder.is_dir():
            report.error(self.folder, "landmark folder not found")
            return {}
        self._files.clear()
        self._formats.clear()
        for path in sorted(self.folder.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            found = _case_id_and_format(path, self.landmark_format)
            if found is None:
                continue
            case_id, file_format = found
            if case_id in self._files:
                report.error(path, f"a second landmark file for case {case_id!r} (also {self._files[case_id].name})",
                             case=case_id)
                continue
            self._files[case_id] = path
            self._formats[case_id] = file_format
        return {case_id: str(path) for case_id, path in self._files.items()}

    def load(self, case_id: str, report: ValidationReport) -> CaseLandmarks | None:
        path = self._files.get(case_id)
        if path is None:
            report.error(self.folder, f"no landmark file for case {case_id!r}", case=case_id)
            return None
        file_format = self._formats[case_id]
        if file_format == "?json":
            sniffed = _sniff_json_format(path, report)
            if sniffed is None:
                return None
            file_format = sniffed
        if file_format in _WORLD_FORMATS:
            try:
                return read_landmarks(path, name_field=self.name_field)
            except (ValueError, FileNotFoundError) as error:
                message = str(error)
                prefix = f"{path}: "
                report.error(path, message[len(prefix):] if message.startswith(prefix) else message, case=case_id)
                return None
        if file_format == "labelme":
            return read_labelme(path, report, duplicates=self.duplicates)
        if file_format == "isbi":
            return read_isbi_text(path, report, names=self.isbi_names)
        if file_format == "jsrt":
            return read_jsrt_groups(path, report)
        raise ValueError(f"unknown landmark format {file_format!r}")


@dataclass
class HamedanFile(LandmarkSource):
    """The Hamedan cephalometric ``landmarks.json`` (all cases in one file), with one annotator chosen."""

    path: Path
    annotator: str = "mean"
    _cases: dict[str, PixelLandmarks] | None = field(default=None, init=False, repr=False)

    def describe(self) -> str:
        return f"Hamedan landmark file {self.path} (annotator {self.annotator!r})"

    def case_files(self, report: ValidationReport) -> dict[str, str]:
        if self._cases is None:
            self._cases = read_hamedan(self.path, report, annotator=self.annotator)
        return {case_id: str(self.path) for case_id in self._cases}

    def load(self, case_id: str, report: ValidationReport) -> CaseLandmarks | None:
        if self._cases is None:
            self._cases = read_hamedan(self.path, report, annotator=self.annotator)
        if case_id not in self._cases:
            report.error(self.path, f"no landmarks for case {case_id!r}", case=case_id)
            return None
        return self._cases[case_id]


@dataclass
class LabelCentroids(LandmarkSource):
    """Landmarks at centroids of labels in per-case label maps ``<case><ending>`` (e.g. vertebrae as landmarks).

    Attributes:
        folder: Folder of integer label maps (any supported image format, named by case).
        label_values: Landmark name -> label value in those maps.
    """

    folder: Path
    label_values: Mapping[str, int]

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        if not self.label_values:
            raise ValueError("LabelCentroids needs at least one landmark name -> label value")

    def describe(self) -> str:
        return f"centroids of labels {dict(self.label_values)} of the label maps in {self.folder}"

    def case_files(self, report: ValidationReport) -> dict[str, str]:
        try:
            return {case_id: str(path) for case_id, path in list_case_files(self.folder).items()}
        except (FileNotFoundError, ValueError) as error:
            report.error(self.folder, str(error))
            return {}

    def load(self, case_id: str, report: ValidationReport) -> CaseLandmarks | None:
        try:
            path = find_case_file(self.folder, case_id)
        except ValueError as error:
            report.error(self.folder, str(error), case=case_id)
            return None
        if path is None:
            report.error(self.folder, f"no label map for case {case_id!r}", case=case_id)
            return None
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as error:
            report.error(path, f"cannot read the label map: {str(error).strip().splitlines()[-1]}", case=case_id)
            return None
        index, missing = label_centroids(sitk.GetArrayViewFromImage(image), self.label_values)
        for name in missing:
            report.warning(
                path, f"label {self.label_values[name]} (landmark {name!r}) does not occur; the landmark is absent",
                case=case_id,
            )
        # Pixel positions (x, y[, z]) = reversed array index; the case's image geometry places them in the world
        # (a PNG label map has no geometry of its own).
        return PixelLandmarks(tuple(self.label_values), index[:, ::-1], str(path), tuple(image.GetSize()))
