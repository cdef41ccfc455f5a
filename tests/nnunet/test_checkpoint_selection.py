"""``checkpoint_best`` follows the selection score across ``--c`` restarts (issue 16, item 3).

The trainer below runs nnU-Net's own ``on_epoch_end``, ``save_checkpoint`` and ``load_checkpoint`` (2.8.1) through
:class:`SelectionScoreCheckpointing`, with scripted scores instead of training: a "kill" is simply a fresh trainer
that resumes from the file ``nnUNetv2_train --c`` would pick.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from nnunetv2.training.logging.nnunet_logger import LocalLogger, MetaLogger
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_babloss.nnunet.checkpoint_loading import load_checkpoint_weights_only
from nnunet_babloss.nnunet.checkpoint_selection import SelectionScoreCheckpointing

PSEUDO_DICE = 0.99  # nnU-Net's EMA pseudo Dice, above every selection score: it must never stand in for one


class _SelectionLogger(LocalLogger):
    def __init__(self) -> None:
        super().__init__()
        self.my_fantastic_logging["ema_selection_score"] = []

    def plot_progress_png(self, output_folder: str) -> None:  # no plot needed here
        pass


class _ScriptedTrainer(SelectionScoreCheckpointing, nnUNetTrainer):
    """Sets exactly the attributes nnU-Net's epoch end and checkpoint methods read; no plans, data or network."""

    def __init__(self, output_folder: Path) -> None:  # deliberately not nnU-Net's constructor
        self.output_folder = str(output_folder)
        self.local_rank, self.is_ddp, self.disable_checkpointing, self.was_initialized = 0, False, False, True
        self.device = torch.device("cpu")
        self.network = torch.nn.Linear(2, 2)
        self.optimizer = torch.optim.SGD(self.network.parameters(), lr=0.01)
        self.grad_scaler = None
        self.logger = MetaLogger(str(output_folder), resume=False)
        self.logger.local_logger = _SelectionLogger()
        self.my_init_kwargs = {"configuration": "2d", "fold": 0}
        self.inference_allowed_mirroring_axes = (0, 1)
        self.current_epoch, self.num_epochs, self.save_every = 0, 100, 1
        self._best_ema = None

    def print_to_log_file(self, *args, **kwargs) -> None:
        pass

    def run_epoch(self, selection_score: float) -> None:
        """Log one epoch as the trainers do (the score is the already averaged EMA) and end it."""
        epoch = self.current_epoch
        for key, value in (("epoch_start_timestamps", 0.0), ("train_losses", 0.0), ("val_losses", 0.0),
                           ("lrs", 0.01), ("dice_per_class_or_region", [PSEUDO_DICE]), ("mean_fg_dice", PSEUDO_DICE),
                           ("ema_selection_score", selection_score)):
            self.logger.log(key, value, epoch)
        self.on_epoch_end()


def _epoch_of(path: Path) -> int:
    """The (0-based) epoch a checkpoint was written at (nnU-Net stores ``epoch + 1``)."""
    return load_checkpoint_weights_only(path)["current_epoch"] - 1


def _resume(folder: Path, checkpoint: str) -> _ScriptedTrainer:
    trainer = _ScriptedTrainer(folder)
    trainer.load_checkpoint(str(folder / checkpoint))
    return trainer


@pytest.mark.parametrize("resume_from", ["checkpoint_latest.pth", "checkpoint_best.pth"])
def test_best_checkpoint_keeps_following_the_score_after_resume(tmp_path: Path, resume_from: str) -> None:
    # --c resumes from checkpoint_latest after a kill, from checkpoint_best when only that one is left.
    trainer = _ScriptedTrainer(tmp_path)
    for score in (0.5, 0.9):  # epochs 0 and 1; epoch 1 is the best
        trainer.run_epoch(score)
    assert _epoch_of(tmp_path / "checkpoint_best.pth") == 1
    if resume_from == "checkpoint_best.pth":
        (tmp_path / "checkpoint_latest.pth").unlink()

    resumed = _resume(tmp_path, resume_from)
    assert resumed.current_epoch == 2
    resumed.run_epoch(0.7)  # worse than 0.9: checkpoint_best stays at epoch 1
    assert _epoch_of(tmp_path / "checkpoint_best.pth") == 1
    resumed.run_epoch(0.95)  # better, though below the pseudo Dice: checkpoint_best moves to epoch 3
    assert _epoch_of(tmp_path / "checkpoint_best.pth") == 3


def test_every_checkpoint_carries_the_best_selection_score(tmp_path: Path) -> None:
    trainer = _ScriptedTrainer(tmp_path)
    for score in (0.5, 0.9, 0.7):
        trainer.run_epoch(score)
    assert load_checkpoint_weights_only(tmp_path / "checkpoint_latest.pth")["_best_ema"] == 0.9
    assert load_checkpoint_weights_only(tmp_path / "checkpoint_best.pth")["_best_ema"] == 0.9
    trainer.save_checkpoint(str(tmp_path / "checkpoint_final.pth"))
    assert load_checkpoint_weights_only(tmp_path / "checkpoint_final.pth")["_best_ema"] == 0.9


@pytest.mark.parametrize("stored", [None, math.inf, np.float32(PSEUDO_DICE)], ids=["none", "inf", "pseudo_dice"])
def test_checkpoints_written_before_the_fix_resume_from_the_logged_scores(tmp_path: Path, stored) -> None:
    # Older checkpoint_latest files held None or inf in _best_ema, older checkpoint_best files the pseudo Dice.
    trainer = _ScriptedTrainer(tmp_path)
    for score in (0.5, 0.9, math.nan):  # a NaN epoch (no validation landmarks) keeps the best
        trainer.run_epoch(score)
    checkpoint = load_checkpoint_weights_only(tmp_path / "checkpoint_latest.pth")
    checkpoint["_best_ema"] = stored
    torch.save(checkpoint, tmp_path / "old.pth")

    resumed = _resume(tmp_path, "old.pth")
    assert resumed._best_selection_score == 0.9
    resumed.run_epoch(0.8)
    assert _epoch_of(tmp_path / "checkpoint_best.pth") == 1
    resumed.run_epoch(0.91)
    assert _epoch_of(tmp_path / "checkpoint_best.pth") == 4


# ----------------------------------------------------------------------------------------------------------------
# End to end: nnUNetv2_train killed after epoch 1, then resumed with --c
# ----------------------------------------------------------------------------------------------------------------
_SCRIPTED_TRAINER_MODULE = '''
import os

from nnunet_babloss.trainers import BaBLossTrainer_BabDemo

SCORES = (0.5, 0.9, 0.7, 0.8, 0.95)


class BaBLossTrainer_ResumeTest(BaBLossTrainer_BabDemo):
    """One iteration per epoch, checkpoint_latest every epoch, scripted selection scores, optional crash."""

    schedule_num_epochs = len(SCORES)
    schedule_iterations_per_epoch = 1
    schedule_val_iterations_per_epoch = 1
    schedule_save_every = 1

    def log_selection_score(self, score):
        self.logger.log("ema_selection_score", SCORES[self.current_epoch], self.current_epoch)

    def on_epoch_start(self):
        if str(self.current_epoch) == os.environ.get("BAB_TEST_CRASH_AT_EPOCH"):
            raise RuntimeError("simulated kill")
        super().on_epoch_start()
'''


@pytest.mark.e2e
def test_nnunetv2_train_resumed_with_c_keeps_selecting_on_the_score(demo_run, tmp_path: Path) -> None:
    import os
    import re
    import subprocess

    from nnunet_babloss.apps.demo import nnunet_command, nnunet_environment, training_environment

    result, _ = demo_run
    work_dir = result.dataset_folder.parents[1]
    extension = tmp_path / "ext"
    extension.mkdir()
    (extension / "bab_resume_test_trainers.py").write_text(_SCRIPTED_TRAINER_MODULE)
    environment = training_environment(nnunet_environment(work_dir, {**os.environ, "nnUNet_extTrainer": str(extension)}))
    command = [nnunet_command("nnUNetv2_train"), "987", "2d", "0", "-tr", "BaBLossTrainer_ResumeTest", "-device", "cpu"]
    fold = (Path(environment["nnUNet_results"]) / result.dataset_folder.name
            / "BaBLossTrainer_ResumeTest__nnUNetPlans__2d" / "fold_0")

    killed = subprocess.run(command, env={**environment, "BAB_TEST_CRASH_AT_EPOCH": "2"}, capture_output=True, text=True)
    assert killed.returncode != 0 and "simulated kill" in killed.stderr
    assert _epoch_of(fold / "checkpoint_latest.pth") == 1 and _epoch_of(fold / "checkpoint_best.pth") == 1
    logs_before = set(fold.glob("training_log_*.txt"))

    resumed = subprocess.run([*command, "--c"], env=environment, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    # Scores 0.7 and 0.8 (epochs 2, 3) stay below the 0.9 of epoch 1; 0.95 (epoch 4) is the only new best.
    best = load_checkpoint_weights_only(fold / "checkpoint_best.pth")
    assert best["current_epoch"] - 1 == 4 and best["_best_ema"] == pytest.approx(0.95)
    resumed_logs = "".join(path.read_text() for path in set(fold.glob("training_log_*.txt")) - logs_before)
    assert re.findall(r"New best selection score.*?: (\d\.\d+)", resumed_logs) == ["0.9500"]


class _RecordingBase(nnUNetTrainer):
    """nnU-Net's trainer whose log goes to a list (below the mixin in the MRO, like nnU-Net's own method)."""

    def print_to_log_file(self, *args, **kwargs) -> None:
        self.messages.append(" ".join(str(arg) for arg in args))


class _RecordingTrainer(SelectionScoreCheckpointing, _RecordingBase):
    __init__ = _ScriptedTrainer.__init__


def test_log_names_the_selection_score_not_a_nan_pseudo_dice(tmp_path: Path) -> None:
    """A run without masks: nnU-Net's pseudo Dice is NaN; its "New best EMA pseudo Dice: nan" line must not appear,
    ours (with the score that chose the checkpoint) must."""
    trainer = _RecordingTrainer(tmp_path)
    trainer.messages = []
    for key, value in (("epoch_start_timestamps", 0.0), ("train_losses", 0.0), ("val_losses", 0.0), ("lrs", 0.01),
                       ("dice_per_class_or_region", []), ("mean_fg_dice", math.nan), ("ema_selection_score", 0.4)):
        trainer.logger.log(key, value, 0)
    trainer.on_epoch_end()
    assert (tmp_path / "checkpoint_best.pth").is_file()
    assert not [message for message in trainer.messages if "pseudo Dice" in message], trainer.messages
    assert any(message.startswith("New best selection score: 0.4000") for message in trainer.messages)
    assert not [message for message in trainer.messages if "nan" in message], trainer.messages
