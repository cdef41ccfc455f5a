"""BaBLoss, the Boundary-as-Bridge loss: its losses (``losses.py``) and trainers (``trainer.py``)."""
