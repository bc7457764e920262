#!/usr/bin/env bash
# The whole GPU verification of a commit in one device call (device time is scarce), in order of
# importance, each step guarded by the time left: CUDA test suite, LLM and vision benchmarks,
# end-to-end bench, the PyTorch baseline of the same run, full-size parity (vision heads on the
# reference's inputs, LLM fixtures), the accuracy-table command. Logs go to $OUT.
#   BUDGET_S=480 bash tools/gpu_release_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/omnirt_out}
mkdir -p "$OUT"
BUILD=${BUILD_DIR:-build}
BUDGET_S=${BUDGET_S:-480}
export LD_LIBRARY_PATH="$ROOT/$BUILD/bundled-libs:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export PYTHONPATH="$ROOT/python" PYTHONUNBUFFERED=1
FULL=/tmp/omnirt_full_ckpt
FIX=/tmp/omnirt_full_fixtures
left() { echo $((BUDGET_S - SECONDS)); }
# SKIP="e2e torch parity_cmd engines full_parity llm_parity" leaves those steps out (a shorter mid-session
# run); MICRO_FILTER narrows the final micro-benchmarks.
skip() { [[ " ${SKIP:-} " == *" $1 "* ]]; }
step() { echo; echo "=== $1 (t=${SECONDS}s)"; }

python3 python/omnidrive_export.py --random full --seed 0 --out "$FULL" > "$OUT/export_full.log" 2>&1 &
EXPORT_PID=$!

step "ctest (CUDA)"
(cd "$BUILD" && ctest -j4 --timeout 240 --output-on-failure -E 'api_install_example' > "$OUT/ctest.log" 2>&1)
echo "ctest rc=$?"; grep -E "tests passed|tests failed" "$OUT/ctest.log"
grep -E "^\s+[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Subprocess aborted)" "$OUT/ctest.log" | cut -c1-120 | head -20
grep -E "Failure|Expected|Which is|error:|what\(\)" "$OUT/ctest.log" | cut -c1-200 | head -30

wait "$EXPORT_PID"; echo "export rc=$?"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv,noheader

step "bench llm"
for pdl in "" "--no-pdl"; do
  "$BUILD/omnirt" bench llm --random-tinyllama --prompt-len 577 --new-tokens 86 --dtype fp16 --runs 20 $pdl \
    --json "$OUT/bench_llm_fp16${pdl:+_nopdl}.json" 2>&1 | grep -E "p50|tokens/s|rror"
done
# Quantized weights, when this build has them (issue #8).
if "$BUILD/omnirt" bench llm --help 2>&1 | grep -q -- "--weights"; then
  WQ="int4 int4-g128 nvfp4"
  "$BUILD/omnirt" bench llm --help 2>&1 | grep -q fp8 && WQ="$WQ fp8"
  for wq in $WQ "int4 --quant-lm-head" "nvfp4 --quant-lm-head"; do
    set -- $wq; tag=$1${2:+_qlm}
    echo "weights $wq:"; "$BUILD/omnirt" bench llm --random-tinyllama --prompt-len 577 --new-tokens 86 \
      --dtype fp16 --weights $wq --runs 20 --json "$OUT/bench_llm_$tag.json" 2>&1 | grep -E "p50|tokens/s|rror"
  done
fi
step "bench vision"
"$BUILD/omnirt" bench vision --model "$FULL" --device cuda --dtype fp16 --heads-dtype fp16 --runs 10 --stages \
  2>&1 | tee "$OUT/bench_vision_stages.log" | grep -vE "^\s*$" | head -40
for cfg in "fp16 fp16" "bf16 bf16" "fp16 fp32" "fp16 fp32 --tf32" "fp32 fp32 --tf32" "fp32 fp32"; do
  set -- $cfg
  echo "backbone $1 heads $2 ${3:-}: $("$BUILD/omnirt" bench vision --model "$FULL" --device cuda --dtype "$1" \
    --heads-dtype "$2" ${3:-} --runs 20 --json "$OUT/bench_vision_${1}_${2}${3:+_tf32}.json" 2>/dev/null | grep 'vision frame')"
done

if "$BUILD/omnirt" bench vision --help 2>&1 | grep -q heads-concurrent; then
  echo "backbone fp16 heads fp16 --heads-concurrent: $("$BUILD/omnirt" bench vision --model "$FULL" --device cuda \
    --dtype fp16 --heads-dtype fp16 --heads-concurrent --runs 20 2>/dev/null | grep 'vision frame')"
fi
echo "tf32 stage breakdown:"
"$BUILD/omnirt" bench vision --model "$FULL" --device cuda --dtype fp32 --heads-dtype fp32 --tf32 --runs 10 --stages \
  2>&1 | tee "$OUT/bench_vision_stages_tf32.log" | grep -E "^\| (backbone|heads|sum)|frame \(p50" | head -16
if "$BUILD/omnirt" bench vision --help 2>&1 | grep -q fp8-compare; then
  echo "backbone fp8 (calibrated on the bench frame) heads fp16:"
  "$BUILD/omnirt" bench vision --model "$FULL" --device cuda --dtype fp8 --heads-dtype fp16 --runs 20 \
    --fp8-compare --json "$OUT/bench_vision_fp8_fp16.json" 2>&1 | grep -E "vision frame|fp8|FP8|rel|rror" | head -12
fi

step "engine folders (omnirt build, then load + bench from the folder)"
if ! skip engines && [ "$(left)" -gt 300 ]; then
  for prec in int4-g128 nvfp4; do
    "$BUILD/omnirt" build --help 2>&1 | grep -q "$prec" || [ "$prec" = int4-g128 ] || continue
    /usr/bin/time -f "build $prec: %e s wall, %M KB max RSS" "$BUILD/omnirt" build "$FULL" --out "/tmp/eng_$prec" \
      --llm "$prec" > "$OUT/build_$prec.log" 2>&1; echo "build $prec rc=$?"; tail -4 "$OUT/build_$prec.log"
    "$BUILD/omnirt" bench llm --model "/tmp/eng_$prec" --device cuda --dtype fp16 --prompt-len 577 --new-tokens 86 \
      --runs 10 --json "$OUT/bench_llm_folder_$prec.json" 2>&1 | grep -E "load|p50|rror" | head -8
  done
fi

step "bench e2e (sample scene, full random model)"
! skip e2e && [ "$(left)" -gt 200 ] && "$BUILD/omnirt" bench e2e --model "$FULL" --device cuda --runs 2 --warmup 1 \
  --json "$OUT/bench_e2e.json" 2>&1 | grep -E "^\||vision|TTFT|TPOT|overall" | grep -v -- "---" | head -20

step "PyTorch baseline (same run)"
TB=""; for c in shared/bench/torch_baseline.py .cache/torch_baseline.py; do [ -f "$c" ] && TB=$c && break; done
! skip torch && [ -n "$TB" ] && [ "$(left)" -gt 150 ] && SKIP_COMPILE=1 PROMPT=577 GEN=86 timeout $(( $(left) - 120 )) \
  python3 "$TB" > "$OUT/torch_baseline.jsonl" 2>&1; echo "torch rc=$?"; cut -c1-160 "$OUT/torch_baseline.jsonl" | tail -12

step "full-size parity"
if ! skip full_parity && [ "$(left)" -gt 100 ]; then
  timeout $(( $(left) - 30 )) python3 python/make_fixtures.py --ckpt "$FULL" --device cuda --out "$FIX" \
    > "$OUT/full_fixtures.log" 2>&1; echo "fixtures rc=$?"
  export OMNIRT_PARITY_CKPT=$FULL OMNIRT_PARITY_FIXTURES=$FIX
  timeout 150 "$BUILD/tests/test_vision" --gtest_filter='VisionParity.Cuda*:VisionParityCriterion.*' \
    > "$OUT/full_parity_vision.log" 2>&1; echo "vision parity rc=$?"
  grep -E "rel. error|per layer|own f32 vs f64|expected from|unmatched|tie swaps|ill-conditioned|drift|criterion|OK \]|FAILED \]" "$OUT/full_parity_vision.log" | cut -c1-200 | head -90
  if ! skip llm_parity; then
    timeout 150 "$BUILD/tests/test_llm_engine" --gtest_filter='Frames/LlmFixture*' > "$OUT/full_parity_llm.log" 2>&1
    echo "llm parity rc=$?"; grep -E "rel|OK \]|FAILED \]|Failure" "$OUT/full_parity_llm.log" | head -20
  fi
fi
step "omnirt parity (drift over precisions, sample scene, full random model)"
if ! skip parity_cmd && [ "$(left)" -gt 90 ]; then
  LLMS=fp32,fp16; "$BUILD/omnirt" parity --help 2>&1 | grep -q int4 && LLMS=fp32,fp16,int4
  timeout $(( $(left) - 20 )) "$BUILD/omnirt" parity examples/sample_scene --model "$FULL" --device cuda \
    --vision fp32,tf32,fp16,bf16 --llm "$LLMS" --frames 2 --max-new 24 --out /tmp/omnirt_parity \
    > "$OUT/parity.log" 2>&1; echo "parity rc=$?"; grep -E "^\||rror" "$OUT/parity.log" | head -40
fi
step "decode micro-benchmarks (last: they take long)"
if [ "$(left)" -gt 40 ]; then
  timeout $(( $(left) - 10 )) "$BUILD/bench/bench_ops" --benchmark_filter="${MICRO_FILTER:-^decode/|^quant_gemv/.*/pdl|^vit/}" \
    --benchmark_min_time=0.05 > "$OUT/bench_ops_llm.log" 2>&1
  grep -E "^[a-z_0-9]+/" "$OUT/bench_ops_llm.log" | awk '{print $1, $2, $3}' | head -90
fi
cp /tmp/omnirt_parity/parity.json "$OUT/parity.jsonl" 2>/dev/null
echo "done t=${SECONDS}s"
# The device returns at most 8 files: keep the benchmark JSONs apart and pack every log into one.
(cd "$OUT" && tar -czf logs.tgz --remove-files ./*.log ./*.jsonl 2>/dev/null)
(cd "$OUT" && tar -czf bench_json.tgz --remove-files ./bench_*.json 2>/dev/null)
