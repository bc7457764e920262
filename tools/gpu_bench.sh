#!/usr/bin/env bash
# One GPU session's worth of checks and benchmarks, in one command (device time is scarce):
#   1. tools/gpu_check.sh: the whole test suite including the CUDA tests
#   2. the full-size PyTorch vision reference, two frames (per-stage shapes and norms)
#   3. a full-size random checkpoint + full-size fixtures; the C++ parity tests against them
#   4. benchmarks: omnirt bench-vision / bench llm, bench_ops, and the PyTorch baseline
# Usage: bash tools/gpu_bench.sh [STAGES]   (default "check ref parity bench"); logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/omnirt_out}
mkdir -p "$OUT"
STAGES=${1:-"check ref parity bench"}
BUILD=${BUILD_DIR:-build}
export LD_LIBRARY_PATH="$ROOT/$BUILD/bundled-libs:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export PYTHONPATH="$ROOT/python" PYTHONUNBUFFERED=1
FULL=/tmp/omnirt_full_ckpt
FIX=/tmp/omnirt_full_fixtures
has() { [[ " $STAGES " == *" $1 "* ]]; }

if has check; then
  echo "=== gpu_check"; bash tools/gpu_check.sh > "$OUT/gpu_check.log" 2>&1; echo "gpu_check rc=$?"
  tail -4 "$OUT/gpu_check.log"
fi
if has ref; then
  echo "=== full-size vision reference, 2 frames (float32, cuda)"
  python3 python/run_full_vision.py --device cuda > "$OUT/full_vision_ref.log" 2>&1; echo "rc=$?"
  tail -15 "$OUT/full_vision_ref.log"
fi
if has parity || has bench; then
  if [ ! -f "$FULL/config.json" ]; then
    echo "=== exporting a full-size random checkpoint"
    python3 python/omnidrive_export.py --random full --seed 0 --out "$FULL" > "$OUT/export_full.log" 2>&1
    echo "rc=$?"; tail -3 "$OUT/export_full.log"
  fi
fi
if has parity; then
  echo "=== full-size fixtures + C++ parity (CUDA)"
  python3 python/make_fixtures.py --ckpt "$FULL" --device cuda --out "$FIX" > "$OUT/full_fixtures.log" 2>&1
  echo "fixtures rc=$?"; tail -3 "$OUT/full_fixtures.log"
  OMNIRT_PARITY_CKPT=$FULL OMNIRT_PARITY_FIXTURES=$FIX "$BUILD/tests/test_vision" \
    --gtest_filter='VisionParity.Cuda*' > "$OUT/full_parity_vision.log" 2>&1
  echo "vision parity rc=$?"; grep -E "OK|FAILED|rel. error|Failure|Expected|Which is" "$OUT/full_parity_vision.log" | head -40
  for t in "$BUILD"/tests/test_llm_engine; do
    [ -x "$t" ] && OMNIRT_PARITY_CKPT=$FULL OMNIRT_PARITY_FIXTURES=$FIX "$t" --gtest_filter='*Parity*' \
      > "$OUT/full_parity_llm.log" 2>&1 && echo "llm parity ok" || echo "llm parity rc=$? (see full_parity_llm.log)"
  done
fi
if has bench; then
  echo "=== benchmarks"
  nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv > "$OUT/gpu_state.csv"
  for cfg in "fp32" "fp32 --tf32" "fp16" "bf16"; do
    set -- $cfg
    "$BUILD/omnirt" bench vision --model "$FULL" --device cuda --dtype "$1" ${2:-} --runs 30 \
      --json "$OUT/bench_vision_${1}${2:+_tf32}.json" 2>/dev/null | tail -2
  done
  if true; then
    "$BUILD/omnirt" bench llm --random-tinyllama --prompt-len 577 --new-tokens 86 --dtype fp16 --runs 20 \
      --json "$OUT/bench_llm_fp16.json" 2>&1 | tail -12
  fi
  [ -x "$BUILD/bench/bench_ops" ] && "$BUILD/bench/bench_ops" --benchmark_min_time=0.2 \
    > "$OUT/bench_ops.txt" 2>&1 && tail -30 "$OUT/bench_ops.txt"
  TB=""; for c in ../shared/bench/torch_baseline.py shared/bench/torch_baseline.py .cache/torch_baseline.py; do [ -f "$c" ] && TB=$c && break; done
  if [ -n "$TB" ]; then
    SKIP_COMPILE=1 python3 "$TB" > "$OUT/torch_baseline.jsonl" 2>&1; echo "torch baseline rc=$?"
    cat "$OUT/torch_baseline.jsonl" | tail -15
  else
    echo "torch_baseline.py not found (copy shared/bench into the checkout's shared/)"
  fi
fi
