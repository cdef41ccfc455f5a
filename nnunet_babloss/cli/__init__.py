"""Console entry points (``nnUNetv2_bab_*``). Environment variables are read here and nowhere else."""
