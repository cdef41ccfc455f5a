"""Fixations in the published GazeMedSeg CSV layout: reading with validation, and writing.

One row per fixation; rows with the same ``IMAGE`` form that image's fixation sequence. Columns (GazeMedSeg):

=====================  ===================================================================================
``IMAGE``              image identifier (matched to an image file by its name without the image suffix)
``CURRENT_FIX_INDEX``  chronological order of the fixation in the image's sequence, from 1
``CURRENT_FIX_X``      normalised x in ``[0, 1]``: 0 = left edge, 1 = right edge of the image
``CURRENT_FIX_Y``      normalised y in ``[0, 1]``: 0 = top edge, 1 = bottom edge
``CURRENT_FIX_DURATION``  fixation duration in ms (>= 0)
``CURRENT_FIX_PUPIL``  pupil size (not used)
``CURRENT_FIX_START``  start time of the fixation in ms within the trial
``IMAGE_HEIGHT``, ``IMAGE_WIDTH``  size of the original image in pixels
=====================  ===================================================================================

``IMAGE``, ``CURRENT_FIX_X``, ``CURRENT_FIX_Y`` and ``CURRENT_FIX_DURATION`` are required; the other columns are
checked where present (EyeLink exports write ``.`` for a missing value, which is accepted in the optional columns).
Extra columns are ignored. All problems of a file are collected and raised together (:class:`GazeCsvError`), each
with its line number, column, rule and value.

Pixel convention: a normalised point ``(x, y)`` lies at the continuous pixel index ``(row, col) = (y·H − 0.5,
x·W − 0.5)`` of an ``H × W`` image (pixel centres at integer indices, the image edges at −0.5 and
H−0.5 / W−0.5).
Pure numpy: no nnU-Net import.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "GAZE_COLUMNS",
    "REQUIRED_COLUMNS",
    "FixationSequence",
    "GazeCsvError",
    "image_key",
    "read_gaze_csv",
    "write_gaze_csv",
]

GAZE_COLUMNS = (
    "IMAGE",
    "CURRENT_FIX_INDEX",
    "CURRENT_FIX_X",
    "CURRENT_FIX_Y",
    "CURRENT_FIX_DURATION",
    "CURRENT_FIX_PUPIL",
    "CURRENT_FIX_START",
    "IMAGE_HEIGHT",
    "IMAGE_WIDTH",
)
REQUIRED_COLUMNS = ("IMAGE", "CURRENT_FIX_X", "CURRENT_FIX_Y", "CURRENT_FIX_DURATION")
_MISSING = ("", ".", "nan", "NaN", "NA")
_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_MAX_PROBLEMS_IN_MESSAGE = 30


def image_key(name: str) -> str:
    """The identifier an ``IMAGE`` value is matched by: the name without a known image suffix (case-insensitive)."""
    text = str(name).strip()
    lower = text.lower()
    for suffix in _IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            return text[: -len(suffix)]
    return text


class GazeCsvError(ValueError):
    """A gaze CSV has problems; :attr:`problems` lists all of them (the message too, one per line)."""

    def __init__(self, path: str | os.PathLike[str], problems: list[str]) -> None:
        self.path = str(path)
        self.problems = list(problems)
        lines = self.problems[:_MAX_PROBLEMS_IN_MESSAGE]
        if len(self.problems) > _MAX_PROBLEMS_IN_MESSAGE:
            lines.append(f"... and {len(self.problems) - _MAX_PROBLEMS_IN_MESSAGE} more")
        super().__init__(f"{self.path}: {len(self.problems)} problem(s) in the gaze CSV:\n" + "\n".join(lines))


@dataclass(frozen=True)
class FixationSequence:
    """The fixations of one image, in chronological order.

    Attributes:
        image: The ``IMAGE`` value as written in the CSV.
        x: ``(N,)`` normalised x (0 left, 1 right).
        y: ``(N,)`` normalised y (0 top, 1 bottom).
        duration_ms: ``(N,)`` durations in ms.
        index: ``(N,)`` ``CURRENT_FIX_INDEX`` (1-based; ``1..N`` if the CSV has no such column).
        start_ms: ``(N,)`` start times in ms (NaN where unknown).
        pupil: ``(N,)`` pupil sizes (NaN where unknown).
        image_height: ``IMAGE_HEIGHT`` (``None`` if absent).
        image_width: ``IMAGE_WIDTH`` (``None`` if absent).
    """

    image: str
    x: NDArray[np.float64]
    y: NDArray[np.float64]
    duration_ms: NDArray[np.float64]
    index: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    start_ms: NDArray[np.float64] | None = None
    pupil: NDArray[np.float64] | None = None
    image_height: int | None = None
    image_width: int | None = None

    def __post_init__(self) -> None:
        count = len(self.x)
        if len(self.y) != count or len(self.duration_ms) != count:
            raise ValueError(f"image {self.image!r}: x, y and duration must have the same length")
        if len(self.index) == 0 and count:
            object.__setattr__(self, "index", np.arange(1, count + 1, dtype=np.int64))
        for name in ("start_ms", "pupil"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.full(count, np.nan))

    def __len__(self) -> int:
        return len(self.x)

    @property
    def key(self) -> str:
        """:func:`image_key` of :attr:`image`."""
        return image_key(self.image)

    def pixel_positions(self, shape: tuple[int, int]) -> NDArray[np.float64]:
        """``(N, 2)`` continuous ``(row, col)`` pixel indices of the fixations in an image of ``shape`` ``(H, W)``."""
        height, width = shape
        return np.stack([self.y * height - 0.5, self.x * width - 0.5], axis=1)


def _number(text: str, *, integer: bool = False) -> float | int | None:
    value = float(text)
    if integer:
        if not math.isfinite(value) or value != int(value):
            raise ValueError
        return int(value)
    return value


_Parsed = dict[str, float | int | str | None]
"""One parsed row: the columns (``None`` = missing or invalid), ``IMAGE`` and the ``line`` number."""

# (column, required, integer) in the order the columns of a row are checked.
_ROW_COLUMNS = (
    ("CURRENT_FIX_X", True, False),
    ("CURRENT_FIX_Y", True, False),
    ("CURRENT_FIX_DURATION", True, False),
    ("CURRENT_FIX_INDEX", False, True),
    ("CURRENT_FIX_START", False, False),
    ("CURRENT_FIX_PUPIL", False, False),
    ("IMAGE_HEIGHT", False, True),
    ("IMAGE_WIDTH", False, True),
)
_NUMERIC_COLUMNS = ("CURRENT_FIX_X", "CURRENT_FIX_Y", "CURRENT_FIX_DURATION", "CURRENT_FIX_START", "CURRENT_FIX_PUPIL")


def _read_rows(path: Path) -> list[tuple[dict[str, str], int]]:
    """The rows of a UTF-8 CSV (delimiter ``,`` or tab, sniffed from the header) with their line numbers.

    Raises:
        GazeCsvError: a binary or non-UTF-8 file, missing required columns, or text that is not CSV.
    """
    content = path.read_bytes()
    nul = content.find(b"\x00")
    if nul >= 0:
        raise GazeCsvError(path, [f"holds NUL bytes (the first at byte {nul}): a binary file, not a CSV"])
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise GazeCsvError(path, [f"not UTF-8 text (byte {error.start}): a binary file, or save it as UTF-8"]) from None
    handle = io.StringIO(text, newline="")
    header_line = handle.readline()
    handle.seek(0)
    delimiter = "\t" if header_line.count("\t") > header_line.count(",") else ","
    reader = csv.DictReader(handle, delimiter=delimiter)
    try:
        columns = [name.strip() for name in (reader.fieldnames or [])]
        missing = [name for name in REQUIRED_COLUMNS if name not in columns]
        if missing:
            raise GazeCsvError(
                path,
                [f"missing required column(s) {missing}; found {columns} (GazeMedSeg layout: {list(GAZE_COLUMNS)})"],
            )
        return [({(key or "").strip(): (value or "").strip() for key, value in row.items()}, number)
                for number, row in enumerate(reader, start=2)]
    except csv.Error as error:
        raise GazeCsvError(path, [f"line {reader.line_num}: not readable as CSV ({error})"]) from None


def _parse_columns(row: Mapping[str, str], where: str, image: str, problems: list[str]) -> _Parsed:
    """Parse the numeric columns of a row; missing required values and non-numbers go to ``problems``."""
    parsed: _Parsed = {}
    for column, required, integer in _ROW_COLUMNS:
        text = row.get(column, "")
        if text in _MISSING:
            if required:
                problems.append(f"{where}: {column} is missing (image {image!r})")
            parsed[column] = None
            continue
        try:
            parsed[column] = _number(text, integer=integer)
        except ValueError:
            kind = "an integer" if integer else "a number"
            problems.append(f"{where}: {column} must be {kind}, got {text!r} (image {image!r})")
            parsed[column] = None
    return parsed


def _check_ranges(parsed: _Parsed, where: str, image: str, problems: list[str]) -> None:
    """Coordinates in ``[0, 1]``, finite durations >= 0, indices >= 1, positive image sizes; bad coordinates and
    durations become ``None``."""
    for column in ("CURRENT_FIX_X", "CURRENT_FIX_Y"):
        value = parsed[column]
        if isinstance(value, float) and not 0.0 <= value <= 1.0:
            problems.append(
                f"{where}: {column} must be normalised to [0, 1] (0 = left/top edge), got {value} (image {image!r})"
            )
            parsed[column] = None
    duration = parsed["CURRENT_FIX_DURATION"]
    if isinstance(duration, float) and (not math.isfinite(duration) or duration < 0):
        problems.append(
            f"{where}: CURRENT_FIX_DURATION must be a finite duration >= 0 ms, got {duration} (image {image!r})"
        )
        parsed["CURRENT_FIX_DURATION"] = None
    index = parsed["CURRENT_FIX_INDEX"]
    if isinstance(index, int) and index < 1:
        problems.append(f"{where}: CURRENT_FIX_INDEX must be >= 1, got {index} (image {image!r})")
    for column in ("IMAGE_HEIGHT", "IMAGE_WIDTH"):
        value = parsed[column]
        if isinstance(value, int) and value < 1:
            problems.append(f"{where}: {column} must be a positive pixel count, got {value} (image {image!r})")


def _parse_row(
    row: Mapping[str, str], line: int, known: set[str] | None, problems: list[str]
) -> tuple[str, _Parsed] | None:
    """``(image key, parsed row)``, or ``None`` for a row without a (known) image; problems go to ``problems``."""
    where = f"line {line}"
    image = row.get("IMAGE", "")
    if not image:
        problems.append(f"{where}: IMAGE is empty")
        return None
    key = image_key(image)
    if known is not None and key not in known:
        examples = sorted(known)[:5]
        problems.append(f"{where}: IMAGE {image!r} is not among the images ({len(known)} known, e.g. {examples})")
        return None
    parsed: _Parsed = {"IMAGE": image, "line": line, **_parse_columns(row, where, image, problems)}
    _check_ranges(parsed, where, image, problems)
    return key, parsed


def _check_fixation_indices(items: list[_Parsed], image: str, problems: list[str]) -> bool:
    """Whether every row of an image has a ``CURRENT_FIX_INDEX``; repeated indices and a column filled in only some
    rows go to ``problems``."""
    indices = [item["CURRENT_FIX_INDEX"] for item in items]
    if all(isinstance(value, int) for value in indices):
        seen: dict[int, int] = {}
        for item in items:
            value = int(item["CURRENT_FIX_INDEX"])  # type: ignore[arg-type]
            if value in seen:
                problems.append(
                    f"line {item['line']}: CURRENT_FIX_INDEX {value} repeats line {seen[value]} (image {image!r})"
                )
            seen.setdefault(value, int(item["line"]))  # type: ignore[arg-type]
        return True
    if any(isinstance(value, int) for value in indices):
        problems.append(f"image {image!r}: CURRENT_FIX_INDEX is missing in some rows but not in others")
    return False


def _image_size(items: list[_Parsed], image: str, problems: list[str]) -> dict[str, int | None]:
    """``IMAGE_HEIGHT`` and ``IMAGE_WIDTH`` of an image (``None`` if absent); values differing between rows go to
    ``problems``."""
    sizes: dict[str, int | None] = {}
    for column in ("IMAGE_HEIGHT", "IMAGE_WIDTH"):
        values = sorted({item[column] for item in items if item[column] is not None})  # type: ignore[type-var]
        if len(values) > 1:
            problems.append(f"image {image!r}: {column} differs between its rows: {values}")
        sizes[column] = int(values[0]) if len(values) == 1 else None  # type: ignore[arg-type]
    return sizes


def _build_sequence(
    image: str, items: list[_Parsed], indexed: bool, sizes: Mapping[str, int | None]
) -> FixationSequence:
    """The fixation sequence of one image's checked rows (sorted by ``CURRENT_FIX_INDEX`` when ``indexed``)."""
    if indexed:
        items = sorted(items, key=lambda item: int(item["CURRENT_FIX_INDEX"]))  # type: ignore[arg-type]
    column_values = {
        column: np.array([np.nan if item[column] is None else float(item[column])  # type: ignore[arg-type]
                          for item in items])
        for column in _NUMERIC_COLUMNS
    }
    return FixationSequence(
        image=image,
        x=column_values["CURRENT_FIX_X"],
        y=column_values["CURRENT_FIX_Y"],
        duration_ms=column_values["CURRENT_FIX_DURATION"],
        index=np.array([item["CURRENT_FIX_INDEX"] or 0 for item in items], dtype=np.int64)
        if indexed else np.zeros(0, dtype=np.int64),
        start_ms=column_values["CURRENT_FIX_START"],
        pupil=column_values["CURRENT_FIX_PUPIL"],
        image_height=sizes["IMAGE_HEIGHT"],
        image_width=sizes["IMAGE_WIDTH"],
    )


def read_gaze_csv(
    path: str | os.PathLike[str], *, known_images: Collection[str] | None = None
) -> dict[str, FixationSequence]:
    """Read and validate a GazeMedSeg-layout CSV.

    Args:
        path: The CSV file (comma- or tab-separated; the delimiter is sniffed from the header).
        known_images: Image identifiers (names without image suffix) that exist; an ``IMAGE`` whose
            :func:`image_key` is not among them is an error. ``None`` accepts any image.

    Returns:
        ``{image_key: FixationSequence}`` sorted by key, each sequence sorted by ``CURRENT_FIX_INDEX``.

    Raises:
        FileNotFoundError: the file does not exist.
        GazeCsvError: a binary (NUL bytes) or non-UTF-8 file, missing required columns, or any bad row: empty
            ``IMAGE``, unknown image, a non-numeric value, coordinates outside ``[0, 1]``, a negative or non-finite
            duration, a fixation index that is not a positive integer or repeats within an image, a non-positive or
            inconsistent image size, or an empty file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: gaze CSV not found")
    rows = _read_rows(path)
    problems: list[str] = []
    known = None if known_images is None else set(known_images)
    grouped: dict[str, list[_Parsed]] = {}
    for row, line in rows:
        parsed = _parse_row(row, line, known, problems)
        if parsed is not None:
            grouped.setdefault(parsed[0], []).append(parsed[1])
    if not rows:
        problems.append("the file holds no fixation rows")
    sequences: dict[str, FixationSequence] = {}
    for key, items in sorted(grouped.items()):
        images = sorted({str(item["IMAGE"]) for item in items})
        if len(images) > 1:
            problems.append(f"IMAGE values {images} name the same image {key!r}; use one spelling")
        indexed = _check_fixation_indices(items, images[0], problems)
        sizes = _image_size(items, images[0], problems)
        if not problems:  # with any problem the file is rejected below: build nothing more
            sequences[key] = _build_sequence(images[0], items, indexed, sizes)
    if problems:
        raise GazeCsvError(path, problems)
    return sequences


def _format(value: float | int | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "."
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{value:.{digits}f}".rstrip("0").rstrip(".") if digits else str(int(round(value)))


def write_gaze_csv(
    path: str | os.PathLike[str], sequences: Iterable[FixationSequence] | Mapping[str, FixationSequence]
) -> None:
    """Write fixation sequences in the GazeMedSeg layout (all nine columns, ``.`` for unknown values).

    Coordinates are written with 6 decimals, durations, start times and pupil sizes rounded to whole units.
    """
    items = list(sequences.values()) if isinstance(sequences, Mapping) else list(sequences)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(GAZE_COLUMNS)
        for sequence in items:
            for position in range(len(sequence)):
                writer.writerow(
                    [
                        sequence.image,
                        int(sequence.index[position]),
                        _format(float(sequence.x[position]), 6),
                        _format(float(sequence.y[position]), 6),
                        _format(float(sequence.duration_ms[position]), 0),
                        _format(float(sequence.pupil[position]), 0),  # type: ignore[index]
                        _format(float(sequence.start_ms[position]), 0),  # type: ignore[index]
                        _format(sequence.image_height, 0),
                        _format(sequence.image_width, 0),
                    ]
                )
