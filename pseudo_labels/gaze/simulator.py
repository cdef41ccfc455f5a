"""A gaze simulator: plausible fixation sequences over a known mask, written in the GazeMedSeg CSV layout.

There is no recorded gaze for the data on these machines, so tests and benchmarks use *simulated* gaze; every
number derived from it must say so. The simulation follows GazeMedSeg's two-stage annotation protocol (annotators
first locate the target, then scan it thoroughly from its central area to its boundary):

1. **locate**: ``locate_fixations`` short fixations on the way from the image centre (where a trial starts) to the
   centroid of the structure's largest part;
2. **scan**: ``scan_fixations`` longer fixations inside the structure, shared between its connected parts by area
   (at least 2 each, largest part first). Within a part the fixations visit depth bands from the centre outwards:
   fixation ``i`` of ``n`` is drawn among the pixels whose normalised depth (distance to the boundary / the part's
   largest distance) is closest to ``1 − 0.9 · i / (n − 1)``, i.e. from the deepest point to just inside the
   boundary;
3. **off target**: ``off_target_fixations`` short fixations anywhere outside the structure, inserted at random
   places after the locate stage (glances at context).

Every position gets isotropic Gaussian noise of ``noise_fraction × max(H, W)`` (eye-tracker inaccuracy) and is
clipped to the image. Durations are log-normal (median and spread per stage, floored at 50 ms, GazeMedSeg's filter);
start times accumulate durations plus ``saccade_ms`` per saccade; the pupil size is a nuisance value around 1000.
All randomness comes from ``numpy.random.default_rng((seed, crc32(image name)))``: one image's sequence does not
depend on which other images are simulated. Pure numpy/scipy: no nnU-Net import.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from nnunet_babloss.core.provenance import utc_timestamp, write_json
from pseudo_labels.gaze.gaze_csv import FixationSequence, write_gaze_csv

__all__ = [
    "SIMULATION_SIDECAR_SUFFIX",
    "GazeSimulationSettings",
    "simulate_fixations",
    "simulation_sidecar",
    "write_simulated_gaze_csv",
]

SIMULATION_SIDECAR_SUFFIX = ".simulation.json"
"""``gaze.csv`` → ``gaze.simulation.json``: written beside a simulated CSV; its presence marks the gaze simulated."""
_MIN_DURATION_MS = 50.0
_MIN_PART_FRACTION = 0.01  # connected parts smaller than this fraction of the mask are not scanned separately


@dataclass(frozen=True)
class GazeSimulationSettings:
    """Parameters of :func:`simulate_fixations` (see the module docstring for the model).

    Attributes:
        locate_fixations: Fixations of the locate stage (>= 0).
        scan_fixations: Fixations of the scan stage, over all parts of the structure (>= 1).
        off_target_fixations: Fixations outside the structure (>= 0).
        noise_fraction: Spatial noise σ as a fraction of the image's longest side (>= 0).
        locate_median_ms, scan_median_ms, off_target_median_ms: Median durations per stage (ms).
        duration_spread: σ of the log-durations (>= 0).
        saccade_ms: Time between two fixations (ms).
    """

    locate_fixations: int = 3
    scan_fixations: int = 24
    off_target_fixations: int = 2
    noise_fraction: float = 0.01
    locate_median_ms: float = 180.0
    scan_median_ms: float = 320.0
    off_target_median_ms: float = 150.0
    duration_spread: float = 0.35
    saccade_ms: float = 40.0

    def __post_init__(self) -> None:
        for name in ("locate_fixations", "off_target_fixations"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.scan_fixations < 1:
            raise ValueError(f"scan_fixations must be >= 1, got {self.scan_fixations}")
        for name in ("noise_fraction", "duration_spread", "saccade_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("locate_median_ms", "scan_median_ms", "off_target_median_ms"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


def _parts(mask: NDArray[np.bool_]) -> list[NDArray[np.bool_]]:
    labelled, count = ndimage.label(mask)
    sizes = ndimage.sum_labels(mask, labelled, index=np.arange(1, count + 1))
    order = np.argsort(-sizes, kind="stable")
    keep = [index + 1 for index in order if sizes[index] >= _MIN_PART_FRACTION * mask.sum()]
    return [labelled == label for label in keep]


def _split(total: int, weights: list[float]) -> list[int]:
    minimum = 2 if total >= 2 * len(weights) else 1
    counts = [minimum] * len(weights)
    remaining = total - minimum * len(weights)
    if remaining < 0:
        return [1 if index < total else 0 for index in range(len(weights))]
    shares = np.asarray(weights, dtype=np.float64) / float(np.sum(weights)) * remaining
    extra = np.floor(shares).astype(int)
    for index in np.argsort(-(shares - extra), kind="stable")[: remaining - int(extra.sum())]:
        extra[index] += 1
    return [count + int(add) for count, add in zip(counts, extra)]


def _scan_part(part: NDArray[np.bool_], count: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """``(count, 2)`` pixel positions visiting the part from its deepest point towards its boundary."""
    depth = ndimage.distance_transform_edt(part)
    rows, cols = np.nonzero(part)
    normalised = depth[rows, cols] / depth[rows, cols].max()
    targets = 1.0 - 0.9 * (np.arange(count) / (count - 1) if count > 1 else np.zeros(1))
    positions = np.empty((count, 2))
    band = max(0.05, 0.5 / max(count, 1))
    for index, target in enumerate(targets):
        candidates = np.nonzero(np.abs(normalised - target) <= band)[0]
        if candidates.size == 0:
            candidates = np.array([int(np.argmin(np.abs(normalised - target)))])
        choice = int(rng.choice(candidates))
        positions[index] = (rows[choice], cols[choice])
    return positions


def _durations(median_ms: float, spread: float, count: int, rng: np.random.Generator) -> NDArray[np.float64]:
    values = median_ms * np.exp(spread * rng.standard_normal(count))
    return np.maximum(np.round(values), _MIN_DURATION_MS)


def _off_target_positions(mask: NDArray[np.bool_], count: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """``(count, 2)`` pixel positions drawn outside the structure (none if ``count`` is 0 or nothing is outside)."""
    outside_rows, outside_cols = np.nonzero(~mask)
    if count and outside_rows.size:
        picks = rng.choice(outside_rows.size, size=count, replace=True)
        off_target = np.stack([outside_rows[picks], outside_cols[picks]], axis=1).astype(np.float64)
    else:
        off_target = np.zeros((0, 2))
    return off_target


def _sequence_with_durations(
    locate: NDArray[np.float64],
    scan: NDArray[np.float64],
    off_target: NDArray[np.float64],
    settings: GazeSimulationSettings,
    rng: np.random.Generator,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Positions and durations in viewing order: locate, then scan with the off-target glances inserted at random."""
    positions = [locate, scan]
    durations = [
        _durations(settings.locate_median_ms, settings.duration_spread, len(locate), rng),
        _durations(settings.scan_median_ms, settings.duration_spread, len(scan), rng),
    ]
    body_positions = np.concatenate(positions[1:])
    body_durations = np.concatenate(durations[1:])
    if len(off_target):
        off_durations = _durations(settings.off_target_median_ms, settings.duration_spread, len(off_target), rng)
        for position, duration in zip(off_target, off_durations):
            slot = int(rng.integers(0, len(body_positions) + 1))
            body_positions = np.insert(body_positions, slot, position, axis=0)
            body_durations = np.insert(body_durations, slot, duration)
    all_positions = np.concatenate([locate, body_positions])
    all_durations = np.concatenate([durations[0], body_durations])
    return all_positions, all_durations


def simulate_fixations(
    mask: NDArray[np.generic], image: str, settings: GazeSimulationSettings = GazeSimulationSettings(), seed: int = 0
) -> FixationSequence:
    """One simulated fixation sequence over the foreground of ``mask``.

    Args:
        mask: ``(H, W)`` mask; nonzero = the structure the annotator looks at.
        image: The ``IMAGE`` identifier to write (also seeds the image's random stream).
        settings: Simulation parameters.
        seed: Global seed.

    Returns:
        A :class:`FixationSequence` with normalised coordinates, durations, indices ``1..N``, start times, pupil
        sizes and the image size.

    Raises:
        ValueError: ``mask`` is not 2D or has no foreground.
    """
    mask = np.asarray(mask) != 0
    if mask.ndim != 2:
        raise ValueError(f"image {image!r}: the simulator needs a 2D mask, got shape {mask.shape}")
    if not mask.any():
        raise ValueError(f"image {image!r}: the mask has no foreground; there is nothing to look at")
    rng = np.random.default_rng((int(seed), zlib.crc32(image.encode("utf-8"))))
    height, width = mask.shape
    parts = _parts(mask)

    start = np.array([(height - 1) / 2.0, (width - 1) / 2.0])
    centroid = np.array(ndimage.center_of_mass(parts[0]))
    steps = np.arange(1, settings.locate_fixations + 1) / (settings.locate_fixations + 1)
    locate = start + steps[:, None] * (centroid - start)
    scan = np.concatenate(
        [
            _scan_part(part, count, rng)
            for part, count in zip(parts, _split(settings.scan_fixations, [float(part.sum()) for part in parts]))
            if count > 0
        ]
    )
    off_target = _off_target_positions(mask, settings.off_target_fixations, rng)
    all_positions, all_durations = _sequence_with_durations(locate, scan, off_target, settings, rng)

    noise_px = settings.noise_fraction * max(height, width)
    all_positions = all_positions + noise_px * rng.standard_normal(all_positions.shape)
    # Pixel index (row, col) -> normalised (x, y): x = (col + 0.5) / W, y = (row + 0.5) / H, clipped to the image.
    x = np.clip((all_positions[:, 1] + 0.5) / width, 0.0, 1.0)
    y = np.clip((all_positions[:, 0] + 0.5) / height, 0.0, 1.0)
    starts = np.concatenate([[0.0], np.cumsum(all_durations[:-1] + settings.saccade_ms)])
    pupil = np.round(1000.0 + 50.0 * rng.standard_normal(len(x)))
    return FixationSequence(
        image=image,
        x=x,
        y=y,
        duration_ms=all_durations,
        index=np.arange(1, len(x) + 1, dtype=np.int64),
        start_ms=starts,
        pupil=pupil,
        image_height=height,
        image_width=width,
    )


def simulation_sidecar(csv_path: str | os.PathLike[str]) -> Path:
    """The sidecar JSON that marks ``csv_path`` as simulated (``gaze.csv`` → ``gaze.simulation.json``)."""
    path = Path(csv_path)
    return path.with_name(path.stem + SIMULATION_SIDECAR_SUFFIX)


def write_simulated_gaze_csv(
    masks: Mapping[str, NDArray[np.generic]],
    csv_path: str | os.PathLike[str],
    settings: GazeSimulationSettings = GazeSimulationSettings(),
    seed: int = 0,
    description: Mapping[str, Any] | None = None,
) -> dict[str, FixationSequence]:
    """Simulate gaze for every ``{image: mask}`` (sorted by name), write the CSV and its ``.simulation.json``.

    Args:
        masks: Image identifier → 2D mask of the looked-at structure.
        csv_path: Output CSV (GazeMedSeg layout).
        settings: Simulation parameters.
        seed: Global seed.
        description: Extra provenance for the sidecar (e.g. which structure the masks show).

    Returns:
        The simulated sequences by image.
    """
    sequences = {name: simulate_fixations(masks[name], name, settings, seed) for name in sorted(masks)}
    csv_path = Path(csv_path)
    write_gaze_csv(csv_path, sequences)
    sidecar = {
        "simulated": True,
        "tool": "pseudo_labels.gaze.simulator",
        "created_utc": utc_timestamp(),
        "seed": int(seed),
        "settings": asdict(settings),
        "images": len(sequences),
        "description": dict(description or {}),
    }
    write_json(simulation_sidecar(csv_path), sidecar)
    return sequences
