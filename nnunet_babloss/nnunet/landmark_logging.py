"""nnU-Net's local logger with landmark metrics, and a progress plot that shows them.

nnU-Net's ``LocalLogger`` accepts only the keys it was created with and plots the shortest list, so every key added
here is logged once per epoch; keys missing from a checkpoint written by another trainer are back-filled with NaN.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402
from nnunetv2.training.logging.nnunet_logger import LocalLogger  # noqa: E402

__all__ = ["LANDMARK_LOG_KEYS", "LandmarkLocalLogger"]

LANDMARK_LOG_KEYS = ("val_mre_mm", "val_sdr", "ema_selection_score", "train_heatmap_losses", "train_bab_losses")


class LandmarkLocalLogger(LocalLogger):
    """``LocalLogger`` plus validation MRE/SDR, training loss parts and the checkpoint-selection score."""

    def __init__(self, verbose: bool = False, sdr_thresholds_mm: tuple[float, ...] = (2.0, 2.5, 3.0, 4.0)) -> None:
        super().__init__(verbose)
        self.sdr_thresholds_mm = tuple(sdr_thresholds_mm)
        for key in LANDMARK_LOG_KEYS:
            self.my_fantastic_logging[key] = []

    def load_checkpoint(self, checkpoint: dict) -> None:
        super().load_checkpoint(checkpoint)
        epochs = len(self.my_fantastic_logging.get("train_losses", []))
        for key in LANDMARK_LOG_KEYS:
            self.my_fantastic_logging.setdefault(key, [math.nan] * epochs)

    def plot_progress_png(self, output_folder: str) -> None:
        """Four panels: losses and pseudo Dice; landmark MRE and SDR; epoch duration; learning rate."""
        log = self.my_fantastic_logging
        epochs = min(len(values) for values in log.values())
        x = list(range(epochs))
        figure, axes = plt.subplots(4, 1, figsize=(12, 20))

        ax = axes[0]
        ax.plot(x, log["train_losses"][:epochs], "b-", label="loss_tr")
        ax.plot(x, log["val_losses"][:epochs], "r-", label="loss_val")
        ax.plot(x, log["train_heatmap_losses"][:epochs], "b:", label="heatmap loss (tr)")
        ax.plot(x, log["train_bab_losses"][:epochs], "b--", label="BaBLoss (tr)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend(loc="upper left")
        twin = ax.twinx()
        twin.plot(x, log["mean_fg_dice"][:epochs], "g:", label="pseudo dice")
        twin.plot(x, log["ema_fg_dice"][:epochs], "g-", label="pseudo dice (EMA)")
        twin.plot(x, log["ema_selection_score"][:epochs], "k-", label="selection score (EMA)")
        twin.set_ylabel("dice / score")
        twin.legend(loc="upper right")

        ax = axes[1]
        ax.plot(x, log["val_mre_mm"][:epochs], "m-", label="validation MRE (mm)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("MRE (mm)")
        ax.legend(loc="upper left")
        twin = ax.twinx()
        sdr = log["val_sdr"][:epochs]
        if sdr and isinstance(sdr[0], (list, tuple)):
            for position, threshold in enumerate(self.sdr_thresholds_mm[: len(sdr[0])]):
                twin.plot(x, [row[position] for row in sdr], label=f"SDR@{threshold:g} mm")
        twin.set_ylabel("SDR")
        twin.legend(loc="upper right")

        ax = axes[2]
        durations = [end - start for end, start in zip(log["epoch_end_timestamps"][:epochs], log["epoch_start_timestamps"][:epochs])]
        ax.plot(x, durations, "b-", label="epoch duration (s)")
        ax.set_xlabel("epoch")
        ax.legend(loc="upper left")

        ax = axes[3]
        ax.plot(x, log["lrs"][:epochs], "b-", label="learning rate")
        ax.set_xlabel("epoch")
        ax.legend(loc="upper left")

        figure.tight_layout()
        figure.savefig(Path(output_folder) / "progress.png")
        plt.close(figure)
