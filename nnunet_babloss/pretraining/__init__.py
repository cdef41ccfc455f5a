"""Boundary-aware pre-training (domain generalisation): the t·MSE + (1−t)·LogCosh mixing loss (``losses.py``) and
the pre-trainer that regresses boundary-proximity maps on the heatmap channels (``trainer.py``)."""
