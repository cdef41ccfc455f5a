"""The nnU-Net glue: plans access, the landmark data loader and keypoint transforms, the base trainer, the predictor.

With the method trainers built on it, the only code that imports ``nnunetv2`` or ``batchgeneratorsv2``. Importing it
checks the installed nnU-Net version.
"""

from __future__ import annotations

from nnunet_babloss.version_check import check_nnunet_version

check_nnunet_version()
