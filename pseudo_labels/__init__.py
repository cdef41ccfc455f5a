"""pseudo_labels package."""
