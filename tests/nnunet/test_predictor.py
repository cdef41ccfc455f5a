"""``nnUNetLandmarkPredictor``: segmentations bit-identical to nnU-Net's, landmarks in world mm.

Unit tests (fast): the heatmap -> preprocessed index -> world path against an oracle built with SimpleITK, mirror
test-time augmentation with left/right channel swaps, and the widened sliding window against the stock one.
End-to-end tests (``e2e``, sharing the demo's trained model): the CLI against ``nnUNetv2_predict`` byte for byte,
every other prediction path with a two-fold ensemble, and the landmark validation written by the trainer.
"""

from __future__ import annotations

import gzip
import json
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.label_handling.label_handling import LabelManager

from nnunet_babloss.cli.predict import DEFAULT_LANDMARK_THRESHOLD as CLI_DEFAULT_THRESHOLD
from nnunet_babloss.cli.predict import build_parser
from nnunet_babloss.ext_trainers_path import EXT_TRAINER_DIR
from nnunet_babloss.core.heatmaps import render_gaussian_heatmaps
from nnunet_babloss.core.landmarks.io import read_landmarks
from nnunet_babloss.core.landmarks.spec import LandmarkSpec
from nnunet_babloss.core.network import SegmentationHeatmapNetwork
from nnunet_babloss.nnunet.predictor import (
    DEFAULT_LANDMARK_THRESHOLD,
    decode_preprocessed_heatmaps,
    geometry_from_properties,
    landmarks_from_preprocessed_heatmaps,
    nnUNetLandmarkPredictor,
)

SPEC = LandmarkSpec(names=("a", "b", "left", "right"), mirror_pairs=(("left", "right"),))


# ----------------------------------------------------------------------------------------------------------------
# Oracle: known preprocessed positions -> rendered heatmaps -> decode + geometry -> world, checked with SimpleITK
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    name: str
    raw_shape: tuple[int, ...]  # SimpleITK array order of the raw image (2D or 3D)
    spacing_mm: tuple[float, ...]  # ITK order
    direction: tuple[float, ...]
    transpose_forward: tuple[int, int, int]
    bbox: tuple[tuple[int, int], ...]  # per transposed axis of nnU-Net's 3D array
    preprocessed_shape: tuple[int, int, int]
    slice_sigma_vox: float  # through-plane sigma of the heatmaps along the first axis (slices of a 2D configuration)


def _rotation_flip_3d() -> tuple[float, ...]:
    c, s = np.cos(0.3), np.sin(0.3)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ np.array([[1, 0, 0], [0, np.cos(-0.2), -np.sin(-0.2)], [0, np.sin(-0.2), np.cos(-0.2)]])
    return tuple((rotation @ np.diag([1.0, -1.0, 1.0])).ravel())


SCENARIOS = (
    # 2D image, identity direction: (1, 40, 50) cropped to (1, 36, 44), resampled to (1, 45, 40).
    Scenario("2d-identity", (40, 50), (0.9, 0.7), (1.0, 0.0, 0.0, 1.0), (0, 1, 2), ((0, 1), (2, 38), (3, 47)),
             (1, 45, 40), 2.0),
    # 3D, rotated and flipped direction, no transpose, cropped and resampled on every axis.
    Scenario("3d-direction", (20, 30, 26), (0.8, 0.9, 2.0), _rotation_flip_3d(), (0, 1, 2),
             ((1, 19), (2, 29), (3, 24)), (23, 30, 17), 2.0),
    # 3D with nnU-Net's transpose [2, 0, 1] (x moved first), non-identity direction, crop and resampling.
    Scenario("3d-transposed", (24, 28, 12), (4.0, 0.9, 1.0), _rotation_flip_3d(), (2, 0, 1),
             ((1, 11), (2, 23), (0, 27)), (10, 26, 32), 2.0),
    # A 2D configuration on a 3D volume: slices (first transposed axis) are not resampled; the stack of slice
    # heatmaps is the slice-by-slice 3D Gaussian the trainer teaches (HeatmapTrainer.heatmap_slice_sigma_vox = 1).
    Scenario("3d-2d-config", (14, 30, 26), (0.8, 0.9, 2.5), _rotation_flip_3d(), (0, 1, 2),
             ((1, 13), (2, 29), (3, 24)), (12, 33, 25), 1.0),
)


def _properties(scenario: Scenario) -> dict:
    transposed_shape = [(list(scenario.raw_shape) if len(scenario.raw_shape) == 3 else [1, *scenario.raw_shape])[axis]
                        for axis in scenario.transpose_forward]
    raw_spacing_array_order = list(scenario.spacing_mm[::-1])
    return {
        "sitk_stuff": {"spacing": scenario.spacing_mm, "origin": (12.5, -40.0, 7.25)[: len(scenario.spacing_mm)],
                       "direction": scenario.direction},
        "spacing": raw_spacing_array_order if len(raw_spacing_array_order) == 3 else [999.0, *raw_spacing_array_order],
        "shape_before_cropping": transposed_shape,
        "bbox_used_for_cropping": [list(pair) for pair in scenario.bbox],
        "shape_after_cropping_and_before_resampling": [high - low for low, high in scenario.bbox],
    }


def _world_of_preprocessed(scenario: Scenario, properties: dict, preprocessed: np.ndarray) -> np.ndarray:
    """The oracle: nnU-Net's crop/resample rule undone by hand, then SimpleITK's own index -> physical point."""
    image = sitk.Image(list(scenario.raw_shape[::-1]), sitk.sitkUInt8)
    image.SetSpacing(scenario.spacing_mm)
    image.SetOrigin(properties["sitk_stuff"]["origin"])
    image.SetDirection(scenario.direction)
    low = np.array([pair[0] for pair in scenario.bbox], dtype=float)
    cropped = np.array(properties["shape_after_cropping_and_before_resampling"], dtype=float)
    # nnU-Net resamples with the half-voxel convention: p = (c + 0.5) * S_pre / S_crop - 0.5.
    transposed = (preprocessed + 0.5) * cropped / np.array(scenario.preprocessed_shape) - 0.5 + low
    raw = np.empty(3)
    raw[list(scenario.transpose_forward)] = transposed
    index = raw if len(scenario.raw_shape) == 3 else raw[1:]
    return np.array(image.TransformContinuousIndexToPhysicalPoint(index[::-1].tolist()))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[scenario.name for scenario in SCENARIOS])
def test_decoded_landmarks_reproduce_world_points_within_a_small_fraction_of_a_voxel(scenario: Scenario) -> None:
    rng = np.random.default_rng(7)
    properties = _properties(scenario)
    shape = np.array(scenario.preprocessed_shape)
    # Interior positions (>= 3 voxels from the border, so the refinement sees both neighbours), sub-voxel offsets.
    positions = np.column_stack([rng.uniform(3, size - 4, 3) if size > 1 else np.zeros(3) for size in shape])
    coords = np.concatenate([positions, np.full((1, 3), np.nan)])  # the last landmark is absent: all-zero heatmap
    sigma_vox = (scenario.slice_sigma_vox, 2.0, 2.0)
    heatmaps = render_gaussian_heatmaps(torch.tensor(coords[None]), tuple(shape), sigma_vox)[0]

    landmarks = landmarks_from_preprocessed_heatmaps(heatmaps.half(), properties, scenario.transpose_forward, SPEC)

    assert landmarks.names == SPEC.names and landmarks.dimension == len(scenario.raw_shape)
    expected = np.stack([_world_of_preprocessed(scenario, properties, position) for position in positions])
    # One preprocessed voxel is at most max(raw spacing * S_crop / S_pre) mm long; the decode of a sampled Gaussian
    # is exact, so the only error is float16 storage of the heatmaps (as in the sliding window): < 0.02 voxel.
    cropped = np.array(properties["shape_after_cropping_and_before_resampling"], dtype=float)
    raw_spacing = np.array(scenario.spacing_mm[::-1] if len(scenario.raw_shape) == 3 else (0.0, *scenario.spacing_mm[::-1]))
    voxel_mm = float(np.max(raw_spacing[list(scenario.transpose_forward)] * cropped / shape))
    errors_mm = np.linalg.norm(landmarks.points_mm[:3] - expected, axis=1)
    assert np.all(errors_mm < 0.02 * voxel_mm), errors_mm / voxel_mm
    assert np.isnan(landmarks.points_mm[3]).all() and landmarks.confidence[3] == 0.0
    # Peaks of a unit Gaussian within half a voxel of the centre: at least exp(-0.5^2 / (2 sigma^2)) per axis,
    # 0.969 at sigma 2 and 0.882 at sigma 1, so > 0.91 (0.83 with a one-slice sigma).
    floor = np.exp(-0.125 / scenario.slice_sigma_vox**2) * np.exp(-0.125 / 4.0) ** 2
    assert np.all(landmarks.confidence[:3] > floor - 1e-3)  # float16 storage


def test_the_threshold_makes_weak_landmarks_absent_but_keeps_their_confidence() -> None:
    scenario = SCENARIOS[0]
    coords = torch.tensor([[[0.0, 20.0, 20.0]] * 4])
    heatmaps = render_gaussian_heatmaps(coords, scenario.preprocessed_shape, 2.0)[0]
    heatmaps = heatmaps * torch.tensor([1.0, 0.5, 0.31, 0.29])[:, None, None, None]
    landmarks = landmarks_from_preprocessed_heatmaps(
        heatmaps, _properties(scenario), scenario.transpose_forward, SPEC, landmark_threshold=0.3
    )
    assert landmarks.present.tolist() == [True, True, True, False]
    np.testing.assert_allclose(landmarks.confidence, [1.0, 0.5, 0.31, 0.29], rtol=1e-6)
    assert DEFAULT_LANDMARK_THRESHOLD == CLI_DEFAULT_THRESHOLD  # the CLI's --help states the predictor's default


def test_a_2d_configuration_on_a_volume_is_decoded_in_3d_through_a_spurious_peak_on_another_slice() -> None:
    """Issue 16 item 2: the stack of slice heatmaps is decoded as one 3D heatmap, sub-slice along the slices.

    The landmark lies between slices (7.35); a wrong slice far from it (slice 2) holds a weaker spurious peak far away
    in-plane. The 3D decoder returns the landmark's 3D position; the slice-wise decoder it replaced (the slice of the
    highest peak, refined in-plane only) was stuck on slice 7, 0.35 slice = 0.875 mm off at this 2.5 mm spacing.
    """
    scenario = SCENARIOS[3]
    assert scenario.name == "3d-2d-config"
    properties = _properties(scenario)
    shape = scenario.preprocessed_shape
    truth = np.array([7.35, 20.4, 9.7])
    heatmaps = render_gaussian_heatmaps(torch.tensor(truth[None, None]), shape, (scenario.slice_sigma_vox, 2.0, 2.0))[0]
    spurious = render_gaussian_heatmaps(torch.tensor([[[26.0, 20.0]]]), shape[1:], 2.0)[0, 0]  # (row, col)
    heatmaps[0, 2] = torch.maximum(heatmaps[0, 2], 0.6 * spurious)
    heatmaps = torch.cat([heatmaps, torch.zeros((SPEC.num_landmarks - 1, *shape))])  # the others: absent

    coords, confidence = decode_preprocessed_heatmaps(heatmaps.half(), min_confidence=0.3)
    np.testing.assert_allclose(coords[0], truth, atol=0.02)  # float16 storage only
    assert confidence[0] > 0.9 and np.isnan(coords[1:]).all()

    landmarks = landmarks_from_preprocessed_heatmaps(heatmaps, properties, scenario.transpose_forward, SPEC)
    expected_mm = _world_of_preprocessed(scenario, properties, truth)
    assert np.linalg.norm(landmarks.points_mm[0] - expected_mm) < 0.01

    # The replaced rule, for comparison: the highest peak's slice, integer.
    old_slice = int(torch.argmax(heatmaps[0].reshape(-1))) // (shape[1] * shape[2])
    assert old_slice == 7 and abs(old_slice - truth[0]) > 0.3


def test_properties_without_world_frame_fall_back_loudly() -> None:
    with pytest.warns(UserWarning, match="no 'sitk_stuff'"):
        geometry = geometry_from_properties({"spacing": [999.0, 0.5, 0.7], "shape_before_cropping": [1, 20, 30]})
    assert geometry.dimension == 2 and geometry.spacing_mm == (0.7, 0.5)
    with pytest.raises(ValueError, match="neither 'sitk_stuff' nor 'spacing'"):
        geometry_from_properties({})


def test_wrong_channel_count_is_refused() -> None:
    with pytest.raises(ValueError, match="3 channels but the landmark spec names 4"):
        landmarks_from_preprocessed_heatmaps(
            torch.zeros(3, 1, 8, 8), _properties(SCENARIOS[0]), (0, 1, 2), SPEC
        )


# ----------------------------------------------------------------------------------------------------------------
# Mirror TTA and the widened sliding window, on a small random network (no trained model needed)
# ----------------------------------------------------------------------------------------------------------------
def _network(output_heatmaps: bool) -> SegmentationHeatmapNetwork:
    torch.manual_seed(3)
    unet = PlainConvUNet(
        1, 3, (8, 16, 32), torch.nn.Conv2d, 3, (1, 2, 2), 2, 3, (2, 2), False, torch.nn.InstanceNorm2d,
        {"affine": True}, None, None, torch.nn.LeakyReLU, {"inplace": True}, deep_supervision=False,
    )
    network = SegmentationHeatmapNetwork(unet, num_heatmaps=SPEC.num_landmarks, output_heatmaps=output_heatmaps)
    with torch.no_grad():  # make the heatmap channels clearly different from each other
        network.heatmap_head[-1].bias.copy_(torch.tensor([-2.0, -1.0, 0.5, 1.5]))
    return network.eval()


def _bare_predictor(cls: type, network: torch.nn.Module, patch_size: tuple[int, int]) -> nnUNetPredictor:
    """A predictor wired by hand: what the sliding window reads, without plans on disk."""
    predictor = cls(device=torch.device("cpu"), allow_tqdm=False)
    predictor.network = network
    predictor.allowed_mirroring_axes = (0, 1)
    predictor.configuration_manager = SimpleNamespace(patch_size=list(patch_size))
    predictor.label_manager = LabelManager({"background": 0, "x": 1, "y": 2}, None)
    predictor.list_of_parameters = None
    if isinstance(predictor, nnUNetLandmarkPredictor):
        predictor.landmark_spec = SPEC
        predictor._mirror_channels = torch.tensor(SPEC.mirror_permutation())
        predictor._lateral_tensor_axis = 3  # patch (1, C, H, W): left-right along W
    return predictor


def test_mirroring_makes_heatmaps_flip_equivariant_with_left_right_swapped() -> None:
    predictor = _bare_predictor(nnUNetLandmarkPredictor, _network(True), (32, 32))
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    heatmaps = predictor._internal_maybe_mirror_and_predict(x)[:, 3:]
    lateral = predictor._internal_maybe_mirror_and_predict(torch.flip(x, (3,)))[:, 3:]
    vertical = predictor._internal_maybe_mirror_and_predict(torch.flip(x, (2,)))[:, 3:]
    swapped = torch.flip(heatmaps, (3,))[:, list(SPEC.mirror_permutation())]
    # The TTA average over all flips is exactly equivariant up to float rounding of a different summation order.
    torch.testing.assert_close(lateral, swapped, atol=1e-5, rtol=0)
    torch.testing.assert_close(vertical, torch.flip(heatmaps, (2,)), atol=1e-5, rtol=0)
    # Without the swap the paired channels would disagree: the check above can fail.
    assert not torch.allclose(lateral, torch.flip(heatmaps, (3,)), atol=1e-3)
    assert torch.all((heatmaps >= 0) & (heatmaps <= 1))


@pytest.mark.parametrize("use_mirroring", [True, False])
def test_segmentation_logits_of_the_widened_sliding_window_equal_the_stock_ones(use_mirroring: bool) -> None:
    # 44 x 52 image, 32 x 32 patches, step 0.5: overlapping windows, Gaussian weighting, fp16 accumulation.
    data = torch.rand(1, 44, 52, generator=torch.Generator().manual_seed(1))[:, None]  # (C, 1, H, W) as for 2D
    stock = _bare_predictor(nnUNetPredictor, _network(False), (32, 32))
    ours = _bare_predictor(nnUNetLandmarkPredictor, _network(True), (32, 32))
    stock.use_mirroring = ours.use_mirroring = use_mirroring
    expected = stock.predict_sliding_window_return_logits(data)
    combined = ours.predict_sliding_window_return_logits(data)
    assert combined.shape == (3 + SPEC.num_landmarks, 1, 44, 52)
    assert torch.equal(combined[:3], expected)  # bit-identical
    assert ours.label_manager.num_segmentation_heads == 3  # the widening is undone


def test_a_model_without_heatmap_head_is_refused() -> None:
    predictor = nnUNetLandmarkPredictor(device=torch.device("cpu"))
    predictor.network, predictor.trainer_name = torch.nn.Conv2d(1, 3, 1), "nnUNetTrainer"
    with pytest.raises(ValueError, match="no landmark heatmap head"):
        predictor._enable_heatmaps()
    with pytest.raises(ValueError, match="landmark_threshold"):
        nnUNetLandmarkPredictor(device=torch.device("cpu"), landmark_threshold=1.5)


def test_cli_mirrors_nnunet_predict_arguments() -> None:
    args = build_parser().parse_args(
        ["-i", "in", "-o", "out", "-d", "987", "-c", "2d", "-f", "0", "1", "--disable_tta", "-npp", "0", "-nps", "0",
         "--save_probabilities", "--continue_prediction", "-chk", "checkpoint_best.pth", "-device", "cpu",
         "--landmark-threshold", "0.5", "--save-slicer"]
    )
    assert (args.f, args.disable_tta, args.npp, args.nps, args.chk) == (["0", "1"], True, 0, 0, "checkpoint_best.pth")
    assert (args.landmark_threshold, args.save_slicer, args.continue_prediction) == (0.5, True, True)


# ----------------------------------------------------------------------------------------------------------------
# End to end, on the demo's trained BaBLossTrainer_BabDemo model
# ----------------------------------------------------------------------------------------------------------------
TRAINER = "BaBLossTrainer_BabDemo"
MODEL_FOLDER = f"{TRAINER}__nnUNetPlans__2d"


def _assert_same_segmentation_files(expected: Path, got: Path) -> None:
    """Same voxels, same header (geometry + metadata), same uncompressed bytes."""
    assert got.is_file(), got
    expected_image, got_image = sitk.ReadImage(str(expected)), sitk.ReadImage(str(got))
    assert np.array_equal(sitk.GetArrayFromImage(expected_image), sitk.GetArrayFromImage(got_image))
    for getter in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection", "GetPixelIDValue"):
        assert getattr(expected_image, getter)() == getattr(got_image, getter)(), getter
    assert {key: expected_image.GetMetaData(key) for key in expected_image.GetMetaDataKeys()} == {
        key: got_image.GetMetaData(key) for key in got_image.GetMetaDataKeys()
    }
    assert gzip.decompress(expected.read_bytes()) == gzip.decompress(got.read_bytes())


@pytest.mark.e2e
def test_cli_repeats_the_demo_segmentations_and_writes_landmarks(demo_run, nnunet_paths: Path, tmp_path: Path) -> None:
    """The CLI with other output options reproduces the demo's segmentations byte for byte (the demo predicts with
    nnUNetv2_bab_predict; byte identity with the stock nnUNetv2_predict is checked in test_demo_e2e.py)."""
    result, _ = demo_run
    output = tmp_path / "ours"
    # The demo's prediction arguments (mirroring on), plus threshold 0 and the Slicer files.
    command = [sys.executable, "-m", "nnunet_babloss.cli.predict", "-i", str(result.dataset_folder / "imagesTs"),
               "-o", str(output), "-d", "987", "-c", "2d", "-f", "0", "-tr", TRAINER, "-device", "cpu",
               "-npp", "1", "-nps", "1", "--disable_progress_bar", "--landmark-threshold", "0", "--save-slicer"]
    completed = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    demo_files = sorted(result.prediction_folder.glob("*.nii.gz"))
    assert len(demo_files) == 4
    spec = LandmarkSpec.from_dataset_json(result.dataset_folder / "dataset.json")
    for demo_file in demo_files:
        _assert_same_segmentation_files(demo_file, output / demo_file.name)
        case = demo_file.name.removesuffix(".nii.gz")
        content = json.loads((output / f"{case}.json").read_text())
        assert list(content["landmarks"]) == list(spec.names) and set(content["confidence"]) == set(spec.names)
        landmarks = read_landmarks(output / f"{case}.json", spec)
        # Threshold 0: every landmark is placed, inside the image, with a confidence that is a heatmap value.
        image = sitk.ReadImage(str(demo_file))
        assert landmarks.present.all() and landmarks.dimension == 2
        for point in landmarks.points_mm:
            index = np.array(image.TransformPhysicalPointToContinuousIndex(point.tolist()))
            assert np.all(index >= -0.5) and np.all(index <= np.array(image.GetSize()) - 0.5)
        assert np.all((landmarks.confidence > 0) & (landmarks.confidence <= 1))
        slicer = read_landmarks(output / f"{case}.mrk.json", spec)  # Slicer points are 3D: z = 0 for a 2D image
        np.testing.assert_allclose(slicer.points_mm, np.pad(landmarks.points_mm, ((0, 0), (0, 1))), atol=1e-9)
    provenance = json.loads((output / "provenance.json").read_text())
    assert len(next(iter(provenance["checkpoint_sha256"].values()))) == 64
    assert provenance["complete"] is True  # rewritten after the last case (a killed run leaves false)
    assert not [path.name for path in output.iterdir() if path.name.startswith(".")]


_SLOW_PREDICTION = """
import sys, time
from nnunet_babloss.nnunet.predictor import nnUNetLandmarkPredictor
def slow(self, *args, **kwargs):
    print("STARTED", flush=True)
    time.sleep(120)
nnUNetLandmarkPredictor.predict_from_files_sequential = slow
from nnunet_babloss.cli.predict import main
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.mark.e2e
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_prediction_is_marked_incomplete(demo_run, nnunet_paths: Path, tmp_path: Path,
                                                        signal_number: int) -> None:
    """Predictions are written case by case (for --continue_prediction); provenance.json says whether all are."""
    result, _ = demo_run
    output = tmp_path / "interrupted"
    command = [sys.executable, "-c", _SLOW_PREDICTION, "-i", str(result.dataset_folder / "imagesTs"), "-o",
               str(output), "-d", "987", "-c", "2d", "-f", "0", "-tr", TRAINER, "-device", "cpu", "-npp", "0",
               "-nps", "0", "--disable_progress_bar"]
    process = subprocess.Popen(  # SIGINT as from a terminal, also when the suite runs in the background (nohup)
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert process.stdout is not None
        while "STARTED" not in process.stdout.readline():
            assert process.poll() is None, process.stderr.read()  # type: ignore[union-attr]
        process.send_signal(signal_number)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert "Traceback" not in err, err
    if signal_number == signal.SIGINT:
        assert process.returncode == 130 and "nnUNetv2_bab_predict: interrupted (SIGINT)" in err
    else:  # predict installs no SIGTERM handler (cases are written one by one): the default action ends it
        assert process.returncode == -signal.SIGTERM
    assert json.loads((output / "provenance.json").read_text())["complete"] is False


@pytest.fixture()
def two_fold_model(demo_run, tmp_path: Path) -> Path:
    """The demo model plus a fold 1 with perturbed weights, so that fold ensembling changes the result."""
    result, _ = demo_run
    source = result.results_folder / result.dataset_folder.name / MODEL_FOLDER
    model = tmp_path / MODEL_FOLDER
    model.mkdir()
    for name in ("plans.json", "dataset.json"):
        shutil.copy(source / name, model / name)
    (model / "fold_0").mkdir()
    shutil.copy(source / "fold_0" / "checkpoint_final.pth", model / "fold_0" / "checkpoint_final.pth")
    checkpoint = torch.load(source / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    generator = torch.Generator().manual_seed(0)
    for key, value in checkpoint["network_weights"].items():
        if value.is_floating_point():
            checkpoint["network_weights"][key] = value + 0.05 * value.std().nan_to_num() * torch.randn(
                value.shape, generator=generator
            )
    (model / "fold_1").mkdir()
    torch.save(checkpoint, model / "fold_1" / "checkpoint_final.pth")
    return model


@pytest.mark.e2e
def test_every_prediction_path_with_a_two_fold_ensemble(demo_run, nnunet_paths: Path, two_fold_model: Path,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    result, _ = demo_run
    monkeypatch.setenv("nnUNet_extTrainer", str(EXT_TRAINER_DIR))  # nnU-Net's trainer lookup finds ours
    images = sorted((result.dataset_folder / "imagesTs").glob("*_0000.nii.gz"))[:2]
    inputs = [[str(path)] for path in images]
    stock = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)
    stock.initialize_from_trained_model_folder(str(two_fold_model), (0, 1))
    ours = nnUNetLandmarkPredictor(device=torch.device("cpu"), allow_tqdm=False, landmark_threshold=0.0)
    ours.initialize_from_trained_model_folder(str(two_fold_model), (0, 1))

    (tmp_path / "stock").mkdir()  # nnU-Net's sequential path does not create its output folder
    stock.predict_from_files_sequential(inputs, str(tmp_path / "stock"), False, True, None)
    sequential = ours.predict_from_files_sequential(inputs, str(tmp_path / "ours"), return_landmarks=True)
    for path in images:
        name = path.name.replace("_0000.nii.gz", ".nii.gz")
        _assert_same_segmentation_files(tmp_path / "stock" / name, tmp_path / "ours" / name)
        assert (tmp_path / "ours" / name.replace(".nii.gz", ".json")).is_file()

    image, properties = SimpleITKIO().read_images([str(images[0])])
    stock_segmentation, stock_probabilities = stock.predict_single_npy_array(image, properties, None, None, True)
    segmentation, probabilities, landmarks = ours.predict_single_npy_array(image, properties, None, None, True)
    assert np.array_equal(segmentation, stock_segmentation) and np.array_equal(probabilities, stock_probabilities)
    np.testing.assert_array_equal(landmarks.points_mm, sequential[0][1].points_mm)
    single_fold = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)
    single_fold.initialize_from_trained_model_folder(str(two_fold_model), (0,))
    _, fold_0_probabilities = single_fold.predict_single_npy_array(image, properties, None, None, True)
    assert not np.array_equal(fold_0_probabilities, stock_probabilities)  # the second fold really contributes

    in_memory = ours.predict_from_list_of_npy_arrays([image], None, [properties], None, 1, False, 1,
                                                     return_landmarks=True)
    assert np.array_equal(in_memory[0][0], stock_segmentation)
    np.testing.assert_array_equal(in_memory[0][1].points_mm, landmarks.points_mm)
    np.testing.assert_array_equal(in_memory[0][1].confidence, landmarks.confidence)


@pytest.mark.e2e
def test_training_validation_wrote_and_scored_landmarks(demo_run) -> None:
    result, _ = demo_run
    validation = result.results_folder / result.dataset_folder.name / MODEL_FOLDER / "fold_0" / "validation"
    segmentations = sorted(validation.glob("*.nii.gz"))
    assert segmentations and all((validation / path.name.replace(".nii.gz", ".json")).is_file() for path in segmentations)
    summary = json.loads((validation / "landmark_evaluation" / "summary.json").read_text())["landmarks"]
    cases_with_reference = [path for path in segmentations
                            if (result.dataset_folder / "landmarksTr" / path.name.replace(".nii.gz", ".json")).is_file()]
    assert summary["num_cases"] == len(cases_with_reference) > 0
    assert json.loads((validation / "summary.json").read_text())["foreground_mean"]["Dice"] >= 0  # nnU-Net's own
