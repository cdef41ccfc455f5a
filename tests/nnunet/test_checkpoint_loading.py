"""Checkpoints are loaded weights-only: a pickle payload is refused (never run), genuine nnU-Net checkpoints load.

The payload is a ``.pth`` written with ``torch.save`` whose object unpickles by calling ``os.makedirs(marker)``:
if the marker folder exists after a load, code from the file ran.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from nnunetv2.run import run_training
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_babloss.cli.predict import PredictionSettings, build_parser
from nnunet_babloss.nnunet.checkpoint_loading import (
    UNSAFE_LOAD_ENV_VAR,
    UnsafeCheckpointError,
    guard_pretrained_weights_loading,
    load_checkpoint_weights_only,
    weights_only_loading,
)
from nnunet_babloss.nnunet.predictor import nnUNetLandmarkPredictor
from nnunet_babloss.nnunet.checkpoint_selection import WeightsOnlyCheckpointLoading


class _CreatesMarker:
    """Unpickles by calling ``os.makedirs(marker)`` (a stand-in for any code an attacker would run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def _network() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.InstanceNorm2d(4, affine=True), torch.nn.Conv2d(4, 2, 1))


def _nnunet_shaped_checkpoint(network: torch.nn.Module) -> dict:
    """A checkpoint with the content of ``nnUNetTrainer.save_checkpoint`` (2.8.1), NumPy numbers included."""
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    network(torch.randn(1, 1, 8, 8)).sum().backward()
    optimizer.step()  # momentum buffers in the state
    return {
        "network_weights": collections.OrderedDict(network.state_dict()),
        "optimizer_state": optimizer.state_dict(),
        "grad_scaler_state": None,
        "logging": {
            "mean_fg_dice": [np.float32(0.5), np.float32(0.6)],
            "ema_fg_dice": [np.float32(0.5), np.float32(0.51)],
            "dice_per_class_or_region": [[np.float64(0.4), np.float64(0.6)], [0.5, 0.7]],
            "train_losses": [np.float32(-0.1), np.float32(-0.2)],
            "lrs": [0.01, 0.0099],
            "ema_selection_score": [0.3, float("nan")],
            "val_sdr": [[0.5, 0.75, 1.0], [0.5, 0.75, 1.0]],
        },
        "_best_ema": np.float32(0.51),
        "current_epoch": 2,
        "init_args": {"plans": {"configurations": {"2d": {"patch_size": [64, 64]}}}, "configuration": "2d",
                      "fold": 0, "dataset_json": {"labels": {"background": 0, "a": 1}}, "device": torch.device("cpu")},
        "trainer_name": "HeatmapTrainer",
        "inference_allowed_mirroring_axes": (0, 1),
        "extra_numbers": [np.int64(3), np.int32(4), np.uint8(5), np.bool_(True), np.float16(0.5)],
    }


@pytest.fixture()
def payload(tmp_path: Path) -> tuple[Path, Path]:
    """``(evil.pth, marker)``: a genuine-looking checkpoint whose logging also holds the payload."""
    marker = tmp_path / "code_ran"
    checkpoint = _nnunet_shaped_checkpoint(_network())
    checkpoint["logging"]["trojan"] = [_CreatesMarker(marker)]
    path = tmp_path / "evil.pth"
    torch.save(checkpoint, path)
    return path, marker


def test_the_payload_is_live_under_plain_pickle(payload, tmp_path: Path) -> None:
    path, marker = payload
    torch.load(path, weights_only=False)
    assert marker.is_dir()  # so its absence below means the loaders refused it


def test_genuine_checkpoint_content_loads_weights_only(tmp_path: Path) -> None:
    network = _network()
    checkpoint = _nnunet_shaped_checkpoint(network)
    torch.save(checkpoint, tmp_path / "checkpoint_final.pth")
    loaded = load_checkpoint_weights_only(tmp_path / "checkpoint_final.pth")
    assert loaded.keys() == checkpoint.keys()
    for key, value in checkpoint["network_weights"].items():
        assert torch.equal(loaded["network_weights"][key], value)
    assert loaded["_best_ema"] == np.float32(0.51) and loaded["_best_ema"].dtype == np.float32
    assert loaded["logging"]["dice_per_class_or_region"] == checkpoint["logging"]["dice_per_class_or_region"]
    assert loaded["extra_numbers"] == checkpoint["extra_numbers"]
    assert loaded["init_args"]["device"] == torch.device("cpu")
    assert loaded["inference_allowed_mirroring_axes"] == (0, 1)


def test_the_loader_refuses_the_payload_and_names_file_and_opt_in(payload) -> None:
    path, marker = payload
    with pytest.raises(UnsafeCheckpointError) as caught:
        load_checkpoint_weights_only(path)
    assert not marker.exists()
    message = str(caught.value)
    assert str(path) in message and UNSAFE_LOAD_ENV_VAR in message and "os.makedirs" in message


def test_unsafe_loading_is_an_explicit_opt_in(payload, monkeypatch: pytest.MonkeyPatch) -> None:
    path, marker = payload
    monkeypatch.setenv(UNSAFE_LOAD_ENV_VAR, "1")
    with pytest.warns(UserWarning, match="runs any code"):
        load_checkpoint_weights_only(path)
    assert marker.is_dir()


def test_nnunet_loads_inside_the_guard_are_forced_weights_only_and_the_switch_is_restored(
    payload, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, marker = payload
    monkeypatch.delenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", raising=False)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(UnsafeCheckpointError, match="the test file"):
        with weights_only_loading("the test file"):
            torch.load(path, weights_only=False)  # what nnU-Net's loaders call
    assert not marker.exists()
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ
    assert os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"
    assert not any("numpy" in str(entry) for entry in torch.serialization.get_safe_globals())


def test_predictor_refuses_the_payload(payload, tmp_path: Path) -> None:
    path, marker = payload
    model = tmp_path / "model"
    (model / "fold_0").mkdir(parents=True)
    for name in ("plans.json", "dataset.json"):
        (model / name).write_text("{}")
    path.rename(model / "fold_0" / "checkpoint_final.pth")
    predictor = nnUNetLandmarkPredictor(device=torch.device("cpu"))
    with pytest.raises(UnsafeCheckpointError, match=f"checkpoint_final.pth of fold\\(s\\) 0 in {model}"):
        predictor.initialize_from_trained_model_folder(str(model), (0,))
    assert not marker.exists()


@pytest.mark.parametrize("name", ["/abs/path/evil.pth", "../fold_1/checkpoint_final.pth", "sub/x.pth", "..", ""])
def test_checkpoint_name_must_be_a_file_name(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a path"):
        nnUNetLandmarkPredictor(device=torch.device("cpu")).initialize_from_trained_model_folder(str(tmp_path), (0,), name)
    with pytest.raises(ValueError, match="-chk must be the file name"):
        PredictionSettings(tmp_path, tmp_path, "1", "2d", checkpoint=name)
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["-i", "in", "-o", "out", "-d", "1", "-c", "2d", "-chk", name])
    assert caught.value.code == 2


def test_trainer_load_checkpoint_refuses_the_payload(payload) -> None:
    """``--c`` / ``--val``: nnU-Net's own ``load_checkpoint`` (``weights_only=False``) through our mixin."""
    path, marker = payload
    trainer_class = type("GuardedTrainer", (WeightsOnlyCheckpointLoading, nnUNetTrainer), {})
    trainer = object.__new__(trainer_class)  # nnU-Net loads the file before touching anything else
    trainer.was_initialized, trainer.device = True, torch.device("cpu")
    with pytest.raises(UnsafeCheckpointError, match="checkpoint .*evil.pth"):
        trainer.load_checkpoint(str(path))
    assert not marker.exists()


def test_pretrained_weights_of_nnunetv2_train_are_loaded_weights_only(payload, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path, marker = payload
    # Restore nnU-Net's function after the test; the guard replaces it in run_training's namespace.
    monkeypatch.setattr(run_training, "load_pretrained_weights", run_training.load_pretrained_weights)
    guard_pretrained_weights_loading()
    guard_pretrained_weights_loading()  # idempotent: one wrapper, not two
    assert run_training.load_pretrained_weights.__wrapped__.__module__ == "nnunetv2.run.load_pretrained_weights"
    network = _network()
    trainer = SimpleNamespace(was_initialized=True, network=network)
    with pytest.raises(UnsafeCheckpointError, match=f"-pretrained_weights {path}"):
        run_training.maybe_load_checkpoint(trainer, False, False, str(path))  # what nnUNetv2_train runs
    assert not marker.exists()

    # A genuine checkpoint still goes through nnU-Net's transfer (every key except .seg_layers. must match).
    source = _network()
    torch.save(_nnunet_shaped_checkpoint(source), tmp_path / "pretrained.pth")
    run_training.maybe_load_checkpoint(trainer, False, False, str(tmp_path / "pretrained.pth"))
    for key, value in source.state_dict().items():
        assert torch.equal(network.state_dict()[key], value)


def test_cli_reports_a_refused_checkpoint_without_traceback(payload, tmp_path: Path) -> None:
    path, marker = payload
    results = tmp_path / "results"
    model = results / "Dataset901_Evil" / "BaBLossTrainer__nnUNetPlans__2d"
    (model / "fold_0").mkdir(parents=True)
    (model / "plans.json").write_text("{}")
    # A dataset.json and an input image that pass predict's input checks, so the checkpoint is what fails.
    (model / "dataset.json").write_text(json.dumps(
        {"file_ending": ".nii.gz", "channel_names": {"0": "x"}, "labels": {"background": 0, "a": 1}}
    ))
    path.rename(model / "fold_0" / "checkpoint_final.pth")
    (tmp_path / "images").mkdir()
    sitk.WriteImage(sitk.Image(8, 8, sitk.sitkFloat32), str(tmp_path / "images" / "case_0000.nii.gz"))
    environment = {**os.environ, "nnUNet_results": str(results), "nnUNet_raw": str(tmp_path),
                   "nnUNet_preprocessed": str(tmp_path)}
    environment.pop(UNSAFE_LOAD_ENV_VAR, None)
    completed = subprocess.run(
        [sys.executable, "-m", "nnunet_babloss.cli.predict", "-i", str(tmp_path / "images"), "-o",
         str(tmp_path / "out"), "-d", "Dataset901_Evil", "-c", "2d", "-f", "0", "-device", "cpu"],
        env=environment, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 1, completed.stderr
    assert "Traceback" not in completed.stderr
    assert UNSAFE_LOAD_ENV_VAR in completed.stderr and "checkpoint_final.pth" in completed.stderr
    assert not marker.exists()
