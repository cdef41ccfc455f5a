"""nnunet-babloss: segmentation and landmark detection from heterogeneous partial labels, inside nnU-Net v2.

Conventions used everywhere in this package (checked at public entry points):

* **Array axis order** is numpy's order of a SimpleITK array: ``(z, y, x)`` for 3D, ``(y, x)`` for 2D.
* A **voxel index** is a continuous position in that array order; integer values are voxel centres.
* A **world point** is an ITK/LPS physical point in millimetres in ITK order ``(x, y, z)`` (``(x, y)`` for 2D),
  exactly as ``SimpleITK.Image.TransformContinuousIndexToPhysicalPoint`` reports it.
* An **absent landmark** is a row of NaN in a ``(K, D)`` coordinate array, and ``null`` in JSON files.

Only :mod:`nnunet_babloss.nnunet` (and the CLIs above it) import ``nnunetv2``; the pure core
(``landmarks``, ``heatmaps``, ``boundary``, ``losses``, ``metrics``) is numpy/torch only.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
