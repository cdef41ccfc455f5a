"""All speed and memory ratios in one run, side by side, on one machine.

Runs, one after the other in the same session (so machine load drifts hit everything alike):

1. training: ``train_speed.py`` (seconds per iteration of ``HeatmapTrainer`` and ``BaBLossTrainer`` vs
   ``nnUNetTrainer``, interleaved rounds, the least-disturbed round counts), then one fresh process per trainer that
   runs ``--memory-iterations`` training steps and reports its peak resident memory (``ru_maxrss``; on a GPU also
   ``torch.cuda.max_memory_allocated``);
2. prediction: ``predict_speed.py`` (``nnUNetv2_bab_predict`` vs the stock ``nnUNetv2_predict`` on the same model,
   wall time and peak memory of the whole process tree);
3. pseudo labels: ``pseudo_label_quality.py`` on ``--pseudo-cases`` landmark-only JSRT cases for the contour
   strategy and the LiteMedSAM box baseline (seconds per image; peak resident memory of that process).

Writes ``speed_memory.md``/``.json`` into ``--results-dir`` with the machine. Ratios, not absolute times, are the
result: absolute times on a shared 2-core machine move with its load.

Usage::

    python benchmarks/speed_memory.py --work-dir /tmp/speed
    python benchmarks/speed_memory.py --work-dir /tmp/speed_smoke --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from study_common import REPO_ROOT, machine_description  # noqa: E402 (adds the repository to sys.path)

HERE = Path(__file__).resolve().parent
TRAINERS = ("nnUNetTrainer", "HeatmapTrainer", "BaBLossTrainer")

_MEMORY_PROBE = r"""
import json, os, resource, sys
work, cls_name, iterations, device = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
    os.environ[name] = os.path.join(work, name)
os.environ["nnUNet_n_proc_DA"] = "0"
os.environ.setdefault("nnUNet_compile", "f")
import glob, torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunet_babloss.trainers import BaBLossTrainer, HeatmapTrainer
cls = {"nnUNetTrainer": nnUNetTrainer, "HeatmapTrainer": HeatmapTrainer, "BaBLossTrainer": BaBLossTrainer}[cls_name]
folder = sorted(glob.glob(os.path.join(work, "nnUNet_preprocessed", "Dataset*")))[0]
plans = json.load(open(os.path.join(folder, "nnUNetPlans.json")))
dataset_json = json.load(open(os.path.join(folder, "dataset.json")))
trainer = cls({**plans, "continue_training": False}, "2d", 0, dataset_json, torch.device(device))
trainer.initialize()
loader, _ = trainer.get_dataloaders()
trainer.network.train()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for _ in range(iterations):
    trainer.train_step(next(loader))
print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_before_training_mib": before / 1024,
                  "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None}))
"""

# Runs a script in this process and prints its own peak resident memory last.
_PEAK_WRAPPER = (
    "import resource, runpy, sys\n"
    "script = sys.argv[1]; sys.argv = sys.argv[1:]\n"
    "try:\n    runpy.run_path(script, run_name='__main__'); code = 0\n"
    "except SystemExit as exit_:\n    code = exit_.code or 0\n"
    "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def run(arguments: Sequence[str], log: Path) -> str:
    """Run a command, keep its output in ``log``; returns stdout; raises with the tail on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(list(arguments), capture_output=True, text=True, encoding="utf-8", errors="replace")
    log.write_text(completed.stdout + "\n--- stderr ---\n" + completed.stderr)
    if completed.returncode != 0:
        tail = "\n".join((completed.stdout + completed.stderr).splitlines()[-30:])
        raise RuntimeError(f"{' '.join(arguments)} failed ({completed.returncode}); log {log}:\n{tail}")
    return completed.stdout


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speed_memory.py", description=__doc__.split("Usage::", 1)[0],
        epilog="Usage::" + __doc__.split("Usage::", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--work-dir", type=Path, required=True, help="scratch folder (must be new or empty)")
    parser.add_argument("--results-dir", type=Path, default=REPO_ROOT / "benchmarks" / "results",
                        help="where speed_memory.{md,json} go (default: benchmarks/results)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device (default: cpu)")
    parser.add_argument("--train-iterations", type=int, default=6, help="timed iterations per round (default: 6)")
    parser.add_argument("--train-rounds", type=int, default=6, help="interleaved rounds (default: 6)")
    parser.add_argument("--memory-iterations", type=int, default=5, help="steps per memory probe (default: 5)")
    parser.add_argument("--predict-repeats", type=int, default=3, help="prediction repeats (default: 3)")
    parser.add_argument("--pseudo-cases", type=int, default=10, help="JSRT cases for pseudo labels (default: 10)")
    parser.add_argument("--smoke", action="store_true",
                        help="a quick check of the pipeline: 2 iterations x 2 rounds, 2 memory steps, 1 prediction "
                        "repeat, 2 pseudo-label cases (numbers meaningless)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.train_iterations, args.train_rounds, args.memory_iterations = 2, 2, 2
        args.predict_repeats, args.pseudo_cases = 1, 2
        args.results_dir = args.work_dir / "results"
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results_dir = args.results_dir.resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    python = sys.executable

    print("[1/3] training speed", flush=True)
    train_stem = work / "train_speed"
    run([python, str(HERE / "train_speed.py"), "--work-dir", str(work / "train"), "--iterations",
         str(args.train_iterations), "--rounds", str(args.train_rounds), "--device", args.device, "--output",
         str(train_stem)], work / "logs" / "train_speed.log")
    train = json.loads(Path(f"{train_stem}.json").read_text())
    memory = {}
    for name in TRAINERS:
        output = run([python, "-c", _MEMORY_PROBE, str(work / "train"), name, str(args.memory_iterations), args.device],
                     work / "logs" / f"memory_{name}.log")
        memory[name] = json.loads(output.strip().splitlines()[-1])

    print("[2/3] prediction speed", flush=True)
    run([python, str(HERE / "predict_speed.py"), "--work-dir", str(work / "predict"), "--repeats",
         str(args.predict_repeats), "--results", str(work / "predict_results")], work / "logs" / "predict_speed.log")
    predict = json.loads((work / "predict_results" / "predict_speed.json").read_text())

    print("[3/3] pseudo labels", flush=True)
    output = run([python, "-c", _PEAK_WRAPPER, str(HERE / "pseudo_label_quality.py"), "--limit",
                  str(args.pseudo_cases), "--strategy", "contour=contour", "--strategy", "box=box:margin=0", "--device",
                  args.device, "--output-dir", str(work / "pseudo_results"), "--name", "pseudo_speed", "--no-progress"],
                 work / "logs" / "pseudo.log")
    pseudo_peak_mib = int(output.strip().splitlines()[-1].split()[-1]) / 1024
    pseudo = json.loads((work / "pseudo_results" / "pseudo_speed.json").read_text())
    seconds = {name: sum(values) / len(values) for name, values in pseudo["seconds_per_image"].items()}

    reference_memory = memory["nnUNetTrainer"]["peak_rss_mib"]
    report = {
        "command": "python benchmarks/speed_memory.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine_description(), "device": args.device,
        "load_average_1min": {"start": load_before, "end": os.getloadavg()[0]},
        "training": {
            "setup": {key: train[key] for key in ("dataset", "configuration", "patch_size", "batch_size",
                                                  "num_landmarks", "iterations_per_round", "rounds")},
            "seconds_per_iteration": train["seconds_per_iteration"],
            "ratio_to_nnUNetTrainer": train["ratio_to_nnUNetTrainer"],
            "babloss_over_heatmap": train["babloss_over_heatmap"],
            "peak_memory": memory,
            "peak_rss_ratio_to_nnUNetTrainer": {name: memory[name]["peak_rss_mib"] / reference_memory for name in TRAINERS},
        },
        "prediction": {key: predict[key] for key in ("dataset", "arguments", "time_ratio", "peak_tree_pss_ratio",
                                                     "segmentations_byte_identical", "landmark_files_written")}
        | {"stock_wall_s": predict["stock"]["wall_s"], "ours_wall_s": predict["ours"]["wall_s"],
           "stock_peak_tree_pss_mib": predict["stock"]["peak_tree_pss_mib"],
           "ours_peak_tree_pss_mib": predict["ours"]["peak_tree_pss_mib"]},
        "pseudo_labels": {"cases": len(pseudo["cases"]), "seconds_per_image": seconds,
                          "peak_rss_mib": pseudo_peak_mib,
                          "model": pseudo["model"].get("name", "LiteMedSAM")},
        "total_wall_s": time.perf_counter() - started,
    }
    (results_dir / "speed_memory.json").write_text(json.dumps(report, indent=2))
    (results_dir / "speed_memory.md").write_text(markdown(report))
    print(markdown(report))
    return 0


def markdown(report: dict) -> str:
    machine, training, prediction, pseudo = report["machine"], report["training"], report["prediction"], report["pseudo_labels"]
    setup = training["setup"]
    lines = [
        "# Speed and memory, one run", "",
        f"Command: `{report['command']}`", "",
        f"Machine: {machine['cpu']} ({machine['cpu_cores_visible']} cores visible), GPU {machine['cuda'] or 'none'}, "
        f"torch {machine['torch']}; device `{report['device']}`; 1-min load average {report['load_average_1min']['start']:.1f}"
        f" at the start, {report['load_average_1min']['end']:.1f} at the end.", "",
        f"## Training ({setup['dataset']}, {setup['configuration']}, patch {setup['patch_size']}, batch "
        f"{setup['batch_size']}, {setup['num_landmarks']} landmarks; min over {setup['rounds']} interleaved rounds of "
        f"{setup['iterations_per_round']} iterations)", "",
        "| trainer | s / iteration | time ratio | peak RSS MiB | RSS ratio | peak GPU MiB |", "|---|---|---|---|---|---|",
    ]
    for name in TRAINERS:
        peak = training["peak_memory"][name]
        gpu = "–" if peak["peak_cuda_mib"] is None else f"{peak['peak_cuda_mib']:.0f}"
        lines.append(f"| {name} | {training['seconds_per_iteration'][name]:.4f} | "
                     f"{training['ratio_to_nnUNetTrainer'][name]:.3f} | {peak['peak_rss_mib']:.0f} | "
                     f"{training['peak_rss_ratio_to_nnUNetTrainer'][name]:.3f} | {gpu} |")
    lines += ["", f"BaBLossTrainer / HeatmapTrainer time: {training['babloss_over_heatmap']:.3f}", "",
              f"## Prediction ({prediction['dataset']}; {prediction['arguments']})", "",
              "| | wall s (median) | peak PSS MiB (process tree) |", "|---|---|---|",
              f"| nnUNetv2_predict | {prediction['stock_wall_s']:.1f} | {prediction['stock_peak_tree_pss_mib']:.0f} |",
              f"| nnUNetv2_bab_predict | {prediction['ours_wall_s']:.1f} | {prediction['ours_peak_tree_pss_mib']:.0f} |",
              "", f"Ratios ours / stock: time {prediction['time_ratio']:.3f}, memory {prediction['peak_tree_pss_ratio']:.3f}; "
              f"segmentations byte-identical: {prediction['segmentations_byte_identical']}.", "",
              f"## Pseudo labels ({pseudo['cases']} JSRT landmark-only cases, 512 px)", "",
              "| strategy | s / image (5 organs) |", "|---|---|"]
    for name, value in pseudo["seconds_per_image"].items():
        lines.append(f"| {name} | {value:.3f} |")
    lines += ["", f"Peak RSS of the pseudo-label process: {pseudo['peak_rss_mib']:.0f} MiB.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
