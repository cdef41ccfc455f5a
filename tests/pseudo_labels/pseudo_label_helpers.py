"""Helpers for the pseudo-label tests: a tiny nnU-Net raw dataset from the real JSRT fixture, a tiny random SAM."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from dataset_conversion.landmark_sources import jsrt_pixel_centres
from nnunet_babloss.core.landmarks.io import LandmarkSet, write_landmarks

JSRT_SPACING_MM = 1.4
# SCR contour groups -> (label name, label value, bit in labels_bits/<ID>.png).
JSRT_ORGANS: dict[str, tuple[str, int, int]] = {
    "RL": ("right_lung", 1, 1),
    "LL": ("left_lung", 2, 2),
    "H": ("heart", 3, 4),
    "RCLA": ("right_clavicle", 4, 8),
    "LCLA": ("left_clavicle", 5, 16),
}
JSRT_LABELS = {"background": 0, **{name: value for name, value, _ in JSRT_ORGANS.values()}, "ignore": 6}


def jsrt_landmarks_vox(landmark_json: dict, group: str) -> np.ndarray:
    """SCR landmarks of one group as voxel indices ``(row, col)``.

    The files count from pixel edges; :func:`~dataset_conversion.landmark_sources.jsrt_pixel_centres` turns them
    into our centre-at-integer convention (on the fixture, filling the polygon then agrees with the SCR masks at
    mean Dice 0.98-0.99, vs 0.91-0.99 without the shift).
    """
    points_xy = np.asarray(landmark_json["landmarks"][group], dtype=np.float64)
    return jsrt_pixel_centres(points_xy, landmark_json.get("image_size_wh"))[:, ::-1]


def jsrt_mask(fixture: Path, case: str, group: str) -> np.ndarray:
    """Real SCR mask of one organ, from the bit-flag label image."""
    from PIL import Image

    bits = np.asarray(Image.open(fixture / "labels_bits" / f"{case}.png"))
    return (bits & JSRT_ORGANS[group][2]) > 0


def write_jsrt_raw_dataset(
    fixture: Path, root: Path, landmark_only: Sequence[str], both: Sequence[str] = ()
) -> Path:
    """An nnU-Net raw 2D dataset (NIfTI, 1.4 mm, origin 0) from ``jsrt_fixture_256``.

    Landmark-only cases get an all-``ignore`` label map, ``both`` cases the exclusive SCR label map; every case gets
    ``landmarksTr/<case>.json`` in world mm (``x = col * 1.4``, ``y = row * 1.4``).
    """
    from PIL import Image

    names: list[str] = []
    bridge: dict[str, list[str]] = {}
    first = json.loads((fixture / "landmarks" / f"{[*landmark_only, *both][0]}.json").read_text())
    for group, (label_name, _, _) in JSRT_ORGANS.items():
        for index in range(len(first["landmarks"][group])):
            name = f"{group}_{index:02d}"
            names.append(name)
            bridge[name] = [label_name]
    for folder in ("imagesTr", "labelsTr", "landmarksTr"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for case in [*landmark_only, *both]:
        image = sitk.GetImageFromArray(np.asarray(Image.open(fixture / "images" / f"{case}.png")).astype(np.uint8))
        image.SetSpacing((JSRT_SPACING_MM, JSRT_SPACING_MM))
        sitk.WriteImage(image, str(root / "imagesTr" / f"{case}_0000.nii.gz"))
        if case in both:
            labels = np.asarray(Image.open(fixture / "labels" / f"{case}.png")).astype(np.uint8)
        else:
            labels = np.full(image.GetSize()[::-1], JSRT_LABELS["ignore"], dtype=np.uint8)
        label_image = sitk.GetImageFromArray(labels)
        label_image.CopyInformation(image)
        sitk.WriteImage(label_image, str(root / "labelsTr" / f"{case}.nii.gz"))
        landmark_json = json.loads((fixture / "landmarks" / f"{case}.json").read_text())
        points = np.concatenate([jsrt_landmarks_vox(landmark_json, group) for group in JSRT_ORGANS])
        write_landmarks(
            root / "landmarksTr" / f"{case}.json",
            LandmarkSet(tuple(names), points[:, ::-1] * JSRT_SPACING_MM),
        )
    dataset_json = {
        "name": "JSRT fixture",
        "channel_names": {"0": "X-ray"},
        "labels": JSRT_LABELS,
        "numTraining": len(landmark_only) + len(both),
        "file_ending": ".nii.gz",
        "landmarks": {"names": names, "bridge": bridge, "sigma_mm": 2.8, "boundary_range_mm": 5.0},
    }
    (root / "dataset.json").write_text(json.dumps(dataset_json, indent=1))
    return root


def tiny_sam(image_size: int = 64, seed: int = 0):  # noqa: ANN201 - segment_anything.modeling.Sam
    """A randomly initialised SAM small enough for unit tests (image encoder 1 block, width 16; 4 x 4 embedding)."""
    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(seed)
    patch_size, embedding_dim = 16, 16
    grid = image_size // patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=image_size,
            patch_size=patch_size,
            embed_dim=16,
            depth=1,
            num_heads=1,
            out_chans=embedding_dim,
            window_size=0,
            global_attn_indexes=(),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=embedding_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size),
            mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=1, embedding_dim=embedding_dim, mlp_dim=32, num_heads=2),
            transformer_dim=embedding_dim,
            iou_head_depth=2,
            iou_head_hidden_dim=16,
        ),
    ).eval()
