"""Writing a raw dataset all at once or not at all, and recording where it came from.

:class:`AtomicDatasetFolder` builds the dataset in a hidden temporary folder beside the target
(``.Dataset123_Name.tmp-<pid>-XXXX`` in the same ``nnUNet_raw``, so the final rename stays on one file system) and
renames it into place only when everything has been written; on any error, SIGINT or SIGTERM the temporary folder is
removed (:mod:`nnunet_babloss.core.atomic_output`, the mechanism every tool shares). nnU-Net finds datasets by the
``Dataset<ID>`` prefix, so it never sees the hidden temporary folder.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dataset_conversion.validation import ValidationReport
from nnunet_babloss.core.atomic_output import AtomicFolder

__all__ = [
    "AtomicDatasetFolder",
    "check_output_folder",
    "dataset_folder_name",
    "nnunet_raw_folder",
    "provenance_record",
    "write_json",
]

_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_VERSIONED_PACKAGES = ("nnunet-babloss", "nnunetv2", "SimpleITK", "numpy", "torch")


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


def nnunet_raw_folder(raw_folder: str | os.PathLike[str] | None) -> Path:
    """``raw_folder`` or, if ``None``, the ``nnUNet_raw`` environment variable.

    Raises:
        ValueError: neither is set.
    """
    if raw_folder is not None:
        return Path(raw_folder)
    value = os.environ.get("nnUNet_raw")
    if not value:
        raise ValueError("no output folder: pass --raw-folder or set the nnUNet_raw environment variable")
    return Path(value)


def check_output_folder(
    raw_folder: Path, dataset_id: int, dataset_name: str, *, overwrite: bool, report: ValidationReport
) -> Path:
    """The target dataset folder; records an error if it exists (without ``overwrite``) or the id is taken.

    nnU-Net resolves a dataset id by the folder prefix ``Dataset<ID>_``, so two folders with the same id and different
    names make it fail; that is an error even with ``overwrite`` (which only replaces the same folder).
    """
    target = raw_folder / dataset_folder_name(dataset_id, dataset_name)
    if target.exists() and not overwrite:
        report.error(target, "the output dataset exists already; pass --overwrite to replace it")
    if raw_folder.is_dir():
        others = sorted(
            path.name
            for path in raw_folder.glob(f"Dataset{dataset_id:03d}_*")
            if path.is_dir() and path.name != target.name
        )
        if others:
            report.error(
                raw_folder,
                f"dataset id {dataset_id} is taken by {others}; nnU-Net could not tell them apart. Choose another id "
                "or remove that dataset",
            )
    return target


class AtomicDatasetFolder(AtomicFolder):
    """:class:`~nnunet_babloss.core.atomic_output.AtomicFolder` for a raw dataset (its error names the dataset).

    Example:
        >>> with AtomicDatasetFolder(Path("/raw/Dataset001_X"), overwrite=False) as folder:  # doctest: +SKIP
        ...     (folder / "dataset.json").write_text("{}")
        ...     folder.commit()
    """

    exists_message = "the output dataset exists already; pass --overwrite to replace it"


def write_json(path: Path, content: Any) -> None:
    """Write ``content`` as indented JSON (no NaN allowed)."""
    path.write_text(json.dumps(content, indent=2, allow_nan=False, ensure_ascii=False) + "\n", encoding="utf-8")


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def provenance_record(
    tool: str, arguments: Mapping[str, Any], sources: Mapping[str, Any], report: ValidationReport, **extra: Any
) -> dict[str, Any]:
    """The content of ``provenance.json``: tool, UTC time, arguments, package versions, sources and warnings."""
    return {
        "tool": tool,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "arguments": _jsonable(arguments),
        "versions": _versions(),
        "sources": _jsonable(sources),
        **{key: _jsonable(value) for key, value in extra.items()},
        "warnings": [issue.as_json() for issue in report.warnings],
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return [_jsonable(item) for item in items]
    if isinstance(value, os.PathLike):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
