"""Writing a raw dataset all at once or not at all, and recording where it came from.

:class:`AtomicDatasetFolder` builds the dataset in a hidden temporary folder beside the target
(``.Dataset123_Name.tmp-<pid>-XXXX`` in the same ``nnUNet_raw``, so the final rename stays on one file system) and
renames it into place only when everything has been written; on any error, SIGINT or SIGTERM the temporary folder is
removed (:mod:`nnunet_babloss.core.atomic_output`, the mechanism every tool shares). nnU-Net finds datasets by the
``Dataset<ID>`` prefix, so it never sees the hidden temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dataset_conversion.validation import ValidationReport
from nnunet_babloss.core.atomic_output import AtomicFolder
from nnunet_babloss.core.provenance import provenance_record as shared_provenance_record
from nnunet_babloss.core.provenance import write_json
from nnunet_babloss.nnunet.raw_dataset import RawDatasetWriter, dataset_folder_name

__all__ = [
    "AtomicDatasetFolder",
    "RawDatasetWriter",
    "check_output_folder",
    "dataset_folder_name",
    "nnunet_raw_folder",
    "provenance_record",
    "write_json",
]


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


def provenance_record(
    tool: str, arguments: Mapping[str, Any], sources: Mapping[str, Any], report: ValidationReport, **extra: Any
) -> dict[str, Any]:
    """The content of ``provenance.json``: :func:`nnunet_babloss.core.provenance.provenance_record`'s head (tool, UTC
    time, versions, arguments), the sources, ``extra`` and the warnings of ``report``."""
    return shared_provenance_record(
        tool, arguments=arguments, sources=sources, **extra, warnings=[issue.as_json() for issue in report.warnings]
    )
