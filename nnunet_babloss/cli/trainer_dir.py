"""``nnUNetv2_bab_trainer_dir``: print the folder to put in ``nnUNet_extTrainer``.

Usage in a shell: ``export nnUNet_extTrainer=$(nnUNetv2_bab_trainer_dir)``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from nnunet_babloss.ext_trainers_path import EXT_TRAINER_DIR

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_bab_trainer_dir",
        description="Print the folder that nnUNet_extTrainer must point at so that the stock nnUNetv2_train and "
        "nnUNetv2_predict find the nnunet-babloss trainers. Use: export nnUNet_extTrainer=$(nnUNetv2_bab_trainer_dir)",
    )
    parser.add_argument("--export", action="store_true", help="print a complete `export nnUNet_extTrainer=...` line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(f"export nnUNet_extTrainer={EXT_TRAINER_DIR}" if args.export else EXT_TRAINER_DIR)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
