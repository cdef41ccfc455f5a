"""GazeSup: segmentation supervised by gaze-derived nested threshold levels. The level map (``levels.py``), losses
(``losses.py``), the one-output-per-level network (``network.py``) and the trainer (``trainer.py``)."""
