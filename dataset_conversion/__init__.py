"""dataset_conversion package."""
