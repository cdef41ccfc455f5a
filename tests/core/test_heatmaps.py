"""Specification of nnunet_babloss.core.heatmaps: Gaussian rendering and sub-voxel decoding, 2D and 3D."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nnunet_babloss.core.heatmaps import decode_heatmaps, render_gaussian_heatmaps, sigma_mm_to_vox

# Small odd/even mixed shapes keep every example fast while exercising non-square grids.
SHAPES = {2: (17, 14), 3: (9, 12, 10)}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
FAST = settings(max_examples=40, deadline=None)


def dense_reference(coords_vox: np.ndarray, shape: tuple[int, ...], sigma_vox: np.ndarray) -> np.ndarray:
    """Direct float64 evaluation of exp(-sum_a (i_a - c_a)^2 / (2 sigma_a^2)) on the full grid: (K, *shape)."""
    grid = np.stack(np.meshgrid(*[np.arange(size) for size in shape], indexing="ij"), axis=-1)  # (*shape, D)
    offsets = (grid[None] - coords_vox.reshape(len(coords_vox), *([1] * len(shape)), -1)) / sigma_vox
    return np.exp(-0.5 * (offsets**2).sum(axis=-1))


def interior_coords(dimension: int, num_landmarks: int) -> st.SearchStrategy[np.ndarray]:
    """Landmarks whose nearest voxel has both neighbours inside the image on every axis: c_a in [1, S_a - 2]."""
    shape = SHAPES[dimension]
    point = st.tuples(*[st.floats(1.0, size - 2.0, allow_nan=False) for size in shape])
    return st.lists(point, min_size=num_landmarks, max_size=num_landmarks).map(np.array)


def sigmas(dimension: int) -> st.SearchStrategy[tuple[float, ...]]:
    """Isotropic (one value) or anisotropic (one per axis) sigma in voxels."""
    value = st.floats(0.6, 4.0)
    return st.one_of(value.map(lambda sigma: (sigma,) * dimension), st.tuples(*[value] * dimension))


@pytest.mark.parametrize(
    ("sigma_mm", "spacing_mm", "expected_vox"),
    [
        (2.0, (4.0, 0.5, 0.5), (0.5, 4.0, 4.0)),  # 2 / 4 = 0.5 and 2 / 0.5 = 4
        ((3.0, 1.5), (1.5, 0.75), (2.0, 2.0)),  # per-axis sigma, per-axis spacing
        (2.8, (1.4, 1.4), (2.0, 2.0)),  # the JSRT 256 px setting: 2.8 mm at 1.4 mm/px
    ],
)
def test_sigma_mm_to_vox_divides_per_axis(sigma_mm, spacing_mm, expected_vox) -> None:
    assert sigma_mm_to_vox(sigma_mm, spacing_mm) == pytest.approx(expected_vox)


@given(sigma_mm=st.floats(0.01, 100.0), spacing_mm=st.lists(st.floats(0.01, 10.0), min_size=2, max_size=3))
def test_sigma_mm_to_vox_times_spacing_is_sigma_mm(sigma_mm: float, spacing_mm: list[float]) -> None:
    sigma_vox = sigma_mm_to_vox(sigma_mm, spacing_mm)
    assert len(sigma_vox) == len(spacing_mm)
    assert [s * h for s, h in zip(sigma_vox, spacing_mm)] == pytest.approx([sigma_mm] * len(spacing_mm))


@pytest.mark.parametrize(
    ("sigma_mm", "spacing_mm", "message"),
    [
        (0.0, (1.0, 1.0), "sigma_mm"),
        (-1.0, (1.0, 1.0), "sigma_mm"),
        (math.nan, (1.0, 1.0), "sigma_mm"),
        (1.0, (1.0, 0.0), "spacing_mm"),
        ((1.0, 2.0, 3.0), (1.0, 1.0), "sigma_mm has 3 values"),
    ],
)
def test_sigma_mm_to_vox_rejects_bad_input(sigma_mm, spacing_mm, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sigma_mm_to_vox(sigma_mm, spacing_mm)


@pytest.mark.parametrize("dimension", [2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@FAST
@given(data=st.data())
def test_render_equals_dense_gaussian(dimension: int, dtype: torch.dtype, data: st.DataObject) -> None:
    coords = data.draw(interior_coords(dimension, 3))
    sigma_vox = data.draw(sigmas(dimension))
    heatmaps = render_gaussian_heatmaps(torch.tensor(coords)[None], SHAPES[dimension], sigma_vox, dtype=dtype)
    expected = dense_reference(coords, SHAPES[dimension], np.array(sigma_vox))
    assert heatmaps.dtype == dtype and heatmaps.shape == (1, 3, *SHAPES[dimension])
    # float32 rounds each of the D factors and the products: relative error a few 1e-7 on values <= 1.
    np.testing.assert_allclose(heatmaps[0].double().numpy(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dimension", [2, 3])
def test_peak_value_is_one_at_integer_landmark(dimension: int) -> None:
    landmark = tuple(size // 2 for size in SHAPES[dimension])
    heatmaps = render_gaussian_heatmaps(torch.tensor([[landmark]], dtype=torch.float32), SHAPES[dimension], 1.5)
    assert heatmaps[(0, 0, *landmark)] == 1.0
    assert heatmaps.max() == 1.0
    assert torch.nonzero(heatmaps[0, 0] == 1.0).tolist() == [list(landmark)]


@pytest.mark.parametrize("dimension", [2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@FAST
@given(data=st.data())
def test_decode_recovers_subvoxel_coords(dimension: int, dtype: torch.dtype, data: st.DataObject) -> None:
    coords = torch.tensor(data.draw(interior_coords(dimension, 4)), dtype=dtype)[None]
    sigma_vox = data.draw(sigmas(dimension))
    heatmaps = render_gaussian_heatmaps(coords, SHAPES[dimension], sigma_vox, dtype=dtype)
    decoded, confidence = decode_heatmaps(heatmaps)
    assert decoded.dtype == dtype and decoded.shape == coords.shape and confidence.shape == (1, 4)
    # The log of a sampled Gaussian is an exact parabola per axis; only float rounding remains.
    torch.testing.assert_close(decoded, coords, rtol=0, atol=1e-3)
    # Confidence is the value at the integer peak: the nearest voxel is at most 0.5 voxel away per axis.
    lowest = math.exp(-0.5 * sum((0.5 / sigma) ** 2 for sigma in sigma_vox))
    assert bool((confidence >= lowest - 1e-6).all()) and bool((confidence <= 1.0).all())


@pytest.mark.parametrize("dimension", [2, 3])
def test_absent_landmarks_render_zeros_and_decode_to_nan(dimension: int) -> None:
    shape = SHAPES[dimension]
    coords = torch.full((2, 3, dimension), math.nan)
    coords[0, 1] = torch.tensor([3.0] * dimension)  # the one present landmark
    coords[1, 2, 0] = 4.0  # a partly-NaN row is absent too
    heatmaps = render_gaussian_heatmaps(coords, shape, 1.0)
    present = torch.zeros(2, 3, dtype=torch.bool)
    present[0, 1] = True
    assert bool((heatmaps[~present] == 0).all())
    assert heatmaps[0, 1].max() == 1.0

    decoded, confidence = decode_heatmaps(heatmaps, min_confidence=0.5)
    assert torch.isnan(decoded[~present]).all() and (confidence[~present] == 0).all()
    torch.testing.assert_close(decoded[0, 1], coords[0, 1])
    # With the default threshold 0 an all-zero channel decodes to voxel 0 with confidence 0 (documented).
    decoded_default, _ = decode_heatmaps(heatmaps)
    assert (decoded_default[1, 0] == 0).all()


@pytest.mark.parametrize("dimension", [2, 3])
@FAST
@given(data=st.data())
def test_rendering_is_flip_equivariant(dimension: int, data: st.DataObject) -> None:
    shape = SHAPES[dimension]
    axis = data.draw(st.integers(0, dimension - 1))
    coords = torch.tensor(data.draw(interior_coords(dimension, 2)), dtype=torch.float64)[None]
    sigma_vox = data.draw(sigmas(dimension))
    flipped_coords = coords.clone()
    flipped_coords[..., axis] = shape[axis] - 1 - coords[..., axis]  # voxel i maps to S - 1 - i
    heatmaps = render_gaussian_heatmaps(coords, shape, sigma_vox, dtype=torch.float64)
    flipped = render_gaussian_heatmaps(flipped_coords, shape, sigma_vox, dtype=torch.float64)
    torch.testing.assert_close(heatmaps.flip(2 + axis), flipped, rtol=0, atol=1e-12)
    torch.testing.assert_close(decode_heatmaps(flipped)[0], flipped_coords, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dimension", [2, 3])
def test_decode_keeps_integer_peak_on_the_border(dimension: int) -> None:
    shape = SHAPES[dimension]
    landmark = [4.3] * dimension
    landmark[0] = 0.3  # nearest voxel 0 has no neighbour before it: no fit on axis 0
    coords = torch.tensor([[landmark]], dtype=torch.float64)
    heatmaps = render_gaussian_heatmaps(coords, shape, 1.2, dtype=torch.float64)
    decoded, _ = decode_heatmaps(heatmaps)
    assert decoded[0, 0, 0] == 0.0
    torch.testing.assert_close(decoded[0, 0, 1:], torch.tensor(landmark[1:], dtype=torch.float64))


def test_decode_confidence_is_the_peak_value_and_nan_is_never_confident() -> None:
    heatmaps = torch.zeros(1, 3, 6, 7)
    heatmaps[0, 0, 2, 5] = 0.8  # an isolated peak: neighbours are 0, so no refinement
    heatmaps[0, 1] = -1.0  # a network output below zero everywhere
    heatmaps[0, 2, 1, 1] = math.nan
    decoded, confidence = decode_heatmaps(heatmaps)
    assert confidence[0, 0] == pytest.approx(0.8) and confidence[0, 1] == -1.0 and torch.isnan(confidence[0, 2])
    assert decoded[0, 0].tolist() == [2.0, 5.0]
    assert torch.isnan(decoded[0, 1:]).all()  # -1 < 0 = default threshold; NaN compares false
    assert torch.isnan(decode_heatmaps(heatmaps, min_confidence=0.9)[0][0, 0]).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_render_follows_device_dtype_and_fills_out(device: str, dtype: torch.dtype) -> None:
    coords = torch.tensor([[[3.2, 4.7, 5.1], [math.nan] * 3]], device=device)
    heatmaps = render_gaussian_heatmaps(coords, SHAPES[3], (1.0, 2.0, 1.5), dtype=dtype)
    assert heatmaps.device == coords.device and heatmaps.dtype == dtype
    buffer = torch.full_like(heatmaps, 7.0)
    result = render_gaussian_heatmaps(coords, SHAPES[3], torch.tensor([1.0, 2.0, 1.5]), dtype=dtype, out=buffer)
    assert result.data_ptr() == buffer.data_ptr()
    torch.testing.assert_close(buffer, heatmaps, rtol=0, atol=0)
    decoded, _ = decode_heatmaps(heatmaps, min_confidence=0.1)
    # float16 keeps 11 significant bits: its log-parabola fit is good to a few hundredths of a voxel.
    tolerance = 0.05 if dtype == torch.float16 else 1e-3
    torch.testing.assert_close(decoded, coords.to(decoded.dtype), rtol=0, atol=tolerance, equal_nan=True)


@pytest.mark.parametrize(
    ("coords", "shape", "sigma", "message"),
    [
        (torch.zeros(2, 3), (8, 8), 1.0, r"\(B, K, 2\)"),
        (torch.zeros(1, 3, 3), (8, 8), 1.0, r"\(B, K, 2\)"),
        (torch.zeros(1, 3, 2, dtype=torch.long), (8, 8), 1.0, "floating-point"),
        (torch.zeros(1, 3, 4), (8, 8, 8, 8), 1.0, "2 or 3 positive integers"),
        (torch.zeros(1, 3, 2), (8, 0), 1.0, "2 or 3 positive integers"),
        (torch.zeros(1, 3, 2), (8, 8), 0.0, "sigma_vox"),
        (torch.zeros(1, 3, 2), (8, 8), (1.0, 2.0, 3.0), "1 or 2 values"),
        (torch.zeros(1, 3, 2), (8, 8), torch.ones(2, 2), "0-D or 1-D"),
    ],
)
def test_render_rejects_bad_input(coords, shape, sigma, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_gaussian_heatmaps(coords, shape, sigma)


def test_render_rejects_mismatched_out_buffer() -> None:
    with pytest.raises(ValueError, match="out must be"):
        render_gaussian_heatmaps(torch.zeros(1, 2, 2), (8, 8), 1.0, out=torch.zeros(1, 2, 8, 9))


@pytest.mark.parametrize(
    ("heatmaps", "min_confidence", "message"),
    [
        (torch.zeros(1, 2, 8), 0.0, "2 or 3 spatial axes"),
        (torch.zeros(1, 2, 8, 8, dtype=torch.long), 0.0, "floating-point"),
        (torch.zeros(1, 2, 8, 0), 0.0, "non-empty"),
        (torch.zeros(1, 2, 8, 8), math.nan, "min_confidence"),
    ],
)
def test_decode_rejects_bad_input(heatmaps: torch.Tensor, min_confidence: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_heatmaps(heatmaps, min_confidence=min_confidence)
