"""Seconds per training iteration of HeatmapTrainer and BaBLossTrainer relative to nnUNetTrainer, in one run.

The three trainers are built on the same preprocessed dataset and configuration; each times ``train_step`` on
batches fetched beforehand from its own loader (so augmentation cost, identical for all, is left out). Rounds
interleave the trainers so that machine noise hits all of them alike; the reported time is the minimum over rounds
(the least disturbed estimate on a shared machine; medians are recorded too).
Default data: the synthetic heterogeneous dataset of the demo (generated and preprocessed on the fly).

    python benchmarks/train_speed.py                       # CPU, synthetic 2D
    python benchmarks/train_speed.py --device cuda --synthetic-size 256 --iterations 50

Writes ``benchmarks/results/train_speed_<device>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=None, help="folder with nnUNet_raw/preprocessed/results (default: new temporary folder)")
    parser.add_argument("--dataset-id", type=int, default=987, help="dataset id (default 987, the synthetic dataset; generated if missing)")
    parser.add_argument("--configuration", default="2d", help="nnU-Net configuration (default 2d)")
    parser.add_argument("--synthetic-size", type=int, default=128, help="image size of the generated synthetic dataset (default 128)")
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations per trainer and round (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations per trainer first (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device (default cpu)")
    parser.add_argument("--output", type=Path, default=None, help="results stem (default benchmarks/results/train_speed_<device>)")
    return parser


def _prepare(work_dir: Path, dataset_id: int, configuration: str, size: int) -> None:
    from nnunet_babloss.apps.demo import nnunet_command, nnunet_environment, run_nnunet_step
    from nnunet_babloss.apps.synthetic import SyntheticDatasetConfig, generate_synthetic_dataset

    if any((work_dir / "nnUNet_preprocessed").glob(f"Dataset{dataset_id:03d}_*")):
        return
    if not any((work_dir / "nnUNet_raw").glob(f"Dataset{dataset_id:03d}_*")):
        generate_synthetic_dataset(work_dir / "nnUNet_raw", dataset_id, config=SyntheticDatasetConfig(shape_yx=(size, size), num_test=0))
    (work_dir / "logs").mkdir(parents=True, exist_ok=True)
    run_nnunet_step(
        "plan and preprocess",
        [nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-c", configuration, "-np", "1", "-npfp", "1"],
        nnunet_environment(work_dir, os.environ), work_dir / "logs", print,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    work_dir = (args.work_dir or Path(tempfile.mkdtemp(prefix="bab_train_speed_"))).resolve()
    _prepare(work_dir, args.dataset_id, args.configuration, args.synthetic_size)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ[name] = str(work_dir / name)
    os.environ["nnUNet_n_proc_DA"] = "0"
    os.environ.setdefault("nnUNet_compile", "f")

    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_babloss.trainers import BaBLossTrainer, HeatmapTrainer

    preprocessed = next((work_dir / "nnUNet_preprocessed").glob(f"Dataset{args.dataset_id:03d}_*"))
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    trainers, batches = {}, {}
    for cls in (nnUNetTrainer, HeatmapTrainer, BaBLossTrainer):
        trainer = cls({**plans, "continue_training": False}, args.configuration, 0, dataset_json, device)
        trainer.initialize()
        loader, _ = trainer.get_dataloaders()
        trainer.network.train()
        batches[cls.__name__] = [next(loader) for _ in range(args.iterations)]
        for batch in batches[cls.__name__][: args.warmup]:
            trainer.train_step(batch)
        trainers[cls.__name__] = trainer

    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    peak_memory: dict[str, int | None] = {name: None for name in trainers}
    names = list(trainers)
    for round_index in range(args.rounds):
        for name in names[round_index % len(names):] + names[: round_index % len(names)]:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync()
            start = time.perf_counter()
            for batch in batches[name]:
                trainers[name].train_step(batch)
            sync()
            seconds[name].append((time.perf_counter() - start) / len(batches[name]))
            if device.type == "cuda":
                peak_memory[name] = max(peak_memory[name] or 0, torch.cuda.max_memory_allocated())

    best = {name: min(values) for name, values in seconds.items()}
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    reference = best["nnUNetTrainer"]
    configuration = trainers["BaBLossTrainer"].configuration_manager
    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})",
        "torch_threads": torch.get_num_threads(),
        "dataset": preprocessed.name,
        "configuration": args.configuration,
        "patch_size": list(configuration.patch_size),
        "batch_size": trainers["BaBLossTrainer"].batch_size,
        "num_landmarks": trainers["BaBLossTrainer"].landmark_spec.num_landmarks,
        "iterations_per_round": args.iterations,
        "rounds": args.rounds,
        "seconds_per_iteration": best,
        "seconds_per_iteration_median": medians,
        "seconds_per_iteration_all_rounds": seconds,
        "ratio_to_nnUNetTrainer": {name: value / reference for name, value in best.items()},
        "babloss_over_heatmap": best["BaBLossTrainer"] / best["HeatmapTrainer"],
        # Rounds interleave the trainers, so one round's two times share its machine noise: the median of the
        # per-round ratios is steadier than a ratio of minima, which one lucky round decides.
        "babloss_over_heatmap_paired_median": statistics.median(
            b / h for b, h in zip(seconds["BaBLossTrainer"], seconds["HeatmapTrainer"])
        ),
        "peak_gpu_memory_bytes": peak_memory,
        "command": "python benchmarks/train_speed.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
    }
    stem = args.output or RESULTS / f"train_speed_{device.type}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# Training speed ({result['device']})",
        "",
        f"`{result['command']}` — {result['dataset']}, configuration {args.configuration}, patch {result['patch_size']}, "
        f"batch {result['batch_size']}, {result['num_landmarks']} landmarks; minimum over {args.rounds} interleaved rounds "
        f"of {args.iterations} iterations.",
        "",
        "| trainer | s / iteration | ratio to nnUNetTrainer | peak GPU memory |",
        "|---|---|---|---|",
    ]
    for name in names:
        memory = peak_memory[name]
        lines.append(
            f"| {name} | {best[name]:.4f} | {best[name] / reference:.3f} | "
            f"{'n/a' if memory is None else f'{memory / 2**20:.0f} MiB'} |"
        )
    lines += ["", f"BaBLossTrainer / HeatmapTrainer: {result['babloss_over_heatmap']:.3f} (ratio of the minima); "
              f"{result['babloss_over_heatmap_paired_median']:.3f} (median over rounds of the round's ratio)"]
    Path(f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
