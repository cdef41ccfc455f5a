"""nnunet-babloss: segmentation and landmark detection from heterogeneous partial labels, inside nnU-Net v2.

Conventions used everywhere in this package (checked at public entry points):

* **Array axis order** is numpy's order of a SimpleITK array: ``(z, y, x)`` for 3D, ``(y, x)`` for 2D.
* A **voxel index** is a continuous position in that array order; integer values are voxel centres.
* A **world point** is an ITK/LPS physical point in millimetres in ITK order ``(x, y, z)`` (``(x, y)`` for 2D),
  exactly as ``SimpleITK.Image.TransformContinuousIndexToPhysicalPoint`` reports it.
* An **absent landmark** is a row of NaN in a ``(K, D)`` coordinate array, and ``null`` in JSON files.

Layers, bottom up (``pyproject.toml``'s import-linter contracts check them): ``core`` (numpy/torch only: landmarks,
heatmaps, boundary maps, generic losses, network, metrics, evaluation), ``nnunet`` (the nnU-Net glue: plans, loader,
transforms, predictor, the base trainer), one folder per method (``babloss``, ``denseseg``, ``gazesup``,
``pretraining``; they do not import each other), ``trainers`` (every trainer by name), ``apps`` and ``cli``.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
