"""Converters to nnU-Net raw format with landmarks, and the merge of partially labelled datasets.

* :func:`~dataset_conversion.convert.convert_dataset` (``nnUNetv2_bab_convert``): images + masks + landmark files
  -> ``nnUNet_raw/Dataset<ID>_<name>`` with ``landmarksTr``, the ``"landmarks"`` block and stratified splits.
* :func:`~dataset_conversion.merge.merge_datasets` (``nnUNetv2_bab_merge``): several raw datasets -> one.

This layer sits above the pure core (it uses :mod:`nnunet_babloss.core.landmarks` and :mod:`nnunet_babloss.core.splits`) and
never imports ``nnunetv2``: the datasets it writes are checked by nnU-Net's own ``--verify_dataset_integrity``.
"""

from __future__ import annotations

from dataset_conversion.convert import (
    ConversionInputs,
    ConversionResult,
    ConversionSettings,
    LandmarkOptions,
    convert_dataset,
)
from dataset_conversion.merge import MergeResult, MergeSettings, merge_datasets
from dataset_conversion.validation import DatasetValidationError, Issue, ValidationReport

__all__ = [
    "ConversionInputs",
    "ConversionResult",
    "ConversionSettings",
    "DatasetValidationError",
    "Issue",
    "LandmarkOptions",
    "MergeResult",
    "MergeSettings",
    "ValidationReport",
    "convert_dataset",
    "merge_datasets",
]
