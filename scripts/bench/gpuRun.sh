#!/usr/bin/env bash
# Runs the bench on a GPU machine from the kit that `npm run bench:gpu-kit` packs into .gpukit/
# (scripts/bench/gpuKit.ts says what is in it). From the folder that holds .gpukit:
#
#   bash .gpukit/run.sh [stage...]      stages: info gputime f16parity capture inputcost boundrun 7b qwen3 lora pair breakdown floor encoders
#                                       small f16 (default: info gputime f16parity 7b qwen3 breakdown encoders small)
#
# Unpacks Node, dawn.node, ORT's wasm and the Vulkan loader (Debian debs), recreates the bench
# models' large data files with random weights (models/bench_data_plan.py), then runs each stage
# with a time limit and writes its table to $OUT (or /tmp/hark-out).
set -uo pipefail
KIT="$(cd "$(dirname "$0")" && pwd)"
W="${HARK_KIT_WORK:-/tmp/hark}" # HARK_KIT_WORK: another folder (a dry run here beside an unpacked kit)
OUT="${OUT:-/tmp/hark-out}"
mkdir -p "$OUT"
T0=$(date +%s)
say() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$OUT/run.log"; }
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(info gputime f16parity 7b qwen3 breakdown encoders small)

if [ ! -x "$W/bin/node" ]; then
  if [ -z "${HARK_KIT_NO_GL:-}" ]; then # HARK_KIT_NO_GL=1: a machine with its own Vulkan loader (a dry run here)
    for f in "$KIT"/gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  mkdir -p "$W/bin" "$W/repo"
  xz -dc "$KIT/bin/node.xz" > "$W/bin/node" && chmod +x "$W/bin/node"
  cp -r "$KIT/jobs" "$W/jobs"
  xz -dc "$KIT/bin/dawn.node.xz" > "$W/jobs/node_modules/webgpu/dist/linux-x64/dawn.node"
  xz -dc "$KIT/bin/ort-wasm-simd-threaded.asyncify.wasm.xz" > "$W/jobs/ort-wasm-simd-threaded.asyncify.wasm"
  cp -r "$KIT/repo/." "$W/repo/"
  for f in $(find "$W/repo" -name '*.json.xz'); do xz -d "$f"; done # Qwen3's tokenizer.json
  say "unpacked; filling the bench models' data with random weights"
  python3 "$W/repo/models/bench_data_plan.py" fill --root "$W/repo" "$KIT/data-plan.json" 2>&1 | tail -3
  say "filled"
fi

export VK_ICD_FILENAMES="${VK_ICD_FILENAMES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}"
export HARK_BENCH_NO_BUILD=1 XDG_RUNTIME_DIR=/tmp HARK_BENCH_REPO="$W/repo" HARK_BENCH_BUNDLE_DIR="$W/jobs" HARK_BENCH_VERBOSE=1
export HARK_ORT_WASM="$W/jobs/ort-wasm-simd-threaded.asyncify.wasm"
NODE="$W/bin/node"
run() { # name, limit in s, command...
  local name=$1 limit=$2; shift 2
  say "stage $name (limit ${limit} s): $*"
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  say "stage $name exit $?"
  grep -v '^ *\[' "$OUT/$name.txt" | grep -v onnxruntime | tail -40
}

for stage in "${stages[@]}"; do
  case "$stage" in
    info) nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee -a "$OUT/run.log" ;;
    gputime) run gputime-7b 150 "$NODE" "$W/jobs/gpuTime.mjs" --model 7b --steps 16
             run gputime-7b-uncaptured 150 "$NODE" "$W/jobs/gpuTime.mjs" --model 7b --steps 16 --no-capture
             run gputime-qwen3 150 "$NODE" "$W/jobs/gpuTime.mjs" --model qwen3-4b --steps 16
             run gputime-medium 60 "$NODE" "$W/jobs/gpuTime.mjs" --model medium --steps 16 ;;
    breakdown) run breakdown 60 "$NODE" "$W/jobs/breakdown.mjs" --steps 32 ;;
    floor) run floor 60 "$NODE" "$W/jobs/breakdown.mjs" --floor-only ;;
    small) run small 150 "$NODE" "$W/jobs/bench.mjs" --models tiny,medium --backends webgpu-node --contexts 128,1024,2048,4096 --steps 16 ;;
    7b) run 7b 120 "$NODE" "$W/jobs/bench.mjs" --models 7b --backends webgpu-node --big-measure --contexts 128,1024,2048 --steps 16 ;;
    qwen3) run qwen3 240 "$NODE" "$W/jobs/bench.mjs" --models qwen3-4b --backends webgpu-node --big-measure --contexts 128,1024,2048 --steps 16 ;;
    lora) run lora 200 "$NODE" "$W/jobs/bench.mjs" --models 7b,7b-nolora,7b,7b-nolora --backends webgpu-node --big-measure --contexts 128 --steps 32 ;;
    pair) run pair 240 "$NODE" "$W/jobs/pair.mjs" --a 7b --b 7b-nolora --rounds 5 --steps 16 ;;
    encoders) run encoders 100 "$NODE" "$W/jobs/bench.mjs" --models encoders --backends webgpu-node --precisions int4 --encode-runs 3 ;;
    f16parity) HARK_DAWN_FLAGS=enable-dawn-features=vulkan_enable_f16_on_nvidia run f16parity 120 "$NODE" "$W/jobs/f16Parity.mjs" --variants fp16,int4f16 --steps 16 ;;
    capture) run capture-medium 60 "$NODE" "$W/jobs/capture.mjs" --model medium --steps 16
             run capture-7b 240 "$NODE" "$W/jobs/capture.mjs" --model 7b --steps 16 ;;
    inputcost) run inputcost 90 "$NODE" "$W/jobs/inputCost.mjs" ;;
    boundrun) run boundrun-7b 120 "$NODE" "$W/jobs/boundRun.mjs" --model 7b --steps 12
              run boundrun-qwen3 120 "$NODE" "$W/jobs/boundRun.mjs" --model qwen3-4b --steps 12 ;;
    f16) HARK_DAWN_FLAGS=enable-dawn-features=vulkan_enable_f16_on_nvidia run f16 120 "$NODE" "$W/jobs/breakdown.mjs" --steps 16 ;;
    *) say "unknown stage $stage" ;;
  esac
done
say "done"
