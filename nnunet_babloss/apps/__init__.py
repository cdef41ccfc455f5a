"""Applications on top of everything: the end-to-end demo, its synthetic dataset, and evaluation overlays.

Nothing below imports this package (an import-linter contract checks it); the console entry points in ``cli/`` do.
"""
