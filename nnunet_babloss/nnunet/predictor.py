"""``nnUNetLandmarkPredictor``: nnU-Net's predictor, plus landmarks decoded from the heatmap head.

The segmentation path is nnU-Net's own, unchanged: the sliding window, Gaussian weighting, mirror test-time
augmentation and fold ensembling run over the segmentation logits *and* the heatmaps (one network pass gives both),
and the segmentation logits are then handed to nnU-Net's export code exactly as the stock predictor hands them. The
segmentations are therefore bit-identical to ``nnUNetv2_predict``'s.

How the heatmaps ride along:

* the network's heatmap output is switched on, and :meth:`_internal_maybe_mirror_and_predict` returns
  ``concat(segmentation logits, sigmoid(heatmap logits))`` along the channels; under mirroring the heatmaps are
  flipped back like the logits, and left/right landmark pairs are swapped when the flip reverses the patient's
  left-right axis (found per case from the image direction and the plans' ``transpose_forward``);
* a model trained with ``label_mirror_pairs`` (sided labels such as right/left lung, swapped with the landmarks under
  left-right flips) is also mirrored left-right at test time, with the paired segmentation channels swapped like the
  landmark channels. nnU-Net's stock predictor cannot swap them, so the checkpoint leaves that axis out of its
  mirror axes (plans entry ``bab_side_swapping_tta``); only then do the segmentations differ from
  ``nnUNetv2_predict``'s, which stay correct without that flip;
* nnU-Net's sliding window preallocates ``label_manager.num_segmentation_heads`` channels: while it runs, the label
  manager is replaced by a proxy that reports the extra heatmap channels;
* :meth:`predict_logits_from_preprocessed_data` (where folds are averaged) splits the result: the heatmaps are
  decoded into landmarks, the segmentation logits are returned.

Landmarks are decoded in the preprocessed array (arg-max + sub-voxel refinement, confidence = peak heatmap value,
``null`` below ``landmark_threshold``) and mapped to world LPS mm with the case's own properties (crop box, shapes,
``sitk_stuff``). Files: ``<case>.json`` (our format, with confidence) beside ``<case><file_ending>``, and
optionally ``<case>.mrk.json`` for 3D Slicer. A landmark file is written before its segmentation is exported, so
``--continue_prediction`` (which skips cases whose segmentation exists) never leaves a case without landmarks.

2D configurations on 3D volumes predict every slice separately, and nnU-Net stacks the slices into one volume. They
are trained so that each slice holds the slice of the landmark's 3D Gaussian (see ``heatmap_slice_sigma_vox`` in
:mod:`~nnunet_babloss.nnunet.heatmap_trainer`): the stack is decoded like a 3D configuration's heatmaps,
peak over the volume and refinement along all three axes, sub-slice along the slices included.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
from batchgenerators.utilities.file_and_folder_operations import join, save_json
from nnunetv2.configuration import default_num_processes
from nnunetv2.inference.data_iterators import PreprocessAdapterFromNpy
from nnunetv2.inference.export_prediction import (
    convert_predicted_logits_to_segmentation_with_correct_shape,
    export_prediction_from_logits,
)
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.inference.sliding_window_prediction import compute_gaussian
from nnunetv2.utilities.helpers import empty_cache
from nnunetv2.utilities.json_export import recursive_fix_for_json_export
from nnunetv2.utilities.label_handling.label_handling import convert_labelmap_to_one_hot
from torch import Tensor, nn

from nnunet_babloss.core.heatmaps import decode_heatmaps
from nnunet_babloss.core.landmarks.geometry import ImageGeometry, PreprocessingMap, preprocessed_index_to_world
from nnunet_babloss.core.landmarks.io import LandmarkSet, write_landmarks
from nnunet_babloss.core.landmarks.spec import LandmarkSpec
from nnunet_babloss.core.network import SegmentationHeatmapNetwork, unwrap_network

# The predictor reads out every model kind, DenseSeg's uv maps included: the one import from the glue into a method
# (the .importlinter contracts name it).
from nnunet_babloss.denseseg.network import SegmentationUVNetwork
from nnunet_babloss.denseseg.uvmaps import DenseSegTemplate, dilate_region, parse_uv_queries, soft_match_uv
from nnunet_babloss.nnunet.checkpoint_loading import require_checkpoint_file_name, weights_only_loading
from nnunet_babloss.nnunet.mirroring import lateral_patch_axis
from nnunet_babloss.nnunet.plans import (
    denseseg_block_from_plans,
    labels_from_plans,
    landmark_spec_from_plans,
    side_swapping_tta_from_plans,
)

__all__ = [
    "DEFAULT_LANDMARK_THRESHOLD",
    "LANDMARK_FILE_SUFFIX",
    "SLICER_FILE_SUFFIX",
    "nnUNetLandmarkPredictor",
    "decode_preprocessed_heatmaps",
    "geometry_from_properties",
    "landmarks_from_preprocessed_heatmaps",
    "label_channel_permutation",
    "landmarks_from_preprocessed_uv",
    "QUERIED_LANDMARKS_FOLDER",
]

# A trained heatmap peaks near 1 at a landmark (exp(-d^2 / 2 sigma^2) >= 0.94 for a landmark at most half a voxel
# from a voxel centre with sigma >= 2 voxels) and stays near 0 elsewhere; 0.3 leaves room for blurred, averaged
# (folds, mirroring) peaks while rejecting the background.
DEFAULT_LANDMARK_THRESHOLD = 0.3
LANDMARK_FILE_SUFFIX = ".json"
SLICER_FILE_SUFFIX = ".mrk.json"
QUERIED_LANDMARKS_FOLDER = "queried_landmarks"
_DECODE_CHUNK_BYTES = 256 * 2**20  # float32 working copy of the heatmaps while decoding


def label_channel_permutation(
    label_value_pairs: Sequence[tuple[int, int]], channel_labels: Sequence[int]
) -> tuple[int, ...]:
    """Segmentation channel permutation of a left-right flip: ``perm[c]`` is the channel of ``c``'s partner label.

    Args:
        label_value_pairs: ``(left value, right value)`` pairs of sided labels (``LandmarkSpec.label_value_pairs``).
        channel_labels: label value of each output channel (nnU-Net's ``label_manager.all_labels``).

    Raises:
        ValueError: a paired value has no output channel.
    """
    channel_of = {int(value): channel for channel, value in enumerate(channel_labels)}
    permutation = list(range(len(channel_labels)))
    for left, right in label_value_pairs:
        if left not in channel_of or right not in channel_of:
            raise ValueError(
                f"label_mirror_pairs values {(left, right)} need segmentation channels; the model's channels hold "
                f"labels {list(channel_labels)}"
            )
        permutation[channel_of[left]], permutation[channel_of[right]] = channel_of[right], channel_of[left]
    return tuple(permutation)


def geometry_from_properties(
    properties: Mapping[str, Any], transpose_forward: Sequence[int] | None = None
) -> ImageGeometry:
    """The world frame of a case from nnU-Net's properties (``sitk_stuff``).

    Without ``sitk_stuff`` (in-memory arrays given with only a ``'spacing'``, or a reader that stores no world
    frame) a warning is issued and the frame falls back to identity direction, zero origin and the given spacing; the
    image is then taken as 2D when its raw leading axis has a single voxel (``shape_before_cropping`` is stored
    transposed, hence ``transpose_forward``; default: no transpose).

    Raises:
        ValueError: neither a valid ``sitk_stuff`` nor a ``'spacing'`` is present.
    """
    sitk_stuff = properties.get("sitk_stuff")
    if isinstance(sitk_stuff, Mapping) and all(key in sitk_stuff for key in ("spacing", "origin", "direction")):
        return ImageGeometry.from_sitk_stuff(sitk_stuff)
    if "spacing" not in properties:
        raise ValueError(
            f"the image properties hold neither 'sitk_stuff' nor 'spacing'; found keys {sorted(map(str, properties))}"
        )
    spacing_array_order = [float(value) for value in properties["spacing"]]
    single_slice = False
    if "shape_before_cropping" in properties:
        transposed_shape = list(properties["shape_before_cropping"])
        order = list(transpose_forward) if transpose_forward is not None else list(range(len(transposed_shape)))
        single_slice = len(transposed_shape) == 3 and transposed_shape[order.index(0)] == 1
    if len(spacing_array_order) == 3 and single_slice:
        spacing_array_order = spacing_array_order[1:]
    warnings.warn(
        "the image properties have no 'sitk_stuff' (origin/direction): landmarks are reported in a frame with "
        f"origin 0, identity direction and spacing {tuple(spacing_array_order[::-1])} mm (ITK order); read images "
        "with nnU-Net's SimpleITKIO to get world coordinates",
        stacklevel=2,
    )
    return ImageGeometry.identity(tuple(spacing_array_order[::-1]))


def decode_preprocessed_heatmaps(heatmaps: Tensor, *, min_confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Landmark positions in nnU-Net's preprocessed array from its heatmaps, in 3D.

    One decoder for every configuration: :func:`~nnunet_babloss.core.heatmaps.decode_heatmaps` over the volume (peak,
    then log-parabola refinement along each axis). A 2D image is a volume of one slice (no refinement along it); the
    slice stack of a 2D configuration on a 3D volume is a 3D heatmap like a 3D configuration's.

    Args:
        heatmaps: ``(K, S0, S1, S2)`` heatmaps in ``[0, 1]`` over the preprocessed array (any float dtype; decoded
            in float32, in groups of channels of at most ``_DECODE_CHUNK_BYTES``, so a large volume with many
            landmarks is never copied whole).
        min_confidence: landmarks whose peak is below this value are absent (NaN).

    Returns:
        ``(coords_vox, confidence)``: ``(K, 3)`` float64 preprocessed indices (NaN rows = absent) and ``(K,)``
        float64 peak values.

    Raises:
        ValueError: ``heatmaps`` is not a 4D floating tensor.
    """
    if not isinstance(heatmaps, Tensor) or heatmaps.ndim != 4 or not heatmaps.is_floating_point():
        got = f"{tuple(heatmaps.shape)} {heatmaps.dtype}" if isinstance(heatmaps, Tensor) else type(heatmaps).__name__
        raise ValueError(f"heatmaps must be a (K, S0, S1, S2) floating tensor, got {got}")
    num_landmarks = heatmaps.shape[0]
    voxels = int(np.prod(heatmaps.shape[1:]))
    chunk = max(1, _DECODE_CHUNK_BYTES // (4 * voxels))
    coords, confidence = [], []
    for start in range(0, num_landmarks, chunk):
        group = heatmaps[start : start + chunk]  # (k, S0, S1, S2); decode_heatmaps works on a float32 copy
        decoded, peak = decode_heatmaps(group[None], min_confidence=min_confidence)
        position = decoded[0].double().numpy()
        position[np.isnan(position).any(axis=1)] = np.nan
        coords.append(position)
        confidence.append(peak[0].double().numpy())
    return np.concatenate(coords), np.concatenate(confidence)


def landmarks_from_preprocessed_heatmaps(
    heatmaps: Tensor,
    properties: Mapping[str, Any],
    transpose_forward: Sequence[int],
    spec: LandmarkSpec,
    *,
    landmark_threshold: float = DEFAULT_LANDMARK_THRESHOLD,
) -> LandmarkSet:
    """Decode heatmaps over a preprocessed case into world landmarks (LPS mm) with confidence.

    Args:
        heatmaps: ``(K, *preprocessed_shape)`` heatmaps in ``[0, 1]``, ``K = spec.num_landmarks``.
        properties: the case's nnU-Net properties (crop box, shapes, ``sitk_stuff``).
        transpose_forward: the plans' ``transpose_forward``.
        spec: the landmark specification (names and order of the channels).
        landmark_threshold: confidence below which a landmark is reported absent.

    Returns:
        A :class:`LandmarkSet` in the spec's order, of the image's dimension; ``confidence`` holds every peak.

    Raises:
        ValueError: the channel count does not match the spec, or the properties are incomplete.
    """
    if heatmaps.shape[0] != spec.num_landmarks:
        raise ValueError(
            f"heatmaps have {heatmaps.shape[0]} channels but the landmark spec names {spec.num_landmarks} landmarks"
        )
    coords, confidence = decode_preprocessed_heatmaps(heatmaps, min_confidence=landmark_threshold)
    geometry = geometry_from_properties(properties, transpose_forward)
    mapping = PreprocessingMap.from_nnunet(properties, transpose_forward, tuple(heatmaps.shape[1:]))
    points_mm = preprocessed_index_to_world(coords, geometry, mapping)
    return LandmarkSet(spec.names, points_mm, confidence)


def landmarks_from_preprocessed_uv(
    segmentation_logits: Tensor,
    uv: Tensor,
    properties: Mapping[str, Any],
    transpose_forward: Sequence[int],
    spec: LandmarkSpec,
    template: DenseSegTemplate,
    queries: Mapping[str, tuple[tuple[str, ...], np.ndarray]] | None = None,
) -> tuple[LandmarkSet, LandmarkSet | None]:
    """Read landmarks out of DenseSeg uv maps over a preprocessed 2D case (nearest-uv soft matching).

    Each structure's landmarks (and queried canonical uv) are matched inside the predicted structure (arg-max of the
    segmentation logits, dilated by ``template.match_margin_mm``). Confidence is ``exp(-d^2 / tau)`` with ``d`` the
    uv distance of the best-matching pixel (1 for an exact match); a landmark is absent (``null``) only when its
    structure is not predicted at all. Landmarks outside every structure are absent.

    Args:
        segmentation_logits: ``(C, 1, H, W)`` logits over the preprocessed case.
        uv: ``(2S, 1, H, W)`` uv maps over the same array.
        properties, transpose_forward: the case's nnU-Net properties and the plans' ``transpose_forward``.
        spec: the landmark specification (names and order of the written landmarks).
        template: the DenseSeg template from the plans.
        queries: parsed extra queries (:func:`~nnunet_babloss.denseseg.uvmaps.parse_uv_queries`), or ``None``.

    Returns:
        ``(landmarks in the spec's order, queried landmarks or None)``, world LPS mm.

    Raises:
        ValueError: the case is not a single 2D slice, or the channel counts do not match the template.
    """
    if segmentation_logits.ndim != 4 or segmentation_logits.shape[1] != 1 or uv.shape[1:] != segmentation_logits.shape[1:]:
        raise ValueError(
            f"DenseSeg reads landmarks from 2D images only: got logits {tuple(segmentation_logits.shape)} and uv "
            f"{tuple(uv.shape)} (expected (C, 1, H, W) and (2S, 1, H, W))"
        )
    if uv.shape[0] != 2 * len(template.structures):
        raise ValueError(f"uv has {uv.shape[0]} channels; the template has {len(template.structures)} structures")
    labels = segmentation_logits[:, 0].float().argmax(0)
    radius = [round(template.match_margin_mm / spacing) for spacing in template.spacing_mm]
    coords = np.full((spec.num_landmarks, 3), np.nan)
    confidence = np.zeros(spec.num_landmarks)
    queried_names: list[str] = []
    queried_coords, queried_confidence = [], []
    for index, structure in enumerate(template.structures):
        region = dilate_region(labels == structure.label_value, radius)
        structure_uv = uv[2 * index : 2 * index + 2, 0].float()
        extra_names, extra_uv = queries.get(structure.label_name, ((), np.zeros((0, 2)))) if queries else ((), np.zeros((0, 2)))
        all_uv = np.concatenate([structure.canonical_uv, extra_uv]) if len(extra_names) else structure.canonical_uv
        found, distance = soft_match_uv(
            structure_uv, region, torch.as_tensor(all_uv, dtype=torch.float32, device=structure_uv.device),
            template.match_k, template.match_tau,
        )
        found_np = found.double().cpu().numpy()
        score = np.exp(-(distance.double().cpu().numpy() ** 2) / template.match_tau)
        rows = list(structure.landmark_indices)
        count = structure.num_landmarks
        coords[rows, 1:] = found_np[:count]
        coords[rows, 0] = 0.0
        confidence[rows] = np.nan_to_num(score[:count])
        if len(extra_names):
            queried_names.extend(extra_names)
            queried_coords.append(np.concatenate([np.zeros((len(extra_names), 1)), found_np[count:]], axis=1))
            queried_confidence.append(np.nan_to_num(score[count:]))
    coords[np.isnan(coords).any(1)] = np.nan
    geometry = geometry_from_properties(properties, transpose_forward)
    mapping = PreprocessingMap.from_nnunet(properties, transpose_forward, tuple(uv.shape[1:]))
    landmarks = LandmarkSet(spec.names, preprocessed_index_to_world(coords, geometry, mapping), confidence)
    queried = None
    if queried_names:
        extra = np.concatenate(queried_coords)
        extra[np.isnan(extra).any(1)] = np.nan
        queried = LandmarkSet(
            tuple(queried_names), preprocessed_index_to_world(extra, geometry, mapping), np.concatenate(queried_confidence)
        )
    return landmarks, queried


class _WidenedLabelManager:
    """nnU-Net's label manager, reporting ``extra_channels`` more output channels (read by the sliding window)."""

    def __init__(self, label_manager: Any, extra_channels: int) -> None:
        self._label_manager = label_manager
        self._extra_channels = extra_channels

    @property
    def num_segmentation_heads(self) -> int:
        return int(self._label_manager.num_segmentation_heads) + self._extra_channels

    def __getattr__(self, name: str) -> Any:
        return getattr(self._label_manager, name)


@dataclass
class _Case:
    """The case being predicted: what landmark decoding and writing need besides the heatmaps."""

    properties: Mapping[str, Any]
    output_file_truncated: str | None
    landmarks: LandmarkSet | None = None
    queried_landmarks: LandmarkSet | None = None


class nnUNetLandmarkPredictor(nnUNetPredictor):  # noqa: N801 (nnU-Net's naming)
    """:class:`nnUNetPredictor` for models trained with our heatmap trainers: segmentation + landmarks.

    Takes nnU-Net's arguments plus:

    Args:
        landmark_threshold: heatmap peak below which a landmark is written as ``null`` (absent), in ``[0, 1]``
            (heatmap models; DenseSeg models report a match confidence and ignore it).
        save_slicer: also write ``<case>.mrk.json`` (3D Slicer markups, LPS) beside each ``<case>.json``.
        uv_queries: DenseSeg models only: extra landmarks to read out without retraining,
            ``{label name: {landmark name: [u, v] or trained landmark name}}`` (canonical uv, see
            :mod:`nnunet_babloss.denseseg.uvmaps`); written to ``queried_landmarks/<case>.json`` beside the outputs.

    The model type comes from the plans: a DenseSeg model (``"bab_denseseg"`` in ``plans.json``) is read out by
    nearest-uv matching (:func:`landmarks_from_preprocessed_uv`), every other one by heatmap decoding.

    Every prediction path of nnU-Net works: ``predict_from_files`` (landmark files beside the segmentations),
    ``predict_from_files_sequential``, ``predict_from_list_of_npy_arrays`` / ``predict_from_data_iterator`` (pass
    ``return_landmarks=True`` to get ``(result, LandmarkSet)`` pairs) and ``predict_single_npy_array`` (returns
    the landmarks too).

    Raises:
        ValueError: (at initialisation) the model has no heatmap head, or ``landmark_threshold`` is outside [0, 1].
    """

    def __init__(
        self,
        tile_step_size: float = 0.5,
        use_gaussian: bool = True,
        use_mirroring: bool = True,
        perform_everything_on_device: bool = True,
        device: torch.device = torch.device("cuda"),
        verbose: bool = False,
        verbose_preprocessing: bool = False,
        allow_tqdm: bool = True,
        *,
        landmark_threshold: float = DEFAULT_LANDMARK_THRESHOLD,
        save_slicer: bool = False,
        uv_queries: Mapping[str, Any] | None = None,
    ) -> None:
        if not 0.0 <= landmark_threshold <= 1.0:
            raise ValueError(f"landmark_threshold must be in [0, 1] (a heatmap peak), got {landmark_threshold}")
        super().__init__(
            tile_step_size, use_gaussian, use_mirroring, perform_everything_on_device, device, verbose,
            verbose_preprocessing, allow_tqdm,
        )
        self.landmark_threshold = float(landmark_threshold)
        self.save_slicer = save_slicer
        self.landmark_spec: LandmarkSpec | None = None
        self.uv_queries = uv_queries
        self.denseseg_template: DenseSegTemplate | None = None
        self._parsed_uv_queries: dict[str, tuple[tuple[str, ...], np.ndarray]] | None = None
        self._case: _Case | None = None
        self._lateral_tensor_axis: int | None = None
        self._mirror_channels: Tensor | None = None
        # Segmentation channel permutation of a left-right flip (paired sided labels), used when the model was trained
        # with side-swapping flips; ``None`` otherwise.
        self._mirror_label_channels: Tensor | None = None

    # ------------------------------------------------------------------ initialisation
    def initialize_from_trained_model_folder(
        self, model_training_output_dir: str, use_folds: tuple[int | str, ...] | None,
        checkpoint_name: str = "checkpoint_final.pth",
    ) -> None:
        """nnU-Net's initialisation from ``<model folder>/fold_X/<checkpoint_name>``, loading weights only.

        The checkpoints are read with ``weights_only=True`` and the allow-list of nnU-Net checkpoints (see
        :mod:`nnunet_babloss.nnunet.checkpoint_loading`): a file holding anything else is refused, never executed.

        Raises:
            ValueError: ``checkpoint_name`` is a path rather than a file name.
            UnsafeCheckpointError: a checkpoint holds types outside the allow-list (the message names the opt-in
                environment variable ``NNUNET_BABLOSS_ALLOW_UNSAFE_CHECKPOINTS``).
        """
        require_checkpoint_file_name(checkpoint_name, "checkpoint_name")
        folds = "the available folds" if use_folds is None else "fold(s) " + ", ".join(map(str, use_folds))
        with weights_only_loading(f"{checkpoint_name} of {folds} in {model_training_output_dir}"):
            super().initialize_from_trained_model_folder(model_training_output_dir, use_folds, checkpoint_name)
        self._enable_heatmaps()

    def manual_initialization(self, network: nn.Module, plans_manager, configuration_manager, parameters,
                              dataset_json: dict, trainer_name: str, inference_allowed_mirroring_axes) -> None:
        super().manual_initialization(network, plans_manager, configuration_manager, parameters, dataset_json,
                                      trainer_name, inference_allowed_mirroring_axes)
        self._enable_heatmaps()

    def _enable_heatmaps(self) -> None:
        network = unwrap_network(self.network)
        if not isinstance(network, SegmentationHeatmapNetwork):
            raise ValueError(
                f"trainer {self.trainer_name!r} built a {type(network).__name__}, which has no landmark heatmap head; "
                "landmark prediction needs a model trained with an nnunet-babloss trainer (HeatmapTrainer, "
                "BaBLossTrainer or a variant). For a segmentation-only model use nnUNetv2_predict."
            )
        self.landmark_spec = landmark_spec_from_plans(self.plans_manager.plans)
        denseseg_block = denseseg_block_from_plans(self.plans_manager.plans)
        self.denseseg_template = None if denseseg_block is None else DenseSegTemplate.from_json(denseseg_block)
        if self.denseseg_template is not None:
            self._enable_uv_maps(network)
            return
        if self.uv_queries:
            raise ValueError(
                f"uv queries need a DenseSeg model (DenseSegTrainer); trainer {self.trainer_name!r} predicts heatmaps"
            )
        if network.num_heatmaps != self.landmark_spec.num_landmarks:
            raise ValueError(
                f"the network has {network.num_heatmaps} heatmap channels but plans.json names "
                f"{self.landmark_spec.num_landmarks} landmarks {list(self.landmark_spec.names)}"
            )
        network.output_heatmaps = True
        permutation = self.landmark_spec.mirror_permutation()
        self._mirror_channels = None if permutation == tuple(range(len(permutation))) else torch.tensor(permutation)
        self._mirror_label_channels = None
        if side_swapping_tta_from_plans(self.plans_manager.plans):
            self._mirror_label_channels = torch.tensor(
                label_channel_permutation(
                    self.landmark_spec.label_value_pairs(labels_from_plans(self.plans_manager.plans)),
                    self.label_manager.all_labels,
                )
            )

    def _enable_uv_maps(self, network: nn.Module) -> None:
        template = self.denseseg_template
        assert template is not None
        if not isinstance(network, SegmentationUVNetwork) or network.num_structures != len(template.structures):
            raise ValueError(
                f"plans.json holds a DenseSeg template with {len(template.structures)} structures but trainer "
                f"{self.trainer_name!r} built a {type(network).__name__}; use the trainer the model was trained with"
            )
        network.output_heatmaps = True
        self._mirror_channels = None
        self._mirror_label_channels = None
        self._parsed_uv_queries = parse_uv_queries(self.uv_queries, template, "uv queries") if self.uv_queries else None

    def _num_extra_channels(self) -> int:
        """Channels the landmark head adds to the sliding window: heatmaps, or DenseSeg's 2 uv maps per structure."""
        if self.denseseg_template is not None:
            return 2 * len(self.denseseg_template.structures)
        return self._require_spec().num_landmarks

    def _require_spec(self) -> LandmarkSpec:
        if self.landmark_spec is None:
            raise RuntimeError("initialise the predictor first (initialize_from_trained_model_folder)")
        return self.landmark_spec

    # ------------------------------------------------------------------ network passes
    def _lateral_axis_for(self, properties: Mapping[str, Any] | None) -> int | None:
        """Tensor axis of a sliding-window patch ``(1, C, *patch)`` along which a flip swaps left and right."""
        if self._mirror_channels is None and self._mirror_label_channels is None:
            return None
        if properties is None:
            # No case geometry: assume the usual frame, patient left-right along the last raw array axis.
            geometry = ImageGeometry.identity((1.0, 1.0, 1.0))
        else:
            geometry = geometry_from_properties(properties, self.plans_manager.transpose_forward)
        patch_axis = lateral_patch_axis(
            geometry, self.plans_manager.transpose_forward, len(self.configuration_manager.patch_size)
        )
        return None if patch_axis is None else patch_axis + 2

    def _with_side_swapping_axis(self, mirror_axes: Sequence[int] | None) -> tuple[int, ...] | None:
        """The checkpoint's mirror axes plus, for a model trained with side-swapping flips, this case's lateral axis."""
        if self._mirror_label_channels is None or self._lateral_tensor_axis is None:
            return None if mirror_axes is None else tuple(mirror_axes)
        return tuple(sorted({*(mirror_axes or ()), self._lateral_tensor_axis - 2}))

    @torch.inference_mode()
    def _internal_maybe_mirror_and_predict(self, x: Tensor) -> Tensor:
        """``concat(segmentation logits, heatmaps)`` of one patch, averaged over the mirror axes like nnU-Net's."""
        mirror_axes = self._with_side_swapping_axis(self.allowed_mirroring_axes) if self.use_mirroring else None
        if self.denseseg_template is not None:
            if mirror_axes:
                raise ValueError(
                    f"DenseSeg uv maps are not mirror-equivariant, but the checkpoint allows mirroring {mirror_axes}; "
                    "predict with --disable_tta"
                )
            output = self.network(x)
            return torch.cat((output.segmentation, output.uv.to(output.segmentation.dtype)), dim=1)
        output = self.network(x)
        # The segmentation accumulates exactly as in nnU-Net (same operations, same order): bit-identical logits.
        segmentation = output.segmentation
        num_heads = segmentation.shape[1]
        combined = segmentation.new_empty((segmentation.shape[0], num_heads + output.heatmap_logits.shape[1],
                                           *segmentation.shape[2:]))
        heatmaps = combined[:, num_heads:]
        heatmaps.copy_(output.heatmap_logits).sigmoid_()
        if mirror_axes is not None:
            if max(mirror_axes) > x.ndim - 3:
                raise ValueError(f"mirror axes {tuple(mirror_axes)} do not fit a {x.ndim - 2}D patch")
            tensor_axes = [axis + 2 for axis in mirror_axes]
            combinations = [c for i in range(len(tensor_axes)) for c in itertools.combinations(tensor_axes, i + 1)]
            for axes in combinations:
                flipped = self.network(torch.flip(x, axes))
                if self._lateral_tensor_axis in axes and self._mirror_label_channels is not None:
                    # Channel c of the flipped image is its partner label's logit (the permutation is an involution).
                    segmentation += torch.flip(flipped.segmentation, axes)[:, self._mirror_label_channels.to(x.device)]
                else:
                    segmentation += torch.flip(flipped.segmentation, axes)
                flipped_heatmaps = torch.flip(flipped.heatmap_logits.sigmoid_(), axes)
                if self._lateral_tensor_axis in axes and self._mirror_channels is not None:
                    # Channel k of the flipped image is its partner's heatmap (the permutation is an involution).
                    heatmaps.index_add_(1, self._mirror_channels.to(heatmaps.device), flipped_heatmaps.to(heatmaps.dtype))
                else:
                    heatmaps += flipped_heatmaps
            segmentation /= len(combinations) + 1
            heatmaps /= len(combinations) + 1
        combined[:, :num_heads] = segmentation
        return combined

    @torch.inference_mode()
    def _internal_predict_sliding_window_return_logits(self, data: Tensor, slicers, do_on_device: bool = True):
        """nnU-Net's sliding window, with room for the heatmap channels in its preallocated output."""
        label_manager = self.label_manager
        self.label_manager = _WidenedLabelManager(label_manager, self._num_extra_channels())
        try:
            return super()._internal_predict_sliding_window_return_logits(data, slicers, do_on_device)
        finally:
            self.label_manager = label_manager

    @torch.inference_mode()
    def predict_logits_from_preprocessed_data(self, data: Tensor) -> Tensor:
        """nnU-Net's fold-averaged segmentation logits; the heatmaps of the same pass become the case's landmarks.

        Returns:
            ``(num_segmentation_heads, *data.shape[1:])`` logits, exactly what :class:`nnUNetPredictor` returns.
        """
        spec = self._require_spec()
        case = self._case
        self._lateral_tensor_axis = self._lateral_axis_for(None if case is None else case.properties)
        if self.list_of_parameters is None:  # manual_initialization without weights: use the network as it is
            combined = self.predict_sliding_window_return_logits(data).to("cpu")
        else:
            combined = super().predict_logits_from_preprocessed_data(data)
        num_heads = self.label_manager.num_segmentation_heads
        if case is not None and self.denseseg_template is not None:
            case.landmarks, case.queried_landmarks = landmarks_from_preprocessed_uv(
                combined[:num_heads], combined[num_heads:], case.properties, self.plans_manager.transpose_forward, spec,
                self.denseseg_template, self._parsed_uv_queries,
            )
            if case.output_file_truncated is not None:
                self.write_landmark_files(case.landmarks, case.output_file_truncated)
                if case.queried_landmarks is not None:
                    folder = Path(case.output_file_truncated).parent / QUERIED_LANDMARKS_FOLDER
                    folder.mkdir(exist_ok=True)
                    temporary = folder / f".partial-{Path(case.output_file_truncated).name}{LANDMARK_FILE_SUFFIX}"
                    write_landmarks(temporary, case.queried_landmarks)
                    os.replace(temporary, folder / f"{Path(case.output_file_truncated).name}{LANDMARK_FILE_SUFFIX}")
        elif case is not None:
            case.landmarks = landmarks_from_preprocessed_heatmaps(
                combined[num_heads:], case.properties, self.plans_manager.transpose_forward, spec,
                landmark_threshold=self.landmark_threshold,
            )
            if case.output_file_truncated is not None:
                self.write_landmark_files(case.landmarks, case.output_file_truncated)
        return combined[:num_heads]

    def write_landmark_files(self, landmarks: LandmarkSet, output_file_truncated: str | os.PathLike[str]) -> None:
        """Write ``<output_file_truncated>.json`` (and ``.mrk.json`` with ``save_slicer``), each atomically."""
        targets = [(str(output_file_truncated) + LANDMARK_FILE_SUFFIX, landmarks)]
        if self.save_slicer:
            targets.append((str(output_file_truncated) + SLICER_FILE_SUFFIX, replace(landmarks, confidence=None)))
        for path, content in targets:
            # The temporary name keeps the suffix, which selects the format.
            temporary = Path(path).with_name(f".partial-{Path(path).name}")
            write_landmarks(temporary, content)
            os.replace(temporary, path)

    # ------------------------------------------------------------------ prediction paths
    def predict_from_data_iterator(
        self, data_iterator: Iterable[dict], save_probabilities: bool = False,
        num_processes_segmentation_export: int = default_num_processes, *, return_landmarks: bool = False,
    ) -> list:
        """nnU-Net's batch prediction (used by ``predict_from_files`` and ``predict_from_list_of_npy_arrays``).

        Items with an ``'ofile'`` get ``<ofile>.json`` landmark files. With ``return_landmarks`` the result is a
        list of ``(nnU-Net's result, LandmarkSet)`` pairs in input order; otherwise it is nnU-Net's list.
        """
        cases: list[_Case] = []

        def tracked() -> Iterator[dict]:
            # nnU-Net predicts each item right after taking it from the iterator: record its properties first.
            for item in data_iterator:
                self._case = _Case(item["data_properties"], item["ofile"])
                cases.append(self._case)
                yield item
            self._case = None

        try:
            results = super().predict_from_data_iterator(tracked(), save_probabilities, num_processes_segmentation_export)
        finally:
            self._case = None
            if isinstance(data_iterator, MultiThreadedAugmenter):
                data_iterator._finish()
        if return_landmarks:
            return [(result, case.landmarks) for result, case in zip(results, cases)]
        return results

    def predict_from_list_of_npy_arrays(
        self, image_or_list_of_images, segs_from_prev_stage_or_list_of_segs_from_prev_stage,
        properties_or_list_of_properties, truncated_ofname, num_processes: int = 3, save_probabilities: bool = False,
        num_processes_segmentation_export: int = default_num_processes, *, return_landmarks: bool = False,
    ) -> list:
        """nnU-Net's in-memory batch prediction; ``return_landmarks`` as in :meth:`predict_from_data_iterator`."""
        iterator = self.get_data_iterator_from_raw_npy_data(
            image_or_list_of_images, segs_from_prev_stage_or_list_of_segs_from_prev_stage,
            properties_or_list_of_properties, truncated_ofname, num_processes,
        )
        return self.predict_from_data_iterator(
            iterator, save_probabilities, num_processes_segmentation_export, return_landmarks=return_landmarks
        )

    def _predict_item(self, item: dict, save_probabilities: bool) -> tuple[Any, LandmarkSet]:
        """Predict one preprocessed item in this process; export or return the segmentation."""
        case = _Case(item["data_properties"], item["ofile"])
        self._case = case
        try:
            logits = self.predict_logits_from_preprocessed_data(item["data"]).cpu()
        finally:
            self._case = None
        if case.landmarks is None:  # pragma: no cover - predict_logits_from_preprocessed_data always sets them
            raise RuntimeError("the landmarks of the case were not decoded")
        if case.output_file_truncated is not None:
            export_prediction_from_logits(
                logits, case.properties, self.configuration_manager, self.plans_manager, self.dataset_json,
                case.output_file_truncated, save_probabilities,
            )
            return None, case.landmarks
        result = convert_predicted_logits_to_segmentation_with_correct_shape(
            logits, self.plans_manager, self.configuration_manager, self.label_manager, case.properties,
            save_probabilities,
        )
        return result, case.landmarks

    def predict_single_npy_array(
        self, input_image: np.ndarray, image_properties: dict, segmentation_previous_stage: np.ndarray | None = None,
        output_file_truncated: str | None = None, save_or_return_probabilities: bool = False,
    ):
        """Predict one image given as an array (see nnU-Net's docstring for the axis order), with landmarks.

        Returns:
            With ``output_file_truncated``: the :class:`LandmarkSet` (segmentation and landmark files are written).
            Otherwise ``(segmentation, landmarks)``, or ``(segmentation, probabilities, landmarks)`` with
            ``save_or_return_probabilities``.
        """
        adapter = PreprocessAdapterFromNpy(
            [input_image], [segmentation_previous_stage], [image_properties], [output_file_truncated],
            self.plans_manager, self.dataset_json, self.configuration_manager, num_threads_in_multithreaded=1,
            verbose=self.verbose,
        )
        result, landmarks = self._predict_item(next(adapter), save_or_return_probabilities)
        if output_file_truncated is not None:
            return landmarks
        if save_or_return_probabilities:
            return result[0], result[1], landmarks
        return result, landmarks

    def predict_from_files_sequential(
        self, list_of_lists_or_source_folder: str | list[list[str]],
        output_folder_or_list_of_truncated_output_files: str | None | list[str], save_probabilities: bool = False,
        overwrite: bool = True, folder_with_segs_from_prev_stage: str | None = None, *,
        return_landmarks: bool = False,
    ) -> list:
        """Like ``predict_from_files`` without any worker process (slow, but sometimes necessary).

        Returns:
            nnU-Net's list (results of cases without an output file); with ``return_landmarks`` one
            ``(result or None, LandmarkSet)`` pair per case.

        Raises:
            ValueError: a cascaded configuration without ``folder_with_segs_from_prev_stage``.
        """
        if isinstance(output_folder_or_list_of_truncated_output_files, str):
            output_folder: str | None = output_folder_or_list_of_truncated_output_files
        elif isinstance(output_folder_or_list_of_truncated_output_files, list):
            output_folder = os.path.dirname(output_folder_or_list_of_truncated_output_files[0]) or os.path.curdir
        else:
            output_folder = None
        if output_folder is not None:
            arguments: dict[str, Any] = deepcopy(
                {
                    "list_of_lists_or_source_folder": list_of_lists_or_source_folder,
                    "output_folder_or_list_of_truncated_output_files": output_folder_or_list_of_truncated_output_files,
                    "save_probabilities": save_probabilities,
                    "overwrite": overwrite,
                    "folder_with_segs_from_prev_stage": folder_with_segs_from_prev_stage,
                }
            )
            recursive_fix_for_json_export(arguments)
            os.makedirs(output_folder, exist_ok=True)
            save_json(arguments, join(output_folder, "predict_from_raw_data_args.json"))
            save_json(self.dataset_json, join(output_folder, "dataset.json"), sort_keys=False)
            save_json(self.plans_manager.plans, join(output_folder, "plans.json"), sort_keys=False)
        if self.configuration_manager.previous_stage_name is not None and folder_with_segs_from_prev_stage is None:
            raise ValueError(
                f"configuration is cascaded: give the predictions of stage "
                f"{self.configuration_manager.previous_stage_name!r} (folder_with_segs_from_prev_stage)"
            )
        inputs, output_files, previous_stage_files = self._manage_input_and_output_lists(
            list_of_lists_or_source_folder, output_folder_or_list_of_truncated_output_files,
            folder_with_segs_from_prev_stage, overwrite, 0, 1, save_probabilities,
        )
        if not inputs:
            return []
        output_files = output_files if output_files is not None else [None] * len(inputs)
        preprocessor = self.configuration_manager.preprocessor_class(verbose=self.verbose_preprocessing)
        results = []
        for files, output_file, previous_stage_file in zip(inputs, output_files, previous_stage_files):
            data, segmentation, properties = preprocessor.run_case(
                files, previous_stage_file, self.plans_manager, self.configuration_manager, self.dataset_json
            )
            if previous_stage_file is not None:
                one_hot = convert_labelmap_to_one_hot(segmentation[0], self.label_manager.foreground_labels, data.dtype)
                data = np.vstack((data, one_hot))
            item = {"data": torch.from_numpy(data), "data_properties": properties, "ofile": output_file}
            result, landmarks = self._predict_item(item, save_probabilities)
            if return_landmarks:
                results.append((result, landmarks))
            elif output_file is None:
                results.append(result)
        compute_gaussian.cache_clear()
        empty_cache(self.device)
        return results

    def predict_preprocessed_case(
        self, data: Tensor, properties: Mapping[str, Any], output_file_truncated: str | os.PathLike[str] | None = None
    ) -> tuple[Tensor, LandmarkSet]:
        """Segmentation logits (preprocessed space) and landmarks of an already preprocessed case.

        Args:
            data: ``(C, *preprocessed_shape)`` preprocessed image (e.g. from nnU-Net's dataset ``load_case``).
            properties: its nnU-Net properties.
            output_file_truncated: if given, the landmark files are written there (no segmentation is exported).

        Returns:
            ``(logits, landmarks)`` with ``logits`` of shape ``(num_segmentation_heads, *preprocessed_shape)``.
        """
        case = _Case(properties, None if output_file_truncated is None else str(output_file_truncated))
        self._case = case
        try:
            logits = self.predict_logits_from_preprocessed_data(data)
        finally:
            self._case = None
        if case.landmarks is None:  # pragma: no cover - predict_logits_from_preprocessed_data always sets them
            raise RuntimeError("the landmarks of the case were not decoded")
        return logits, case.landmarks
