"""Hashing, JSON files and provenance records: the one implementation every tool of the package calls.

A provenance record is the small JSON file written beside generated datasets, labels and predictions (style rule
12). Every record starts with the same head, built by :func:`provenance_record`::

    {"tool": "nnUNetv2_bab_convert", "created_utc": "2025-01-01T12:00:00+00:00",
     "versions": {"python": "3.11.9", "nnunet-babloss": "0.1.0", "nnunetv2": "2.8.1", ...},
     "arguments": {...}, ...tool-specific fields...}

Standard library only: no numpy, no SimpleITK, no nnU-Net.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import platform
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "VERSIONED_PACKAGES",
    "JsonFileError",
    "file_sha256",
    "jsonable",
    "package_version",
    "package_versions",
    "provenance_record",
    "read_json",
    "read_json_object",
    "utc_timestamp",
    "write_json",
]

VERSIONED_PACKAGES = ("nnunet-babloss", "nnunetv2", "torch", "numpy", "SimpleITK")
"""Distributions whose versions every provenance record lists (a tool may add its own)."""

_BLOCK_BYTES = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (checkpoints can be large).

    Raises:
        FileNotFoundError: the file does not exist.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def jsonable(value: Any) -> Any:
    """``value`` with mappings, sequences and sets made JSON-ready; paths and other objects become strings.

    Sets are sorted (so that a record does not change between runs); numpy scalars become Python numbers; NaN and
    infinity become ``None`` (strict JSON has neither).
    """
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return [jsonable(item) for item in items]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    item = getattr(value, "item", None)  # numpy scalars, without importing numpy
    if callable(item) and getattr(value, "shape", None) == ():
        return jsonable(item())
    return str(value)


def write_json(path: str | os.PathLike[str], content: Any, *, atomic: bool = False) -> None:
    """Write ``content`` as indented UTF-8 JSON with a final newline; NaN and infinity are refused.

    Args:
        path: The file to write.
        content: JSON-ready content (see :func:`jsonable`).
        atomic: Write a hidden file beside ``path`` and rename it into place, so that a reader never sees a
            half-written file (for files rewritten while a run goes on).

    Raises:
        ValueError: ``content`` holds NaN or infinity.
        TypeError: ``content`` holds something JSON cannot represent.
    """
    path = Path(path)
    text = json.dumps(content, indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    if not atomic:
        path.write_text(text, encoding="utf-8")
        return
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    staging.write_text(text, encoding="utf-8")
    staging.replace(path)


class JsonFileError(ValueError):
    """A JSON file that cannot be used: ``reason`` says why, the message also names what it is and its path."""

    def __init__(self, path: Path, reason: str, what: str = "") -> None:
        super().__init__(f"{what} {path}: {reason}" if what else f"{path}: {reason}")
        self.path, self.reason = path, reason


def read_json(path: str | os.PathLike[str], what: str = "") -> Any:
    """Read a UTF-8 JSON file given by a user; errors start with ``what`` (an option, "dataset.json") and the path.

    Raises:
        FileNotFoundError: the file does not exist.
        JsonFileError: not UTF-8, or not valid JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path}: file not found" if what else f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise JsonFileError(path, f"not valid JSON ({error})", what) from None


def read_json_object(path: str | os.PathLike[str], what: str = "") -> dict[str, Any]:
    """:func:`read_json` for files that must hold a JSON object.

    Raises:
        FileNotFoundError: the file does not exist.
        JsonFileError: not UTF-8 JSON, or not an object.
    """
    content = read_json(path, what)
    if not isinstance(content, dict):
        raise JsonFileError(Path(path), f"must hold a JSON object, got {type(content).__name__}", what)
    return content


def utc_timestamp() -> str:
    """The current UTC time in ISO 8601 to the second, e.g. ``2025-01-01T12:00:00+00:00``."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def package_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (e.g. ``"nnunetv2"``), ``None`` when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def package_versions(packages: Iterable[str] = VERSIONED_PACKAGES) -> dict[str, str | None]:
    """``{"python": ..., <distribution>: version or None when not installed}``."""
    return {"python": platform.python_version(), **{package: package_version(package) for package in packages}}


def provenance_record(
    tool: str,
    *,
    arguments: Mapping[str, Any] | None = None,
    extra_packages: Iterable[str] = (),
    **fields: Any,
) -> dict[str, Any]:
    """The content of a provenance file: tool, UTC time, package versions, arguments and the tool's own fields.

    Args:
        tool: The command that wrote the output (e.g. ``"nnUNetv2_bab_convert"``).
        arguments: The arguments it ran with (omitted from the record when ``None``).
        extra_packages: Distributions to list beside :data:`VERSIONED_PACKAGES` (e.g. a SAM backend).
        **fields: Tool-specific entries, made JSON-ready with :func:`jsonable`.

    Example:
        >>> record = provenance_record("my_tool", arguments={"seed": 1}, cases=3)
        >>> sorted(record)
        ['arguments', 'cases', 'created_utc', 'tool', 'versions']
    """
    packages = dict.fromkeys((*VERSIONED_PACKAGES, *extra_packages))
    record: dict[str, Any] = {
        "tool": tool,
        "created_utc": utc_timestamp(),
        "versions": package_versions(packages),
    }
    if arguments is not None:
        record["arguments"] = jsonable(arguments)
    record.update({key: jsonable(value) for key, value in fields.items()})
    return record
