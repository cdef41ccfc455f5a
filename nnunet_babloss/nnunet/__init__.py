"""The nnU-Net glue: the only subpackage that imports ``nnunetv2`` or ``batchgeneratorsv2``."""

from __future__ import annotations

from nnunet_babloss.version_check import check_nnunet_version

check_nnunet_version()
