"""The pure core: numpy/torch only, no nnU-Net, no method.

The landmark data model (``landmarks/``: dataset.json spec, file formats, world/voxel geometry, mean-shape
baseline), Gaussian heatmaps, boundary-proximity maps, the generic losses, the two-head network, metrics and the
scoring of prediction folders, stratified splits and atomic output folders. Everything above builds on it; it imports
nothing above itself (an import-linter contract checks it).
"""
