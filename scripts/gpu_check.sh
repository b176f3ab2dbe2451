#!/usr/bin/env bash
# The GPU check (docs/BENCHMARKS.md, "The GPU check"): one command, at most 9 minutes, on a bare machine
# with a CUDA build of torch and only the files sent with it. In order of priority, each step skipped
# when the time left is less than it needs:
#   1. the CUDA tests (pytest -m gpu);
#   2. `bench` of the `paper` and `fast` presets, with torch.profiler tables;
#   3. a complete `fast` training on the bundled cat/fox clips, its `eval`, and the ground-truth benchmark;
#   4. `bench --compare` of channels-last and torch.compile, off and on (the layout and compile defaults
#      are decided by it; a second run with a larger JOKR_GPU_CHECK_SECONDS reaches it if the first cannot).
# The results land in one folder (first argument, else $OUT, else gpu_check/), at most 8 files so that
# all come back from the device machine: summary.md (device, date, commit, perceptual loss, each step,
# the bench, eval and ground-truth reports), logs.txt, bench_*.json, profile_*.txt, contact_sheet.png,
# groundtruth.png. Jobs and checkpoints stay in a scratch folder ($JOKR_GPU_CHECK_WORK, else a temporary one).
#
# Packages the machine lacks travel as wheels in .whl/ (scripts/gpu_wheels.sh fetches them). The LPIPS
# weights (58 MB for VGG) do not fit in what travels: without them `bench` times LPIPS-VGG with random
# weights (same work; summary.md says so) and training uses SSIM.
#
# JOKR_GPU_CHECK_DRY=1 runs the same steps on the CPU at tiny sizes in a few minutes: CI does, so the
# script cannot rot. JOKR_GPU_CHECK_SECONDS sets the budget (default 540).
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
python=${PYTHON:-python3}
out=$(mkdir -p "${1:-${OUT:-gpu_check}}" && cd "${1:-${OUT:-gpu_check}}" && pwd)
work=${JOKR_GPU_CHECK_WORK:-$(mktemp -d)}
mkdir -p "$work"
budget=${JOKR_GPU_CHECK_SECONDS:-540}
dry=${JOKR_GPU_CHECK_DRY:-0}

if ! "$python" -c "import kornia" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/jokr-site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/jokr-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$repo:${PYTHONPATH:-} PYTHONUNBUFFERED=1
engine=("$python" -m jokr_engine)

if [ "$dry" = 1 ]; then
    device=cpu preset_train=tiny bench_presets=(tiny) bench_iterations=2 gt_pairs=similar
    compare=channels_last  # compiling on a CPU takes minutes: the dry run compares the layouts only
    short=(--set step1_iterations=30 --set step2_iterations=10)
    # The step costs, in seconds, that decide whether a step still fits (see BENCHMARKS.md for the GPU ones).
    need_tests=20 need_bench=60 need_compare=30 need_train=90 need_eval=30 need_gt=120
else
    device=cuda preset_train=fast bench_presets=(paper fast) bench_iterations=20 gt_pairs=proportions
    compare=channels_last,compile
    short=()
    need_tests=60 need_bench=90 need_compare=150 need_train=240 need_eval=30 need_gt=150
fi

summary=$out/summary.md
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo "${JOKR_COMMIT:-unknown}")
device_name=$("$python" -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU')")
bench_lpips=()
if "$python" -c "from jokr_engine.lpips_net import build_lpips; build_lpips('vgg')" >/dev/null 2>&1; then
    perceptual=lpips loss_note="LPIPS-VGG with its real weights"
else
    perceptual=ssim loss_note="training with SSIM (no LPIPS-VGG weights here)"
    # paper and fast time LPIPS-VGG all the same: its work does not depend on the weights' values.
    [ "$dry" = 1 ] || { bench_lpips=(--random-lpips); loss_note+="; bench times LPIPS-VGG with random weights"; }
fi
{
    echo "# GPU check"
    echo
    echo "device $device_name, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit, torch" \
         "$("$python" -c 'import torch; print(torch.__version__)'), budget ${budget} s$([ "$dry" = 1 ] && echo ', DRY RUN (CPU, tiny sizes)')."
    echo "Perceptual loss: $loss_note."
    echo
    echo "| step | result | seconds |"
    echo "|---|---|---|"
} > "$summary"

start=$SECONDS
failures=0
# step NAME SECONDS_NEEDED COMMAND…: run with what is left of the budget as its time limit, or skip.
step() {
    local name=$1 need=$2 left began code
    shift 2
    left=$((budget - (SECONDS - start)))
    if [ "$left" -lt "$need" ]; then
        echo "| $name | skipped: $left s left, needs about $need s | 0 |" >> "$summary"
        return 1
    fi
    began=$SECONDS
    timeout --signal=TERM --kill-after=30 "$left" "$@" > "$work/$name.log" 2>&1
    code=$?
    if [ "$code" = 0 ]; then
        echo "| $name | ok | $((SECONDS - began)) |" >> "$summary"
    else
        echo "| $name | exit $code (logs.txt) | $((SECONDS - began)) |" >> "$summary"
        failures=$((failures + 1))
    fi
    echo "$name: exit $code after $((SECONDS - began)) s" >&2
    return "$code"
}

step cuda_tests "$need_tests" "$python" -m pytest -q -m gpu -p no:cacheprovider tests/engine

for preset in "${bench_presets[@]}"; do
    step "bench_$preset" "$need_bench" "${engine[@]}" bench --preset "$preset" --device "$device" \
        --iterations "$bench_iterations" "${bench_lpips[@]}" --out "$out/bench_$preset.json" \
        --record "$work/bench.md" --profile "$out/profile_$preset.txt"
done

job=$work/job_cat_fox
rm -rf "$job"
# A training cut short by the budget still checkpoints (SIGTERM), so eval measures what it reached.
step train "$need_train" "${engine[@]}" train --a demo/data/cat --b demo/data/fox --job "$job" \
    --preset "$preset_train" --set "perceptual=$perceptual" "${short[@]}" --device "$device"
if [ -f "$job/checkpoints/latest.safetensors" ]; then
    step eval "$need_eval" "${engine[@]}" eval --job "$job" --device "$device" \
        && cp "$job/eval/contact_sheet.png" "$out/contact_sheet.png"
else
    echo "| eval | skipped: no trained job | 0 |" >> "$summary"
fi
step groundtruth "$need_gt" "${engine[@]}" groundtruth run --out "$work/groundtruth" --preset "$preset_train" \
    --pairs "$gt_pairs" --set "perceptual=$perceptual" "${short[@]}" --device "$device" \
    && cp "$work/groundtruth/groundtruth.png" "$out/groundtruth.png"
# Last: a trained result matters more than the layout/compile comparison, which a second run can make.
# The same networks as paper, so one preset decides; the table lands in bench.md (in summary.md).
step bench_compare "$need_compare" "${engine[@]}" bench --preset "$preset_train" --device "$device" \
    --compare "$compare" --iterations "$bench_iterations" "${bench_lpips[@]}" --record "$work/bench.md"

{
    echo
    echo "Total $((SECONDS - start)) s; $failures step(s) failed."
    for report in "$work/bench.md" "$job/eval/eval.md" "$work/groundtruth/report.md"; do
        [ -f "$report" ] && { echo; echo "---"; cat "$report"; }
    done
} >> "$summary"
for log in "$work"/*.log; do
    [ -f "$log" ] && { echo "===== $(basename "$log")"; tail -n 60 "$log"; }
done > "$out/logs.txt"
cat "$summary"
[ "$failures" = 0 ]
