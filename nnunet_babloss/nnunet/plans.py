"""What our trainers store in nnU-Net's plans, and how it is read back: the one module for plans access.

nnU-Net's ``build_network_architecture`` and its stock predictor see only the plans, so every trainer writes the
landmark specification (and the label table the spec's bridge refers to) into them, and the model folder's
``plans.json`` carries them to inference. Trainers write through :func:`store_landmark_spec` and
:func:`store_side_swapping_tta`; the predictor and ``build_network_architecture`` read through the functions here.
Keeping keys and readers here (not in a trainer module) lets the predictor import them without importing a trainer,
which imports the predictor for its final validation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nnunet_babloss.core.landmarks.spec import LandmarkSpec

__all__ = [
    "PLANS_DENSESEG_KEY",
    "PLANS_LABELS_KEY",
    "PLANS_LANDMARKS_KEY",
    "PLANS_SIDE_SWAPPING_TTA_KEY",
    "denseseg_block_from_plans",
    "labels_from_plans",
    "landmark_spec_from_plans",
    "side_swapping_tta_from_plans",
    "store_landmark_spec",
    "store_side_swapping_tta",
]

#: Plans entry: the ``dataset.json`` landmarks block of the training dataset (:meth:`LandmarkSpec.to_json_block`).
PLANS_LANDMARKS_KEY = "bab_landmarks"
#: Plans entry: the training dataset's ``dataset.json["labels"]`` (the bridge and the label pairs name them).
PLANS_LABELS_KEY = "bab_labels"
#: Plans entry (bool): the model was trained with left-right flips that swap ``label_mirror_pairs``. nnU-Net's stock
#: predictor cannot swap segmentation channels, so the checkpoint's ``inference_allowed_mirroring_axes`` then leaves
#: the lateral axis out; :class:`~nnunet_babloss.nnunet.predictor.nnUNetLandmarkPredictor` adds it back, swapping the
#: paired label and landmark channels of the mirrored pass.
PLANS_SIDE_SWAPPING_TTA_KEY = "bab_side_swapping_tta"
#: Plans entry: DenseSeg's template (:meth:`nnunet_babloss.denseseg.uvmaps.DenseSegTemplate.to_json`); only DenseSeg
#: models have it, and the predictor reads landmarks out of uv maps instead of heatmaps when it is there.
PLANS_DENSESEG_KEY = "bab_denseseg"


def store_landmark_spec(plans: dict, spec: LandmarkSpec, labels: Mapping[str, Any]) -> None:
    """Write the landmark specification and the label table it refers to into ``plans`` (in place)."""
    plans[PLANS_LANDMARKS_KEY] = spec.to_json_block()
    plans[PLANS_LABELS_KEY] = dict(labels)


def labels_from_plans(plans: Mapping[str, Any]) -> dict[str, Any]:
    """The training dataset's ``dataset.json["labels"]`` stored by :func:`store_landmark_spec` (empty if absent)."""
    return dict(plans.get(PLANS_LABELS_KEY, {}))


def landmark_spec_from_plans(plans: Mapping[str, Any]) -> LandmarkSpec:
    """The landmark specification our trainers store in the plans (so inference can rebuild the network).

    Raises:
        ValueError: if the plans were not written by one of our trainers.
    """
    block = plans.get(PLANS_LANDMARKS_KEY)
    if block is None:
        raise ValueError(
            f"these plans have no '{PLANS_LANDMARKS_KEY}' entry: they were not written by an nnunet-babloss trainer "
            "(use the plans.json of the trained model folder)"
        )
    return LandmarkSpec.from_dataset_json({"labels": labels_from_plans(plans), "landmarks": block})


def store_side_swapping_tta(plans: dict, swaps_labels: bool) -> None:
    """Record whether the model's lateral flips swap sided labels (see :data:`PLANS_SIDE_SWAPPING_TTA_KEY`)."""
    plans[PLANS_SIDE_SWAPPING_TTA_KEY] = bool(swaps_labels)


def side_swapping_tta_from_plans(plans: Mapping[str, Any]) -> bool:
    """Whether test-time mirroring must swap sided label and landmark channels (``False`` when not recorded)."""
    return bool(plans.get(PLANS_SIDE_SWAPPING_TTA_KEY, False))


def denseseg_block_from_plans(plans: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON of the DenseSeg template stored by DenseSeg's trainer, or ``None`` for every other model."""
    block = plans.get(PLANS_DENSESEG_KEY)
    return None if block is None else dict(block)
