"""DenseSeg (2D): landmarks read out of dense uv maps. Templates and uv maps (``uvmaps.py``), uv losses
(``losses.py``), the uv-head network (``network.py``) and the trainer (``trainer.py``)."""
