"""Overlay PNGs for a quick visual check: image, predicted mask contours, predicted vs reference landmarks.

2D images give one PNG per case; 3D images give one PNG per axial (array axis 0) slice: the middle slice and every
slice that holds a predicted or reference landmark (a landmark is drawn on the slice whose centre is within half a
voxel of it). Pixels are drawn with their physical aspect ratio. matplotlib is imported only when drawing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_babloss.core.landmarks.geometry import ImageGeometry
from nnunet_babloss.core.landmarks.io import LandmarkSet, read_landmarks
from nnunet_babloss.core.landmarks.spec import LandmarkSpec

__all__ = ["overlay_slices", "write_case_overlays"]

_INTENSITY_PERCENTILES = (1.0, 99.0)
_CONTOUR_COLOURS = ("#ff7f0e", "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_PREDICTED_COLOUR = "#ff2020"
_REFERENCE_COLOUR = "#20ff40"
_DPI = 100


def overlay_slices(num_slices: int, landmark_slice_indices: Sequence[float]) -> list[int]:
    """Axial slices to draw for a 3D image: the middle one and the nearest slice of every landmark, sorted.

    Args:
        num_slices: size of array axis 0.
        landmark_slice_indices: continuous axis-0 indices of the landmarks (NaN and out-of-range ones are ignored).
    """
    chosen = {num_slices // 2}
    for index in landmark_slice_indices:
        if np.isfinite(index) and -0.5 <= index < num_slices - 0.5:
            chosen.add(int(np.floor(index + 0.5)))
    return sorted(chosen)


def _landmark_indices(landmarks: LandmarkSet | None, geometry: ImageGeometry) -> np.ndarray | None:
    """``(K, D)`` continuous array indices of a landmark set in the image (NaN rows absent)."""
    if landmarks is None:
        return None
    if landmarks.dimension != geometry.dimension:
        raise ValueError(
            f"landmarks are {landmarks.dimension}D but the image is {geometry.dimension}D (names {list(landmarks.names)})"
        )
    return geometry.world_to_index(landmarks.points_mm)


def write_case_overlays(
    case: str,
    *,
    image_path: Path,
    prediction_labels_path: Path | None,
    predicted_landmarks_path: Path | None,
    reference_landmarks_path: Path | None,
    output_folder: Path,
    spec: LandmarkSpec | None = None,
    label_names: Mapping[int, str] | None = None,
) -> list[Path]:
    """Draw the overlays of one case and return the PNG paths (``<case>.png`` or ``<case>_z<slice>.png``).

    ``label_names`` names the contours in the legend (``{value: name}``, e.g. from dataset.json).

    Raises:
        FileNotFoundError: the image does not exist.
        ValueError: the predicted label map does not have the image's size, or landmark dimensions differ.
    """
    if not image_path.is_file():
        raise FileNotFoundError(f"image for the overlay of case {case!r} not found: {image_path}")
    image = sitk.ReadImage(str(image_path))
    if image.GetNumberOfComponentsPerPixel() > 1:
        image = sitk.VectorIndexSelectionCast(image, 0)
    geometry = ImageGeometry.from_sitk(image)
    pixels = sitk.GetArrayFromImage(image).astype(np.float64)
    labels = None
    if prediction_labels_path is not None:
        label_image = sitk.ReadImage(str(prediction_labels_path))
        if label_image.GetSize() != image.GetSize():
            raise ValueError(
                f"overlay of case {case!r}: {prediction_labels_path} has size {label_image.GetSize()} but the image "
                f"{image_path} has size {image.GetSize()}"
            )
        labels = sitk.GetArrayFromImage(label_image)
    predicted = _landmark_indices(
        None if predicted_landmarks_path is None else read_landmarks(predicted_landmarks_path, spec), geometry
    )
    reference = _landmark_indices(
        None if reference_landmarks_path is None else read_landmarks(reference_landmarks_path, spec), geometry
    )
    output_folder.mkdir(parents=True, exist_ok=True)
    low, high = np.percentile(pixels, _INTENSITY_PERCENTILES)
    aspect = geometry.spacing_mm_array_order[-2] / geometry.spacing_mm_array_order[-1]  # row height / column width
    if geometry.dimension == 2:
        path = output_folder / f"{case}.png"
        _draw(path, pixels, labels, predicted, reference, (low, high), aspect, case, label_names or {})
        return [path]
    slice_positions = [points[:, 0] for points in (predicted, reference) if points is not None]
    written = []
    for slice_index in overlay_slices(pixels.shape[0], np.concatenate(slice_positions) if slice_positions else []):
        path = output_folder / f"{case}_z{slice_index:03d}.png"
        _draw(
            path, pixels[slice_index], None if labels is None else labels[slice_index],
            _on_slice(predicted, slice_index), _on_slice(reference, slice_index), (low, high), aspect,
            f"{case}, slice {slice_index}", label_names or {},
        )
        written.append(path)
    return written


def _on_slice(points: np.ndarray | None, slice_index: int) -> np.ndarray | None:
    """In-plane ``(K, 2)`` indices of the landmarks within half a voxel of the slice (others NaN)."""
    if points is None:
        return None
    in_plane = points[:, 1:].copy()
    with np.errstate(invalid="ignore"):
        in_plane[~(np.abs(points[:, 0] - slice_index) <= 0.5)] = np.nan
    return in_plane


def _draw(
    path: Path,
    pixels: np.ndarray,
    labels: np.ndarray | None,
    predicted: np.ndarray | None,
    reference: np.ndarray | None,
    window: tuple[float, float],
    aspect: float,
    title: str,
    label_names: Mapping[int, str],
) -> None:
    """Render one 2D overlay (points as ``(K, 2)`` (row, column) indices) to ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    rows, columns = pixels.shape
    width_inch = max(4.0, min(10.0, columns / _DPI * 2))
    figure = Figure(figsize=(width_inch, width_inch * rows * aspect / columns + 0.6), dpi=_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.0, 0.0, 1.0, 0.92))
    axes.imshow(pixels, cmap="gray", vmin=window[0], vmax=max(window[1], window[0] + 1e-6), aspect=aspect,
                interpolation="nearest")
    handles = []
    if labels is not None:
        for number, value in enumerate(sorted(int(v) for v in np.unique(labels) if v != 0)):
            colour = _CONTOUR_COLOURS[number % len(_CONTOUR_COLOURS)]
            mask = (labels == value).astype(np.float32)
            if mask.any() and mask.min() < 1:
                axes.contour(mask, levels=[0.5], colors=[colour], linewidths=1.0)
            handles.append(Line2D([], [], color=colour, label=label_names.get(value, f"label {value}")))
    if predicted is not None and reference is not None:
        for p, r in zip(predicted, reference):
            if not (np.isnan(p).any() or np.isnan(r).any()):
                axes.plot([p[1], r[1]], [p[0], r[0]], color="yellow", linewidth=0.8)
    for points, colour, marker, label in (
        (reference, _REFERENCE_COLOUR, "o", "reference landmark"),
        (predicted, _PREDICTED_COLOUR, "+", "predicted landmark"),
    ):
        if points is None:
            continue
        shown = points[~np.isnan(points).any(axis=1)]
        if marker == "o":
            axes.scatter(shown[:, 1], shown[:, 0], marker=marker, s=40, linewidths=1.2, facecolors="none",
                         edgecolors=colour)
        else:
            axes.scatter(shown[:, 1], shown[:, 0], marker=marker, s=40, linewidths=1.2, color=colour)
        handles.append(Line2D([], [], color=colour, marker=marker, linestyle="none", label=label))
    axes.set_xlim(-0.5, columns - 0.5)
    axes.set_ylim(rows - 0.5, -0.5)
    axes.set_axis_off()
    if handles:
        axes.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.6)
    figure.suptitle(title, fontsize=9)
    figure.savefig(path, dpi=_DPI)
