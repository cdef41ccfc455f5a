#!/usr/bin/env bash
# The JSRT study on a GPU machine that has PyTorch but not nnU-Net, in one call (see benchmarks/gpu/README.md).
# Expects, beside the checkout: .gpu/site.tar.xz (nnU-Net and its dependencies, unpacked wheels) and
# .gpu/data/jsrt_512 (benchmarks/gpu/halve_jsrt.py). Writes $OUT/jsrt_gpu.tar.gz (study reports, logs, validation
# summaries; no checkpoints). Every study stops at DEADLINE_S seconds after the start, so results that finished return.
# Variables: DEADLINE_S (default 500), STUDY_DEVICE (cuda), SMOKE=1 (tiny settings, to try the script on a CPU),
# SKIP_INSTALL=1 (use the installed packages).
set -u
start=$(date +%s)
deadline=$((start + ${DEADLINE_S:-500}))
device=${STUDY_DEVICE:-cuda}
out=${OUT:-/tmp/jsrt_gpu_out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    mkdir -p /tmp/site && tar -xJf .gpu/site.tar.xz -C /tmp/site || exit 1
    export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
    mkdir -p /tmp/bin
    while IFS='=' read -r name target; do
        name=$(echo "$name" | tr -d ' '); target=$(echo "$target" | tr -d ' ')
        printf '#!/bin/sh\nexec python3 -c "import sys; from %s import %s as f; sys.argv[0]=\\"%s\\"; sys.exit(f())" "$@"\n' \
            "${target%%:*}" "${target##*:}" "$name" > "/tmp/bin/$name"
        chmod +x "/tmp/bin/$name"
    done < <(cat /tmp/site/nnunetv2-*.dist-info/entry_points.txt; python3 - <<'P'
import re
text = open("setup.py").read()
for name, target in re.findall(r'"(nnUNetv2_bab_\w+)=([\w.]+:\w+)"', text):
    print(f"{name}={target}")
P
)
    export PATH=/tmp/bin:$PATH
fi
python3 -c "import torch, nnunetv2, SimpleITK, blosc2, cc3d, nnunet_babloss; print('torch', torch.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))" || exit 1
echo "setup took $(( $(date +%s) - start )) s"

export NNUNET_BABLOSS_DATA=$PWD/.gpu/data nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-2} nnUNet_def_n_proc=${nnUNet_def_n_proc:-3}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
if [ "${SMOKE:-0}" = 1 ]; then
    common=(--device "$device" --epochs 1 --iterations 2 --val-iterations 1 --batch-size 2 --spacing 2.8 --patch 128
            --max-train-per-group 3 --max-val-per-group 1)
    long=(--epochs 2 --iterations 2)
    seeds=(0)
else
    common=(--device "$device" --epochs 32 --iterations 25 --val-iterations 3 --batch-size 4 --spacing 2.8 --patch 128)
    long=(--epochs 64 --iterations 50)
    seeds=(0 1 2)
fi

# one stream: a work folder, then one study per seed (each writes its own report)
stream() {
    local name=$1; shift
    local seed
    for seed in "${seeds[@]}"; do
        local left=$((deadline - $(date +%s)))
        [ "$left" -gt 20 ] || { echo "[$name] no time left for seed $seed"; return; }
        echo "[$name] seed $seed ($left s left)"
        timeout "$left" python3 benchmarks/jsrt_study.py --work-dir "/tmp/work/$name" \
            --results-dir "/tmp/results/${name}_s$seed" --seeds "$seed" "${common[@]}" "$@" \
            > "/tmp/results/$name.s$seed.log" 2>&1
        echo "[$name] seed $seed exit $? after $(( $(date +%s) - start )) s"
    done
}
mkdir -p /tmp/results /tmp/work
if [ -n "${MIX_SEEDS:-}" ]; then  # a follow-up call: the mixed pair, one stream per seed
    for seed in $MIX_SEEDS; do (seeds=("$seed"); stream "mix$seed" --variants mix_heatmap mix_babloss) & done
else
    stream lm_default --variants landmarks_only &
    stream lm_sigma3 --variants landmarks_only --sigma-vox 3 &
    stream lm_sigma4 --variants landmarks_only --sigma-vox 4 &
    stream mix --variants mix_heatmap mix_babloss &
    (seeds=(0); stream long "${long[@]}" --variants landmarks_only mix_babloss mix_heatmap) &
fi
wait
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>/dev/null
# keep reports, logs, progress curves and validation summaries; leave checkpoints and predictions behind
cd /tmp && find work -name "*.pth" -o -name "*.b2nd" -o -name "*.pkl" -o -name "*.npz" -o -name "*.nii.gz" > /tmp/skip.txt
tar -czf "$out/jsrt_gpu.tar.gz" -X /tmp/skip.txt results work/*/logs \
    $(find work -path "*nnUNet_results*" \( -name "*.json" -o -name "*.csv" -o -name "*.txt" -o -name "*.png" \) 2>/dev/null) \
    2>/dev/null
ls -la "$out"
echo "total $(( $(date +%s) - start )) s"
