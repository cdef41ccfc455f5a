"""Checkpoint handling of our trainers: weights-only loading, and ``checkpoint_best`` chosen on the trainer's own score.

Loading (:class:`WeightsOnlyCheckpointLoading`): ``--c``, ``--val``, ``--val_best`` and ``-pretrained_weights``
read checkpoints with ``weights_only=True`` and the allow-list of :mod:`nnunet_babloss.nnunet.checkpoint_loading`,
so a crafted ``.pth`` is refused instead of run.

Selection (:class:`SelectionScoreCheckpointing`):
nnU-Net saves ``checkpoint_best`` in ``on_epoch_end`` when its ``_best_ema`` is ``None`` or beaten by the EMA of the
pseudo Dice. Trainers whose quality is not (only) a Dice — landmarks, boundary-map regression — log an
``ema_selection_score`` per epoch instead; this mixin steers nnU-Net's decision with it. The best score travels in
every checkpoint (latest, best, final) in nnU-Net's own ``_best_ema`` slot, so ``--c`` resumes the selection where it
stopped, whichever checkpoint nnU-Net resumes from. (Before, ``checkpoint_latest`` held ``None``/``inf`` and
``checkpoint_best`` the pseudo-Dice EMA; such checkpoints are still resumed correctly, from the logged scores.)
"""

from __future__ import annotations

import math

from nnunet_babloss.nnunet.checkpoint_loading import guard_pretrained_weights_loading, weights_only_loading

__all__ = ["SelectionScoreCheckpointing", "WeightsOnlyCheckpointLoading"]


class WeightsOnlyCheckpointLoading:
    """Mixin for nnU-Net trainers: every checkpoint nnU-Net loads for them is loaded weights-only.

    ``load_checkpoint`` (``--c``, ``--val``, ``--val_best``) runs nnU-Net's own method inside
    :func:`~nnunet_babloss.nnunet.checkpoint_loading.weights_only_loading`; ``initialize`` routes the
    ``-pretrained_weights`` load of ``nnUNetv2_train`` (which nnU-Net performs right after it) through the same guard
    (:func:`~nnunet_babloss.nnunet.checkpoint_loading.guard_pretrained_weights_loading`).
    """

    def initialize(self) -> None:
        super().initialize()
        guard_pretrained_weights_loading()

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        what = f"checkpoint {filename_or_checkpoint}" if isinstance(filename_or_checkpoint, str) else "checkpoint"
        with weights_only_loading(what):
            super().load_checkpoint(filename_or_checkpoint)


class SelectionScoreCheckpointing(WeightsOnlyCheckpointLoading):
    """Mixin for nnU-Net trainers whose local logger has an ``ema_selection_score`` list (higher is better)."""

    selection_ema_momentum: float = 0.9
    #: Shown in the log when a new best checkpoint is saved.
    selection_description: str = "selection score"
    _best_selection_score: float | None = None

    def log_selection_score(self, score: float) -> None:
        """Log the EMA of ``score`` for this epoch (a NaN score keeps the previous EMA)."""
        history = [value for value in self.logger.local_logger.my_fantastic_logging["ema_selection_score"]
                   if not math.isnan(value)]
        if math.isnan(score):
            ema = history[-1] if history else math.nan
        elif history:
            ema = history[-1] * self.selection_ema_momentum + (1 - self.selection_ema_momentum) * score
        else:
            ema = score
        self.logger.log("ema_selection_score", ema, self.current_epoch)

    def on_epoch_end(self) -> None:
        score = self.logger.local_logger.my_fantastic_logging["ema_selection_score"][-1]
        improved = not math.isnan(score) and (self._best_selection_score is None or score > self._best_selection_score)
        if improved:
            # Before nnU-Net writes this epoch's checkpoints, so that they carry the score (see save_checkpoint).
            self._best_selection_score = score
        # nnU-Net saves checkpoint_best when its _best_ema is None or beaten; steer that decision with our score.
        self._best_ema = None if improved else math.inf
        self._steering_best_checkpoint = True
        try:
            super().on_epoch_end()
        finally:
            self._steering_best_checkpoint = False
        if improved:
            self.print_to_log_file(f"New best {self.selection_description}: {score:.4f}")
        self._best_ema = self._best_selection_score

    _steering_best_checkpoint: bool = False
    #: nnU-Net's announcement of a new best checkpoint; it names its pseudo-Dice EMA, which did not choose it.
    _NNUNET_BEST_MESSAGE = "Yayy! New best EMA pseudo Dice"

    def print_to_log_file(self, *args, **kwargs) -> None:
        """nnU-Net's log, without its "New best EMA pseudo Dice" line while this mixin chooses the checkpoint (that
        line would report the pseudo-Dice EMA — ``nan`` without masks — as the reason; ours follows it)."""
        if self._steering_best_checkpoint and args and str(args[0]).startswith(self._NNUNET_BEST_MESSAGE):
            return
        super().print_to_log_file(*args, **kwargs)

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint, with the best selection score in its ``_best_ema`` entry.

        During ``on_epoch_end`` ``_best_ema`` holds the ``None``/``inf`` that steers nnU-Net (and nnU-Net then puts
        its pseudo-Dice EMA there before writing ``checkpoint_best``); the file gets the score instead.
        """
        steering = self._best_ema
        self._best_ema = self._best_selection_score
        try:
            super().save_checkpoint(filename)
        finally:
            self._best_ema = steering

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        super().load_checkpoint(filename_or_checkpoint)
        self._best_selection_score = self._resumed_best_score(self._best_ema)
        self._best_ema = self._best_selection_score

    def _resumed_best_score(self, stored: float | None) -> float | None:
        """The best selection score of a loaded checkpoint: its ``_best_ema`` if that is one of the logged scores
        (checkpoints written by :meth:`save_checkpoint`), else the best logged score (older checkpoints, whose
        ``_best_ema`` held ``None``, ``inf`` or nnU-Net's pseudo Dice); ``None`` before any finite score."""
        logged = [float(value) for value in self.logger.local_logger.my_fantastic_logging["ema_selection_score"]
                  if value is not None and math.isfinite(value)]
        if stored is not None and math.isfinite(stored) and float(stored) in logged:
            return float(stored)
        return max(logged) if logged else None
