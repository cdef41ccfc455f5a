"""Gaze-supervised pseudo masks (GazeSup, Zhong et al., MICCAI 2024): eye-tracking fixations → multi-level masks.

Modules: :mod:`~pseudo_labels.gaze.gaze_csv` (GazeMedSeg CSV layout, validation), :mod:`~pseudo_labels.gaze.heatmap`
(duration-weighted Gaussian heatmap), :mod:`~pseudo_labels.gaze.crf` (dense-CRF refinement; optional package
``pydensecrf2``, extra ``gaze``), :mod:`~pseudo_labels.gaze.simulator` (simulated gaze from a mask),
:mod:`~pseudo_labels.gaze.pipeline` (images + CSV → nnU-Net raw dataset) and :mod:`~pseudo_labels.gaze.cli`
(``nnUNetv2_bab_gaze_pseudo_labels``). The nested level encoding lives in :mod:`nnunet_babloss.gazesup.levels` (the
trainer reads it too). Nothing here imports nnU-Net; nothing heavy is imported by this file.
"""

from __future__ import annotations

__all__: list[str] = []
