"""Pseudo masks from landmarks with Segment Anything (BaBLoss' "loss on specific organ" pseudo labels).

Modules: :mod:`~pseudo_labels.prompts` (pure numpy: prompts from landmarks, contour filling, 3D slice plans),
:mod:`~pseudo_labels.backends` (SAM and LiteMedSAM behind one protocol), :mod:`~pseudo_labels.quality` (quality
control), :mod:`~pseudo_labels.pipeline` (nnU-Net raw dataset in, new labels out) and :mod:`~pseudo_labels.cli`
(``nnUNetv2_bab_pseudo_labels``). Nothing heavy is imported here.
"""

from __future__ import annotations

__all__: list[str] = []
