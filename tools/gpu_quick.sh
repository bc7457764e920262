#!/usr/bin/env bash
# Short GPU iteration in one device call: chosen tests and benchmarks, logs under $OUT.
#   bash tools/gpu_quick.sh "attn vision vbench"   stages:
#     attn    attention op tests + attention micro-benchmarks
#     vision  vision tests (tiny checkpoint: CUDA parity, half modes, heads kernels)
#     llm     LLM tests (CUDA)
#     vbench  full-size random checkpoint, omnirt bench vision with a stage breakdown
#     lbench  omnirt bench llm (TinyLlama shape, fp16)
#     decode  decode kernels (issue #4): their tests, the per-kernel graph benchmarks
#             (bench_ops decode/...), omnirt bench llm's TPOT
#     ablate  omnirt bench llm's TPOT with each decode kernel left out in turn
#             (OMNIRT_DECODE_ABLATE): what each costs inside the real kernel chain
#     sweep   decode GEMV launch shapes (K split x warps per block) and the decode attention
#     vparity full-size fixtures (PyTorch reference, float32) + the C++ vision parity tests on them
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/omnirt_out}
mkdir -p "$OUT"
STAGES=${1:-"attn vision vbench"}
BUILD=${BUILD_DIR:-build}
export LD_LIBRARY_PATH="$ROOT/$BUILD/bundled-libs:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export PYTHONPATH="$ROOT/python" PYTHONUNBUFFERED=1
FULL=/tmp/omnirt_full_ckpt
has() { [[ " $STAGES " == *" $1 "* ]]; }
summary() { grep -E "^\[  (PASSED|FAILED) |^\[  FAILED|tests? (ran|passed)|Failure|Expected|Which is|rel. error" "$1" | head -${2:-40}; }

if has vbench || has vparity; then  # export first, in the background, while the tests run
  python3 python/omnidrive_export.py --random full --seed 0 --out "$FULL" > "$OUT/export_full.log" 2>&1 &
  EXPORT_PID=$!
fi
if has attn; then
  echo "=== attention tests"
  "$BUILD/tests/test_ops" --gtest_filter='Attention*' > "$OUT/attn_tests.log" 2>&1; echo "rc=$?"
  summary "$OUT/attn_tests.log"
  "$BUILD/bench/bench_ops" --benchmark_filter='[Aa]ttention' --benchmark_min_time=0.2 \
    > "$OUT/attn_bench.txt" 2>&1; echo "bench rc=$?"; grep -v "^-\|^Run\|^\*\*\*" "$OUT/attn_bench.txt" | tail -20
fi
if has vision; then
  echo "=== vision tests"
  "$BUILD/tests/test_vision" > "$OUT/vision_tests.log" 2>&1; echo "rc=$?"
  summary "$OUT/vision_tests.log" 60
fi
if has llm; then
  echo "=== llm tests"
  for t in "$BUILD"/tests/test_llm*; do "$t" > "$OUT/$(basename "$t").log" 2>&1; echo "$(basename "$t") rc=$?"; summary "$OUT/$(basename "$t").log" 20; done
fi
if has decode; then
  echo "=== decode kernel tests"
  "$BUILD/tests/test_llm" --gtest_filter='Decode*' > "$OUT/decode_tests.log" 2>&1; echo "rc=$?"
  summary "$OUT/decode_tests.log" 30
  "$BUILD/bench/bench_ops" --benchmark_filter='^decode/' --benchmark_min_time=0.2 \
    > "$OUT/decode_bench.txt" 2>&1; echo "bench rc=$?"
  grep -E "^decode/" "$OUT/decode_bench.txt" | sed -E 's/ +/ /g' | cut -c1-160
  "$BUILD/omnirt" bench llm --random-tinyllama --prompt-len 577 --new-tokens 86 --dtype fp16 \
    --runs 10 --json "$OUT/bench_llm_fp16.json" 2>&1 | grep -E "TPOT|floor|rror"
fi
if has vbench || has vparity; then
  wait "$EXPORT_PID"; echo "export rc=$?"; tail -2 "$OUT/export_full.log"
fi
if has vparity; then
  FIX=/tmp/omnirt_full_fixtures
  python3 python/make_fixtures.py --ckpt "$FULL" --device cuda --out "$FIX" > "$OUT/full_fixtures.log" 2>&1
  echo "fixtures rc=$?"; tail -2 "$OUT/full_fixtures.log"
  OMNIRT_PARITY_CKPT=$FULL OMNIRT_PARITY_FIXTURES=$FIX "$BUILD/tests/test_vision" \
    --gtest_filter='VisionParity.Cuda*' > "$OUT/full_parity_vision.log" 2>&1
  echo "full-size vision parity rc=$?"
  grep -E "OK \]|FAILED|rel. error|unmatched|top-k|only in|Failure|Which is" "$OUT/full_parity_vision.log" | head -70
fi
if has vbench; then
  for cfg in "fp16 fp16" "fp16 fp32" "bf16 bf16" "fp32 fp32 --tf32" "fp32 fp32"; do
    set -- $cfg
    echo "=== bench vision backbone $1 heads $2 ${3:-}"
    "$BUILD/omnirt" bench vision --model "$FULL" --device cuda --dtype "$1" --heads-dtype "$2" ${3:-} \
      --runs 20 --stages --json "$OUT/bench_vision_${1}_${2}${3:+_tf32}.json" 2>/dev/null | tail -22
  done
fi
if has ablate; then
  echo "=== decode ablation (TPOT with kernels left out; tokens garbage)"
  for k in none embed qkv attn o gate_up down lm_head sampler pos "embed,sampler,pos"; do
    v=$k; [ "$k" = none ] && v=""
    printf "%-20s " "$k"
    OMNIRT_DECODE_ABLATE=$v "$BUILD/omnirt" bench llm --random-tinyllama --prompt-len 577 --new-tokens 86 \
      --dtype fp16 --runs 5 2>&1 | grep -E "TPOT" | head -2 | tr '\n' ' '; echo
  done
fi
if has sweep; then
  "$BUILD/bench/bench_ops" --benchmark_filter='^decode/gemv_shape/|^decode/attn|^decode/gemv_f16/.*/graph$' \
    --benchmark_min_time=0.2 > "$OUT/decode_sweep.txt" 2>&1; echo "sweep rc=$?"
  grep -E "^decode/" "$OUT/decode_sweep.txt" | sed -E 's/ +/ /g' | cut -c1-150
fi
if has lbench; then
  "$BUILD/omnirt" bench llm --random-tinyllama --prompt-len 577 --new-tokens 86 --dtype fp16 --runs 20 \
    --json "$OUT/bench_llm_fp16.json" 2>&1 | tail -12
fi
